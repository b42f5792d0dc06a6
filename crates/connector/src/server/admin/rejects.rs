//! `GET /rejects` (`rejects list`): the rows rejected on their way in,
//! oldest first, a page at a time; and `GET /intake/verdict` (`enqueue
//! --wait`, `deliver --wait`): what the daemon made of one placed file,
//! `pending` until it has taken it in. Behind the token: a reason may
//! quote the address or value it refuses.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::admin_state::AdminState;
use crate::domain::{RejectsPage, VerdictAnswer};

/// Most rows in one page.
pub const MAX_PAGE: usize = 5_000;

#[derive(serde::Deserialize)]
pub struct ListQuery {
    /// Milliseconds since the epoch: only rejects from then on.
    #[serde(default)]
    since: u64,
    /// The cursor a previous page answered as `next`.
    after: Option<String>,
    limit: Option<usize>,
}

fn failed(e: crate::store::StoreError) -> Response {
    let body = axum::Json(serde_json::json!({ "error": e.to_string() }));
    (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
}

pub async fn list(State(st): State<Arc<AdminState>>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(1_000).clamp(1, MAX_PAGE);
    match st.store.rejects_page(q.since, q.after, None, limit).await {
        Ok((rows, next)) => axum::Json(RejectsPage {
            rejects: rows.iter().map(|r| r.shown()).collect(),
            next,
        })
        .into_response(),
        Err(e) => failed(e),
    }
}

#[derive(serde::Deserialize)]
pub struct VerdictQuery {
    /// The name the file was placed under in the queue or readings
    /// directory.
    name: String,
}

pub async fn verdict(State(st): State<Arc<AdminState>>, Query(q): Query<VerdictQuery>) -> Response {
    let verdict = match st.store.verdict(q.name.clone()).await {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    let Some(verdict) = verdict else {
        return axum::Json(VerdictAnswer {
            state: "pending".into(),
            verdict: None,
            rejects: Vec::new(),
        })
        .into_response();
    };
    match st.store.rejects_page(0, None, Some(q.name), MAX_PAGE).await {
        Ok((rows, _)) => axum::Json(VerdictAnswer {
            state: "done".into(),
            verdict: Some(verdict),
            rejects: rows.iter().map(|r| r.shown()).collect(),
        })
        .into_response(),
        Err(e) => failed(e),
    }
}
