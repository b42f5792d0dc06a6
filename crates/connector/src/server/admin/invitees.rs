//! `POST /invitees`: event-driven intake. A JSON array of invitee objects
//! (`Content-Type: application/json`) or JSON Lines (`application/x-ndjson`),
//! validated row by row exactly like queue files (`intake::reader` and
//! `intake::to_new`); the good rows are stored and flushed before the answer,
//! which names each bad row with its reason.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::admin_state::AdminState;
use crate::domain::Invitee;
use crate::intake::{Format, RowError, Rows, to_new};
use crate::store::{InsertOutcome, NewInvitation, StoreError};

/// Largest body accepted (413 beyond); bigger lists go through the queue dir.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Most rows in one request.
pub const MAX_ROWS: usize = 10_000;

#[derive(serde::Deserialize)]
pub struct PostQuery {
    /// Campaign for rows that name none (default: the first configured).
    campaign: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// One row of the body: its 1-based number and the invitee or the reason.
type ParsedRow = (u64, Result<Invitee, RowError>);

/// Why the body as a whole was refused.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct BodyError {
    status: StatusCode,
    message: String,
}

fn body_error(status: StatusCode, message: impl Into<String>) -> BodyError {
    BodyError {
        status,
        message: message.into(),
    }
}

/// The rows of the body.
fn parse_rows(mime: &str, body: &[u8]) -> Result<Vec<ParsedRow>, BodyError> {
    match mime {
        "application/json" => {
            let rows = crate::intake::json_row::parse_body(body)
                .map_err(|e| {
                    body_error(
                        StatusCode::BAD_REQUEST,
                        format!("the body is not JSON: {e}"),
                    )
                })?
                .ok_or_else(|| {
                    body_error(
                        StatusCode::BAD_REQUEST,
                        "the body must be a JSON array of invitee objects",
                    )
                })?;
            Ok(rows
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let parsed = match item {
                        Ok(serde_json::Value::Object(map)) => {
                            Invitee::from_json(map).map_err(RowError::Invitee)
                        }
                        Ok(_) => Err(RowError::NotObject),
                        Err(e) => Err(RowError::NotJson(e)),
                    };
                    (i as u64 + 1, parsed)
                })
                .collect())
        }
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" => {
            let rows = Rows::new(body, Format::JsonLines)
                .map_err(|e| body_error(StatusCode::BAD_REQUEST, e.to_string()))?;
            let mut out = Vec::new();
            for row in rows {
                let row = row.map_err(|e| body_error(StatusCode::BAD_REQUEST, e.to_string()))?;
                out.push((row.line, row.result));
            }
            Ok(out)
        }
        _ => Err(body_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json (an array) or application/x-ndjson (JSON Lines)",
        )),
    }
}

pub async fn post(
    State(st): State<Arc<AdminState>>,
    Query(q): Query<PostQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match accept(&st, &q, &headers, body).await {
        Ok(r) | Err(r) => r,
    }
}

/// The whole request: `Err` is an answer refusing it before any row was
/// stored.
async fn accept(
    st: &AdminState,
    q: &PostQuery,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let body = body.map_err(refused_body)?;
    if let Some(c) = &q.campaign
        && st.settings.campaign(c).is_none()
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("campaign {c:?} is not configured"),
        ));
    }
    let rows = parse_rows(&content_type(headers), &body).map_err(|e| error(e.status, e.message))?;
    if rows.len() > MAX_ROWS {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} rows; at most {MAX_ROWS} per request (use the queue directory for more)",
                rows.len()
            ),
        ));
    }
    let (mut results, good) = check_rows(st, q, rows);
    let (lines, items): (Vec<u64>, Vec<NewInvitation>) = good.into_iter().unzip();
    let (items, outcomes) = store_rows(st, items).await?;
    let (queued, duplicates) = note_outcomes(&lines, &items, outcomes, &mut results);
    results.sort_by_key(|r| r["row"].as_u64().unwrap_or(0));
    let rejected = results.iter().filter(|r| r["status"] == "rejected").count();
    keep_rejects(st, &results).await;
    if queued > 0 {
        st.wake.notify_one();
    }
    let status = if queued == 0 && rejected > 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({
            "queued": queued,
            "duplicates": duplicates,
            "rejected": rejected,
            "rows": results,
        })),
    )
        .into_response())
}

/// The rows refused (and duplicates) kept for `rejects list`, named
/// `POST /invitees` with their row number; a store that cannot keep them
/// is logged, and the answer still names every row.
async fn keep_rejects(st: &AdminState, results: &[serde_json::Value]) {
    let at_ms = crate::store::now_ms();
    let rows: Vec<crate::domain::Rejection> = results
        .iter()
        .filter(|r| r["status"] != "queued")
        .map(|r| crate::domain::Rejection {
            file: "POST /invitees".into(),
            source: String::new(),
            line: r["row"].as_u64().unwrap_or(0),
            reason: r["error"].as_str().unwrap_or("rejected").to_string(),
            at_ms,
        })
        .collect();
    if let Err(e) = st.store.record_rejects(rows).await {
        tracing::error!(error = %e, "POST /invitees: cannot keep the rejected rows for `rejects list`");
    }
}

/// The answer to a body axum could not read (too large, cut short).
fn refused_body(e: BytesRejection) -> Response {
    let status = e.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "the body is larger than {MAX_BODY} bytes; put big lists in the queue directory (`mydex-connector enqueue`)"
        )
    } else {
        e.body_text()
    };
    error(status, message)
}

/// The request's media type, lowercase, without parameters.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Each row as a new invitation (for `q.campaign` when it names none), or
/// its rejection in the answer's rows.
fn check_rows(
    st: &AdminState,
    q: &PostQuery,
    rows: Vec<ParsedRow>,
) -> (Vec<serde_json::Value>, Vec<(u64, NewInvitation)>) {
    let mut results: Vec<serde_json::Value> = Vec::with_capacity(rows.len());
    let mut good: Vec<(u64, NewInvitation)> = Vec::new();
    for (row, parsed) in rows {
        let checked = parsed.and_then(|mut inv| {
            if inv.campaign.is_none() {
                inv.campaign = q.campaign.clone();
            }
            to_new(&st.settings, inv)
        });
        match checked {
            Ok(new) => good.push((row, new)),
            Err(reason) => {
                results.push(json!({"row": row, "status": "rejected", "error": reason.to_string()}))
            }
        }
    }
    (results, good)
}

/// Store the good rows and flush them before answering.
async fn store_rows(
    st: &AdminState,
    items: Vec<NewInvitation>,
) -> Result<(Vec<NewInvitation>, Vec<InsertOutcome>), Response> {
    let stored = async {
        let outcomes = st.store.insert_invitations(items, None).await?;
        st.store.flush().await?;
        Ok::<_, StoreError>(outcomes.into_iter().unzip())
    };
    match stored.await {
        Ok(v) => Ok(v),
        Err(e) => {
            tracing::error!(error = %e, "POST /invitees: cannot store");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot store the invitees now ({e}); nothing was stored, please retry"),
            ))
        }
    }
}

/// What became of each stored row, into the answer's rows. Returns
/// (queued, duplicates) counts.
fn note_outcomes(
    lines: &[u64],
    items: &[NewInvitation],
    outcomes: Vec<InsertOutcome>,
    results: &mut Vec<serde_json::Value>,
) -> (u64, u64) {
    let (mut queued, mut duplicates) = (0u64, 0u64);
    for ((row, item), outcome) in lines.iter().zip(items).zip(outcomes) {
        match outcome {
            InsertOutcome::Inserted(id) => {
                queued += 1;
                tracing::info!(invitation = id, campaign = %item.campaign, external_ref = item.invitee.external_ref.as_deref().unwrap_or(""), state = "queued", "invitation queued (admin API)");
                results.push(json!({"row": row, "status": "queued", "invitation": id}));
            }
            InsertOutcome::Duplicate(id) => {
                duplicates += 1;
                results.push(json!({"row": row, "status": "duplicate", "invitation": id,
                    "error": format!("{} already has an open invitation ({id}) in campaign {:?}; not invited twice", item.invitee.email, item.campaign)}));
            }
            InsertOutcome::Suppressed(source) => {
                results.push(json!({"row": row, "status": "rejected",
                    "error": format!("suppressed: {}", source.as_str())}));
            }
        }
    }
    (queued, duplicates)
}
