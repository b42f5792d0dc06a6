//! `POST /records`: readings by API, a JSON array of row objects
//! or JSON Lines, checked exactly like readings files (`intake::readings`),
//! stored and flushed before the answer, which names each bad row with its
//! reason; and `GET /records?state=held|failed&after=&limit=`, what
//! `records list` shows (why each row waits or failed).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::admin_state::AdminState;
use crate::admin_api::records::{RecordPage, RecordView};
use crate::domain::{Reading, RowState};
use crate::intake::Format;
use crate::intake::readings::{ReadingRows, RowRejected, place_readings};
use crate::store::{ReadingOutcome, StoreError};

/// Largest body accepted (413 beyond); bigger batches go through files.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Most rows in one request.
pub const MAX_ROWS: usize = 10_000;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

type Parsed = Vec<(u64, Result<Reading, RowRejected>)>;

/// Why the body as a whole was refused.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct BodyRefused {
    status: StatusCode,
    message: String,
}

fn refused(status: StatusCode, message: impl Into<String>) -> BodyRefused {
    BodyRefused {
        status,
        message: message.into(),
    }
}

fn parse(mime: &str, body: &[u8]) -> Result<Parsed, BodyRefused> {
    match mime {
        "application/json" => {
            let rows = crate::intake::json_row::parse_body(body)
                .map_err(|e| {
                    refused(
                        StatusCode::BAD_REQUEST,
                        format!("the body is not JSON: {e}"),
                    )
                })?
                .ok_or_else(|| {
                    refused(
                        StatusCode::BAD_REQUEST,
                        "the body must be a JSON array of reading objects",
                    )
                })?;
            Ok(rows
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let reading = match v {
                        Ok(v) => Reading::from_json(&v).map_err(RowRejected::from),
                        Err(e) => Err(RowRejected::NotJson(e.to_string())),
                    };
                    (i as u64 + 1, reading)
                })
                .collect())
        }
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" => {
            let rows = ReadingRows::new(body, Format::JsonLines)
                .map_err(|e| refused(StatusCode::BAD_REQUEST, e.to_string()))?;
            rows.collect::<std::io::Result<Parsed>>()
                .map_err(|e| refused(StatusCode::BAD_REQUEST, e.to_string()))
        }
        _ => Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json (an array) or application/x-ndjson (JSON Lines)",
        )),
    }
}

pub async fn post(
    State(st): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match accept(&st, &headers, body).await {
        Ok(r) | Err(r) => r,
    }
}

async fn accept(
    st: &AdminState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let Some(delivery) = st.settings.delivery.clone() else {
        return Err(error(
            StatusCode::CONFLICT,
            "delivery is not configured (no [delivery] section with delivery.dir)",
        ));
    };
    let body = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            error(status, format!("the body is larger than {MAX_BODY} bytes; put big batches in delivery.dir (`mydex-connector deliver`)"))
        } else {
            error(status, e.body_text())
        }
    })?;
    let mime = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let rows = parse(&mime, &body).map_err(|e| error(e.status, e.message))?;
    if rows.len() > MAX_ROWS {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} rows; at most {MAX_ROWS} per request", rows.len()),
        ));
    }
    let mut results = Vec::with_capacity(rows.len());
    let mut good = Vec::new();
    for (row, parsed) in rows {
        match parsed {
            Ok(r) => good.push((row, r)),
            Err(e) => {
                results.push(json!({"row": row, "status": "rejected", "error": e.to_string()}))
            }
        }
    }
    let numbers: Vec<u64> = good.iter().map(|(n, _)| *n).collect();
    let stored = async {
        let items = good
            .into_iter()
            .map(|(_, r)| ("api".to_string(), r))
            .collect();
        let out = place_readings(&st.store, &delivery, items, None).await?;
        st.store.flush().await?;
        Ok::<_, StoreError>(out)
    };
    let outcomes = match stored.await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "POST /records: cannot store");
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot store the readings now ({e}); nothing was stored, please retry"),
            ));
        }
    };
    let (queued, held) = note_outcomes(numbers, outcomes, &mut results);
    results.sort_by_key(|r| r["row"].as_u64().unwrap_or(0));
    let rejected = results.iter().filter(|r| r["status"] == "rejected").count();
    let status = if queued + held == 0 && rejected > 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({"queued": queued, "held": held, "rejected": rejected, "rows": results})),
    )
        .into_response())
}

/// Each stored row's outcome into the answer; (queued, held) counts.
fn note_outcomes(
    numbers: Vec<u64>,
    outcomes: Vec<Result<ReadingOutcome, RowRejected>>,
    results: &mut Vec<serde_json::Value>,
) -> (u64, u64) {
    let (mut queued, mut held) = (0u64, 0u64);
    for (row, outcome) in numbers.into_iter().zip(outcomes) {
        results.push(match outcome {
            Ok(ReadingOutcome::Stored { id, state }) => {
                if state == RowState::Held {
                    held += 1;
                } else {
                    queued += 1;
                }
                json!({"row": row, "status": state.as_str(), "reading": id})
            }
            Ok(ReadingOutcome::Duplicate(id)) => json!({"row": row, "status": "duplicate", "reading": id,
                "error": format!("duplicate of reading {id} (same member, dataset and external_id); not sent twice")}),
            Err(e) => json!({"row": row, "status": "rejected", "error": e.to_string()}),
        });
    }
    (queued, held)
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    state: String,
    after: Option<u64>,
    limit: Option<usize>,
    /// Where the page starts (the `next_cursor` of the one before).
    cursor: Option<String>,
}

/// `GET /records?state=queued|held|failed|delivered`: rows with the reason,
/// a page at a time (held and failed by id after `after`, as before;
/// every state by `cursor`).
pub async fn list(State(st): State<Arc<AdminState>>, Query(q): Query<ListQuery>) -> Response {
    let state = match q.state.as_str() {
        "queued" => RowState::Queued,
        "held" => RowState::Held,
        "failed" => RowState::Failed,
        "delivered" => RowState::Delivered,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state must be queued, held, failed or delivered, not {other:?}"),
            );
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let cursor = match q.cursor.as_deref().map(hex::decode).transpose() {
        Ok(c) => c,
        Err(_) => return error(StatusCode::BAD_REQUEST, "cursor: not one this API gave"),
    };
    let page = if state == RowState::Delivered {
        delivered_page(&st, cursor, limit).await
    } else if cursor.is_some() || state == RowState::Queued {
        kept_page(&st, state, cursor, limit).await
    } else {
        by_id_page(&st, state, q.after, limit).await
    };
    match page {
        Ok(page) => axum::Json(page).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Held or failed rows by id after `after` (the first form of this route).
async fn by_id_page(
    st: &AdminState,
    state: RowState,
    after: Option<u64>,
    limit: usize,
) -> Result<RecordPage, StoreError> {
    let rows = st.store.list_readings(state, after, limit).await?;
    Ok(RecordPage {
        next_after: rows.last().map(|r| r.id),
        records: rows.iter().map(kept_view).collect(),
        next_cursor: None,
    })
}

async fn kept_page(
    st: &AdminState,
    state: RowState,
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<RecordPage, StoreError> {
    let (rows, next) = st.store.list_kept_readings(state, cursor, limit).await?;
    Ok(RecordPage {
        records: rows.iter().map(kept_view).collect(),
        next_after: None,
        next_cursor: next.map(hex::encode),
    })
}

async fn delivered_page(
    st: &AdminState,
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<RecordPage, StoreError> {
    let (rows, next) = st.store.list_delivered_readings(cursor, limit).await?;
    Ok(RecordPage {
        records: rows.iter().map(delivered_view).collect(),
        next_after: None,
        next_cursor: next.map(hex::encode),
    })
}

fn kept_view(r: &crate::store::ReadingRow) -> RecordView {
    RecordView {
        id: r.id,
        member: [(
            r.member.column().to_string(),
            member_text(&r.member).to_string(),
        )]
        .into(),
        connection_id: r.connection_id.clone(),
        dataset: r.dataset.as_str().to_string(),
        external_id: r.external_id.clone(),
        state: r.state.as_str().to_string(),
        reason: r.reason.clone(),
        since_ms: Some(r.held_since_ms.unwrap_or(r.created_ms)),
        source: Some(r.source.clone()),
    }
}

/// A delivered reading names its member as its `u/` key does: a
/// connection id or MydexID as given, an external ref only by the prefix
/// of its keyed hash.
fn delivered_view(r: &crate::store::DeliveredReading) -> RecordView {
    let (column, value) = match r.subject.split_once(':') {
        Some(("c", conn)) => ("connection_id", conn.to_string()),
        Some(("x", id)) => ("mydexid", id.to_string()),
        Some((_, hash)) => ("external_ref_hash", hash.chars().take(12).collect()),
        None => ("subject", r.subject.clone()),
    };
    RecordView {
        id: r.id,
        connection_id: (column == "connection_id").then(|| value.clone()),
        member: [(column.to_string(), value)].into(),
        dataset: r.dataset.clone(),
        external_id: r.external_id.clone(),
        state: "delivered".into(),
        reason: None,
        since_ms: None,
        source: None,
    }
}

fn member_text(m: &crate::domain::MemberRef) -> &str {
    match m {
        crate::domain::MemberRef::ExternalRef(v)
        | crate::domain::MemberRef::MydexId(v)
        | crate::domain::MemberRef::ConnectionId(v) => v,
    }
}
