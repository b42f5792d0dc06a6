//! Reading a DKIM private key: PEM as PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8
//! (`PRIVATE KEY`, RSA or Ed25519), RSA of at least 2048 bits; turned into
//! the forms lettre's signer reads (PKCS#1 PEM; the Ed25519 seed in
//! base64). The reasons never quote the key.

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// A DKIM private key, checked.
pub struct DkimKey {
    pub algorithm: DkimAlgorithm,
    /// RSA: PKCS#1 PEM; Ed25519: the base64 of the 32-byte seed.
    pub text: SecretString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DkimAlgorithm {
    Rsa,
    Ed25519,
}

/// Why a key is refused (never quoting it).
#[derive(Debug, thiserror::Error)]
pub enum DkimKeyError {
    #[error("the key is encrypted; give it unencrypted (the file is read by this service only)")]
    Encrypted,
    #[error("not a PKCS#1 RSA private key ({0})")]
    Pkcs1(rsa::pkcs1::Error),
    #[error("a PKCS#8 key that is neither RSA nor Ed25519")]
    Pkcs8,
    #[error("an RSA key of {0} bits; DKIM verifiers require at least 2048")]
    TooShort(usize),
    #[error("cannot re-encode the RSA key ({0})")]
    Reencode(rsa::pkcs1::Error),
    #[error(
        "not a PEM private key (expected -----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----)"
    )]
    NotPem,
}

/// Read `pem`.
pub(super) fn read(pem: &SecretString) -> Result<DkimKey, DkimKeyError> {
    let text = pem.expose_secret().trim();
    if text.contains("ENCRYPTED PRIVATE KEY") {
        return Err(DkimKeyError::Encrypted);
    }
    if text.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(text).map_err(DkimKeyError::Pkcs1)?;
        return rsa_key(key);
    }
    if text.starts_with("-----BEGIN PRIVATE KEY-----") {
        use rsa::pkcs8::DecodePrivateKey;
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(text) {
            return rsa_key(key);
        }
        let key =
            ed25519_dalek::SigningKey::from_pkcs8_pem(text).map_err(|_| DkimKeyError::Pkcs8)?;
        let seed = base64::engine::general_purpose::STANDARD.encode(key.to_bytes());
        return Ok(DkimKey {
            algorithm: DkimAlgorithm::Ed25519,
            text: SecretString::from(seed),
        });
    }
    Err(DkimKeyError::NotPem)
}

fn rsa_key(key: rsa::RsaPrivateKey) -> Result<DkimKey, DkimKeyError> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let bits = key.n().bits();
    if bits < 2048 {
        return Err(DkimKeyError::TooShort(bits));
    }
    let pem = key
        .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
        .map_err(DkimKeyError::Reencode)?;
    Ok(DkimKey {
        algorithm: DkimAlgorithm::Rsa,
        text: SecretString::from(pem.as_str().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(pem: &str) -> String {
        read(&SecretString::from(pem))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn not_a_key_says_why_without_quoting() {
        let why1 = why("-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----");
        assert!(why1.contains("PKCS#1"), "{why1}");
        assert!(!why1.contains("c2VjcmV0"));
        assert!(why("hello").contains("not a PEM"));
    }
}
