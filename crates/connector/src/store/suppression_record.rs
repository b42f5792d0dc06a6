//! The suppression list's record and key (`s/{hash}` in `idx`), apart from
//! `suppressions.rs` so that inserting an invitation can check the list
//! without a cycle between the two.

use super::engine::TxTable;
use serde::{Deserialize, Serialize};

use super::TxResult;
use super::sealed::{IDX, tx_open};
use crate::domain::PersonHash;

/// Where a suppression came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionSource {
    Unsubscribe,
    Bounce,
    Complaint,
    Operator,
    Forget,
}

impl SuppressionSource {
    /// The word a refused row is reported with (`suppressed: unsubscribed`).
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionSource::Unsubscribe => "unsubscribed",
            SuppressionSource::Bounce => "bounced",
            SuppressionSource::Complaint => "complaint",
            SuppressionSource::Operator => "operator",
            SuppressionSource::Forget => "forgotten",
        }
    }
}

/// One entry of the list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Suppression {
    /// The text open invitations fail with (`unsubscribed`, `bounced: 550 …`).
    pub reason: String,
    pub source: SuppressionSource,
    pub at_ms: u64,
}

/// What `suppress` did.
#[derive(Debug, Default)]
pub struct Suppressed {
    /// The person was not on the list before.
    pub new: bool,
    /// Invitations failed by it.
    pub failed: Vec<u64>,
}

pub(super) fn key(person: &PersonHash) -> String {
    // The schema's text keys are UTF-8 by construction.
    String::from_utf8_lossy(
        &super::schema::IdxKey::Suppression(person.as_str().to_string()).encode(),
    )
    .into_owned()
}

/// The suppression of `person` inside a transaction, if any.
pub(super) fn tx_suppression(
    sealer: &super::Sealer,
    idx: &TxTable<'_>,
    person: &PersonHash,
) -> TxResult<Option<Suppression>> {
    let k = key(person);
    idx.get(k.as_bytes())?
        .map(|v| tx_open(sealer, IDX, k.as_bytes(), &v, "suppression"))
        .transpose()
}
