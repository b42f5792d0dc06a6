//! What the callback endpoint and its `Authentication` check share: the
//! configuration and handles they answer with, the rate-limited log of
//! refused callbacks (`refusal_log.rs`), and the one step that differs
//! between the daemon and an edge (`Keeper`): the daemon keeps a callback in
//! its store and judges it; an edge seals it and publishes it to NATS
//! JetStream, for a daemon to keep and judge when it takes it.

use std::sync::Arc;

use crate::broker::EdgePublisher;
use crate::metrics::Metrics;
use crate::store::Store;

pub use super::refusal_log::RefusalLog;

pub struct CallbackState {
    /// What becomes of an authenticated callback read within limits.
    pub keeper: Keeper,
    pub expected_auth: String,
    pub metrics: Arc<Metrics>,
    /// `callback.body_limit`.
    pub body_limit: usize,
    /// `callback.read_timeout`, for the body.
    pub read_timeout: std::time::Duration,
    /// Refused callbacks, warned about at most once a second.
    pub refusals: RefusalLog,
}

/// Where a callback goes once it is authenticated and read.
pub enum Keeper {
    /// The daemon: kept sealed in the store, judged, flushed, answered.
    Store(StoreKeeper),
    /// An edge: sealed to the daemon's key and published; answered 2xx once
    /// JetStream acknowledged it, 503 with `Retry-After` when it did not.
    Publish(Arc<EdgePublisher>),
}

/// What the daemon keeps and judges a callback with.
pub struct StoreKeeper {
    pub store: Store,
    pub nid: String,
    pub current_version: u32,
    /// Where notifications are passed on, if configured.
    pub notify: Option<Arc<crate::notify::notification_hook::NotificationHook>>,
}
