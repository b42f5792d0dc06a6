//! The validator and its shared checks (required keys, paths beside the
//! file, URLs, listen addresses); each section's own rules are in its file,
//! as `impl Validator` blocks.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::error::ConfigError;

/// What a required key that is not there says.
pub(super) const MISSING: &str = "is required but missing";

pub(super) struct Validator {
    /// The config file as named in errors.
    pub(super) file: String,
    /// Where relative paths are resolved: the config file's directory.
    pub(super) base: PathBuf,
}

impl Validator {
    pub(super) fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn required<T>(&self, key: &str, v: Option<T>) -> Result<T, ConfigError> {
        v.ok_or_else(|| self.err(key, MISSING))
    }

    pub(super) fn path(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    pub(super) fn url(&self, key: &str, raw: &str) -> Result<reqwest::Url, ConfigError> {
        // Quoted in errors with any user and password redacted.
        let shown = super::show::url_text(raw);
        let url = reqwest::Url::parse(raw)
            .map_err(|e| self.err(key, format!("{shown:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(self.err(
                key,
                format!("{shown:?} must be an http or https URL with a host"),
            ));
        }
        Ok(url)
    }

    /// An endpoint URL (`mydex.ftc_url`, `mydex.status_url`): http(s) with a
    /// host, and no query or fragment, since paths and queries are added to it.
    pub(super) fn endpoint_url(&self, key: &str, raw: &str) -> Result<reqwest::Url, ConfigError> {
        let url = self.url(key, raw.trim())?;
        if url.query().is_some() || url.fragment().is_some() {
            let shown = super::show::url_text(raw);
            return Err(self.err(key, format!("{shown:?} must not have a query or fragment")));
        }
        Ok(url)
    }

    pub(super) fn listen(
        &self,
        key: &str,
        raw: Option<String>,
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let raw = raw.unwrap_or_else(|| default.to_string());
        raw.parse()
            .map_err(|_| self.err(key, format!("{raw:?} is not an IP:port address")))
    }
}
