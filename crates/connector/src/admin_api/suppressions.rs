//! The suppression list's answers: entries (hash prefix, never an
//! address), and what adding or removing did.

use serde::{Deserialize, Serialize};

use crate::store::SuppressionSource;

/// `GET /suppressions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SuppressionList {
    pub suppressed: usize,
    pub entries: Vec<SuppressionEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuppressionEntry {
    /// The keyed hash's prefix.
    pub person: String,
    pub reason: String,
    pub source: SuppressionSource,
    pub at_ms: u64,
}

/// `POST /suppressions` and `/suppressions/remove`: `{"email", "reason"?}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionRequest {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /suppressions`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuppressionAdded {
    pub person: String,
    pub new: bool,
    /// Open invitations failed by it.
    pub failed: usize,
}

/// `POST /suppressions/remove`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuppressionRemoved {
    pub person: String,
    pub removed: bool,
}
