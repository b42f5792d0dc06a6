//! Faults on demand: a configurable share of API calls (token, ftc/setup,
//! identify, access-token, api/connection[/update], connection/status;
//! never the pages or `/_sandbox`) answered
//! 500/503/429 (with `Retry-After: 1`), slowed past a client timeout, or
//! dropped by closing the TCP connection without an HTTP answer.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::json;

use super::args::FaultKind;
use super::server::ConnKill;
use super::state::{AppState, Counts};

/// The API paths faults apply to.
pub fn is_api_path(path: &str) -> bool {
    matches!(
        path,
        "/oauth2/token" | "/ftc/setup" | "/identify" | "/api/connection" | "/api/connection/update"
    ) || path.starts_with("/connection/status/")
        || path.starts_with("/api/pds/")
        || path.starts_with("/access-token/")
}

fn pick(state: &AppState) -> Option<(FaultKind, std::time::Duration)> {
    let settings = state.settings.read();
    if settings.fault_rate <= 0.0 || settings.faults.is_empty() {
        return None;
    }
    let mut rng = rand::rng();
    if rng.random::<f64>() >= settings.fault_rate {
        return None;
    }
    let kind = settings.faults[rng.random_range(0..settings.faults.len())];
    Some((kind, settings.slow_delay))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": {"message": message}}))).into_response()
}

/// Middleware: maybe answer with a fault instead of the handler.
pub async fn inject(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if !is_api_path(req.uri().path()) {
        return next.run(req).await;
    }
    let Some((kind, slow_delay)) = pick(&state) else {
        return next.run(req).await;
    };
    Counts::bump(&state.counts.faults_injected);
    tracing::debug!(
        fault = kind.name(),
        path = req.uri().path(),
        "injecting fault"
    );
    match kind {
        FaultKind::Status500 => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error (injected by the sandbox)",
        ),
        FaultKind::Status503 => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable (injected by the sandbox)",
        ),
        FaultKind::Status429 => {
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests (injected by the sandbox)",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        FaultKind::Slow => {
            tokio::time::sleep(slow_delay).await;
            next.run(req).await
        }
        FaultKind::Lost => {
            // The call is carried out, then the answer is lost.
            let kill = req.extensions().get::<ConnKill>().cloned();
            let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
            let resp = next.run(req).await;
            state.log_request(&method, &path, 0);
            match kill {
                Some(kill) => {
                    drop(resp);
                    kill.kill();
                    std::future::pending::<Response>().await
                }
                None => resp,
            }
        }
        FaultKind::Drop => {
            state.log_request(req.method().as_str(), req.uri().path(), 0);
            match req.extensions().get::<ConnKill>() {
                Some(kill) => {
                    kill.kill();
                    std::future::pending::<Response>().await
                }
                None => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "connection drop unavailable",
                ),
            }
        }
    }
}

/// Middleware: remember every request outside `/_sandbox` for assertions.
pub async fn log_requests(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/_sandbox/") {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let resp = next.run(req).await;
    state.log_request(method.as_str(), &path, resp.status().as_u16());
    resp
}
