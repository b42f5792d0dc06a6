//! How the Mydex API has been answering lately, for `/readyz` and the log.
//! The client retries transient failures quietly, so a Mydex failing half of
//! its calls would otherwise go unseen until invitations start waiting: every
//! attempt (token fetches included) is noted here; when a quarter or more of
//! the last 30 s of attempts failed, `/readyz` reports the API failing and
//! the log says so once (again every 30 s while it lasts), and says when it
//! recovered.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How far back attempts count.
const WINDOW: Duration = Duration::from_secs(30);
/// Fewer attempts than this in the window say nothing either way.
const MIN_ATTEMPTS: usize = 5;
/// Failing when at least this share of the window's attempts failed.
const FAILING_SHARE: f64 = 0.25;
/// While failing, the warning is repeated at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// Attempts remembered at most (a busy minute need not grow memory).
const MAX_KEPT: usize = 20_000;

#[derive(Default)]
struct Inner {
    attempts: VecDeque<(Instant, bool)>,
    failures: usize,
    last_error: Option<String>,
    failing: bool,
    last_warn: Option<Instant>,
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, ok)) = self.attempts.front() {
            if now.duration_since(at) <= WINDOW && self.attempts.len() <= MAX_KEPT {
                break;
            }
            self.attempts.pop_front();
            if !ok {
                self.failures -= 1;
            }
        }
    }

    /// `Some(failed, total)` when the window says the API is failing.
    fn verdict(&self) -> Option<(usize, usize)> {
        let total = self.attempts.len();
        (total >= MIN_ATTEMPTS && self.failures as f64 >= FAILING_SHARE * total as f64)
            .then_some((self.failures, total))
    }

    /// Log a change of state (and repeat the warning now and then).
    fn report(&mut self, now: Instant) {
        match (self.verdict(), self.failing) {
            (Some((failed, total)), was_failing) => {
                let due = self
                    .last_warn
                    .is_none_or(|t| now.duration_since(t) >= WARN_EVERY);
                if !was_failing || due {
                    tracing::warn!(
                        failed,
                        attempts = total,
                        window_s = WINDOW.as_secs(),
                        last_error = self.last_error.as_deref().unwrap_or(""),
                        "Mydex API is failing: {failed} of {total} calls in the last {} s failed (retried; invitations wait, none is lost)",
                        WINDOW.as_secs()
                    );
                    self.last_warn = Some(now);
                }
                self.failing = true;
            }
            (None, true) => {
                tracing::info!(
                    attempts = self.attempts.len(),
                    failed = self.failures,
                    "Mydex API recovered"
                );
                self.failing = false;
                self.last_warn = None;
            }
            (None, false) => {}
        }
    }
}

#[derive(Default)]
pub struct ApiHealth {
    inner: Mutex<Inner>,
}

impl ApiHealth {
    /// Note one attempt: `Err(why)` for a transient failure (5xx, 429,
    /// timeout, dropped connection); any answer the API meant is `Ok`.
    pub fn note(&self, outcome: Result<(), &str>) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.expire(now);
        let ok = outcome.is_ok();
        if let Err(why) = outcome {
            inner.failures += 1;
            inner.last_error = Some(why.to_string());
        }
        inner.attempts.push_back((now, ok));
        inner.report(now);
    }

    /// For `/readyz`: failing, with the figures and the last error, while a
    /// quarter or more of the last 30 s of attempts failed.
    pub fn check(&self) -> Result<(), ApiFailing> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.expire(now);
        inner.report(now);
        match inner.verdict() {
            None => Ok(()),
            Some((failed, total)) => Err(ApiFailing {
                failed,
                total,
                last: inner.last_error.clone().unwrap_or_else(|| "?".into()),
            }),
        }
    }
}

/// The API has been failing lately: how many of the last window's calls
/// failed, and the last failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{failed} of {total} Mydex API calls in the last {} s failed (last: {last})", WINDOW.as_secs())]
pub struct ApiFailing {
    pub failed: usize,
    pub total: usize,
    pub last: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_share_and_recovery() {
        let h = ApiHealth::default();
        for _ in 0..3 {
            h.note(Err("HTTP 503"));
        }
        assert!(h.check().is_ok(), "too few attempts to judge");
        for _ in 0..6 {
            h.note(Ok(()));
        }
        let e = h.check().unwrap_err().to_string();
        assert!(e.contains("3 of 9") && e.contains("HTTP 503"), "{e}");
        for _ in 0..10 {
            h.note(Ok(()));
        }
        assert!(h.check().is_ok(), "3 of 19 is under a quarter");
    }
}
