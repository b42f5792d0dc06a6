//! A member as the store keeps it: their connection to us (`connection_id`,
//! version, permissions) with the connection key sealed.

use serde::{Deserialize, Serialize};

use super::MydexId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    Active,
    Disconnected,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub connection_id: String,
    pub uid: u64,
    /// The `uid` Mydex sent when it was not the prefix of `connection_id`
    /// (kept as sent; `uid` is the prefix, used for API calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid_sent: Option<String>,
    pub mydexid: Option<MydexId>,
    pub version: u32,
    pub permissions: serde_json::Value,
    pub status: MemberStatus,
    /// The member connection key, sealed (see `store/crypto.rs`).
    pub sealed_key: String,
    pub invitation_id: Option<u64>,
    pub campaign: Option<String>,
    pub email: Option<String>,
    pub external_ref: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The last version-sweep check of this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<LastCheck>,
}

/// What one version-sweep run found for a member.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastCheck {
    pub run: u64,
    pub at_ms: u64,
    pub active: bool,
    pub version: Option<u32>,
}
