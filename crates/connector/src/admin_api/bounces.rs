//! `POST /bounces`'s answers: what recording a bounce did to the person
//! of the mail it names, or that an unsubscribe mail was applied.

use serde::{Deserialize, Serialize};

/// A bounce recorded: `person` is the keyed hash's prefix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum BounceRecorded {
    /// The same report seen before: nothing changed.
    Duplicate { person: String },
    /// A soft bounce noted (`count` of `max` before suppression).
    SoftNoted {
        count: u32,
        max: u32,
        person: String,
    },
    /// On the suppression list; `failed` open invitations ended by it.
    Suppressed {
        reason: String,
        failed: usize,
        person: String,
    },
}

/// An unsubscribe mail applied to the invitation its token names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnsubscribedByMail {
    pub unsubscribed: bool,
    pub invitation: u64,
}
