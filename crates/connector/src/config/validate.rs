//! The validator: turns the raw file into typed [`Settings`], one section at
//! a time (each section's rules live in its own file), with the shared
//! checks (required keys, paths beside the file, URLs, listen addresses).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::raw::RawFile;
use super::{ConfigError, Settings};

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
        v.ok_or_else(|| self.err(key, "is required but missing"))
    }

    pub(super) fn path(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    pub(super) fn url(&self, key: &str, raw: &str) -> Result<reqwest::Url, ConfigError> {
        let url = reqwest::Url::parse(raw)
            .map_err(|e| self.err(key, format!("{raw:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(self.err(
                key,
                format!("{raw:?} must be an http or https URL with a host"),
            ));
        }
        Ok(url)
    }

    /// An endpoint URL (`mydex.ftc_url`, `mydex.status_url`): http(s) with a
    /// host, and no query or fragment, since paths and queries are added to it.
    pub(super) fn endpoint_url(&self, key: &str, raw: &str) -> Result<reqwest::Url, ConfigError> {
        let url = self.url(key, raw.trim())?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(self.err(key, format!("{raw:?} must not have a query or fragment")));
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

    /// Every section in the file's order, so the first error reported is
    /// the same as it always was.
    pub(super) fn settings(&self, source: &Path, raw: RawFile) -> Result<Settings, ConfigError> {
        let mydex = self.mydex(raw.mydex)?;
        let callback = self.callback(raw.callback)?;
        let admin = self.admin(raw.admin, callback.listen)?;
        let smtp = self.smtp(raw.smtp)?;
        let store = self.store(raw.store)?;
        let queue = self.queue(raw.queue)?;
        let invitations = self.invitations(raw.invitations)?;
        let schedule = self.schedule(raw.schedule)?;
        let log = self.log(raw.log)?;
        let notifications = self.notifications(raw.notifications)?;
        let campaigns = self.campaigns(raw.campaign, &invitations)?;
        Ok(Settings {
            source: source.to_path_buf(),
            mydex,
            callback,
            admin,
            smtp,
            store,
            queue,
            invitations,
            schedule,
            log,
            notifications,
            campaigns,
        })
    }
}
