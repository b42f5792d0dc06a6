//! What the callback endpoint and its `Authentication` check share: the
//! configuration and handles they answer with, and the rate-limited log of
//! refused callbacks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::Method;

use crate::metrics::Metrics;
use crate::store::Store;

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
    pub refusals: RefusalLog,
}

/// Warns about unauthenticated callbacks at most once a second, with how
/// many there were, so that a flood of them does not flood the log too (the
/// metric counts each one).
#[derive(Default)]
pub struct RefusalLog {
    last_second: AtomicU64,
    since: AtomicU64,
}

impl RefusalLog {
    pub fn refused(&self, method: &Method) {
        self.since.fetch_add(1, Ordering::Relaxed);
        let now = crate::store::now_ms() / 1000;
        let last = self.last_second.load(Ordering::Relaxed);
        if now != last
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let refused = self.since.swap(0, Ordering::Relaxed);
            tracing::warn!(method = %method, refused, "callback refused: missing or wrong Authentication header (refused: how many since the last such line)");
        }
    }
}
