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
use crate::admin_api::callbacks::{CallbackPage, CallbackView, Replayed};
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
fn view(rec: &RawCallback) -> CallbackView {
    let (status, reason) = match &rec.outcome {
        RawOutcome::Applied { status } => (Some(status.clone()), None),
        RawOutcome::Quarantined { reason } => (None, Some(reason.clone())),
        RawOutcome::Pending => (None, None),
    };
    CallbackView {
        id: rec.id,
        received_ms: rec.received_ms,
        method: rec.method.clone(),
        content_type: rec.content_type.clone(),
        size: rec.size,
        kind: rec.kind.clone(),
        state: rec.outcome.state().to_string(),
        history: rec.history.clone(),
        status,
        reason,
        body: None,
    }
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
    match st.store.raw_callbacks(filter, q.after, limit).await {
        Ok(list) => axum::Json(CallbackPage {
            callbacks: list.iter().map(view).collect(),
            next_after: if list.len() == limit {
                list.last().map(|r| r.id)
            } else {
                None
            },
        })
        .into_response(),
        Err(e) => store_error(e),
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
    match st.store.raw_callback_with_body(id).await {
        Ok((rec, body)) => {
            let mut v = view(&rec);
            v.body = Some(redact_body_hiding(&body, hide));
            axum::Json(v).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Judge stored callback `id` again; its view with the new outcome.
async fn replay_one(st: &AdminState, store: &Store, id: u64) -> Result<CallbackView, StoreError> {
    let (rec, body) = store.raw_callback_with_body(id).await?;
    let before = rec.outcome.clone();
    let verdict = callback_judge::judge(
        store,
        &st.settings.mydex.connection_nid,
        st.current_version,
        id,
        &rec.method,
        rec.content_type.as_deref(),
        &body,
    )
    .await?;
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
    Ok(view(&store.raw_callback(id).await?))
}

pub async fn replay(State(st): State<Arc<AdminState>>, Path(id): Path<u64>) -> Response {
    let done = async {
        let v = replay_one(&st, &st.store, id).await?;
        st.store.flush().await?;
        Ok::<_, StoreError>(v)
    };
    match done.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => store_error(e),
    }
}

pub async fn replay_quarantined(State(st): State<Arc<AdminState>>) -> Response {
    let s = &st;
    let done = async {
        let store = &s.store;
        // The ones quarantined now; each is judged once (a page at a time,
        // after the last one seen, so one quarantined again is not re-run).
        let mut results = Vec::new();
        let mut after = None;
        loop {
            let quarantined = RawFilter {
                quarantined_only: true,
            };
            let page = store
                .raw_callbacks(quarantined, after, DEFAULT_LIMIT)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for rec in &page {
                results.push(replay_one(s, store, rec.id).await?);
            }
        }
        store.flush().await?;
        Ok::<_, StoreError>(results)
    };
    match done.await {
        Ok(results) => {
            let applied = results.iter().filter(|v| v.state == "applied").count();
            axum::Json(Replayed {
                replayed: results.len(),
                applied,
                quarantined: results.len() - applied,
                callbacks: results,
            })
            .into_response()
        }
        Err(e) => store_error(e),
    }
}
