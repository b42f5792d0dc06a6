//! The status document (`GET /status`, `status --json`): counts by state,
//! each campaign's state and progress, the sweeps' last runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{Brake, ConnectionDenied, PausedBy, SweepRun};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusDoc {
    /// Invitations by state (`queued`, `link_issued`, `sent`, ...).
    pub invitations: BTreeMap<String, u64>,
    pub members: MemberCounts,
    pub callbacks: CallbackCounts,
    pub connection_version: u32,
    pub suppressed: u64,
    pub campaigns: Campaigns,
    pub uptime_seconds: u64,
    pub records: RecordCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreCondition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign_progress: Option<BTreeMap<String, CampaignProgress>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounces: Option<IgnoredBounces>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members_by_version: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweeps: Option<BTreeMap<String, SweepStatus>>,
    /// Rows rejected by enqueue, intake or delivery (when the daemon
    /// counts them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberCounts {
    pub total: u64,
    pub outdated: u64,
    pub disconnected: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CallbackCounts {
    pub unmatched: u64,
    pub identify: u64,
    pub notification: u64,
    pub notifications_by_dataset_action: BTreeMap<String, u64>,
    pub quarantined: u64,
    pub stored: u64,
}

/// Readings by state; `queued` counts every reading not yet settled
/// (queued, in flight, outcome unknown).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordCounts {
    pub queued: u64,
    pub delivered: u64,
    pub held: u64,
    pub failed: u64,
    pub in_flight: u64,
    pub unknown: u64,
}

/// The configured campaigns' names (a daemon without its lifecycle), or
/// each one's state when the lifecycle runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Campaigns {
    States(BTreeMap<String, CampaignStatus>),
    Names(Vec<String>),
}

impl Default for Campaigns {
    fn default() -> Self {
        Campaigns::Names(Vec::new())
    }
}

/// Whether a campaign may send now, and what it did since the start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CampaignStatus {
    /// `active`, `paused` or `outside_send_window`.
    pub state: String,
    pub paused: bool,
    pub paused_by: Option<PausedBy>,
    pub pause_reason: Option<String>,
    /// When it was paused (milliseconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at_ms: Option<u64>,
    pub send_window: Option<String>,
    /// Outside its send window: when the window opens next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_opens_ms: Option<u64>,
    pub rate: Option<String>,
    pub sent: u64,
    pub failed: u64,
    pub failures_in_row: u32,
    pub error_threshold: Option<u32>,
    pub bounces: CampaignBounces,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CampaignBounces {
    pub mailed: u64,
    pub hard: u64,
    pub soft: u64,
    pub complaints: u64,
    pub hard_rate: f64,
    pub bounce_threshold: Option<f64>,
}

/// A campaign's invitations by state, and its configured rate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CampaignProgress {
    pub rate: String,
    pub total: u64,
    pub invitations: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IgnoredBounces {
    pub ignored: u64,
}

/// The `store` object: `{"ok": true}`, or why it cannot answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreCondition {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts_as_of: Option<String>,
}

/// One sweep job: whether it runs, and its last run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepStatus {
    pub running: bool,
    pub run: u64,
    pub finished: bool,
    pub last: Option<SweepRun>,
    /// The version sweep's brake (null when it holds nobody).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brake: Option<Option<BrakeStatus>>,
    /// Mydex refused our connection (version sweep only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_denied: Option<Option<ConnectionDenied>>,
}

/// Members the version sweep found revoked and holds; `engaged` with the
/// brake's run, counts and reason.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BrakeStatus {
    pub engaged: bool,
    pub held: u64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub brake: Option<Brake>,
}
