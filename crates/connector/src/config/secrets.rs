//! Secret files: where a secret is read from (its `*_file` key, else
//! `$CREDENTIALS_DIRECTORY`, else `credentials/` beside the config file),
//! the size and permission checks, and the text and 32-byte key shapes.

use std::path::{Path, PathBuf};

use secrecy::{SecretBox, SecretString};

use super::error::ConfigError;
use super::validate::Validator;

const MAX_SECRET_FILE: u64 = 64 * 1024;

impl Validator {
    /// The bytes of secret `name`: from `key` (a path) when given, else from
    /// `$CREDENTIALS_DIRECTORY/name` (systemd `LoadCredential=`), else from
    /// `credentials/name` beside the config file (where the unit loads them
    /// from, so operator commands run as root find the same secrets).
    pub(super) fn secret_bytes(
        &self,
        key: &str,
        name: &str,
        path: Option<PathBuf>,
        required: bool,
    ) -> Result<Option<(Vec<u8>, PathBuf)>, ConfigError> {
        let path = match path {
            Some(p) => self.path(p),
            None => {
                let beside = self.base.join("credentials").join(name);
                match std::env::var_os("CREDENTIALS_DIRECTORY") {
                    Some(dir) if Path::new(&dir).join(name).is_file() => Path::new(&dir).join(name),
                    _ if beside.is_file() => beside,
                    _ if required => {
                        return Err(self.err(key, format!("is required but missing (or provide the systemd credential `{name}`)")));
                    }
                    _ => return Ok(None),
                }
            }
        };
        let meta = std::fs::metadata(&path)
            .map_err(|e| self.err(key, format!("cannot read {}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(self.err(key, format!("{} is not a regular file", path.display())));
        }
        if meta.len() > MAX_SECRET_FILE {
            return Err(self.err(
                key,
                format!("{} is larger than {MAX_SECRET_FILE} bytes", path.display()),
            ));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // A certificate is public; anything else here is a secret.
            if meta.permissions().mode() & 0o004 != 0 && name != "tls_cert" {
                tracing::warn!(key, file = %path.display(), "secret file is readable by every user; chmod o-r it");
            }
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| self.err(key, format!("cannot read {}: {e}", path.display())))?;
        Ok(Some((bytes, path)))
    }

    /// A one-line text secret (a trailing newline is dropped).
    /// A secret of several lines (a PEM key), as UTF-8 text.
    pub(super) fn secret_pem(
        &self,
        key: &str,
        name: &str,
        path: Option<PathBuf>,
    ) -> Result<Option<(SecretString, PathBuf)>, ConfigError> {
        let Some((bytes, path)) = self.secret_bytes(key, name, path, false)? else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| self.err(key, format!("{} is not UTF-8 text", path.display())))?;
        Ok(Some((SecretString::from(text), path)))
    }

    pub(super) fn secret_text(
        &self,
        key: &str,
        name: &str,
        path: Option<PathBuf>,
        required: bool,
    ) -> Result<Option<(SecretString, PathBuf)>, ConfigError> {
        let Some((bytes, path)) = self.secret_bytes(key, name, path, required)? else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| self.err(key, format!("{} is not UTF-8 text", path.display())))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.is_empty() {
            return Err(self.err(key, format!("{} is empty", path.display())));
        }
        if text.contains('\n') {
            return Err(self.err(key, format!("{} holds more than one line", path.display())));
        }
        Ok(Some((SecretString::from(text.to_string()), path)))
    }

    /// A required one-line text secret.
    pub(super) fn required_secret_text(
        &self,
        key: &str,
        name: &str,
        path: Option<PathBuf>,
    ) -> Result<(SecretString, PathBuf), ConfigError> {
        self.secret_text(key, name, path, true)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    /// A 32-byte key file (raw, or 64 hex characters), read by the rules of
    /// `store.key_file`; `key` names it in errors.
    pub(super) fn key_file(
        &self,
        key: &str,
        credential: &str,
        path: Option<PathBuf>,
    ) -> Result<(SecretBox<[u8; 32]>, PathBuf), ConfigError> {
        let (bytes, path) = self
            .secret_bytes(key, credential, path, true)?
            .ok_or_else(|| self.err(key, "is required"))?;
        let mut out = Box::new([0u8; 32]);
        if bytes.len() == 32 {
            out.copy_from_slice(&bytes);
        } else {
            let text = std::str::from_utf8(&bytes).unwrap_or("").trim();
            let decoded = hex::decode(text).ok().filter(|d| d.len() == 32).ok_or_else(|| {
                self.err(key, format!("{} must hold exactly 32 bytes (raw, or 64 hex characters); it holds {} bytes", path.display(), bytes.len()))
            })?;
            out.copy_from_slice(&decoded);
        }
        Ok((SecretBox::new(out), path))
    }
}
