//! The operator routes behind the bearer token, which the CLI's
//! `invitations` and `members` commands call (the CLI never opens the store):
//! list and show invitations with the reason for failures, retry failed
//! ones, export the member mapping (keys only when `admin.allow_key_export`).
//! A one-time link and a member key are shown only to a caller with the
//! admin token (`Caller::bearer`), never to a token-less local read.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::json;

use super::admin_state::AdminState;
use super::bearer::{Bearer, Caller};
use crate::admin_api::invitations::{InvitationPage, InvitationView, Retried, RetryRefused};
use crate::store::{Invitation, InvitationFilter, State as InvState, StoreError};

const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 100_000;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::NotFound(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        StoreError::Conflict { .. } | StoreError::Refused(_) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// What a view of an invitation holds beyond its summary.
enum Detail<'a> {
    Summary,
    /// History and variables; the one-time link only with the token's proof.
    Full(Option<&'a Bearer>),
}

/// An invitation as operators see it (never its linking token).
fn view(inv: &Invitation, detail: Detail) -> InvitationView {
    let mut v = InvitationView {
        id: inv.id,
        campaign: inv.campaign.clone(),
        kind: match inv.kind {
            crate::store::Kind::Connect => "connect",
            crate::store::Kind::Update { .. } => "update",
            crate::store::Kind::Identify => "identify",
        }
        .to_string(),
        version: inv.version,
        state: inv.state.as_str().to_string(),
        email: inv.invitee.email.to_string(),
        name: inv.invitee.name.clone(),
        external_ref: inv.invitee.external_ref.clone(),
        mydexid: inv.invitee.mydexid.as_ref().map(|m| m.to_string()),
        reason: inv.reason.clone(),
        attempts: inv.attempts,
        reminders: inv.reminders,
        connection_id: inv.connection_id.clone(),
        created_ms: inv.created_ms,
        updated_ms: inv.updated_ms,
        history: None,
        vars: None,
        link: None,
        withheld: None,
    };
    if let Detail::Full(bearer) = detail {
        v.history = Some(inv.history.clone());
        v.vars = Some(inv.invitee.vars.clone());
        match bearer {
            Some(b) => v.link = Some(link(inv, b)),
            None => v.withheld = Some("link: shown only with the admin token".into()),
        }
    }
    v
}

/// The one-time link: it opens the person's journey, so only a caller who
/// presented the admin token gets it.
fn link(inv: &Invitation, _: &Bearer) -> Option<String> {
    inv.link.clone()
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    campaign: Option<String>,
    external_ref: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

pub async fn list(State(st): State<Arc<AdminState>>, Query(q): Query<ListQuery>) -> Response {
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => match InvState::ALL.iter().find(|x| x.as_str() == s) {
            Some(x) => Some(*x),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "state {s:?} is not one of {}",
                        InvState::ALL.map(|x| x.as_str()).join(", ")
                    ),
                );
            }
        },
    };
    let filter = InvitationFilter {
        state,
        campaign: q.campaign,
        external_ref: q.external_ref,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    match st.store.list_invitations(filter, q.after, limit).await {
        Ok(list) => axum::Json(InvitationPage {
            invitations: list.iter().map(|i| view(i, Detail::Summary)).collect(),
            next_after: if list.len() == limit {
                list.last().map(|i| i.id)
            } else {
                None
            },
        })
        .into_response(),
        Err(e) => store_error(e),
    }
}

pub async fn show(
    State(st): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Response {
    match st.store.invitation(id).await {
        Ok(inv) => axum::Json(view(&inv, Detail::Full(caller.bearer()))).into_response(),
        Err(e) => store_error(e),
    }
}

pub async fn retry(State(st): State<Arc<AdminState>>, Path(id): Path<u64>) -> Response {
    let done = async {
        let inv = st.store.retry_failed(id).await?;
        st.store.flush().await?;
        Ok::<_, StoreError>(inv)
    };
    match done.await {
        Ok(inv) => {
            tracing::info!(invitation = inv.id, campaign = %inv.campaign, external_ref = inv.invitee.external_ref.as_deref().unwrap_or(""), state = "queued", "failed invitation retried by an operator");
            st.wake.notify_one();
            axum::Json(view(&inv, Detail::Summary)).into_response()
        }
        Err(e) => store_error(e),
    }
}

pub async fn retry_failed(State(st): State<Arc<AdminState>>) -> Response {
    match retry_every_failed(&st.store).await {
        Ok((retried, refused)) => {
            if !retried.is_empty() {
                st.wake.notify_one();
            }
            axum::Json(Retried { retried, refused }).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Retry every failed invitation, a page at a time: the ids retried, and
/// those refused with why.
async fn retry_every_failed(
    store: &crate::store::Store,
) -> Result<(Vec<u64>, Vec<RetryRefused>), StoreError> {
    let failed = InvitationFilter {
        state: Some(InvState::Failed),
        ..Default::default()
    };
    let mut retried = Vec::new();
    let mut refused = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_invitations(failed.clone(), after, DEFAULT_LIMIT)
            .await?;
        let Some(last) = page.last().map(|i| i.id) else {
            break;
        };
        after = Some(last);
        for inv in page {
            match store.retry_failed(inv.id).await {
                Ok(inv) => {
                    tracing::info!(invitation = inv.id, campaign = %inv.campaign, external_ref = inv.invitee.external_ref.as_deref().unwrap_or(""), state = "queued", "failed invitation retried by an operator");
                    retried.push(inv.id)
                }
                Err(e @ (StoreError::Refused(_) | StoreError::Conflict { .. })) => {
                    refused.push(RetryRefused {
                        id: inv.id,
                        error: e.to_string(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }
    store.flush().await?;
    Ok((retried, refused))
}

#[derive(serde::Deserialize)]
pub struct MembersQuery {
    #[serde(default)]
    with_keys: bool,
}

pub async fn members(
    State(st): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<MembersQuery>,
) -> Response {
    if q.with_keys && caller.bearer().is_none() {
        return error(StatusCode::FORBIDDEN, "member keys need the admin token");
    }
    if q.with_keys && !st.settings.admin.allow_key_export {
        return error(
            StatusCode::FORBIDDEN,
            "member keys are not exported: set admin.allow_key_export = true to allow it",
        );
    }
    let with_keys = q.with_keys;
    match member_views(&st.store, with_keys).await {
        Ok(members) => {
            if with_keys {
                tracing::warn!(
                    members = members.len(),
                    "member keys exported through the admin API"
                );
            }
            axum::Json(json!({ "members": members })).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Every member as listed (with its key when `with_keys`), read a page at
/// a time.
async fn member_views(
    store: &crate::store::Store,
    with_keys: bool,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.members_page(after, DEFAULT_LIMIT).await?;
        let Some(last) = page.last().map(|m| m.connection_id.clone()) else {
            return Ok(out);
        };
        after = Some(last);
        for m in page {
            let mut v = json!({
                "external_ref": m.external_ref,
                "mydexid": m.mydexid.as_ref().map(|x| x.to_string()),
                "uid": m.uid,
                "connection_id": m.connection_id,
                "version": m.version,
                "status": m.status,
                "campaign": m.campaign,
                "email": m.email,
                "invitation_id": m.invitation_id,
            });
            if let Some(sent) = &m.uid_sent {
                v["uid_sent"] = json!(sent);
                v["note"] = json!(format!(
                    "Mydex sent uid {sent:?}; connection_id {} names uid {}, which is used",
                    m.connection_id, m.uid
                ));
            }
            if with_keys {
                let key = store
                    .sealer()
                    .open_secret(&m.sealed_key, m.connection_id.as_bytes())?;
                v["key"] = json!(key.expose_secret());
            }
            out.push(v);
        }
    }
}
