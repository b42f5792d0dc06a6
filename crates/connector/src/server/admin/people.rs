//! `POST /people/forget` (bearer): erase what we hold about one person,
//! named by `{"email"}` or `{"external_ref"}` (exactly one), keeping only
//! their suppression hash (`forgotten`); `"disconnect": true` lets it erase
//! a connected member's record and connection key too (else 409, nothing
//! changed). The store's part is `store/forget.rs`; the queue and delivery
//! files' part `intake/erase.rs`. Logged with hash prefixes and counts only.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::admin_state::AdminState;
use crate::admin_api::people::{ForgetRequest, Forgotten};
use crate::domain::Email;
use crate::domain::MAX_FIELD_LEN;
use crate::intake::erase::{erase_lines, kept_dirs};
use crate::store::{ForgetTarget, StoreError};

/// Largest body accepted (413 beyond): an address or a ref (at most
/// `MAX_FIELD_LEN` characters of up to 4 bytes), and a flag.
pub const MAX_BODY: usize = 16 * 1024;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Why a request names no one (answered 400).
#[derive(Debug, thiserror::Error)]
enum BadRequest {
    #[error(
        "expected {{\"email\": …}} or {{\"external_ref\": …}}, and \"disconnect\": true|false: {0}"
    )]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Email(#[from] crate::domain::EmailError),
    #[error("external_ref is empty")]
    EmptyRef,
    #[error("external_ref is longer than {MAX_FIELD_LEN} characters or holds control characters")]
    BadRef,
    #[error("give email or external_ref, not both")]
    Both,
    #[error("give email or external_ref")]
    Neither,
}

/// The person the body names, and `disconnect`.
fn parse(body: &[u8]) -> Result<(ForgetTarget, bool), BadRequest> {
    let r: ForgetRequest = serde_json::from_slice(body)?;
    let target = match (r.email, r.external_ref) {
        (Some(e), None) => ForgetTarget::Email(Email::parse(&e)?),
        (None, Some(x)) => {
            if x.trim().is_empty() {
                return Err(BadRequest::EmptyRef);
            }
            if x.chars().count() > MAX_FIELD_LEN || x.chars().any(char::is_control) {
                return Err(BadRequest::BadRef);
            }
            ForgetTarget::ExternalRef(x)
        }
        (Some(_), Some(_)) => return Err(BadRequest::Both),
        (None, None) => return Err(BadRequest::Neither),
    };
    Ok((target, r.disconnect))
}

pub async fn forget(State(st): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let (target, disconnect) = match parse(&body) {
        Ok(v) => v,
        Err(why) => return error(StatusCode::BAD_REQUEST, why.to_string()),
    };
    let f = match st.store.forget_person(target, disconnect).await {
        Ok(f) => f,
        Err(e @ StoreError::NoSuchPerson(_)) => {
            return error(StatusCode::NOT_FOUND, e.to_string());
        }
        Err(e @ StoreError::Refused(_)) => return error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    if let Err(e) = st.store.flush().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    let mut dirs = vec![st.settings.queue.dir.as_path()];
    if let Some(d) = &st.settings.delivery {
        dirs.push(d.dir.as_path());
    }
    let dirs = kept_dirs(&dirs);
    let (emails, refs) = (f.emails.clone(), f.external_refs.clone());
    // Not the store: rewriting the queue and readings files on disk.
    let files = tokio::task::spawn_blocking(move || erase_lines(&dirs, &emails, &refs)).await;
    let persons: Vec<&str> = f.persons.iter().map(|p| p.short()).collect();
    let files = match files {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            tracing::error!(persons = ?persons, error = %e, "forgotten in the store, but the queue files could not be rewritten");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "forgotten in the store, but the queue and delivery files could not be rewritten ({e}): remove the lines naming them from those done/ and rejected/ files by hand"
                ),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    tracing::info!(
        persons = ?persons,
        invitations = f.invitations,
        members = f.members,
        readings = f.readings,
        raw_callbacks = f.raw_callbacks,
        files = files.files,
        lines = files.lines,
        "person forgotten"
    );
    axum::Json(Forgotten {
        persons: persons.iter().map(|p| p.to_string()).collect(),
        invitations: f.invitations as u64,
        members: f.members as u64,
        readings: f.readings as u64,
        raw_callbacks: f.raw_callbacks as u64,
        files: files.files as u64,
        lines: files.lines as u64,
    })
    .into_response()
}
