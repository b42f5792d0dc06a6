//! `POST /suppressions/check` (bearer): `enqueue`'s pre-check (issue 15).
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
    let s = st.clone();
    let found = tokio::task::spawn_blocking(move || {
        let keys = s.store.mail_keys();
        let mut out = Vec::new();
        for (i, raw) in input.emails.iter().enumerate() {
            let Ok(email) = Email::parse(raw) else {
                continue;
            };
            if let Some(entry) = s.store.suppression(&keys.person(&email))? {
                out.push(json!({"index": i, "reason": entry.reason}));
            }
        }
        Ok::<_, crate::store::StoreError>((input.emails.len(), out))
    })
    .await;
    match found {
        Ok(Ok((checked, suppressed))) => {
            axum::Json(json!({"checked": checked, "suppressed": suppressed})).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
