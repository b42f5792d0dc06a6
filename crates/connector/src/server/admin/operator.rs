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
fn view(inv: &Invitation, detail: Detail) -> serde_json::Value {
    let mut v = json!({
        "id": inv.id,
        "campaign": inv.campaign,
        "kind": match inv.kind { crate::store::Kind::Connect => "connect", crate::store::Kind::Update { .. } => "update", crate::store::Kind::Identify => "identify" },
        "version": inv.version,
        "state": inv.state.as_str(),
        "email": inv.invitee.email.to_string(),
        "name": inv.invitee.name,
        "external_ref": inv.invitee.external_ref,
        "mydexid": inv.invitee.mydexid.as_ref().map(|m| m.to_string()),
        "reason": inv.reason,
        "attempts": inv.attempts,
        "reminders": inv.reminders,
        "connection_id": inv.connection_id,
        "created_ms": inv.created_ms,
        "updated_ms": inv.updated_ms,
    });
    if let Detail::Full(bearer) = detail {
        v["history"] = json!(inv.history);
        v["vars"] = json!(inv.invitee.vars);
        match bearer {
            Some(b) => v["link"] = link(inv, b),
            None => v["withheld"] = json!("link: shown only with the admin token"),
        }
    }
    v
}

/// The one-time link: it opens the person's journey, so only a caller who
/// presented the admin token gets it.
fn link(inv: &Invitation, _: &Bearer) -> serde_json::Value {
    json!(inv.link)
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
    let store = st.store.clone();
    match tokio::task::spawn_blocking(move || store.list_invitations(&filter, q.after, limit)).await
    {
        Ok(Ok(list)) => axum::Json(json!({
            "invitations": list.iter().map(|i| view(i, Detail::Summary)).collect::<Vec<_>>(),
            "next_after": if list.len() == limit { list.last().map(|i| i.id) } else { None },
        }))
        .into_response(),
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn show(
    State(st): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Response {
    let store = st.store.clone();
    match tokio::task::spawn_blocking(move || store.invitation(id)).await {
        Ok(Ok(inv)) => axum::Json(view(&inv, Detail::Full(caller.bearer()))).into_response(),
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn retry(State(st): State<Arc<AdminState>>, Path(id): Path<u64>) -> Response {
    let store = st.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        let inv = store.retry_failed(id)?;
        store.flush_blocking()?;
        Ok::<_, StoreError>(inv)
    })
    .await;
    match done {
        Ok(Ok(inv)) => {
            tracing::info!(invitation = inv.id, campaign = %inv.campaign, external_ref = inv.invitee.external_ref.as_deref().unwrap_or(""), state = "queued", "failed invitation retried by an operator");
            st.wake.notify_one();
            axum::Json(view(&inv, Detail::Summary)).into_response()
        }
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn retry_failed(State(st): State<Arc<AdminState>>) -> Response {
    let store = st.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        let failed = store.list_invitations(
            &InvitationFilter {
                state: Some(InvState::Failed),
                ..Default::default()
            },
            None,
            usize::MAX,
        )?;
        let mut retried = Vec::new();
        let mut refused = Vec::new();
        for inv in failed {
            match store.retry_failed(inv.id) {
                Ok(inv) => {
                    tracing::info!(invitation = inv.id, campaign = %inv.campaign, external_ref = inv.invitee.external_ref.as_deref().unwrap_or(""), state = "queued", "failed invitation retried by an operator");
                    retried.push(inv.id)
                }
                Err(e @ (StoreError::Refused(_) | StoreError::Conflict { .. })) => {
                    refused.push(json!({"id": inv.id, "error": e.to_string()}))
                }
                Err(e) => return Err(e),
            }
        }
        store.flush_blocking()?;
        Ok((retried, refused))
    })
    .await;
    match done {
        Ok(Ok((retried, refused))) => {
            if !retried.is_empty() {
                st.wake.notify_one();
            }
            axum::Json(json!({"retried": retried, "refused": refused})).into_response()
        }
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
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
    let store = st.store.clone();
    let with_keys = q.with_keys;
    let done = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for m in store.all_members() {
            let m = m?;
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
        Ok::<_, StoreError>(out)
    })
    .await;
    match done {
        Ok(Ok(members)) => {
            if with_keys {
                tracing::warn!(
                    members = members.len(),
                    "member keys exported through the admin API"
                );
            }
            axum::Json(json!({ "members": members })).into_response()
        }
        Ok(Err(e)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
