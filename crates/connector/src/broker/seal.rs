//! The X25519 sealed box (NaCl's `crypto_box_seal`, from `crypto_box`)
//! callbacks travel in: an edge seals what it received to the daemon's
//! public key with a fresh ephemeral key, so the edge itself cannot open it
//! again, nor can the broker or anyone reading its disks. Only the daemon,
//! holding the private key (`nats.seal_key_file`), opens it. `nats keygen`
//! makes the pair (`seal.key` mode 0600, `seal.pub`), both 64 hex
//! characters and a newline.

use std::io::Write;
use std::path::{Path, PathBuf};

use crypto_box::aead::OsRng;
use secrecy::{ExposeSecret, SecretBox};

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

    /// What was sealed to this key's public key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.0.unseal(sealed).map_err(|_| SealError::Open)
    }

    /// Write a fresh pair into `dir`: `seal.key` (created, never replaced;
    /// mode 0600) and `seal.pub`. The paths written.
    pub fn write_new_pair(dir: &Path) -> Result<(PathBuf, PathBuf), SealError> {
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
        Ok((key_path, pub_path))
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
        let (k, p) = SealKey::write_new_pair(dir.path()).unwrap();
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
        let sealed = SealPublicKey::from_bytes(public).seal(b"x").unwrap();
        assert_eq!(key.open(&sealed).unwrap(), b"x");
        assert!(SealKey::write_new_pair(dir.path()).is_err());
    }
}
