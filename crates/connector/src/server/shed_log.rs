//! What the public listener dropped under load (connections evicted to make
//! room, connections refused, bodies that did not arrive in time): each one
//! counted in `/metrics`, and logged as one summary line at most every
//! `EVERY_SECS` seconds with the counts since the last line, so that a flood
//! of connections does not become a flood of log lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::conn_slots::Evicted;
use crate::metrics::Metrics;

/// At most one summary line this often.
const EVERY_SECS: u64 = 10;

pub struct ShedLog {
    metrics: Arc<Metrics>,
    max_connections: usize,
    last_line_s: AtomicU64,
    evicted_incomplete: AtomicU64,
    evicted_idle: AtomicU64,
    refused: AtomicU64,
    body_timeouts: AtomicU64,
}

impl ShedLog {
    pub fn new(metrics: Arc<Metrics>, max_connections: usize) -> Self {
        Self {
            metrics,
            max_connections,
            last_line_s: AtomicU64::new(0),
            evicted_incomplete: AtomicU64::new(0),
            evicted_idle: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            body_timeouts: AtomicU64::new(0),
        }
    }

    /// A connection dropped to make room for a new one.
    pub fn evicted(&self, kind: Evicted) {
        let (event, count) = match kind {
            Evicted::Incomplete => ("evicted_incomplete", &self.evicted_incomplete),
            Evicted::Idle => ("evicted_idle", &self.evicted_idle),
        };
        self.count(event, count);
    }

    /// A new connection closed at once: every connection held was being
    /// answered, or the place freed for it did not come in time.
    pub fn refused(&self) {
        self.count("refused_full", &self.refused);
    }

    /// A request answered 408: its body did not arrive in time.
    pub fn body_timeout(&self) {
        self.count("body_timeout", &self.body_timeouts);
    }

    fn count(&self, event: &str, since_line: &AtomicU64) {
        self.metrics.callback_listener(event);
        since_line.fetch_add(1, Ordering::Relaxed);
        let now = crate::store::now_ms() / 1000;
        let last = self.last_line_s.load(Ordering::Relaxed);
        if now.saturating_sub(last) < EVERY_SECS
            || self
                .last_line_s
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        tracing::warn!(
            evicted_incomplete = take(&self.evicted_incomplete),
            evicted_idle = take(&self.evicted_idle),
            refused = take(&self.refused),
            body_timeouts = take(&self.body_timeouts),
            max_connections = self.max_connections,
            "callback listener under load: connections dropped (counts since the last such line; evicted_incomplete: had not sent a complete request when the listener was full; refused: every connection was being answered; body_timeouts: answered 408)"
        );
    }
}
