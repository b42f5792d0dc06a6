//! What the store keeps beside invitations and members (`domain/invitation.rs`,
//! `domain/member.rs`): callbacks we could not match, and the clock it stamps.

use serde::{Deserialize, Serialize};

/// A callback kept because nothing matched it (or for the record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackRecord {
    pub received_ms: u64,
    pub kind: String,
    pub method: String,
    pub linking_token: Option<String>,
    pub connection_id: Option<String>,
    pub mydexid: Option<String>,
    /// The body without the member key; that one is in `sealed_key`.
    pub body: serde_json::Value,
    pub sealed_key: Option<String>,
    pub note: String,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
