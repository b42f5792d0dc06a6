//! What the callback endpoint and its `Authentication` check share: the
//! configuration and handles they answer with, and the rate-limited log of
//! refused callbacks (`refusal_log.rs`).

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::store::Store;

pub use super::refusal_log::RefusalLog;

pub struct CallbackState {
    pub store: Store,
    pub expected_auth: String,
    pub nid: String,
    pub current_version: u32,
    pub metrics: Arc<Metrics>,
    /// Where notifications are passed on, if configured.
    pub notify: Option<Arc<crate::notify::notification_hook::NotificationHook>>,
    /// `callback.body_limit`.
    pub body_limit: usize,
    /// `callback.read_timeout`, for the body.
    pub read_timeout: std::time::Duration,
    /// Refused callbacks, warned about at most once a second.
    pub refusals: RefusalLog,
}
