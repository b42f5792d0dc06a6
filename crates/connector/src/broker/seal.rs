//! The X25519 sealed box (NaCl's `crypto_box_seal`, from `crypto_box`)
//! callbacks travel in: an edge seals what it received to the daemon's
//! public key with a fresh ephemeral key, so the edge itself cannot open it
//! again, nor can the broker or anyone reading its disks. Only the daemon,
//! holding the private key (`nats.seal_key_file`), opens it. `nats keygen`
//! makes the pair (`seal.key` mode 0600, `seal.pub`), both 64 hex
//! characters and a newline. A public key is named by its fingerprint
//! (16 hex characters of a SHA-256): an edge puts it on every message, the
//! daemon picks the key that opens it by it (its `seal_key_file`, or the
//! `previous_seal_key_file` kept during a rotation), and `nats keygen`, the
//! logs and `status` show it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crypto_box::aead::OsRng;
use secrecy::{ExposeSecret, SecretBox};
use sha2::{Digest, Sha256};

/// Why a sealed message could not be opened, or a key pair not written.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("not sealed to this daemon's key, or altered on the way")]
    Open,
    #[error("cannot seal: {0}")]
    Seal(String),
    #[error("{0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// The daemon's public key: what an edge seals to.
#[derive(Clone)]
pub struct SealPublicKey(crypto_box::PublicKey);

/// The daemon's private key: what opens the sealed boxes.
pub struct SealKey(crypto_box::SecretKey);

impl SealPublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(crypto_box::PublicKey::from_bytes(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// The key's name on messages, in logs and in `status`: the first 8
    /// bytes of a SHA-256 of the key (domain-separated), as 16 hex
    /// characters. Public, as the key is.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"mydex-connector seal key fingerprint v1\0");
        h.update(self.0.as_bytes());
        hex::encode(&h.finalize()[..8])
    }

    /// `plain` sealed to this key (48 bytes longer).
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        self.0
            .seal(&mut OsRng, plain)
            .map_err(|e| SealError::Seal(e.to_string()))
    }
}

impl SealKey {
    pub fn from_secret(key: &SecretBox<[u8; 32]>) -> Self {
        Self(crypto_box::SecretKey::from_bytes(*key.expose_secret()))
    }

    /// The same key again (for another task).
    pub fn from_secret_key(other: &SealKey) -> Self {
        Self(crypto_box::SecretKey::from_bytes(other.0.to_bytes()))
    }

    /// A fresh key pair.
    pub fn generate() -> Self {
        Self(crypto_box::SecretKey::generate(&mut OsRng))
    }

    pub fn public_key(&self) -> SealPublicKey {
        SealPublicKey(self.0.public_key())
    }

    /// The fingerprint of its public key.
    pub fn fingerprint(&self) -> String {
        self.public_key().fingerprint()
    }

    /// What was sealed to this key's public key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.0.unseal(sealed).map_err(|_| SealError::Open)
    }

    /// Write a fresh pair into `dir`: `seal.key` (created, never replaced;
    /// mode 0600) and `seal.pub`. The paths written, and the fingerprint.
    pub fn write_new_pair(dir: &Path) -> Result<(PathBuf, PathBuf, String), SealError> {
        let key = Self::generate();
        let (key_path, pub_path) = (dir.join("seal.key"), dir.join("seal.pub"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let secret_hex = zeroize::Zeroizing::new(hex::encode(key.0.to_bytes()));
        let write_key = |path: &Path| -> std::io::Result<()> {
            let mut f = options.open(path)?;
            f.write_all(secret_hex.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        };
        write_key(&key_path).map_err(|e| SealError::Write(key_path.clone(), e))?;
        let public = format!("{}\n", key.public_key().to_hex());
        std::fs::write(&pub_path, public).map_err(|e| SealError::Write(pub_path.clone(), e))?;
        Ok((key_path, pub_path, key.fingerprint()))
    }
}

/// Whether `text` has the shape of a fingerprint (16 lowercase hex
/// characters): what a message's header must hold to be named in a log.
pub fn is_fingerprint(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The keys a daemon opens with: its own (`seal_key_file`), and during a
/// rotation the one before (`previous_seal_key_file`), each with its
/// fingerprint.
pub struct SealKeys {
    current: (SealKey, String),
    previous: Option<(SealKey, String)>,
}

impl SealKeys {
    pub fn new(current: SealKey, previous: Option<SealKey>) -> Self {
        let named = |k: SealKey| {
            let fp = k.fingerprint();
            (k, fp)
        };
        Self {
            current: named(current),
            previous: previous.map(named),
        }
    }

    /// The same keys again (for another task).
    pub fn copy(&self) -> Self {
        Self {
            current: (
                SealKey::from_secret_key(&self.current.0),
                self.current.1.clone(),
            ),
            previous: self
                .previous
                .as_ref()
                .map(|(k, fp)| (SealKey::from_secret_key(k), fp.clone())),
        }
    }

    /// The fingerprint of the daemon's own key.
    pub fn current(&self) -> &str {
        &self.current.1
    }

    /// The fingerprint of the previous key, if one is kept.
    pub fn previous(&self) -> Option<&str> {
        self.previous.as_ref().map(|(_, fp)| fp.as_str())
    }

    /// The key named `fingerprint`, if it is one of ours.
    pub fn named(&self, fingerprint: &str) -> Option<&SealKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|(_, fp)| fp == fingerprint)
            .map(|(k, _)| k)
    }

    /// Open with whichever of our keys opens it (a message that names no
    /// key: sealed by an edge older than the key names).
    pub fn open_any(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        match self.current.0.open(sealed) {
            Ok(plain) => Ok(plain),
            Err(e) => match &self.previous {
                Some((k, _)) => k.open(sealed),
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_opens_only_with_its_key() {
        let key = SealKey::generate();
        let sealed = key.public_key().seal(b"k-secret").unwrap();
        assert_eq!(key.open(&sealed).unwrap(), b"k-secret");
        assert!(!sealed.windows(8).any(|w| w == b"k-secret"));
        assert!(matches!(
            SealKey::generate().open(&sealed),
            Err(SealError::Open)
        ));
        assert!(matches!(key.open(b"garbage"), Err(SealError::Open)));
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(key.open(&altered).is_err());
    }

    #[test]
    fn a_pair_is_written_once_with_the_key_private() {
        let dir = tempfile::tempdir().unwrap();
        let (k, p, fingerprint) = SealKey::write_new_pair(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&k).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let secret: [u8; 32] = hex::decode(std::fs::read_to_string(&k).unwrap().trim())
            .unwrap()
            .try_into()
            .unwrap();
        let public: [u8; 32] = hex::decode(std::fs::read_to_string(&p).unwrap().trim())
            .unwrap()
            .try_into()
            .unwrap();
        let key = SealKey::from_secret(&SecretBox::new(Box::new(secret)));
        assert_eq!(key.fingerprint(), fingerprint);
        assert_eq!(SealPublicKey::from_bytes(public).fingerprint(), fingerprint);
        let sealed = SealPublicKey::from_bytes(public).seal(b"x").unwrap();
        assert_eq!(key.open(&sealed).unwrap(), b"x");
        assert!(SealKey::write_new_pair(dir.path()).is_err());
    }

    #[test]
    fn a_key_is_named_by_its_fingerprint_and_opened_by_it() {
        let (old, new) = (SealKey::generate(), SealKey::generate());
        let (old_fp, new_fp) = (old.fingerprint(), new.fingerprint());
        assert!(is_fingerprint(&old_fp), "{old_fp}");
        assert_ne!(old_fp, new_fp);
        assert_eq!(old_fp, old.public_key().fingerprint());
        assert_eq!(old_fp, SealKey::from_secret_key(&old).fingerprint());
        assert!(!is_fingerprint("0123456789ABCDEF"));
        assert!(!is_fingerprint("0123456789abcde"));
        let sealed_old = old.public_key().seal(b"o").unwrap();
        let sealed_new = new.public_key().seal(b"n").unwrap();
        let keys = SealKeys::new(new, Some(old));
        assert_eq!(
            (keys.current(), keys.previous()),
            (new_fp.as_str(), Some(old_fp.as_str()))
        );
        assert_eq!(
            keys.named(&old_fp).unwrap().open(&sealed_old).unwrap(),
            b"o"
        );
        assert_eq!(
            keys.named(&new_fp).unwrap().open(&sealed_new).unwrap(),
            b"n"
        );
        assert!(keys.named("0000000000000000").is_none());
        assert_eq!(keys.open_any(&sealed_old).unwrap(), b"o");
        assert_eq!(keys.copy().open_any(&sealed_new).unwrap(), b"n");
        let alone = SealKeys::new(SealKey::generate(), None);
        assert!(alone.open_any(&sealed_old).is_err());
        assert!(alone.previous().is_none());
    }
}
