//! `POST /bounces` (bearer): one bounce or complaint, from `mydex-connector
//! bounce` (which parsed a DSN) or a relay's webhook: `{"email"|"token",
//! "type": "hard"|"soft"|"complaint", "diagnostic", "report_id"?}`; and
//! `{"token", "type": "unsubscribe"}`, an unsubscribe mail to
//! `smtp.unsubscribe_mailto` that `bounce` read (by token only: the token
//! of its Subject, an unsubscribe token, as the one-click URL's). A token
//! not ours is 404 and changes nothing; the address never reaches a log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::admin_state::AdminState;
use crate::domain::{Email, PersonHash, TokenKind};
use crate::store::{Bounce, BounceType, Store, StoreError};

/// The largest body taken.
pub const MAX_BODY: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BounceIn {
    email: Option<String>,
    token: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    diagnostic: String,
    report_id: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// One line, no control characters, no address, at most 300 characters.
pub fn clean_diagnostic(d: &str) -> String {
    d.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .map(|w| if w.contains('@') { "<address>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect()
}

/// Whom a bounce is about.
struct Who {
    person: PersonHash,
    campaign: Option<String>,
    invitation: Option<u64>,
}

/// A refusal, made into a response by the caller.
type Refusal = (StatusCode, String);

/// The person and campaign a bounce is about; `None`: not ours.
fn whom(store: &Store, b: &BounceIn) -> Result<Option<Who>, Refusal> {
    if let Some(token) = &b.token {
        let Some(t) = store.mail_keys().parse_token(token.as_bytes()) else {
            return Ok(None);
        };
        return match store.invitation(t.invitation) {
            Ok(inv) => Ok(Some(Who {
                person: store.mail_keys().person(&inv.invitee.email),
                campaign: Some(inv.campaign),
                invitation: Some(inv.id),
            })),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        };
    }
    let raw = b.email.as_deref().unwrap_or_default();
    let email = Email::parse(raw).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let person = store.mail_keys().person(&email);
    let latest = store
        .person_invitations(&person)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
        .into_iter()
        .max();
    let campaign = latest
        .and_then(|id| store.invitation(id).ok())
        .map(|i| i.campaign);
    Ok(Some(Who {
        person,
        campaign,
        invitation: latest,
    }))
}

pub async fn post(State(st): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let b: BounceIn = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a bounce: {e}")),
    };
    if b.email.is_some() == b.token.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "give exactly one of \"email\" and \"token\"",
        );
    }
    if b.kind == "unsubscribe" {
        return unsubscribe_by_mail(&st, b.token.as_deref()).await;
    }
    let kind = match b.kind.as_str() {
        "hard" => BounceType::Hard,
        "soft" => BounceType::Soft,
        "complaint" => BounceType::Complaint,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "type {:?} is none of \"hard\", \"soft\", \"complaint\", \"unsubscribe\"",
                    clean_diagnostic(other)
                ),
            );
        }
    };
    let st2 = st.clone();
    let done = tokio::task::spawn_blocking(move || apply(&st2, &b, kind)).await;
    let resp = match done {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if let Err(e) = st.store.flush().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    resp
}

/// An unsubscribe mail's token: the person of that mail is suppressed
/// as by a one-click POST; a token not ours (or not an unsubscribe
/// token) is 404 and changes nothing.
async fn unsubscribe_by_mail(st: &Arc<AdminState>, token: Option<&str>) -> Response {
    let Some(token) = token else {
        return error(
            StatusCode::BAD_REQUEST,
            "an unsubscribe names its \"token\", never an \"email\"",
        );
    };
    let id = match st.store.mail_keys().parse_token(token.as_bytes()) {
        Some(t) if t.kind == TokenKind::Unsubscribe => t.invitation,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "the token names no mail of ours; nothing changed",
            );
        }
    };
    let store = st.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        crate::server::unsubscribe::unsubscribe(&store, id, "unsubscribe by mail")
    })
    .await;
    match (done, st.store.flush().await) {
        (Ok(Ok(())), Ok(())) => (
            StatusCode::OK,
            axum::Json(json!({"unsubscribed": true, "invitation": id})),
        )
            .into_response(),
        (Ok(Err(e)), _) => {
            st.store.note_error(&e);
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        (Err(e), _) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        (_, Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn apply(st: &AdminState, b: &BounceIn, kind: BounceType) -> Response {
    let Who {
        person,
        campaign,
        invitation,
    } = match whom(&st.store, b) {
        Ok(Some(w)) => w,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "the token names no mail of ours; nothing changed",
            );
        }
        Err((status, why)) => return error(status, why),
    };
    let diagnostic = clean_diagnostic(&b.diagnostic);
    let report_id = b
        .report_id
        .as_deref()
        .map(|r| {
            r.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(64)
                .collect::<String>()
        })
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let outcome = st.store.record_bounce(&Bounce {
        person: &person,
        kind,
        diagnostic: if diagnostic.is_empty() {
            kind.as_str()
        } else {
            &diagnostic
        },
        report_id: &report_id,
        campaign: campaign.as_deref(),
        max_soft: st.settings.smtp.max_soft_bounces,
    });
    match outcome {
        Ok(o) => {
            tracing::info!(invitation = invitation.unwrap_or(0), campaign = campaign.as_deref().unwrap_or(""), person = person.short(), kind = kind.as_str(), outcome = ?o, "bounce recorded");
            if let (Some(c), Some(l)) = (&campaign, &st.lifecycle) {
                l.control.bounced(c);
            }
            let mut v = serde_json::to_value(&o).unwrap_or_default();
            v["person"] = person.short().into();
            (StatusCode::OK, axum::Json(v)).into_response()
        }
        Err(e) => {
            st.store.note_error(&e);
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}
