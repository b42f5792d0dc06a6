//! Stored callbacks as operators see them (`GET /callbacks`,
//! `/callbacks/{id}`, the replays): what arrived and what became of it.

use serde::{Deserialize, Serialize};

use crate::store::PastOutcome;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackView {
    pub id: u64,
    pub received_ms: u64,
    pub method: String,
    pub content_type: Option<String>,
    pub size: u64,
    pub kind: Option<String>,
    /// `pending`, `applied` or `quarantined`.
    pub state: String,
    pub history: Vec<PastOutcome>,
    /// Applied: what it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Quarantined: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `show` only: the body, any member key redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackPage {
    pub callbacks: Vec<CallbackView>,
    pub next_after: Option<u64>,
}

/// `POST /callbacks/replay-quarantined`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Replayed {
    pub replayed: usize,
    pub applied: usize,
    pub quarantined: usize,
    pub callbacks: Vec<CallbackView>,
}
