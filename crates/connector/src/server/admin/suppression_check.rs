//! `POST /suppressions/check` (bearer): `enqueue`'s pre-check.
//! Body `{"emails": [...]}` of at most [`MAX_EMAILS`] addresses (a large
//! file is checked in chunks); each is normalised and looked up by its
//! keyed hash. The answer names only the positions of the suppressed ones
//! and why: `{"checked": N, "suppressed": [{"index": i, "reason": "…"}]}`
//! — never an address, never a hash, so it cannot be used to list the
//! suppression list. An address that does not parse is skipped (`enqueue`
//! has already rejected it).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::admin_state::AdminState;
use crate::domain::Email;

/// The most addresses one request may carry.
pub const MAX_EMAILS: usize = 1000;
/// The largest body taken (1,000 addresses of up to 254 bytes, quoted).
pub const MAX_BODY: usize = 300 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckIn {
    emails: Vec<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

pub async fn post(State(st): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let input: CheckIn = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"emails\": [...]}}: {e}"),
            );
        }
    };
    if input.emails.len() > MAX_EMAILS {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} addresses; at most {MAX_EMAILS} a request (send them in chunks)",
                input.emails.len()
            ),
        );
    }
    let keys = st.store.mail_keys();
    let (indexes, persons): (Vec<usize>, Vec<_>) = input
        .emails
        .iter()
        .enumerate()
        .filter_map(|(i, raw)| Email::parse(raw).ok().map(|e| (i, keys.person(&e))))
        .unzip();
    match st.store.suppressions_of(persons).await {
        Ok(found) => {
            let suppressed: Vec<_> = indexes
                .into_iter()
                .zip(found)
                .filter_map(|(i, entry)| entry.map(|e| json!({"index": i, "reason": e.reason})))
                .collect();
            let checked = input.emails.len();
            axum::Json(json!({"checked": checked, "suppressed": suppressed})).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
