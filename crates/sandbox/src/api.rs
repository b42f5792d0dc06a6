//! The PDX API the daemon calls: `POST /ftc/setup`, `POST /identify` and
//! `GET /connection/status/{nid}`, validated exactly as Mydex documents
//! them (`docs/mydex-contract.md` §2-4), and the older FTC flow of Mydex's
//! example scripts (docs/mydex-contract.md §7): `GET /access-token/{nid}`,
//! then `POST /api/connection` or `/api/connection/update`.
//!
//! Status codes (Mydex documents only "4XX"): the two "Access Denied" record
//! and token errors are 403; missing fields and bad versions are 400; a body
//! that is not a JSON object is 400 in the OpenAPI `{"success":0}` shape.
//! The older flow's header checks (not documented) answer 403 in the
//! `{"error":{"message"}}` shape.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::denial::{INVALID_CONNECTION_TOKEN, NO_CONNECTION_RECORD};
use super::errors::ApiError;
use super::oauth::check_bearer;
use super::qr::qr_data_uri;
use super::state::{
    AppState, Counts, Link, LinkKind, SHORT_TOKEN_TTL, ct_eq, random_id, sha512_hex,
};

pub const MISSING_CONNECTION_PARAMETERS: &str =
    "Access Denied: Missing connection parameters in payload";
pub const MISSING_RETURN_TO: &str = "Following fields are missing or empty: return_to";
pub const VERSION_WITHOUT_MYDEXID: &str = "version higher than 1 but no mydexid in payload";
pub const VERSION_TOO_LOW: &str = "version cannot be lower than 1";
pub const PERMISSION_DENIED: &str = "Permission Denied";
pub const MISSING_SHORT_ACCESS_TOKEN: &str = "Access Denied: Missing Short-Access-Token header";
pub const MISSING_AUTHENTICATION: &str = "Access Denied: Missing Authentication header";
pub const INVALID_SHORT_ACCESS_TOKEN: &str = "Access Denied: Invalid Short Access Token";
pub const INVALID_AUTHENTICATION: &str = "Access Denied: Invalid Authentication";
pub const UPDATE_WITHOUT_VERSION: &str = "version must be higher than 1 for an update";

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
    let url = new_link(state, kind, version, mydexid, linking_token, return_to);
    let qr = qr_data_uri(&url).map_err(|e| {
        tracing::error!(error = %e, "QR code failed");
        ApiError::mydex(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
    })?;
    Ok((StatusCode::CREATED, Json(json!({"url": url, "qr": qr}))).into_response())
}

/// Store a new link; its URL. FTC links are shaped like Mydex's,
/// `/ftc/begin/{nid}/{token}/{version}`; identify links `/identify/{token}`.
fn new_link(
    state: &AppState,
    kind: LinkKind,
    version: u32,
    mydexid: Option<String>,
    linking_token: Option<String>,
    return_to: String,
) -> String {
    let id = random_id(32);
    let base = &state.connection.public_url;
    let url = match kind {
        LinkKind::Ftc => format!("{base}/ftc/begin/{}/{id}/{version}", state.connection.nid),
        LinkKind::Identify => format!("{base}/identify/{id}"),
    };
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
    url
}

/// What an FTC request asks for, checked as `/ftc/setup` documents it.
struct FtcAsk {
    return_to: String,
    mydexid: Option<String>,
    linking_token: Option<String>,
    version: u32,
}

/// The body checks of `/ftc/setup`, shared by `/api/connection[/update]`.
fn ftc_ask(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<FtcAsk, ApiError> {
    let body = json_body(headers, body)?;
    let return_to = check_connection(state, &body)?;
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
    Ok(FtcAsk {
        return_to,
        mydexid,
        linking_token,
        version,
    })
}

/// `POST /ftc/setup`.
pub async fn ftc_setup(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Counts::bump(&state.counts.ftc_setup);
    check_bearer(&state, &headers)?;
    let ask = ftc_ask(&state, &headers, &body)?;
    issue_link(
        &state,
        LinkKind::Ftc,
        ask.version,
        ask.mydexid,
        ask.linking_token,
        ask.return_to,
    )
}

/// `GET /access-token/{nid}` (bearer): a short access token as a JSON
/// string, usable once within [`SHORT_TOKEN_TTL`].
pub async fn access_token(
    State(state): State<Arc<AppState>>,
    Path(nid): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    Counts::bump(&state.counts.access_token);
    check_bearer(&state, &headers)?;
    if nid.trim() != state.connection.nid {
        return Err(ApiError::mydex(StatusCode::FORBIDDEN, NO_CONNECTION_RECORD));
    }
    let short = random_id(32);
    let mut world = state.world.lock();
    world.prune();
    world
        .short_tokens
        .insert(short.clone(), Instant::now() + SHORT_TOKEN_TTL);
    Ok(Json(Value::String(short)))
}

/// The older flow's headers: `Short-Access-Token` (known, unexpired, and
/// used up by this request whatever follows) and `Authentication` =
/// SHA-512 hex of the short token followed by the Connection Token.
fn check_short_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let short = header_text("Short-Access-Token")
        .ok_or_else(|| ApiError::mydex(StatusCode::FORBIDDEN, MISSING_SHORT_ACCESS_TOKEN))?;
    let authentication = header_text("Authentication")
        .ok_or_else(|| ApiError::mydex(StatusCode::FORBIDDEN, MISSING_AUTHENTICATION))?;
    let expires = state.world.lock().short_tokens.remove(short);
    if expires.is_none_or(|at| Instant::now() >= at) {
        return Err(ApiError::mydex(
            StatusCode::FORBIDDEN,
            INVALID_SHORT_ACCESS_TOKEN,
        ));
    }
    let want = sha512_hex(&format!("{short}{}", state.connection.token));
    if !ct_eq(&authentication.to_ascii_lowercase(), &want) {
        return Err(ApiError::mydex(
            StatusCode::FORBIDDEN,
            INVALID_AUTHENTICATION,
        ));
    }
    Ok(())
}

/// `POST /api/connection` and `/api/connection/update`: the body of
/// `/ftc/setup`; the answer is the one-time URL as a bare JSON string.
async fn api_connection_call(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    update: bool,
) -> Result<Response, ApiError> {
    check_bearer(state, headers)?;
    check_short_token(state, headers)?;
    let ask = ftc_ask(state, headers, body)?;
    if update && ask.version < 2 {
        return Err(ApiError::mydex(
            StatusCode::BAD_REQUEST,
            UPDATE_WITHOUT_VERSION,
        ));
    }
    let url = new_link(
        state,
        LinkKind::Ftc,
        ask.version,
        ask.mydexid,
        ask.linking_token,
        ask.return_to,
    );
    Ok((StatusCode::OK, Json(Value::String(url))).into_response())
}

/// `POST /api/connection`.
pub async fn api_connection(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Counts::bump(&state.counts.api_connection);
    api_connection_call(&state, &headers, &body, false).await
}

/// `POST /api/connection/update`.
pub async fn api_connection_update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Counts::bump(&state.counts.api_connection_update);
    api_connection_call(&state, &headers, &body, true).await
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
