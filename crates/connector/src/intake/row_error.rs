//! Why one invitee row was rejected: the reason written next to its line
//! number in `rejected/`, printed by `enqueue` and answered by
//! `POST /invitees`. The texts are the ones operators know.

use super::reader::MAX_LINE;
use crate::domain::InviteeError;

#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("line is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("malformed CSV: {0}")]
    Csv(csv::Error),
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
