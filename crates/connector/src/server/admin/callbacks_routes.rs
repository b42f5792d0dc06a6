//! The operator routes for stored callbacks, behind the bearer token (the
//! CLI's `callbacks list|show|replay` call them; the CLI never opens the store):
//! list them (quarantined ones only, if asked), show one with its body and
//! any member key redacted (and its linking token, for a caller without the
//! admin token), and replay one or every quarantined one through
//! the current parser and matching (after an upgrade or a config fix).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::admin_state::AdminState;
use super::bearer::Caller;
use crate::server::callback_judge::{self, Verdict};
use crate::server::callback_redact::{Hide, redact_body_hiding};
use crate::store::{RawCallback, RawFilter, RawOutcome, Store, StoreError};

const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 100_000;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::NotFound(id) => {
            error(StatusCode::NOT_FOUND, format!("no stored callback {id}"))
        }
        StoreError::Refused(_) => error(StatusCode::CONFLICT, e.to_string()),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A stored callback as operators see it (never its body: see `show`).
fn view(rec: &RawCallback) -> serde_json::Value {
    let mut v = json!({
        "id": rec.id,
        "received_ms": rec.received_ms,
        "method": rec.method,
        "content_type": rec.content_type,
        "size": rec.size,
        "kind": rec.kind,
        "state": rec.outcome.state(),
        "history": rec.history,
    });
    match &rec.outcome {
        RawOutcome::Applied { status } => v["status"] = json!(status),
        RawOutcome::Quarantined { reason } => v["reason"] = json!(reason),
        RawOutcome::Pending => {}
    }
    v
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    quarantined: bool,
    after: Option<u64>,
    limit: Option<usize>,
}

pub async fn list(State(st): State<Arc<AdminState>>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let filter = RawFilter {
        quarantined_only: q.quarantined,
    };
    let store = st.store.clone();
    match tokio::task::spawn_blocking(move || store.raw_callbacks(filter, q.after, limit)).await {
        Ok(Ok(list)) => axum::Json(json!({
            "callbacks": list.iter().map(view).collect::<Vec<_>>(),
            "next_after": if list.len() == limit { list.last().map(|r| r.id) } else { None },
        }))
        .into_response(),
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn show(
    State(st): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Response {
    let hide = match caller.bearer() {
        Some(_) => Hide::Keys,
        None => Hide::KeysAndTokens,
    };
    let store = st.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        let rec = store.raw_callback(id)?;
        let body = store.raw_body(&rec)?;
        let mut v = view(&rec);
        v["body"] = redact_body_hiding(&body, hide);
        Ok::<_, StoreError>(v)
    })
    .await;
    match done {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Judge stored callback `id` again; its view with the new outcome.
fn replay_one(st: &AdminState, store: &Store, id: u64) -> Result<serde_json::Value, StoreError> {
    let rec = store.raw_callback(id)?;
    let body = store.raw_body(&rec)?;
    let before = rec.outcome.clone();
    let verdict = callback_judge::judge(
        store,
        &st.settings.mydex.connection_nid,
        st.current_version,
        id,
        &rec.method,
        rec.content_type.as_deref(),
        &body,
    )?;
    match &verdict {
        Verdict::Applied { kind, outcome, .. } => {
            let status = callback_judge::status_word(outcome);
            st.metrics.callback(kind, status);
            tracing::info!(
                callback = id,
                kind,
                status,
                before = before.state(),
                "stored callback replayed by an operator"
            );
        }
        Verdict::Quarantined { .. } => st.metrics.callback("unknown", "quarantined"),
    }
    Ok(view(&store.raw_callback(id)?))
}

pub async fn replay(State(st): State<Arc<AdminState>>, Path(id): Path<u64>) -> Response {
    let s = st.clone();
    let done = tokio::task::spawn_blocking(move || {
        let v = replay_one(&s, &s.store, id)?;
        s.store.flush_blocking()?;
        Ok::<_, StoreError>(v)
    })
    .await;
    match done {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn replay_quarantined(State(st): State<Arc<AdminState>>) -> Response {
    let s = st.clone();
    let done = tokio::task::spawn_blocking(move || {
        let store = &s.store;
        // The ones quarantined now; each is judged once (a page at a time,
        // after the last one seen, so one quarantined again is not re-run).
        let mut results = Vec::new();
        let mut after = None;
        loop {
            let page = store.raw_callbacks(
                RawFilter {
                    quarantined_only: true,
                },
                after,
                DEFAULT_LIMIT,
            )?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for rec in &page {
                results.push(replay_one(&s, store, rec.id)?);
            }
        }
        store.flush_blocking()?;
        Ok::<_, StoreError>(results)
    })
    .await;
    match done {
        Ok(Ok(results)) => {
            let applied = results.iter().filter(|v| v["state"] == "applied").count();
            axum::Json(json!({
                "replayed": results.len(),
                "applied": applied,
                "quarantined": results.len() - applied,
                "callbacks": results,
            }))
            .into_response()
        }
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
