//! `POST /bounces` (bearer): one bounce or complaint, from `mydex-connector
//! bounce` (which parsed a DSN) or a relay's webhook: `{"token"?,
//! "message_id"?, "type": "hard"|"soft"|"complaint", "diagnostic",
//! "report_id"?}`; and `{"token", "type": "unsubscribe"}`, an unsubscribe
//! mail to `smtp.unsubscribe_mailto` that `bounce` read (by token only: the
//! token of its Subject, an unsubscribe token, as the one-click URL's).
//! Only a mail of ours is acted on, and only its own recipient: a token we
//! signed, or a Message-ID we made (it carries the mail's `m` token). An
//! `"email"` never names anyone (anyone can write an address into a report):
//! given alone, like a token or Message-ID not ours, the bounce is `ignored`
//! (404, counted in `status` and `/metrics`) and nothing changes. The
//! address never reaches a log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::admin_state::AdminState;
use crate::admin_api::bounces::{BounceRecorded, UnsubscribedByMail};
use crate::domain::{PersonHash, TokenKind, message_id_token};
use crate::store::{BounceOutcome, BounceReport, BounceType, Store, StoreError};

/// The largest body taken.
pub const MAX_BODY: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BounceIn {
    /// Never names anyone; accepted (any value) so a relay may send it.
    #[serde(rename = "email", default)]
    _email: Option<serde::de::IgnoredAny>,
    token: Option<String>,
    message_id: Option<String>,
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

/// Whom a bounce is about: the invitation of the mail it names.
struct Who {
    person: PersonHash,
    campaign: Option<String>,
    invitation: u64,
}

/// A refusal, made into a response by the caller.
type Refusal = (StatusCode, String);

/// Why a bounce naming no mail of ours is ignored.
const NOT_OURS: &str = "it names no mail of ours (by a token or the Message-ID of a mail we sent; an address alone names nobody); ignored, nothing changed";

/// The invitation a token or Message-ID of ours names, checked with the
/// token key; `None` for anything else.
fn invitation_named(store: &Store, b: &BounceIn) -> Option<u64> {
    let keys = store.mail_keys();
    let by_token = b
        .token
        .as_deref()
        .and_then(|t| keys.parse_token(t.trim().as_bytes()))
        .map(|t| t.invitation);
    let by_message_id = || {
        let token = message_id_token(b.message_id.as_deref()?)?;
        keys.parse_token(token.as_bytes())
            .filter(|t| t.kind == TokenKind::Message)
            .map(|t| t.invitation)
    };
    by_token.or_else(by_message_id)
}

/// The person and campaign of the mail a bounce names; `None`: not ours.
async fn whom(store: &Store, b: &BounceIn) -> Result<Option<Who>, Refusal> {
    let Some(id) = invitation_named(store, b) else {
        return Ok(None);
    };
    match store.invitation(id).await {
        Ok(inv) => Ok(Some(Who {
            person: store.mail_keys().person(&inv.invitee.email),
            campaign: Some(inv.campaign),
            invitation: inv.id,
        })),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// A bounce naming no mail of ours: counted, answered 404, nothing changed.
fn ignored(st: &AdminState, kind: &str) -> Response {
    st.metrics.bounce_ignored();
    tracing::info!(kind, "bounce ignored: it names no mail of ours");
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "result": "ignored", "error": NOT_OURS })),
    )
        .into_response()
}

pub async fn post(State(st): State<Arc<AdminState>>, body: axum::body::Bytes) -> Response {
    let b: BounceIn = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a bounce: {e}")),
    };
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
    let resp = match whom(&st.store, &b).await {
        Ok(Some(who)) => apply(&st, &b, who, kind).await,
        Ok(None) => return ignored(&st, kind.as_str()),
        Err((status, why)) => error(status, why),
    };
    if let Err(e) = st.store.flush().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    resp
}

/// An unsubscribe mail's token: the person of that mail is suppressed
/// as by a one-click POST; a token not ours (or not an unsubscribe
/// token) is ignored (404, counted) and changes nothing.
async fn unsubscribe_by_mail(st: &Arc<AdminState>, token: Option<&str>) -> Response {
    let Some(token) = token else {
        return error(
            StatusCode::BAD_REQUEST,
            "an unsubscribe names its \"token\", never an \"email\"",
        );
    };
    let id = match st.store.mail_keys().parse_token(token.trim().as_bytes()) {
        Some(t) if t.kind == TokenKind::Unsubscribe => t.invitation,
        _ => return ignored(st, "unsubscribe"),
    };
    let done = crate::server::unsubscribe::unsubscribe(&st.store, id, "unsubscribe by mail").await;
    match (done, st.store.flush().await) {
        (Ok(()), Ok(())) => (
            StatusCode::OK,
            axum::Json(UnsubscribedByMail {
                unsubscribed: true,
                invitation: id,
            }),
        )
            .into_response(),
        (Err(e), _) => {
            st.store.note_error(&e);
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        (_, Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Record a bounce of the mail `who` names: its recipient only.
async fn apply(st: &AdminState, b: &BounceIn, who: Who, kind: BounceType) -> Response {
    let Who {
        person,
        campaign,
        invitation,
    } = who;
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
    let report = BounceReport {
        person: person.clone(),
        kind,
        diagnostic: if diagnostic.is_empty() {
            kind.as_str().to_string()
        } else {
            diagnostic
        },
        report_id,
        campaign: campaign.clone(),
        max_soft: st.settings.smtp.max_soft_bounces,
    };
    let outcome = st.store.record_bounce(report).await;
    match outcome {
        Ok(o) => {
            tracing::info!(invitation, campaign = campaign.as_deref().unwrap_or(""), person = person.short(), kind = kind.as_str(), outcome = ?o, "bounce recorded");
            if let (Some(c), Some(l)) = (&campaign, &st.lifecycle) {
                l.control.bounced(c).await;
            }
            let person = person.short().to_string();
            let answer = match o {
                BounceOutcome::Duplicate => BounceRecorded::Duplicate { person },
                BounceOutcome::SoftNoted { count, max } => {
                    BounceRecorded::SoftNoted { count, max, person }
                }
                BounceOutcome::Suppressed { reason, failed } => BounceRecorded::Suppressed {
                    reason,
                    failed,
                    person,
                },
            };
            (StatusCode::OK, axum::Json(answer)).into_response()
        }
        Err(e) => {
            st.store.note_error(&e);
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}
