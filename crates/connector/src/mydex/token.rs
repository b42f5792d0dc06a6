//! The OAuth2 client_credentials token, cached until shortly before it
//! expires and fetched again when the API says 401.

use std::time::{Duration, Instant};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::error::{AttemptError, MydexError, error_message};

pub(crate) struct CachedToken {
    pub value: SecretString,
    pub refresh_at: Instant,
    pub generation: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, as RFC 6749 §2.3.1 says.
pub(crate) fn basic_auth(client_id: &str, secret: &SecretString) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(client_id), enc(secret.expose_secret()));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub(crate) async fn fetch(
    http: &reqwest::Client,
    url: &reqwest::Url,
    client_id: &str,
    secret: &SecretString,
    generation: u64,
) -> Result<CachedToken, AttemptError> {
    let resp = http
        .post(url.clone())
        .header(
            reqwest::header::AUTHORIZATION,
            basic_auth(client_id, secret),
        )
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body("grant_type=client_credentials&scope=mydex%3Apdx")
        .send()
        .await
        .map_err(|e| super::http::transport_error("token", &e))?;
    let status = resp.status();
    let retry_after = super::http::retry_after(&resp);
    let body = super::http::read_limited(resp).await?;
    if status.is_success() {
        let ans: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            AttemptError::Permanent(MydexError::Protocol(format!(
                "token answer is not the expected JSON: {e}"
            )))
        })?;
        if ans.access_token.is_empty() {
            return Err(AttemptError::Permanent(MydexError::Protocol(
                "token answer has an empty access_token".into(),
            )));
        }
        if let Some(t) = &ans.token_type
            && !t.eq_ignore_ascii_case("bearer")
        {
            return Err(AttemptError::Permanent(MydexError::Protocol(format!(
                "token_type {t:?} is not Bearer"
            ))));
        }
        let lifetime = match &ans.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or(300);
        // Refresh a little early: 30 s, or a fifth of a short lifetime.
        let margin = (lifetime / 5).min(30);
        let refresh_at =
            Instant::now() + Duration::from_secs(lifetime.saturating_sub(margin).max(1));
        return Ok(CachedToken {
            value: SecretString::from(ans.access_token),
            refresh_at,
            generation,
        });
    }
    let message = error_message(&body);
    match status.as_u16() {
        429 | 500..=599 => Err(AttemptError::Transient {
            why: format!("token endpoint answered {status}: {message}"),
            retry_after,
        }),
        s => Err(AttemptError::Permanent(MydexError::Unauthorized {
            status: s,
            message,
        })),
    }
}
