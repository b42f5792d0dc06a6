//! The PDX API the daemon calls: `POST /ftc/setup`, `POST /identify` and
//! `GET /connection/status/{nid}`, validated exactly as Mydex documents
//! them (`MYDEX-CONTRACT.md` §2-4).
//!
//! Status codes (Mydex documents only "4XX"): the two "Access Denied" record
//! and token errors are 403; missing fields and bad versions are 400; a body
//! that is not a JSON object is 400 in the OpenAPI `{"success":0}` shape.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::errors::ApiError;
use super::oauth::check_bearer;
use super::qr::qr_data_uri;
use super::state::{AppState, Counts, Link, LinkKind, ct_eq, random_id};

pub const NO_CONNECTION_RECORD: &str = "Access Denied: No Connection record";
pub const INVALID_CONNECTION_TOKEN: &str = "Access Denied: Invalid Connection Token";
pub const MISSING_CONNECTION_PARAMETERS: &str =
    "Access Denied: Missing connection parameters in payload";
pub const MISSING_RETURN_TO: &str = "Following fields are missing or empty: return_to";
pub const VERSION_WITHOUT_MYDEXID: &str = "version higher than 1 but no mydexid in payload";
pub const VERSION_TOO_LOW: &str = "version cannot be lower than 1";
pub const PERMISSION_DENIED: &str = "Permission Denied";

/// A string field: a JSON string (trimmed), or a number as text; empty → None.
fn text_field(body: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let t = s.trim();
            Ok((!t.is_empty()).then(|| t.to_owned()))
        }
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::BadPayload(format!("{name} must be a string"))),
    }
}

/// `version`: an integer, or an integer in a string ("2", as the docs show).
fn version_field(body: &Map<String, Value>) -> Result<Option<i64>, ApiError> {
    let bad = || ApiError::BadPayload("version must be an integer".into());
    match body.get("version") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !is_json {
        return Err(ApiError::BadPayload(
            "Content-Type must be application/json".into(),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::BadPayload(
            "The payload must be a JSON object".into(),
        )),
    }
}

/// The checks shared by `/ftc/setup` and `/identify`; returns `return_to`.
fn check_connection(state: &AppState, body: &Map<String, Value>) -> Result<String, ApiError> {
    let nid = text_field(body, "connection_nid")?;
    let hash = text_field(body, "connection_token_hash")?;
    let (Some(nid), Some(hash)) = (nid, hash) else {
        return Err(ApiError::mydex(
            StatusCode::BAD_REQUEST,
            MISSING_CONNECTION_PARAMETERS,
        ));
    };
    if nid != state.connection.nid {
        return Err(ApiError::mydex(StatusCode::FORBIDDEN, NO_CONNECTION_RECORD));
    }
    if !ct_eq(&hash.to_ascii_lowercase(), &state.connection.token_hash) {
        return Err(ApiError::mydex(
            StatusCode::FORBIDDEN,
            INVALID_CONNECTION_TOKEN,
        ));
    }
    text_field(body, "return_to")?
        .ok_or_else(|| ApiError::mydex(StatusCode::BAD_REQUEST, MISSING_RETURN_TO))
}

/// Store a new link and answer 201 `{url, qr}`.
fn issue_link(
    state: &AppState,
    kind: LinkKind,
    version: u32,
    mydexid: Option<String>,
    linking_token: Option<String>,
    return_to: String,
) -> Result<Response, ApiError> {
    let id = random_id(32);
    let path = match kind {
        LinkKind::Ftc => "ftc/begin",
        LinkKind::Identify => "identify",
    };
    let url = format!("{}/{path}/{id}", state.connection.public_url);
    let qr = qr_data_uri(&url).map_err(|e| {
        tracing::error!(error = %e, "QR code failed");
        ApiError::mydex(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
    })?;
    let ttl = state.settings.read().link_ttl;
    let mut link = Link {
        id: id.clone(),
        url: url.clone(),
        kind,
        version,
        mydexid,
        linking_token,
        return_to,
        seq: 0,
        expires_at: Instant::now() + ttl,
        used: false,
    };
    let mut world = state.world.lock();
    world.link_seq += 1;
    link.seq = world.link_seq;
    world.links.insert(id, link);
    drop(world);
    Ok((StatusCode::CREATED, Json(json!({"url": url, "qr": qr}))).into_response())
}

/// `POST /ftc/setup`.
pub async fn ftc_setup(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Counts::bump(&state.counts.ftc_setup);
    check_bearer(&state, &headers)?;
    let body = json_body(&headers, &body)?;
    let return_to = check_connection(&state, &body)?;
    let mydexid = text_field(&body, "mydexid")?;
    let linking_token = text_field(&body, "linking_token")?;
    let version = version_field(&body)?.unwrap_or(1);
    if version < 1 {
        return Err(ApiError::mydex(StatusCode::BAD_REQUEST, VERSION_TOO_LOW));
    }
    if version > 1 && mydexid.is_none() {
        return Err(ApiError::mydex(
            StatusCode::BAD_REQUEST,
            VERSION_WITHOUT_MYDEXID,
        ));
    }
    let version =
        u32::try_from(version).map_err(|_| ApiError::BadPayload("version is too large".into()))?;
    issue_link(
        &state,
        LinkKind::Ftc,
        version,
        mydexid,
        linking_token,
        return_to,
    )
}

/// `POST /identify`.
pub async fn identify(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Counts::bump(&state.counts.identify);
    check_bearer(&state, &headers)?;
    let body = json_body(&headers, &body)?;
    let return_to = check_connection(&state, &body)?;
    let linking_token = text_field(&body, "linking_token")?;
    issue_link(
        &state,
        LinkKind::Identify,
        1,
        None,
        linking_token,
        return_to,
    )
}

/// `GET /connection/status/{nid}?uid=..&con_id=..`.
pub async fn connection_status(
    State(state): State<Arc<AppState>>,
    Path(nid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    Counts::bump(&state.counts.status);
    check_bearer(&state, &headers)?;
    let denial = state.settings.read().status_denial;
    if let Some(d) = denial {
        return Err(d.answer());
    }
    let uid = query.get("uid").map(|s| s.trim()).unwrap_or("");
    let con_id = query.get("con_id").map(|s| s.trim()).unwrap_or("");
    let mut missing = Vec::new();
    if uid.is_empty() {
        missing.push("uid");
    }
    if con_id.is_empty() {
        missing.push("con_id");
    }
    if !missing.is_empty() {
        return Err(ApiError::mydex(
            StatusCode::BAD_REQUEST,
            format!(
                "Following fields are missing or empty: {}",
                missing.join(", ")
            ),
        ));
    }
    if nid != state.connection.nid {
        return Err(ApiError::mydex(StatusCode::FORBIDDEN, NO_CONNECTION_RECORD));
    }
    let denied = || ApiError::mydex(StatusCode::FORBIDDEN, PERMISSION_DENIED);
    let key = headers
        .get("Connection-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or_else(denied)?;
    let uid: u64 = uid.parse().map_err(|_| denied())?;
    *state.status_checks.lock().entry(uid).or_default() += 1;
    if con_id != format!("{uid}-{nid}") {
        return Err(denied());
    }
    let world = state.world.lock();
    let member = world.member(uid).ok_or_else(denied)?;
    let member_key = member.key.as_deref().ok_or_else(denied)?;
    if !ct_eq(key, member_key) {
        return Err(denied());
    }
    let active = !member.revoked;
    Ok(Json(json!({
        "exists": "true",
        "status": if active { "true" } else { "false" },
        "version": member.version.to_string(),
    })))
}
