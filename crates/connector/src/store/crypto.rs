//! Encryption at rest for member connection keys: XChaCha20-Poly1305 under
//! the 32-byte `store.key_file`, a fresh random nonce per value, and the
//! record it belongs to as associated data, so a sealed key cannot be moved
//! to another member. The plaintext key is never written anywhere.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox, SecretString};

const PREFIX: &str = "xc1:";

/// The head of a value sealed as raw bytes ([`Sealer::seal_bytes`]): not
/// UTF-8, so it can be told from a text-sealed value (`xc1:`) and from a
/// record written in clear (JSON) by its first byte.
pub(super) const RAW_PREFIX: &[u8] = b"\xC5\x02";

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
        format!("{PREFIX}{}", B64.encode(self.nonce_ct(plaintext, aad, b"")))
    }

    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(CryptoError::Malformed)?;
        let raw = B64.decode(body).map_err(|_| CryptoError::Malformed)?;
        self.open_nonce_ct(&raw, aad)
    }

    /// Seal as raw bytes: [`RAW_PREFIX`], nonce, ciphertext. A third
    /// smaller than [`Sealer::seal`]'s text, for values no one reads as text.
    pub fn seal_bytes(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        self.nonce_ct(plaintext, aad, RAW_PREFIX)
    }

    /// `head`, a fresh nonce, then `plaintext` encrypted under it with `aad`,
    /// in one buffer. The nonce comes from the thread's CSPRNG (seeded and
    /// reseeded from the system's): 24 random bytes need no system call per
    /// value, which an ingest of a million records would otherwise make.
    fn nonce_ct(&self, plaintext: &[u8], aad: &[u8], head: &[u8]) -> Vec<u8> {
        use rand::RngCore;
        let mut nonce = XNonce::default();
        rand::rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(head.len() + nonce.len() + plaintext.len() + 16);
        out.extend_from_slice(head);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        // Encryption with a valid key and nonce cannot fail for in-memory
        // sizes; were it to, nothing half-sealed is returned.
        match self
            .cipher
            .encrypt_in_place_detached(&nonce, aad, &mut out[start..])
        {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                out
            }
            Err(_) => Vec::new(),
        }
    }

    /// Open a value made by [`Sealer::seal_bytes`].
    pub fn open_bytes(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let raw = sealed
            .strip_prefix(RAW_PREFIX)
            .ok_or(CryptoError::Malformed)?;
        self.open_nonce_ct(raw, aad)
    }

    fn open_nonce_ct(&self, raw: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
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

    #[test]
    fn raw_bytes_round_trip_bound_and_smaller() {
        let s = Sealer::new(&SecretBox::new(Box::new([7u8; 32])));
        let plain = vec![b'a'; 300];
        let raw = s.seal_bytes(&plain, b"record/x/1");
        assert_eq!(raw.len(), RAW_PREFIX.len() + 24 + 16 + 300);
        assert!(raw.len() < s.seal(&plain, b"record/x/1").len());
        assert!(
            std::str::from_utf8(&raw).is_err(),
            "never mistaken for text"
        );
        assert_eq!(s.open_bytes(&raw, b"record/x/1").unwrap(), plain);
        assert!(matches!(
            s.open_bytes(&raw, b"record/x/2"),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            s.open_bytes(&raw[..20], b"record/x/1"),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn nonces_differ_across_values_and_threads() {
        let s = std::sync::Arc::new(Sealer::new(&SecretBox::new(Box::new([7u8; 32]))));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..2_500)
                        .map(|_| s.seal_bytes(b"x", b"")[RAW_PREFIX.len()..][..24].to_vec())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for t in threads {
            for nonce in t.join().unwrap() {
                assert!(all.insert(nonce), "a nonce came twice");
            }
        }
        assert_eq!(all.len(), 10_000);
    }
}
