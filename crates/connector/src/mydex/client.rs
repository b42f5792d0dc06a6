//! The PDX API client: `/ftc/setup` (or the older `/access-token` +
//! `/api/connection` flow, docs/mydex-contract.md §7), `/identify`,
//! `/connection/status`. Each call gets a bearer token from the cache
//! (refreshed once on 401), and transient failures (5xx, 429 with
//! Retry-After in seconds or as an HTTP date, timeouts, resets) are retried
//! with exponential backoff and jitter; a 4xx is final and keeps Mydex's
//! message.

use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::error::{AttemptError, MydexError, TokenUnavailable, error_message};
use super::http::{read_limited, retry_after, transport_error};
use super::status_answer::ConnectionStatus;
use super::token::{self, CachedToken};
use crate::config::{FtcFlow, MydexSettings};

pub struct MydexClient {
    http: reqwest::Client,
    token_url: reqwest::Url,
    client_id: String,
    client_secret: SecretString,
    nid: String,
    token_hash: String,
    /// The raw Connection Token: the older flow's `Authentication` header
    /// hashes it with each short access token.
    connection_token: SecretString,
    ftc_flow: FtcFlow,
    ftc_url: reqwest::Url,
    ftc_update_url: reqwest::Url,
    access_token_url: reqwest::Url,
    identify_url: reqwest::Url,
    /// `{status base}/{nid}` (`mydex.status_url` or under `api_url`).
    status_url: reqwest::Url,
    return_to: String,
    max_attempts: u32,
    min_backoff: Duration,
    token: Mutex<Option<CachedToken>>,
    generation: std::sync::atomic::AtomicU64,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    health: super::api_health::ApiHealth,
}

#[derive(Debug, Clone)]
pub struct FtcRequest {
    pub linking_token: String,
    pub mydexid: Option<String>,
    pub version: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FtcLink {
    pub url: String,
    #[serde(default)]
    pub qr: Option<String>,
}

#[derive(Serialize)]
struct SetupBody<'a> {
    connection_nid: &'a str,
    connection_token_hash: &'a str,
    return_to: &'a str,
    linking_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mydexid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
}

impl MydexClient {
    pub fn new(
        settings: &MydexSettings,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("mydex-connector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            token_url: settings.token_url.clone(),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            nid: settings.connection_nid.clone(),
            token_hash: super::token_hash(settings.connection_token.expose_secret()),
            connection_token: settings.connection_token.clone(),
            ftc_flow: settings.ftc_flow,
            ftc_url: settings.ftc_endpoint(),
            ftc_update_url: settings.ftc_update_endpoint(),
            access_token_url: settings.access_token_endpoint(),
            identify_url: settings.identify_endpoint(),
            status_url: settings.status_endpoint(),
            return_to: settings.return_to.clone(),
            max_attempts: settings.max_attempts,
            min_backoff: Duration::from_millis(200),
            token: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            metrics,
            health: super::api_health::ApiHealth::default(),
        })
    }

    /// A one-time First Time Connection (or update) link, by the configured
    /// flow: `POST /ftc/setup`, or a short access token and then
    /// `POST /api/connection` (`/api/connection/update` for version > 1).
    pub async fn ftc_setup(&self, req: &FtcRequest) -> Result<FtcLink, MydexError> {
        let body = SetupBody {
            connection_nid: &self.nid,
            connection_token_hash: &self.token_hash,
            return_to: &self.return_to,
            linking_token: &req.linking_token,
            mydexid: req.mydexid.as_deref(),
            version: req.version,
        };
        let update = req.version.is_some_and(|v| v > 1);
        match (self.ftc_flow, update) {
            (FtcFlow::FtcSetup, _) => {
                self.link_call("/ftc/setup", &self.ftc_url, &body, false)
                    .await
            }
            (FtcFlow::Connection, false) => {
                self.link_call("/api/connection", &self.ftc_url, &body, true)
                    .await
            }
            (FtcFlow::Connection, true) => {
                self.link_call("/api/connection/update", &self.ftc_update_url, &body, true)
                    .await
            }
        }
    }

    /// A one-time identify link.
    pub async fn identify(&self, linking_token: &str) -> Result<FtcLink, MydexError> {
        let body = SetupBody {
            connection_nid: &self.nid,
            connection_token_hash: &self.token_hash,
            return_to: &self.return_to,
            linking_token,
            mydexid: None,
            version: None,
        };
        self.link_call("/identify", &self.identify_url, &body, false)
            .await
    }

    /// POST `body` to `url` and read the one-time link from the answer.
    /// With `short_token`, each attempt first fetches a fresh short access
    /// token and sends the older flow's `Short-Access-Token` and
    /// `Authentication` headers.
    async fn link_call(
        &self,
        path: &'static str,
        url: &reqwest::Url,
        body: &SetupBody<'_>,
        short_token: bool,
    ) -> Result<FtcLink, MydexError> {
        let json = serde_json::to_vec(body).map_err(|e| MydexError::Protocol(e.to_string()))?;
        let answer = self
            .call_steps(path, short_token, |token, short| {
                let mut req = self
                    .http
                    .post(url.clone())
                    .bearer_auth(token)
                    .header(reqwest::header::CONTENT_TYPE, "application/json");
                if let Some(short) = short {
                    req = req
                        .header("Short-Access-Token", short)
                        .header("Authentication", self.short_token_hash(short));
                }
                req.body(json.clone())
            })
            .await?;
        parse_link(path, &answer)
    }

    /// `sha512hex(short_access_token + connection_token)`, the older flow's
    /// `Authentication` header (docs/mydex-contract.md §7).
    fn short_token_hash(&self, short: &str) -> String {
        use sha2::{Digest, Sha512};
        hex::encode(
            Sha512::new()
                .chain_update(short.as_bytes())
                .chain_update(self.connection_token.expose_secret().as_bytes())
                .finalize(),
        )
    }

    /// `GET {api}/access-token/{nid}`: a short access token, answered as a
    /// JSON string. Fetched afresh for every attempt of the older flow's call.
    async fn short_access_token(&self, bearer: &str) -> Result<SecretString, AttemptError> {
        let started = Instant::now();
        let outcome = self.fetch_short_access_token(bearer).await;
        let label = match &outcome {
            Ok(_) => "ok".to_string(),
            Err(AttemptError::Transient { .. }) => "transient".into(),
            Err(AttemptError::Unauthorized { status, .. }) => status.to_string(),
            Err(AttemptError::Permanent(MydexError::Rejected { status, .. })) => status.to_string(),
            Err(AttemptError::Permanent(_)) => "error".into(),
        };
        self.metrics
            .mydex_call("/access-token", &label, started.elapsed());
        outcome
    }

    async fn fetch_short_access_token(&self, bearer: &str) -> Result<SecretString, AttemptError> {
        let resp = self
            .http
            .get(self.access_token_url.clone())
            .bearer_auth(bearer)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .send()
            .await
            .map_err(|e| transport_error("access-token", &e))?;
        let status = resp.status();
        let retry_after = retry_after(&resp);
        let body = read_limited(resp).await?;
        match status.as_u16() {
            200..=299 => parse_short_token(&body).map_err(AttemptError::Permanent),
            401 => Err(AttemptError::Unauthorized {
                status: 401,
                message: error_message(&body),
            }),
            429 | 500..=599 => Err(AttemptError::Transient {
                why: format!("HTTP {status} (access-token): {}", error_message(&body)),
                retry_after,
            }),
            s => Err(AttemptError::Permanent(MydexError::Rejected {
                status: s,
                message: format!("access-token: {}", error_message(&body)),
            })),
        }
    }

    /// Whether a member's connection is active, and at which version. An
    /// answer about our connection rather than this member's (a wrong NID or
    /// Connection Token, a 401 a fresh token did not cure) is
    /// `MydexError::OurConnection`, never "not active" (docs/mydex-contract.md §6).
    pub async fn connection_status(
        &self,
        uid: u64,
        connection_id: &str,
        member_key: &SecretString,
    ) -> Result<ConnectionStatus, MydexError> {
        let mut url = self.status_url.clone();
        url.query_pairs_mut()
            .append_pair("uid", &uid.to_string())
            .append_pair("con_id", connection_id);
        let result = self
            .call("/connection/status", |token| {
                self.http
                    .get(url.clone())
                    .bearer_auth(token)
                    .header("Connection-Token", member_key.expose_secret())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
            })
            .await;
        match result {
            Ok(body) => super::status_answer::from_body(200, &body),
            Err(e) => super::status_answer::from_error(e),
        }
    }

    /// Run one API call with token handling and retries; the body of a 2xx.
    async fn call(
        &self,
        endpoint: &'static str,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, MydexError> {
        self.call_steps(endpoint, false, |token, _| build(token))
            .await
    }

    /// [`Self::call`], where `build` gets the bearer token and, with
    /// `short_token`, a fresh short access token fetched for each attempt.
    async fn call_steps(
        &self,
        endpoint: &'static str,
        short_token: bool,
        build: impl Fn(&str, Option<&str>) -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, MydexError> {
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .without_max_times()
            .build();
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            let outcome = self.attempt(&build, short_token).await;
            let label = match &outcome {
                Ok(_) => "ok".to_string(),
                Err(AttemptError::Transient { why, .. }) => {
                    format!("transient:{}", why.split(':').next().unwrap_or(""))
                }
                Err(AttemptError::Unauthorized { status, .. }) => status.to_string(),
                Err(AttemptError::Permanent(MydexError::Rejected { status, .. })) => {
                    status.to_string()
                }
                Err(AttemptError::Permanent(_)) => "error".into(),
            };
            self.metrics.mydex_call(endpoint, &label, started.elapsed());
            match &outcome {
                Err(AttemptError::Transient { why, .. }) => self.health.note(Err(why)),
                _ => self.health.note(Ok(())),
            }
            match outcome {
                Ok(body) => return Ok(body),
                Err(AttemptError::Permanent(e)) => return Err(e),
                Err(AttemptError::Unauthorized { status, message }) => {
                    if refreshed {
                        return Err(MydexError::Unauthorized { status, message });
                    }
                    refreshed = true;
                    tracing::info!(
                        endpoint,
                        "Mydex answered 401; fetching a fresh token and retrying once"
                    );
                    *self.token.lock().await = None;
                    attempt -= 1;
                }
                Err(AttemptError::Transient { why, retry_after }) => {
                    if attempt >= self.max_attempts {
                        return Err(MydexError::Unavailable {
                            attempts: attempt,
                            last: why,
                        });
                    }
                    let backoff = delays.next().unwrap_or(Duration::from_secs(10));
                    let wait = retry_after
                        .map(|r| r.min(Duration::from_secs(120)).max(backoff))
                        .unwrap_or(backoff);
                    tracing::debug!(
                        endpoint,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        why,
                        "transient Mydex failure; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(
        &self,
        build: &impl Fn(&str, Option<&str>) -> reqwest::RequestBuilder,
        short_token: bool,
    ) -> Result<Vec<u8>, AttemptError> {
        let token = self.bearer().await?;
        let short = match short_token {
            true => Some(self.short_access_token(token.expose_secret()).await?),
            false => None,
        };
        let resp = build(
            token.expose_secret(),
            short.as_ref().map(|s| s.expose_secret()),
        )
        .send()
        .await
        .map_err(|e| transport_error("api", &e))?;
        let status = resp.status();
        let retry_after = retry_after(&resp);
        let body = read_limited(resp).await?;
        match status.as_u16() {
            200..=299 => Ok(body),
            401 => Err(AttemptError::Unauthorized {
                status: 401,
                message: error_message(&body),
            }),
            429 | 500..=599 => Err(AttemptError::Transient {
                why: format!("HTTP {status}: {}", error_message(&body)),
                retry_after,
            }),
            s => Err(AttemptError::Permanent(MydexError::Rejected {
                status: s,
                message: error_message(&body),
            })),
        }
    }

    /// Whether an access token can be had now (the cached one or a fresh
    /// one), for `/readyz`. The error says why not; it never holds a secret.
    pub async fn token_obtainable(&self) -> Result<(), TokenUnavailable> {
        self.bearer().await.map(|_| ()).map_err(TokenUnavailable)
    }

    /// For `/readyz`: whether the API has been failing lately (a quarter or
    /// more of the last 30 s of attempts), with the figures and last error.
    pub fn api_health(&self) -> Result<(), super::api_health::ApiFailing> {
        self.health.check()
    }

    /// Forget the cached token (Mydex answered 401 to it).
    pub(super) async fn drop_token(&self) {
        *self.token.lock().await = None;
    }

    /// Note one PDS call for `/metrics` and `/readyz` (`pds.rs`).
    pub(super) fn note_call(
        &self,
        endpoint: &str,
        label: &str,
        elapsed: Duration,
        failed: Option<&str>,
    ) {
        self.metrics.mydex_call(endpoint, label, elapsed);
        self.health.note(failed.map_or(Ok(()), Err));
    }

    pub(super) async fn bearer(&self) -> Result<SecretString, AttemptError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let started = Instant::now();
        let fresh = token::fetch(
            &self.http,
            &self.token_url,
            &self.client_id,
            &self.client_secret,
            generation,
        )
        .await;
        self.metrics.mydex_call(
            "/oauth2/token",
            if fresh.is_ok() { "ok" } else { "error" },
            started.elapsed(),
        );
        match &fresh {
            Err(AttemptError::Transient { why, .. }) => self.health.note(Err(why)),
            _ => self.health.note(Ok(())),
        }
        let fresh = match fresh {
            Ok(t) => t,
            Err(AttemptError::Permanent(e)) => return Err(AttemptError::Permanent(e)),
            // A refused client is a configuration problem, final.
            Err(AttemptError::Unauthorized { status, message }) => {
                return Err(AttemptError::Permanent(MydexError::Unauthorized {
                    status,
                    message,
                }));
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(
            generation = fresh.generation,
            "fetched a Mydex access token"
        );
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }
}

/// The one-time link in an answer: `{"url", "qr"}` (`/ftc/setup`,
/// `/identify`) or the URL as a bare JSON string (`/api/connection`); both
/// are accepted from either call. Our own QR code is made from the URL.
fn parse_link(path: &str, answer: &[u8]) -> Result<FtcLink, MydexError> {
    let value: serde_json::Value = serde_json::from_slice(answer)
        .map_err(|e| MydexError::Protocol(format!("{path} answer is not JSON: {e}")))?;
    let link = match value {
        serde_json::Value::String(url) => FtcLink { url, qr: None },
        object @ serde_json::Value::Object(_) => serde_json::from_value(object)
            .map_err(|e| MydexError::Protocol(format!("{path} answer is not {{url, qr}}: {e}")))?,
        _ => {
            return Err(MydexError::Protocol(format!(
                "{path} answer is neither {{url, qr}} nor a URL string"
            )));
        }
    };
    let parsed = reqwest::Url::parse(&link.url)
        .map_err(|_| MydexError::Protocol(format!("{path} answered a url that is not a URL")))?;
    if !matches!(parsed.scheme(), "http" | "https") || link.url.len() > 2048 {
        return Err(MydexError::Protocol(format!(
            "{path} answered an unusable url"
        )));
    }
    Ok(link)
}

/// The short access token of `/access-token/{nid}`: a JSON string (as
/// Mydex's examples read it); a bare token in plain text is taken too. It
/// travels in a header, so it must be visible ASCII.
fn parse_short_token(body: &[u8]) -> Result<SecretString, MydexError> {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(_) => {
            return Err(MydexError::Protocol(
                "access-token answer is not a JSON string".into(),
            ));
        }
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    if text.is_empty() || text.len() > 1024 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(MydexError::Protocol(
            "access-token answer is not a usable token".into(),
        ));
    }
    Ok(SecretString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_read_from_either_answer_shape() {
        let link = parse_link(
            "/ftc/setup",
            br#"{"url":"https://login.mydexid.org/ftc/begin/45678/abc/1","qr":"data:image/png;base64,AA"}"#,
        )
        .unwrap();
        assert_eq!(link.url, "https://login.mydexid.org/ftc/begin/45678/abc/1");
        assert!(link.qr.is_some());
        // The older flow: a bare JSON string, slashes escaped as PHP does.
        let link = parse_link(
            "/api/connection",
            br#""https:\/\/sbx-my.mydex.org\/ftc\/begin\/45678\/abc\/2""#,
        )
        .unwrap();
        assert_eq!(link.url, "https://sbx-my.mydex.org/ftc/begin/45678/abc/2");
        assert_eq!(link.qr, None);
        for bad in [
            &br#""not a url""#[..],
            br#""ftp://x.example/a""#,
            br#"42"#,
            br#"{"qr":"x"}"#,
            b"<html>",
        ] {
            assert!(
                matches!(
                    parse_link("/api/connection", bad),
                    Err(MydexError::Protocol(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn short_tokens_are_a_json_string_or_plain_text() {
        assert_eq!(
            parse_short_token(br#""AbC123xyz""#)
                .unwrap()
                .expose_secret(),
            "AbC123xyz"
        );
        assert_eq!(
            parse_short_token(b"AbC123xyz\n").unwrap().expose_secret(),
            "AbC123xyz"
        );
        for bad in [&b"\"\""[..], b"{}", b"\"a b\"", b"\"a\\nb\"", b""] {
            assert!(parse_short_token(bad).is_err(), "{:?}", bad);
        }
    }
}
