//! The callback endpoint Mydex POSTs and PUTs to. The `Authentication`
//! header is checked in constant time before anything else (before a byte
//! of the body is read); bodies are limited (413), read within
//! `callback.read_timeout` (408), typed (415), parsed (400 with a JSON
//! error); and a 2xx is answered only once what the callback carried is
//! flushed to disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::metrics::Metrics;
use crate::mydex::callback::{self, Callback};
use crate::store::{CallbackOutcome, Store};

pub struct CallbackState {
    pub store: Store,
    pub expected_auth: String,
    pub nid: String,
    pub current_version: u32,
    pub metrics: Arc<Metrics>,
    /// Where notifications are passed on, if configured.
    pub notify: Option<Arc<crate::notify_hook::NotificationHook>>,
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
    // 2. Within limits, in time, and of a type we read?
    let body = match tokio::time::timeout(
        st.read_timeout,
        axum::body::to_bytes(body, st.body_limit),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            st.metrics.callback("unknown", "rejected");
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {} bytes", st.body_limit),
                )
            } else {
                error(StatusCode::BAD_REQUEST, "cannot read the body")
            };
        }
        Err(_) => {
            st.metrics.callback("unknown", "rejected");
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive within callback.read_timeout",
            );
        }
    };
    let ctype = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // 3. Parse once into typed values.
    let is_put = method == Method::PUT;
    let (cb, redacted) = match callback::parse_request(ctype, &body, is_put, &st.nid) {
        Ok(v) => v,
        Err(e @ callback::CallbackError::Encoding(_)) => {
            st.metrics.callback("unknown", "rejected");
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string());
        }
        Err(e) => {
            st.metrics.callback("unknown", "malformed");
            tracing::warn!(method = %method, error = %e, "callback refused: malformed body");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    // 4. Store it, then make it durable, then answer.
    let kind = match &cb {
        Callback::Connect(_) => "ftc",
        Callback::Update(_) => "update",
        Callback::Event(crate::store::Event::Identify { .. }) => "identify",
        Callback::Event(crate::store::Event::Notification { .. }) => "notification",
    };
    let pass_on = match (&cb, &st.notify) {
        (Callback::Event(crate::store::Event::Notification { .. }), Some(_)) => {
            Some(redacted.clone())
        }
        _ => None,
    };
    let store = st.store.clone();
    let version = st.current_version;
    let method_s = method.to_string();
    let applied = tokio::task::spawn_blocking(move || match &cb {
        Callback::Connect(c) | Callback::Update(c) => {
            let digest = callback::digest(
                &method_s,
                &redacted,
                c.key.as_ref().map(|k| k.expose_secret()),
            );
            let out = store.apply_credentials(c, is_put, &digest, version);
            (out, c.linking_token.clone(), Some(c.connection_id.clone()))
        }
        Callback::Event(crate::store::Event::Identify {
            mydexid,
            linking_token,
        }) => {
            let digest = callback::digest(&method_s, &redacted, None);
            let out = match crate::domain::MydexId::from_mydex(mydexid) {
                Ok(id) => store.apply_identify(&id, linking_token.as_deref(), &redacted, &digest),
                Err(_) => store.record_event(&cb_event(mydexid, linking_token), &redacted, &digest),
            };
            (out, linking_token.clone(), None)
        }
        Callback::Event(ev) => {
            let digest = callback::digest(&method_s, &redacted, None);
            (store.record_event(ev, &redacted, &digest), None, None)
        }
    })
    .await;
    let (outcome, token, connection_id) = match applied {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "callback task failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; please retry",
            );
        }
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            st.store.note_error(&e);
            tracing::error!(error = %e, kind, "cannot store callback; answering 503 so Mydex retries");
            st.metrics.callback(kind, "store_error");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store the callback now; please retry",
            );
        }
    };
    if let Err(e) = st.store.flush().await {
        tracing::error!(error = %e, kind, "cannot flush the store; answering 503 so Mydex retries");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot store the callback now; please retry",
        );
    }
    let token = token.unwrap_or_default();
    let conn = connection_id.unwrap_or_default();
    let status = match &outcome {
        CallbackOutcome::Connected {
            invitation_id,
            campaign,
            external_ref,
        } => {
            tracing::info!(invitation = invitation_id, campaign = %campaign, external_ref = external_ref.as_deref().unwrap_or(""), connection_id = %conn, state = "connected", "member connected");
            "connected"
        }
        CallbackOutcome::Updated { invitation_id } => {
            tracing::info!(invitation = invitation_id.unwrap_or(0), connection_id = %conn, "member connection updated");
            "updated"
        }
        CallbackOutcome::Unmatched => {
            tracing::warn!(kind, linking_token = %token, connection_id = %conn, "callback matched nothing; kept as unmatched");
            "unmatched"
        }
        CallbackOutcome::Replay => {
            tracing::info!(kind, linking_token = %token, connection_id = %conn, "callback replayed; nothing changed");
            "replay"
        }
        CallbackOutcome::Recorded => {
            tracing::info!(kind, "callback event recorded");
            if let (Some(hook), Some(body)) = (&st.notify, pass_on) {
                hook.dispatch(body);
            }
            "recorded"
        }
    };
    st.metrics.callback(kind, status);
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "status": status })),
    )
        .into_response()
}

/// An identify event as recorded when its MydexID does not parse (the
/// callback parser already checks it, so this is belt and braces).
fn cb_event(mydexid: &str, linking_token: &Option<String>) -> crate::store::Event {
    crate::store::Event::Identify {
        mydexid: mydexid.to_string(),
        linking_token: linking_token.clone(),
    }
}
