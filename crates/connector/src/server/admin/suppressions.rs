//! The suppression list for operators (bearer): `GET /suppressions` (hash
//! prefix, reason, source, date: the list holds no address),
//! `POST /suppressions {"email", "reason"?}` (suppress someone, failing
//! their open invitations), `POST /suppressions/remove {"email"}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::admin_state::AdminState;
use crate::domain::Email;
use crate::store::{Suppression, SuppressionSource, now_ms};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    email: String,
    reason: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The entry, or why not (answered 400).
fn parse(body: &[u8]) -> Result<(Entry, Email), (StatusCode, String)> {
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let e: Entry =
        serde_json::from_slice(body).map_err(|e| bad(format!("expected {{\"email\": …}}: {e}")))?;
    let email = Email::parse(&e.email).map_err(|e| bad(e.to_string()))?;
    Ok((e, email))
}

pub async fn list(State(st): State<Arc<AdminState>>) -> Response {
    let s = st.clone();
    let out = tokio::task::spawn_blocking(move || {
        s.store
            .suppressions()
            .map(|r| {
                r.map(|(h, e)| {
                    json!({"person": h.short(), "reason": e.reason, "source": e.source, "at_ms": e.at_ms})
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    match out {
        Ok(Ok(v)) => axum::Json(json!({ "suppressed": v.len(), "entries": v })).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn add(State(st): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let (entry, email) = match parse(&body) {
        Ok(v) => v,
        Err((status, why)) => return error(status, why),
    };
    let reason = entry
        .reason
        .map(|r| super::bounces::clean_diagnostic(&r))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "suppressed by an operator".into());
    let s = st.clone();
    let done = tokio::task::spawn_blocking(move || {
        let person = s.store.mail_keys().person(&email);
        let e = Suppression {
            reason,
            source: SuppressionSource::Operator,
            at_ms: now_ms(),
        };
        s.store.suppress(&person, &e).map(|d| (person, d))
    })
    .await;
    let flushed = st.store.flush().await;
    match (done, flushed) {
        (Ok(Ok((person, d))), Ok(())) => {
            tracing::info!(
                person = person.short(),
                new = d.new,
                failed = d.failed.len(),
                "suppressed by an operator"
            );
            axum::Json(json!({"person": person.short(), "new": d.new, "failed": d.failed.len()}))
                .into_response()
        }
        (Ok(Err(e)), _) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        (Err(e), _) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        (_, Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

pub async fn remove(State(st): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let (_, email) = match parse(&body) {
        Ok(v) => v,
        Err((status, why)) => return error(status, why),
    };
    let s = st.clone();
    let done = tokio::task::spawn_blocking(move || {
        let person = s.store.mail_keys().person(&email);
        s.store.unsuppress(&person).map(|r| (person, r))
    })
    .await;
    let flushed = st.store.flush().await;
    match (done, flushed) {
        (Ok(Ok((person, removed))), Ok(())) => {
            tracing::info!(
                person = person.short(),
                removed,
                "suppression removed by an operator"
            );
            axum::Json(json!({"person": person.short(), "removed": removed})).into_response()
        }
        (Ok(Err(e)), _) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        (Err(e), _) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        (_, Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
