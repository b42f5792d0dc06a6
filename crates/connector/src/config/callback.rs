//! `[callback]`: where Mydex POSTs members' credentials, and the limits that
//! protect that listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::show;

use super::error::ConfigError;
use super::tls::TlsPair;
use super::validate::Validator;

#[derive(Serialize)]
pub struct CallbackSettings {
    pub listen: SocketAddr,
    pub path: String,
    pub body_limit: usize,
    /// How long a client may take to send a request's headers, and then its
    /// body, on every route of the listener (default 10s): slow-loris and
    /// idle connections are closed after it, a slow body gets 408.
    #[serde(serialize_with = "show::duration")]
    pub read_timeout: Duration,
    /// Connections held at once (default 256). At the cap a new connection
    /// takes the place of the one that has waited longest without sending a
    /// complete request (`server/conn_slots.rs`).
    pub max_connections: usize,
    /// Addresses exempt from the per-address share of the listener
    /// (`server/peer_share.rs`): reverse proxies, which carry many clients
    /// on one address. Default: loopback.
    #[serde(serialize_with = "proxies_shown")]
    pub trusted_proxies: crate::server::peer_share::TrustedProxies,
    /// HTTPS: the certificate chain and key of `tls_cert_file` /
    /// `tls_key_file` (or the `tls_cert` / `tls_key` credentials); none
    /// serves plain HTTP (behind a TLS-terminating proxy).
    #[serde(serialize_with = "tls_shown")]
    pub tls: Option<Arc<TlsPair>>,
    /// How the internet reaches this listener (no trailing `/`); the
    /// one-click unsubscribe links in mail are built on it.
    pub public_url: String,
}

fn tls_shown<S: serde::Serializer>(v: &Option<Arc<TlsPair>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(p) => p.serialize(s),
        None => s.serialize_str("(none: plain HTTP)"),
    }
}

fn proxies_shown<S: serde::Serializer>(
    v: &crate::server::peer_share::TrustedProxies,
    s: S,
) -> Result<S::Ok, S::Error> {
    v.shown().serialize(s)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCallback {
    listen: Option<String>,
    path: Option<String>,
    body_limit: Option<usize>,
    #[serde(default, with = "humantime_serde::option")]
    read_timeout: Option<Duration>,
    max_connections: Option<usize>,
    trusted_proxies: Option<Vec<String>>,
    public_url: Option<String>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
}

impl Validator {
    pub(super) fn callback(&self, raw: RawCallback) -> Result<CallbackSettings, ConfigError> {
        let listen = self.listen("callback.listen", raw.listen, "127.0.0.1:8080")?;
        let path = self.callback_path(raw.path)?;
        let body_limit = raw.body_limit.unwrap_or(64 * 1024);
        if !(1024..=16 * 1024 * 1024).contains(&body_limit) {
            return Err(self.err(
                "callback.body_limit",
                "must be between 1024 and 16777216 bytes",
            ));
        }
        let read_timeout = raw.read_timeout.unwrap_or(Duration::from_secs(10));
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&read_timeout) {
            return Err(self.err("callback.read_timeout", "must be between 100ms and 5m"));
        }
        let max_connections = raw.max_connections.unwrap_or(256);
        if !(1..=65536).contains(&max_connections) {
            return Err(self.err("callback.max_connections", "must be between 1 and 65536"));
        }
        let trusted_proxies = match raw.trusted_proxies {
            None => crate::server::peer_share::TrustedProxies::loopback(),
            Some(list) => crate::server::peer_share::TrustedProxies::parse(&list)
                .map_err(|e| self.err("callback.trusted_proxies", e.to_string()))?,
        };
        let tls = self.callback_tls(raw.tls_cert_file, raw.tls_key_file)?;
        let public_url = self.public_url(raw.public_url)?;
        Ok(CallbackSettings {
            listen,
            path,
            body_limit,
            read_timeout,
            max_connections,
            trusted_proxies,
            tls,
            public_url,
        })
    }

    /// `callback.public_url`: an http(s) URL with no query or fragment.
    fn public_url(&self, raw: Option<String>) -> Result<String, ConfigError> {
        let raw = self.required("callback.public_url", raw)?;
        let url = reqwest::Url::parse(&raw)
            .map_err(|e| self.err("callback.public_url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
        {
            return Err(self.err(
                "callback.public_url",
                "must be http(s)://host[:port][/path], with no user, query or fragment",
            ));
        }
        Ok(raw.trim_end_matches('/').to_string())
    }
}
