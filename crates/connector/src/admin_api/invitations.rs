//! Invitations as operators see them (`GET /invitations`,
//! `/invitations/{id}`): never the linking token; the one-time link only
//! to a caller with the admin token.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::HistoryEntry;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvitationView {
    pub id: u64,
    pub campaign: String,
    /// `connect`, `update` or `identify`.
    pub kind: String,
    pub version: u32,
    pub state: String,
    pub email: String,
    pub name: Option<String>,
    pub external_ref: Option<String>,
    pub mydexid: Option<String>,
    pub reason: Option<String>,
    pub attempts: u32,
    pub reminders: u32,
    pub connection_id: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vars: Option<BTreeMap<String, String>>,
    /// Shown with the admin token only (null before a link is issued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Option<String>>,
    /// Why the link is not shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
}

/// A page of invitations; `next_after` names the last when more may follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvitationPage {
    pub invitations: Vec<InvitationView>,
    pub next_after: Option<u64>,
}

/// `POST /invitations/retry-failed`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Retried {
    pub retried: Vec<u64>,
    pub refused: Vec<RetryRefused>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetryRefused {
    pub id: u64,
    pub error: String,
}
