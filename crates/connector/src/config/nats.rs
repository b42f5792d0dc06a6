//! `[nats]`: the NATS JetStream broker (edges, callbacks and intake through
//! it). Absent, the daemon runs on one machine as it always did. Read once
//! into typed values: the servers, the optional `.creds` (`credentials_file`
//! or the credential `nats_creds`), the subject prefix, the streams'
//! replicas, retention and duplicate window, and the X25519 keys callbacks
//! are sealed with (`seal_public_key_file` on edges; `seal_key_file` or the
//! credential `nats_seal_key` on the daemon, which alone can open them, and
//! during a rotation the key before it, `previous_seal_key_file` or the
//! credential `nats_previous_seal_key`).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{SecretBox, SecretString};
use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use super::show;
use super::validate::Validator;

/// The subjects' prefix: `{prefix}.callbacks` …; streams `{PREFIX}_CALLBACKS`.
/// One NATS token of letters, digits, `-` and `_` (no `.`, no wildcards,
/// no spaces), at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsPrefix(String);

/// Why a text cannot be a subject prefix.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} must be 1 to 64 letters, digits, '-' or '_' (one NATS subject token: no '.', '*', '>' or spaces)"
)]
pub struct PrefixError(pub String);

impl NatsPrefix {
    pub fn parse(raw: &str) -> Result<Self, PrefixError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(PrefixError(raw.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NatsPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Serialize)]
pub struct NatsSettings {
    pub servers: Vec<String>,
    /// The `.creds` file's text (JWT and seed), if any.
    #[serde(skip)]
    pub credentials: Option<SecretString>,
    #[serde(rename = "credentials", serialize_with = "show::optional_secret")]
    pub credentials_source: Option<PathBuf>,
    #[serde(serialize_with = "show::display")]
    pub prefix: NatsPrefix,
    pub stream_replicas: usize,
    #[serde(serialize_with = "show::duration")]
    pub retention: Duration,
    #[serde(serialize_with = "show::duration")]
    pub dedup_window: Duration,
    /// The daemon's X25519 public key (edges seal callbacks to it).
    #[serde(skip)]
    pub seal_public_key: Option<[u8; 32]>,
    #[serde(rename = "seal_public_key", serialize_with = "show::path_or_none")]
    pub seal_public_key_source: Option<PathBuf>,
    /// The daemon's X25519 private key (opens what edges sealed).
    #[serde(skip)]
    pub seal_key: Option<SecretBox<[u8; 32]>>,
    #[serde(rename = "seal_key", serialize_with = "show::optional_secret")]
    pub seal_key_source: Option<PathBuf>,
    /// The daemon's key before a rotation, still opening what edges sealed
    /// to it until every edge has the new public key.
    #[serde(skip)]
    pub previous_seal_key: Option<SecretBox<[u8; 32]>>,
    #[serde(rename = "previous_seal_key", serialize_with = "show::optional_secret")]
    pub previous_seal_key_source: Option<PathBuf>,
}

impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSettings")
            .field("servers", &self.servers)
            .field("prefix", &self.prefix)
            .field("stream_replicas", &self.stream_replicas)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNats {
    servers: Option<Vec<String>>,
    credentials_file: Option<PathBuf>,
    prefix: Option<String>,
    stream_replicas: Option<i64>,
    #[serde(default, with = "humantime_serde::option")]
    retention: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    dedup_window: Option<Duration>,
    seal_public_key_file: Option<PathBuf>,
    seal_key_file: Option<PathBuf>,
    previous_seal_key_file: Option<PathBuf>,
}

/// A private key and the file it was read from.
type KeyAndPath = (SecretBox<[u8; 32]>, PathBuf);

impl Validator {
    pub(super) fn nats(&self, raw: Option<RawNats>) -> Result<Option<NatsSettings>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let servers = self.nats_servers(raw.servers)?;
        let credentials =
            self.secret_pem("nats.credentials_file", "nats_creds", raw.credentials_file)?;
        let prefix = NatsPrefix::parse(raw.prefix.as_deref().unwrap_or("mydex"))
            .map_err(|e| self.err("nats.prefix", e.to_string()))?;
        let stream_replicas = match raw.stream_replicas.unwrap_or(1) {
            r @ 1..=5 => r as usize,
            r => {
                return Err(self.err(
                    "nats.stream_replicas",
                    format!("must be between 1 and 5 (JetStream's limit), not {r}"),
                ));
            }
        };
        let retention = raw.retention.unwrap_or(Duration::from_secs(7 * 86400));
        if retention < Duration::from_secs(60) {
            return Err(self.err("nats.retention", "must be at least 1m"));
        }
        let dedup_window = raw.dedup_window.unwrap_or(Duration::from_secs(600));
        if dedup_window < Duration::from_secs(1) || dedup_window > retention {
            return Err(self.err(
                "nats.dedup_window",
                "must be at least 1s and at most nats.retention",
            ));
        }
        let seal_public_key = match raw.seal_public_key_file {
            Some(p) => Some(self.seal_public_key(self.path(p))?),
            None => None,
        };
        let seal_key =
            self.seal_private_key("nats.seal_key_file", "nats_seal_key", raw.seal_key_file)?;
        let previous_seal_key = self.seal_private_key(
            "nats.previous_seal_key_file",
            "nats_previous_seal_key",
            raw.previous_seal_key_file,
        )?;
        Ok(Some(NatsSettings {
            servers,
            credentials_source: credentials.as_ref().map(|(_, p)| p.clone()),
            credentials: credentials.map(|(c, _)| c),
            prefix,
            stream_replicas,
            retention,
            dedup_window,
            seal_public_key_source: seal_public_key.as_ref().map(|(_, p)| p.clone()),
            seal_public_key: seal_public_key.map(|(k, _)| k),
            seal_key_source: seal_key.as_ref().map(|(_, p)| p.clone()),
            seal_key: seal_key.map(|(k, _)| k),
            previous_seal_key_source: previous_seal_key.as_ref().map(|(_, p)| p.clone()),
            previous_seal_key: previous_seal_key.map(|(k, _)| k),
        }))
    }

    /// `nats.servers`: at least one `nats://` or `tls://` URL (or host:port,
    /// taken as `nats://`).
    fn nats_servers(&self, raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
        let key = "nats.servers";
        let raw = self.required(key, raw)?;
        if raw.is_empty() {
            return Err(self.err(key, "must name at least one server"));
        }
        raw.into_iter()
            .map(|s| {
                let s = s.trim().to_string();
                let full = if s.contains("://") {
                    s.clone()
                } else {
                    format!("nats://{s}")
                };
                let shown = show::url_text(&full);
                let url = reqwest::Url::parse(&full)
                    .map_err(|e| self.err(key, format!("{shown:?} is not a server URL: {e}")))?;
                if !matches!(url.scheme(), "nats" | "tls") || url.host_str().is_none() {
                    return Err(self.err(
                        key,
                        format!("{shown:?} must be nats://HOST:PORT or tls://HOST:PORT"),
                    ));
                }
                Ok(full)
            })
            .collect()
    }

    /// `nats.seal_public_key_file`: 32 bytes, raw or as 64 hex characters
    /// (what `nats keygen` writes). Public: no permission check.
    fn seal_public_key(&self, path: PathBuf) -> Result<([u8; 32], PathBuf), ConfigError> {
        let key = "nats.seal_public_key_file";
        let bytes = std::fs::read(&path)
            .map_err(|e| self.err(key, format!("cannot read {}: {e}", path.display())))?;
        let decoded = if bytes.len() == 32 {
            Some(bytes)
        } else {
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| hex::decode(t.trim()).ok())
        };
        let out: [u8; 32] = decoded
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| self.err(key, format!("{} must hold a 32-byte X25519 public key (64 hex characters, as `nats keygen` writes)", path.display())))?;
        Ok((out, path))
    }

    /// `nats.seal_key_file` or the credential `nats_seal_key` (and the same
    /// for `previous_seal_key_file`), optional here (an edge, `nats setup`
    /// and `enqueue --nats` do without it; `run` requires the first).
    fn seal_private_key(
        &self,
        key: &str,
        credential: &str,
        path: Option<PathBuf>,
    ) -> Result<Option<KeyAndPath>, ConfigError> {
        let given = path.is_some();
        let found = self.secret_bytes(key, credential, path, false)?;
        match found {
            Some(_) => self
                .key_file(key, credential, found.map(|(_, p)| p))
                .map(Some),
            None if given => Err(self.err(key, "is missing")),
            None => Ok(None),
        }
    }
}
