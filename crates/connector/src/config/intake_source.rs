//! Where the daemon takes rows in from: `queue.source` (invitees) and
//! `delivery.source` (readings). `dir` watches the section's directory;
//! `nats` consumes `{prefix}.invitees` / `{prefix}.readings` and needs a
//! `[nats]` section.

use serde::{Deserialize, Serialize};

/// `dir` (the default) or `nats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntakeSource {
    #[default]
    Dir,
    Nats,
}
