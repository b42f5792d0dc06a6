//! `POST /people/forget`: whom to forget, and what was erased.

use serde::{Deserialize, Serialize};

/// The request: an address or an external ref (exactly one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    #[serde(default)]
    pub disconnect: bool,
}

/// What was erased: hash prefixes of the persons, and counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Forgotten {
    pub persons: Vec<String>,
    pub invitations: u64,
    pub members: u64,
    pub readings: u64,
    pub raw_callbacks: u64,
    pub files: u64,
    pub lines: u64,
}
