//! The callback endpoint Mydex POSTs and PUTs to. The `Authentication`
//! header is checked in constant time before anything else (before a byte
//! of the body is read: `callback_auth.rs`, a middleware); bodies are limited (413, after reading the rest so
//! the answer arrives) and read within `callback.read_timeout` (408). Then
//! what arrived is kept, sealed, before it is judged (`callback_judge.rs`):
//! applied as its kind, or quarantined with the reason — Mydex sends a
//! member's key once and documents no retry (docs/mydex-contract.md §5).
//! A 2xx is answered only once it is flushed to disk; 503 when the store
//! cannot write. On an edge (`Keeper::Publish`) the same listener seals
//! the callback and publishes it instead (`edge_callback.rs`).

use std::sync::Arc;

use super::callback_judge::Verdict;
use crate::store::{CallbackOutcome, StoreError};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

pub use super::callback_state::{CallbackState, Keeper, RefusalLog, StoreKeeper};

pub fn router(path: &str, state: Arc<CallbackState>) -> Router {
    Router::new()
        .route(path, axum::routing::post(handle).put(handle))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::callback_auth::require_mydex,
        ))
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

/// Authenticated already (`callback_auth.rs`): read the body, keep it,
/// judge it, make it durable, answer.
async fn handle(State(st): State<Arc<CallbackState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, headers) = (parts.method, parts.headers);
    // 1. Is it Mydex? (`callback_auth.rs`, before this handler runs.)
    // 2. Within limits and in time?
    let body = match read_within_limits(&st, &headers, body).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let ctype = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let method_s = if method == Method::PUT { "PUT" } else { "POST" };
    let keeper = match &st.keeper {
        Keeper::Store(k) => k,
        // An edge: sealed and published instead of steps 3 to 5.
        Keeper::Publish(p) => {
            return super::edge_callback::publish(&st, p, method_s, ctype, body).await;
        }
    };
    match keep_judge_flush(keeper, &st.metrics, method_s, ctype, body).await {
        Ok((id, verdict)) => answer(&st, keeper, id, verdict),
        Err(()) => unavailable(),
    }
}

/// Steps 3 to 5, for the listener and for a callback taken from NATS:
/// keep it as it arrived (sealed), parse and apply it (what does not parse
/// is quarantined), make the raw record and its effects durable (one
/// group-commit flush). `Err` when the store could not (logged; the caller
/// answers 503, or leaves the message to be delivered again).
pub(crate) async fn keep_judge_flush(
    keeper: &StoreKeeper,
    metrics: &crate::metrics::Metrics,
    method_s: &'static str,
    ctype: Option<String>,
    body: axum::body::Bytes,
) -> Result<(u64, Verdict), ()> {
    let (id, verdict) = match keep_and_judge(keeper, method_s, ctype, body).await {
        Ok((id, Ok(v))) => (id, v),
        Ok((_, Err(e))) | Err(e) => {
            keeper.store.note_error(&e);
            tracing::error!(error = %e, "cannot store callback; answering 503 so Mydex retries");
            metrics.callback("unknown", "store_error");
            return Err(());
        }
    };
    if let Err(e) = keeper.store.flush().await {
        tracing::error!(callback = id, error = %e, "cannot flush the store; answering 503 so Mydex retries");
        return Err(());
    }
    Ok((id, verdict))
}

/// The body, read within `callback.body_limit` and `callback.read_timeout`;
/// or the answer refusing it (413, 408 or 400).
async fn read_within_limits(
    st: &CallbackState,
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<axum::body::Bytes, Response> {
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    read_body(body, st.body_limit, st.read_timeout, announced)
        .await
        .map_err(|e| {
            st.metrics.callback("unknown", "rejected");
            match e {
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
            }
        })
}

/// Keep the callback as it arrived, then judge it. A failure while
/// applying it (a panic, here or in the store's call) quarantines it too
/// (its effects were one transaction, so none of them were made).
async fn keep_and_judge(
    st: &StoreKeeper,
    method_s: &'static str,
    ctype: Option<String>,
    body: axum::body::Bytes,
) -> Result<(u64, Result<Verdict, StoreError>), StoreError> {
    let store = &st.store;
    let id = store
        .keep_callback(method_s, ctype.clone(), body.clone())
        .await?;
    let judged = super::callback_judge::judge(
        store,
        &st.nid,
        st.current_version,
        id,
        method_s,
        ctype.as_deref(),
        &body,
    );
    let verdict =
        match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(judged)).await {
            // Its panic message is not logged: it may quote the body.
            Ok(Err(StoreError::Blocking(_))) => {
                tracing::error!(callback = id, "applying the callback failed (a bug)");
                quarantine_failed(store, id).await
            }
            Ok(v) => v,
            Err(_) => {
                tracing::error!(callback = id, "the callback task panicked");
                quarantine_failed(store, id).await
            }
        };
    Ok((id, verdict))
}

/// Quarantine callback `id`, whose applying failed (a bug).
async fn quarantine_failed(store: &crate::store::Store, id: u64) -> Result<Verdict, StoreError> {
    let why = "the connector failed while applying it (a bug)";
    super::callback_judge::quarantine(store, id, None, why.into()).await
}

/// The answer to a callback judged and made durable: logged, counted, and
/// a notification passed on.
fn answer(st: &CallbackState, keeper: &StoreKeeper, id: u64, verdict: Verdict) -> Response {
    match settle_verdict(&st.metrics, keeper, id, verdict) {
        Some(status) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": status })),
        )
            .into_response(),
        None => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "quarantined", "id": id })),
        )
            .into_response(),
    }
}

/// A judged and durable callback: logged, counted, a notification passed
/// on. Its status word; None when quarantined.
pub(crate) fn settle_verdict(
    metrics: &crate::metrics::Metrics,
    keeper: &StoreKeeper,
    id: u64,
    verdict: Verdict,
) -> Option<&'static str> {
    // The linking token is not logged: whoever reads the log could replay it.
    let (kind, outcome, conn, notification) = match verdict {
        Verdict::Quarantined { .. } => {
            metrics.callback("unknown", "quarantined");
            return None;
        }
        Verdict::Applied {
            kind,
            outcome,
            linking_token: _,
            connection_id,
            notification,
        } => (
            kind,
            outcome,
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
            tracing::warn!(callback = id, kind, connection_id = %conn, "callback matched nothing; kept as unmatched");
        }
        CallbackOutcome::Replay => {
            tracing::info!(callback = id, kind, connection_id = %conn, "callback replayed; nothing changed");
        }
        // Judged again (a fresh arrival has an id of its own).
        CallbackOutcome::AppliedBefore(first) => {
            tracing::info!(
                callback = id,
                kind,
                status = first.word(),
                "callback applied before; nothing changed"
            );
        }
        // Judged as quarantined (`callback_judge::judge`); not reached.
        CallbackOutcome::Refused(_) => {}
        CallbackOutcome::Recorded => {
            tracing::info!(callback = id, kind, "callback event recorded");
            if let (Some(hook), Some(body)) = (&keeper.notify, notification) {
                hook.dispatch(body);
            }
        }
    }
    metrics.callback(kind, status);
    Some(status)
}
