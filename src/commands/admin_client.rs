//! The CLI's side of the admin API: `status`, `invitations ...` and
//! `members export` ask the running daemon over HTTP (the daemon is the only
//! process that opens sled), sending the bearer token from `admin.token_file`.
//! `sweep` and `campaign pause|resume` use it too.

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use mydex_connector::config::Settings;

/// An HTTP client for the daemon's (or the demo sandbox's) loopback
/// listener: plain HTTP, so it trusts no CA at all and builds even on a
/// system without CA certificates (`Client::new()` would panic there).
pub fn loopback_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .timeout(timeout)
        .build()
        .context("cannot set up an HTTP client")
}

/// The daemon's admin API as the CLI calls it: `admin.listen`, but a
/// wildcard address (`0.0.0.0`, `[::]`) as its loopback twin, so that the
/// `Host` the daemon sees names its listener (token-less calls need that).
pub fn admin_base(settings: &Settings) -> String {
    let mut addr = settings.admin.listen;
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into())
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            addr.set_ip(std::net::Ipv6Addr::LOCALHOST.into())
        }
        _ => {}
    }
    format!("http://{addr}")
}

pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl AdminClient {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        Self::with_timeout(settings, Duration::from_secs(120))
    }

    /// A client whose requests give up after `timeout`.
    pub fn with_timeout(settings: &Settings, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            http: loopback_client(timeout)?,
            base: admin_base(settings),
            token: settings
                .admin
                .token
                .as_ref()
                .map(|t| t.expose_secret().to_string()),
        })
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<serde_json::Value> {
        self.send_allowing(req, what, None).await
    }

    /// `send`, where `also_ok` (e.g. 409: already in that state) is an
    /// answer to show rather than an error.
    async fn send_allowing(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        also_ok: Option<reqwest::StatusCode>,
    ) -> anyhow::Result<serde_json::Value> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.with_context(|| {
            format!("cannot reach the daemon at {} (is it running?)", self.base)
        })?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .with_context(|| format!("{what}: the daemon's answer is not JSON"))?;
        if !status.is_success() && Some(status) != also_ok {
            let msg = body["error"].as_str().unwrap_or("(no message)");
            anyhow::bail!("{what}: the daemon answered {status}: {msg}");
        }
        Ok(body)
    }

    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<serde_json::Value> {
        let req = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(req, path).await
    }

    /// GET `path`, its answer read as `T` (a type the daemon answers with).
    pub async fn get_as<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        parse(self.get(path, query).await?, path)
    }

    pub async fn post(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let req = self.http.post(format!("{}{path}", self.base));
        self.send(req, path).await
    }

    /// POST a JSON body; any answer but 2xx is an error with the daemon's
    /// message (a refusal exits non-zero).
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(req, path).await
    }
}

/// POST `path` with an optional JSON body, for the lifecycle commands
/// (`sweep`, `campaign pause|resume`); a 409 (already so) is shown, not failed.
pub async fn post(
    settings: &Settings,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    if settings.admin.token.is_none() {
        anyhow::bail!(
            "admin.token_file is not configured in {}: the daemon refuses state-changing calls without it",
            settings.source.display()
        );
    }
    let client = AdminClient::new(settings)?;
    let mut req = client.http.post(format!("{}{path}", client.base));
    if let Some(b) = body {
        req = req.json(&b);
    }
    client
        .send_allowing(req, path, Some(reqwest::StatusCode::CONFLICT))
        .await
}

/// An answer of the daemon read as the type it answers with.
pub fn parse<T: DeserializeOwned>(v: serde_json::Value, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(v).with_context(|| {
        format!(
            "{what}: the daemon's answer is not what this release expects (is it another version?)"
        )
    })
}
