//! Readings as `GET /records?state=` lists them, in any state: the kept
//! ones (queued, held, failed) with their reason, the delivered ones as
//! the store keeps them (member, dataset, external id).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordView {
    pub id: u64,
    /// The column the row named its member by, and its value.
    pub member: BTreeMap<String, String>,
    pub connection_id: Option<String>,
    pub dataset: String,
    pub external_id: String,
    pub state: String,
    pub reason: Option<String>,
    /// Held since, or stored at (none for a delivered reading).
    pub since_ms: Option<u64>,
    /// `FILE:LINE` or `api` (none for a delivered reading).
    pub source: Option<String>,
}

/// A page: `next_after` (held, failed: the last id) or `next_cursor`
/// (every state: where the next page starts) when more may follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordPage {
    pub records: Vec<RecordView>,
    pub next_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
