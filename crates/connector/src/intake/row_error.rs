//! Why one invitee row was rejected: the reason written next to its line
//! number in `rejected/`, printed by `enqueue` and answered by
//! `POST /invitees`. The texts are the ones operators know.

use crate::domain::InviteeError;

/// Longest line accepted; longer ones are rejected without being buffered
/// (intake/reader.rs); the limit is part of the rejection's text.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("line is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("has {fields} fields, the header has {header}")]
    FieldCount { fields: usize, header: usize },
    #[error("not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("not a JSON object")]
    NotObject,
    #[error("{0}")]
    Invitee(InviteeError),
    #[error("campaign {0:?} is not configured")]
    UnknownCampaign(String),
}
