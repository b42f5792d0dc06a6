//! The CLI's side of the admin API for state-changing calls (`sweep`,
//! `campaign pause|resume`): a POST to the running daemon with the admin
//! bearer token from `admin.token_file`. The CLI never opens the store.

use anyhow::{Context, bail};
use secrecy::ExposeSecret;

use crate::config::Settings;

/// POST `path` (with an optional JSON body); the daemon's JSON answer.
pub async fn post(
    settings: &Settings,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let Some(token) = &settings.admin.token else {
        bail!(
            "admin.token_file is not configured in {}: the daemon refuses state-changing calls without it",
            settings.source.display()
        );
    };
    let url = format!("http://{}{path}", settings.admin.listen);
    let mut req = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token.expose_secret())
        .timeout(std::time::Duration::from_secs(10));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon at {url} (is it running?)"))?;
    let status = resp.status();
    let doc: serde_json::Value = resp
        .json()
        .await
        .context("the daemon's answer is not JSON")?;
    if status.is_success() || status == reqwest::StatusCode::CONFLICT {
        Ok(doc)
    } else {
        bail!(
            "the daemon answered {status}: {}",
            doc["error"].as_str().unwrap_or("(no message)")
        )
    }
}
