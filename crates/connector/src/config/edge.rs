//! The settings of `mydex-connector edge`: its own file, read by the same
//! rules, with only what an edge needs — the Connection Token (to
//! authenticate callbacks), `[callback]`, `[admin] listen`, `[log]` and
//! `[nats]` with `seal_public_key_file`. It starts without `[store]`,
//! `[smtp]`, a client secret or `seal_key_file`: an edge holds nothing that
//! opens what it publishes. Other sections may be present (one file shared
//! with the daemon) and are not read.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Serialize;

use super::error::ConfigError;
use super::load::read_raw;
use super::{AdminSettings, CallbackSettings, LogSettings, NatsSettings, show};

#[derive(Serialize)]
pub struct EdgeSettings {
    #[serde(skip)]
    pub source: PathBuf,
    /// `mydex.connection_token_file`: callbacks carry its hash.
    #[serde(skip)]
    pub connection_token: SecretString,
    #[serde(rename = "connection_token", serialize_with = "show::path")]
    pub connection_token_source: PathBuf,
    pub callback: CallbackSettings,
    pub admin: AdminSettings,
    pub log: LogSettings,
    pub nats: NatsSettings,
    /// The daemon's X25519 public key (`nats.seal_public_key_file`).
    #[serde(skip)]
    pub seal_public_key: [u8; 32],
}

impl EdgeSettings {
    /// Load and validate `path` (with environment overrides) for an edge.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (v, mut raw) = read_raw(path)?;
        let (connection_token, connection_token_source) = v.connection_token(&mut raw.mydex)?;
        let callback = v.callback(raw.callback)?;
        let admin = v.admin(raw.admin, callback.listen)?;
        let log = v.log(raw.log)?;
        let nats = v
            .nats(raw.nats)?
            .ok_or_else(|| v.err("nats", "an edge needs a [nats] section"))?;
        let seal_public_key = nats.seal_public_key.ok_or_else(|| {
            v.err(
                "nats.seal_public_key_file",
                "is required on an edge: callbacks are sealed to the daemon's public key",
            )
        })?;
        Ok(Self {
            source: path.to_path_buf(),
            connection_token,
            connection_token_source,
            callback,
            admin,
            log,
            nats,
            seal_public_key,
        })
    }
}
