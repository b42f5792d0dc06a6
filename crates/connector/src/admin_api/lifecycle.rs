//! The lifecycle's answers: a sweep started (or not), the brake released,
//! a campaign paused or resumed.

use serde::{Deserialize, Serialize};

/// What asking for a sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepTrigger {
    Started,
    AlreadyRunning,
    ShuttingDown,
}

/// `POST /sweeps/{job}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepTriggered {
    pub job: String,
    pub trigger: SweepTrigger,
}

/// `POST /sweep/confirm`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrakeReleased {
    pub confirmed: bool,
    pub released: u64,
    pub disconnected: u64,
    pub invited: u64,
}

/// `POST /campaigns/{name}/pause`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PauseBody {
    pub reason: Option<String>,
}

/// `POST /campaigns/{name}/pause`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Paused {
    pub campaign: String,
    pub paused: bool,
    pub reason: String,
}

/// `POST /campaigns/{name}/resume`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resumed {
    pub campaign: String,
    pub paused: bool,
    pub was_paused: bool,
}

/// An error answer: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
}
