//! The CLI's side of the admin API: `status`, `invitations ...` and
//! `members export` ask the running daemon over HTTP (the daemon is the only
//! process that opens sled), sending the bearer token from `admin.token_file`.

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::config::Settings;

pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl AdminClient {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
            base: format!("http://{}", settings.admin.listen),
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
        if !status.is_success() {
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

    pub async fn post(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let req = self.http.post(format!("{}{path}", self.base));
        self.send(req, path).await
    }
}
