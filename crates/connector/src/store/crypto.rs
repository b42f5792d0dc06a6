//! Encryption at rest for member connection keys: XChaCha20-Poly1305 under
//! the 32-byte `store.key_file`, a fresh random nonce per value, and the
//! record it belongs to as associated data, so a sealed key cannot be moved
//! to another member. The plaintext key is never written anywhere.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox, SecretString};

const PREFIX: &str = "xc1:";

pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("a sealed value is malformed")]
    Malformed,
    #[error(
        "a sealed value does not open with this store key (wrong key, or the value was tampered with)"
    )]
    Open,
}

impl Sealer {
    pub fn new(key: &SecretBox<[u8; 32]>) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.expose_secret().into()),
        }
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key and nonce cannot fail for in-memory sizes.
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(CryptoError::Malformed)?;
        let raw = B64.decode(body).map_err(|_| CryptoError::Malformed)?;
        if raw.len() < 24 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = raw.split_at(24);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| CryptoError::Open)
    }

    pub fn open_secret(&self, sealed: &str, aad: &[u8]) -> Result<SecretString, CryptoError> {
        let bytes = self.open(sealed, aad)?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let s = Sealer::new(&SecretBox::new(Box::new([7u8; 32])));
        let sealed = s.seal(b"member-key", b"1001-45678");
        assert!(!sealed.contains("member-key"));
        assert_eq!(s.open(&sealed, b"1001-45678").unwrap(), b"member-key");
        assert!(matches!(
            s.open(&sealed, b"1002-45678"),
            Err(CryptoError::Open)
        ));
        let other = Sealer::new(&SecretBox::new(Box::new([8u8; 32])));
        assert!(matches!(
            other.open(&sealed, b"1001-45678"),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            s.open("garbage", b""),
            Err(CryptoError::Malformed)
        ));
        assert_ne!(s.seal(b"x", b""), s.seal(b"x", b""), "nonces are fresh");
    }
}
