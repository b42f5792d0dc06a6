//! `callback.tls_cert_file` / `callback.tls_key_file` (or the systemd
//! credentials `tls_cert` / `tls_key`): the certificate chain as an ACME
//! client writes it (`fullchain.pem`: PEM, leaf first, then intermediates)
//! and its private key, read and checked as a pair — both parse, the key
//! matches the leaf — so a bad pair is a configuration error at start (exit
//! 78 naming the key) and a refused reload on SIGHUP (the old pair kept).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::{Serialize, Serializer};
use zeroize::Zeroizing;

use super::error::ConfigError;
use super::validate::Validator;

const CERT_KEY: &str = "callback.tls_cert_file";
const KEY_KEY: &str = "callback.tls_key_file";

/// The crypto provider of the callback listener (the one reqwest uses).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate chain and its key, checked as a pair.
pub struct TlsPair {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// What rustls serves.
    pub certified: Arc<CertifiedKey>,
    /// The leaf's `notAfter`, Unix seconds.
    pub not_after: i64,
    /// The leaf's serial number, hex with colons (as `openssl x509 -serial`
    /// shows it, in lower case).
    pub serial: String,
    /// The leaf's subject, for the log.
    pub subject: String,
}

/// Why a pair is refused; `key()` names the config key it is about.
#[derive(Debug, thiserror::Error)]
pub enum TlsPairError {
    #[error(
        "{0}: holds no PEM certificate (expected the chain as an ACME client writes it: leaf first, then intermediates)"
    )]
    NoCertificate(String),
    #[error("{0}: not valid PEM: {1}")]
    CertPem(String, String),
    #[error("{0}: the first certificate cannot be read: {1}")]
    Leaf(String, String),
    #[error("{0}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {1}")]
    NoKey(String, String),
    #[error("{0}: the private key cannot be used: {1}")]
    Key(String, String),
    #[error("{0}: the private key does not match the certificate {1} (its leaf's public key)")]
    Mismatch(String, String),
}

impl TlsPairError {
    /// The config key the problem is about.
    pub fn key(&self) -> &'static str {
        match self {
            Self::NoCertificate(..) | Self::CertPem(..) | Self::Leaf(..) => CERT_KEY,
            _ => KEY_KEY,
        }
    }
}

impl TlsPair {
    /// Parse and check a pair read from `cert_path` and `key_path`.
    pub fn parse(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert_path: PathBuf,
        key_path: PathBuf,
    ) -> Result<TlsPair, TlsPairError> {
        let (c, k) = (
            cert_path.display().to_string(),
            key_path.display().to_string(),
        );
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsPairError::CertPem(c.clone(), e.to_string()))?;
        let Some(leaf) = chain.first() else {
            return Err(TlsPairError::NoCertificate(c));
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| TlsPairError::Leaf(c.clone(), e.to_string()))?;
        let not_after = parsed.validity().not_after.timestamp();
        let serial = parsed.raw_serial_as_string().to_lowercase();
        let subject = parsed.subject().to_string();
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsPairError::NoKey(k.clone(), e.to_string()))?;
        let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsPairError::Mismatch(k.clone(), c.clone()),
            other => TlsPairError::Key(k.clone(), other.to_string()),
        })?;
        Ok(TlsPair {
            cert_path,
            key_path,
            certified: Arc::new(certified),
            not_after,
            serial,
            subject,
        })
    }
}

impl Serialize for TlsPair {
    /// What `check-config` shows: the certificate's path, serial and
    /// expiry; the key only as where it was read from.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let expires = chrono::DateTime::from_timestamp(self.not_after, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| self.not_after.to_string());
        serde_json::json!({
            "cert": format!("{} (serial {}, expires {expires})", self.cert_path.display(), self.serial),
            "key": format!("<redacted, read from {}>", self.key_path.display()),
        })
        .serialize(s)
    }
}

impl Validator {
    /// The pair of `[callback]`, or none when neither half is given (by key
    /// or credential); one half alone is an error naming the other.
    pub(super) fn callback_tls(
        &self,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<Arc<TlsPair>>, ConfigError> {
        let cert = self.secret_bytes(CERT_KEY, "tls_cert", cert, false)?;
        let key = self
            .secret_bytes(KEY_KEY, "tls_key", key, false)?
            .map(|(bytes, path)| (Zeroizing::new(bytes), path));
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(self.err(
                KEY_KEY,
                "is required when callback.tls_cert_file (or the tls_cert credential) is set",
            )),
            (None, Some(_)) => Err(self.err(
                CERT_KEY,
                "is required when callback.tls_key_file (or the tls_key credential) is set",
            )),
            (Some((c, cp)), Some((k, kp))) => TlsPair::parse(&c, &k, cp, kp)
                .map(|p| Some(Arc::new(p)))
                .map_err(|e| self.err(e.key(), e.to_string())),
        }
    }
}
