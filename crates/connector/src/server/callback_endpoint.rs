//! The callback endpoint Mydex POSTs and PUTs to. The `Authentication`
//! header is checked in constant time before anything else (before a byte
//! of the body is read); bodies are limited (413, after reading the rest so
//! the answer arrives) and read within `callback.read_timeout` (408). Then
//! what arrived is kept, sealed, before it is judged (`callback_judge.rs`):
//! applied as its kind, or quarantined with the reason — Mydex sends a
//! member's key once and documents no retry (docs/mydex-contract.md §5).
//! A 2xx is answered only once it is flushed to disk; 503 when the store
//! cannot write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::metrics::Metrics;
use crate::store::{CallbackOutcome, Store};

pub struct CallbackState {
    pub store: Store,
    pub expected_auth: String,
    pub nid: String,
    pub current_version: u32,
    pub metrics: Arc<Metrics>,
    /// Where notifications are passed on, if configured.
    pub notify: Option<Arc<crate::notify::notification_hook::NotificationHook>>,
    /// `callback.body_limit`.
    pub body_limit: usize,
    /// `callback.read_timeout`, for the body.
    pub read_timeout: std::time::Duration,
    pub refusals: RefusalLog,
}

/// Warns about unauthenticated callbacks at most once a second, with how
/// many there were, so that a flood of them does not flood the log too (the
/// metric counts each one).
#[derive(Default)]
pub struct RefusalLog {
    last_second: AtomicU64,
    since: AtomicU64,
}

impl RefusalLog {
    fn refused(&self, method: &Method) {
        self.since.fetch_add(1, Ordering::Relaxed);
        let now = crate::store::now_ms() / 1000;
        let last = self.last_second.load(Ordering::Relaxed);
        if now != last
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let refused = self.since.swap(0, Ordering::Relaxed);
            tracing::warn!(method = %method, refused, "callback refused: missing or wrong Authentication header (refused: how many since the last such line)");
        }
    }
}

pub fn router(path: &str, state: Arc<CallbackState>) -> Router {
    Router::new()
        .route(path, axum::routing::post(handle).put(handle))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// Why a body was not read whole.
enum BodyError {
    /// Over `callback.body_limit` (the rest was read and dropped, so the
    /// 413 reaches a client that sends its whole body before reading).
    TooLarge,
    /// Not complete within `callback.read_timeout`.
    Timeout,
    /// The connection broke.
    Broken,
}

/// Bytes of an over-long body read and dropped before answering 413: at
/// least this, or 4× the limit.
const DRAIN_MIN: usize = 4 * 1024 * 1024;

/// Read the body within `limit` bytes and `timeout`. An over-long one is
/// read to its end and dropped (at most 4× the limit or `DRAIN_MIN`, within
/// the same deadline), so the answer is not lost to a TCP reset.
async fn read_body(
    body: axum::body::Body,
    limit: usize,
    timeout: std::time::Duration,
    announced: Option<u64>,
) -> Result<axum::body::Bytes, BodyError> {
    use http_body_util::BodyExt;
    let cap = limit.saturating_mul(4).max(DRAIN_MIN);
    if announced.is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    let mut seen: usize = 0;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) if seen > limit => return Err(BodyError::TooLarge),
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) => break,
            Ok(Some(Err(_))) if seen > limit => return Err(BodyError::TooLarge),
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > cap {
            return Err(BodyError::TooLarge);
        }
        if seen > limit {
            buf = Vec::new();
        } else {
            buf.extend_from_slice(&data);
        }
    }
    if seen > limit {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf.into())
    }
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "cannot store the callback now; please retry",
    )
}

async fn handle(State(st): State<Arc<CallbackState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, headers) = (parts.method, parts.headers);
    // 1. Is it Mydex?
    let given = headers
        .get("authentication")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let given = given.to_ascii_lowercase();
    let ok: bool = given.ct_eq(st.expected_auth.as_bytes()).into();
    if !ok {
        st.metrics.callback("unknown", "unauthorized");
        st.refusals.refused(&method);
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong Authentication header",
        );
    }
    // 2. Within limits and in time?
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = match read_body(body, st.body_limit, st.read_timeout, announced).await {
        Ok(b) => b,
        Err(e) => {
            st.metrics.callback("unknown", "rejected");
            return match e {
                BodyError::TooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    [(axum::http::header::CONNECTION, "close")],
                    axum::Json(serde_json::json!({
                        "error": format!("the body is larger than {} bytes", st.body_limit)
                    })),
                )
                    .into_response(),
                BodyError::Timeout => error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive within callback.read_timeout",
                ),
                BodyError::Broken => error(StatusCode::BAD_REQUEST, "cannot read the body"),
            };
        }
    };
    // 3. Keep it as it arrived (sealed) before judging it.
    let ctype = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let method_s = if method == Method::PUT { "PUT" } else { "POST" };
    let store = st.store.clone();
    let (nid, version) = (st.nid.clone(), st.current_version);
    // 4. Then parse and apply it; what does not parse is quarantined. A
    // panic while applying quarantines it too (its effects were one
    // transaction, so none of them were made).
    let judged = tokio::task::spawn_blocking(move || {
        let id = store.keep_raw(method_s, ctype.as_deref(), &body)?;
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::callback_judge::judge(
                &store,
                &nid,
                version,
                id,
                method_s,
                ctype.as_deref(),
                &body,
            )
        }))
        .unwrap_or_else(|_| {
            tracing::error!(callback = id, "the callback task panicked");
            super::callback_judge::quarantine(
                &store,
                id,
                None,
                "the connector failed while applying it (a bug)".into(),
            )
        });
        Ok::<_, crate::store::StoreError>((id, verdict))
    })
    .await
    .map_err(|e| crate::store::StoreError::Flush(e.to_string()))
    .and_then(|r| r);
    let (id, verdict) = match judged {
        Ok((id, Ok(v))) => (id, v),
        Ok((_, Err(e))) | Err(e) => {
            st.store.note_error(&e);
            tracing::error!(error = %e, "cannot store callback; answering 503 so Mydex retries");
            st.metrics.callback("unknown", "store_error");
            return unavailable();
        }
    };
    // 5. Durable (the raw record and its effects, one group-commit flush),
    // then answered.
    if let Err(e) = st.store.flush().await {
        tracing::error!(callback = id, error = %e, "cannot flush the store; answering 503 so Mydex retries");
        return unavailable();
    }
    let (kind, outcome, token, conn, notification) = match verdict {
        super::callback_judge::Verdict::Quarantined { .. } => {
            st.metrics.callback("unknown", "quarantined");
            return (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "status": "quarantined", "id": id })),
            )
                .into_response();
        }
        super::callback_judge::Verdict::Applied {
            kind,
            outcome,
            linking_token,
            connection_id,
            notification,
        } => (
            kind,
            outcome,
            linking_token.unwrap_or_default(),
            connection_id.unwrap_or_default(),
            notification,
        ),
    };
    let status = super::callback_judge::status_word(&outcome);
    match &outcome {
        CallbackOutcome::Connected {
            invitation_id,
            campaign,
            external_ref,
        } => {
            tracing::info!(callback = id, invitation = invitation_id, campaign = %campaign, external_ref = external_ref.as_deref().unwrap_or(""), connection_id = %conn, state = "connected", "member connected");
        }
        CallbackOutcome::Updated { invitation_id } => {
            tracing::info!(callback = id, invitation = invitation_id.unwrap_or(0), connection_id = %conn, "member connection updated");
        }
        CallbackOutcome::Unmatched => {
            tracing::warn!(callback = id, kind, linking_token = %token, connection_id = %conn, "callback matched nothing; kept as unmatched");
        }
        CallbackOutcome::Replay => {
            tracing::info!(callback = id, kind, linking_token = %token, connection_id = %conn, "callback replayed; nothing changed");
        }
        CallbackOutcome::Recorded => {
            tracing::info!(callback = id, kind, "callback event recorded");
            if let (Some(hook), Some(body)) = (&st.notify, notification) {
                hook.dispatch(body);
            }
        }
    }
    st.metrics.callback(kind, status);
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "status": status })),
    )
        .into_response()
}
