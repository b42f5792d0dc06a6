//! What moves invitations along once they are stored: the dispatcher that
//! sends them, its rate limit and campaign controls, and the scheduled
//! lifecycle jobs (expiry and version sweeps, with their brake).

pub mod campaign_control;
pub mod delivery;
pub mod dispatcher;
pub mod expiry_sweep;
pub mod fail_reason;
pub mod lifecycle;
pub mod rate_limit;
pub mod retry;
pub mod schedule;
pub mod sweep_brake;
pub mod version_sweep;
