//! The suppression list for operators (bearer): `GET /suppressions` (hash
//! prefix, reason, source, date: the list holds no address),
//! `POST /suppressions {"email", "reason"?}` (suppress someone, failing
//! their open invitations), `POST /suppressions/remove {"email"}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::admin_state::AdminState;
use crate::admin_api::suppressions::{
    SuppressionAdded, SuppressionEntry, SuppressionList, SuppressionRemoved, SuppressionRequest,
};
use crate::domain::Email;
use crate::store::{Suppression, SuppressionSource, now_ms};

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The entry, or why not (answered 400).
fn parse(body: &[u8]) -> Result<(SuppressionRequest, Email), (StatusCode, String)> {
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let e: SuppressionRequest =
        serde_json::from_slice(body).map_err(|e| bad(format!("expected {{\"email\": …}}: {e}")))?;
    let email = Email::parse(&e.email).map_err(|e| bad(e.to_string()))?;
    Ok((e, email))
}

pub async fn list(State(st): State<Arc<AdminState>>) -> Response {
    match entries(&st.store).await {
        Ok(entries) => axum::Json(SuppressionList {
            suppressed: entries.len(),
            entries,
        })
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Every entry as listed, read a page at a time.
async fn entries(
    store: &crate::store::Store,
) -> Result<Vec<SuppressionEntry>, crate::store::StoreError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.suppressions_page(after, 1000).await?;
        let Some(last) = page.last().map(|(h, _)| h.clone()) else {
            return Ok(out);
        };
        after = Some(last);
        out.extend(page.into_iter().map(|(h, e)| SuppressionEntry {
            person: h.short().to_string(),
            reason: e.reason,
            source: e.source,
            at_ms: e.at_ms,
        }));
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
    let person = st.store.mail_keys().person(&email);
    let e = Suppression {
        reason,
        source: SuppressionSource::Operator,
        at_ms: now_ms(),
    };
    let done = st.store.suppress(&person, e).await;
    let flushed = st.store.flush().await;
    match (done, flushed) {
        (Ok(d), Ok(())) => {
            tracing::info!(
                person = person.short(),
                new = d.new,
                failed = d.failed.len(),
                "suppressed by an operator"
            );
            axum::Json(SuppressionAdded {
                person: person.short().to_string(),
                new: d.new,
                failed: d.failed.len(),
            })
            .into_response()
        }
        (Err(e), _) | (_, Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

pub async fn remove(State(st): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let (_, email) = match parse(&body) {
        Ok(v) => v,
        Err((status, why)) => return error(status, why),
    };
    let person = st.store.mail_keys().person(&email);
    let done = st.store.unsuppress(&person).await;
    let flushed = st.store.flush().await;
    match (done, flushed) {
        (Ok(removed), Ok(())) => {
            tracing::info!(
                person = person.short(),
                removed,
                "suppression removed by an operator"
            );
            axum::Json(SuppressionRemoved {
                person: person.short().to_string(),
                removed,
            })
            .into_response()
        }
        (Err(e), _) | (_, Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
