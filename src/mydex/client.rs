//! The PDX API client: `/ftc/setup`, `/identify`, `/connection/status`.
//! Each call gets a bearer token from the cache (refreshed once on 401),
//! and transient failures (5xx, 429 with Retry-After, timeouts, resets) are
//! retried with exponential backoff and jitter; a 4xx is final and keeps
//! Mydex's message.

use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::error::{AttemptError, MydexError, error_message};
use super::token::{self, CachedToken};
use crate::config::MydexSettings;

/// Largest answer body we read from Mydex.
const MAX_BODY: usize = 1 << 20;

pub struct MydexClient {
    http: reqwest::Client,
    api: reqwest::Url,
    token_url: reqwest::Url,
    client_id: String,
    client_secret: SecretString,
    nid: String,
    token_hash: String,
    return_to: String,
    max_attempts: u32,
    min_backoff: Duration,
    token: Mutex<Option<CachedToken>>,
    generation: std::sync::atomic::AtomicU64,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    health: super::health::ApiHealth,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStatus {
    pub exists: bool,
    pub active: bool,
    pub version: Option<u32>,
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
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("mydex-connector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            api: settings.api_url.clone(),
            token_url: settings.token_url.clone(),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            nid: settings.connection_nid.clone(),
            token_hash: super::token_hash(settings.connection_token.expose_secret()),
            return_to: settings.return_to.clone(),
            max_attempts: settings.max_attempts,
            min_backoff: Duration::from_millis(200),
            token: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            metrics,
            health: super::health::ApiHealth::default(),
        })
    }

    fn endpoint(&self, path: &str) -> reqwest::Url {
        let mut url = self.api.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// A one-time First Time Connection (or update) link.
    pub async fn ftc_setup(&self, req: &FtcRequest) -> Result<FtcLink, MydexError> {
        let body = SetupBody {
            connection_nid: &self.nid,
            connection_token_hash: &self.token_hash,
            return_to: &self.return_to,
            linking_token: &req.linking_token,
            mydexid: req.mydexid.as_deref(),
            version: req.version,
        };
        self.link_call("/ftc/setup", &body).await
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
        self.link_call("/identify", &body).await
    }

    async fn link_call(
        &self,
        path: &'static str,
        body: &SetupBody<'_>,
    ) -> Result<FtcLink, MydexError> {
        let url = self.endpoint(path);
        let json = serde_json::to_vec(body).map_err(|e| MydexError::Protocol(e.to_string()))?;
        let answer = self
            .call(path, |token| {
                self.http
                    .post(url.clone())
                    .bearer_auth(token)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(json.clone())
            })
            .await?;
        let link: FtcLink = serde_json::from_slice(&answer)
            .map_err(|e| MydexError::Protocol(format!("{path} answer is not {{url, qr}}: {e}")))?;
        let parsed = reqwest::Url::parse(&link.url).map_err(|_| {
            MydexError::Protocol(format!("{path} answered a url that is not a URL"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || link.url.len() > 2048 {
            return Err(MydexError::Protocol(format!(
                "{path} answered an unusable url"
            )));
        }
        Ok(link)
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
        let mut url = self.endpoint(&format!("/connection/status/{}", self.nid));
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
            let outcome = self.attempt(&build).await;
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
        build: &impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, AttemptError> {
        let token = self.bearer().await?;
        let resp = build(token.expose_secret())
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
    pub async fn token_obtainable(&self) -> Result<(), String> {
        match self.bearer().await {
            Ok(_) => Ok(()),
            Err(AttemptError::Transient { why, .. }) => Err(why),
            Err(AttemptError::Unauthorized { status, message }) => {
                Err(format!("HTTP {status}: {message}"))
            }
            Err(AttemptError::Permanent(e)) => Err(e.to_string()),
        }
    }

    /// For `/readyz`: whether the API has been failing lately (a quarter or
    /// more of the last 30 s of attempts), with the figures and last error.
    pub fn api_health(&self) -> Result<(), String> {
        self.health.check()
    }

    async fn bearer(&self) -> Result<SecretString, AttemptError> {
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

pub(crate) fn transport_error(what: &str, e: &reqwest::Error) -> AttemptError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    AttemptError::Transient {
        why: format!("{kind}: {what} request failed: {}", error_chain(e)),
        retry_after: None,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

pub(crate) fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate_parse(v)?;
    when.duration_since(std::time::SystemTime::now()).ok()
}

fn httpdate_parse(v: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(v).ok()
}

/// Read at most `MAX_BODY` bytes of an answer; a larger one is a protocol error.
pub(crate) async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, AttemptError> {
    if resp.content_length().is_some_and(|n| n as usize > MAX_BODY) {
        return Err(AttemptError::Permanent(MydexError::Protocol(format!(
            "answer larger than {MAX_BODY} bytes"
        ))));
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > MAX_BODY {
                    return Err(AttemptError::Permanent(MydexError::Protocol(format!(
                        "answer larger than {MAX_BODY} bytes"
                    ))));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(transport_error("reading answer", &e)),
        }
    }
}
