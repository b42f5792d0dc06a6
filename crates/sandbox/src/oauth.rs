//! OAuth2 `client_credentials` with HTTP Basic (URL-encoded id and secret),
//! scope `mydex:pdx`, and the bearer check every API call makes.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::state::{AppState, Counts, Token, ct_eq, random_id};

/// The only scope the sandbox knows.
pub const PDX_SCOPE: &str = "mydex:pdx";

fn invalid_client(description: &str) -> ApiError {
    ApiError::OAuth {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_client",
        description: description.to_owned(),
    }
}

fn invalid_request(error: &'static str, description: &str) -> ApiError {
    ApiError::OAuth {
        status: StatusCode::BAD_REQUEST,
        error,
        description: description.to_owned(),
    }
}

/// Decode `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`.
fn basic_credentials(headers: &HeaderMap) -> Result<(String, String), ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| invalid_client("Missing HTTP Basic client authentication"))?
        .to_str()
        .map_err(|_| invalid_client("Malformed Authorization header"))?;
    let encoded = value
        .strip_prefix("Basic ")
        .ok_or_else(|| invalid_client("Client authentication must use HTTP Basic"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid_client("Malformed HTTP Basic credentials"))?;
    let text = String::from_utf8(decoded)
        .map_err(|_| invalid_client("Malformed HTTP Basic credentials"))?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| invalid_client("Malformed HTTP Basic credentials"))?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| invalid_client("Malformed HTTP Basic credentials"))
    };
    Ok((unescape(id)?, unescape(secret)?))
}

/// `POST /oauth2/token`.
pub async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    Counts::bump(&state.counts.token);
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.starts_with("application/x-www-form-urlencoded"))
        .unwrap_or(false);
    if !form_type {
        return Err(invalid_request(
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let (id, secret) = basic_credentials(&headers)?;
    let conn = &state.connection;
    // Evaluate both comparisons so timing does not tell which one failed.
    let id_ok = ct_eq(&id, &conn.client_id);
    let secret_ok = ct_eq(&secret, &conn.client_secret);
    if !(id_ok && secret_ok) {
        return Err(invalid_client("Client authentication failed"));
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| invalid_request("invalid_request", "Malformed form body"))?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match param("grant_type") {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(invalid_request(
                "unsupported_grant_type",
                "Only client_credentials is supported",
            ));
        }
        None => return Err(invalid_request("invalid_request", "Missing grant_type")),
    }
    let scopes: Vec<&str> = param("scope").unwrap_or("").split_whitespace().collect();
    if let Some(unknown) = scopes.iter().find(|s| **s != PDX_SCOPE) {
        return Err(invalid_request(
            "invalid_scope",
            &format!("Unknown scope {unknown}"),
        ));
    }
    let pdx_scope = !scopes.is_empty();
    let ttl = state.settings.read().token_ttl;
    let access_token = random_id(40);
    {
        let mut world = state.world.lock();
        world.prune();
        world.tokens.insert(
            access_token.clone(),
            Token {
                expires_at: Instant::now() + ttl,
                pdx_scope,
            },
        );
    }
    Ok(Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "scope": if pdx_scope { PDX_SCOPE } else { "" },
    })))
}

/// Check `Authorization: Bearer ...` for a live token with scope `mydex:pdx`.
pub fn check_bearer(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("Missing bearer token"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("Malformed Authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| ApiError::unauthorized("Missing bearer token"))?
        .trim();
    let world = state.world.lock();
    let found = world
        .tokens
        .get(token)
        .ok_or_else(|| ApiError::unauthorized("Invalid access token"))?;
    if Instant::now() >= found.expires_at {
        return Err(ApiError::unauthorized("The access token has expired"));
    }
    if !found.pdx_scope {
        return Err(ApiError::unauthorized(
            "The access token is missing the mydex:pdx scope",
        ));
    }
    Ok(())
}
