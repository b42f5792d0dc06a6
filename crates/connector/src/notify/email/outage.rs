//! A server-wide SMTP outage (connection refused or timing out, 421 at the
//! greeting) says nothing about the invitation being mailed: it must not use
//! up that invitation's `smtp.max_attempts`, or a relay down for a quarter
//! of an hour would fail a whole campaign for good. Instead every mail waits
//! for the outage, retried on a backoff that grows with the outage's age
//! (2 s, then half its age, at most 5 min), and the log says once that the
//! server is unreachable, again every minute while it lasts, and once when
//! it is back.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

const MIN_DELAY: Duration = Duration::from_secs(2);
const MAX_DELAY: Duration = Duration::from_secs(300);
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Inner {
    since: Option<Instant>,
    failures: u64,
    last_warn: Option<Instant>,
}

#[derive(Default)]
pub struct Outage {
    inner: Mutex<Inner>,
}

impl Outage {
    /// A mail found the server unreachable; how long it should wait.
    pub fn unreachable(&self, why: &str) -> Duration {
        let now = Instant::now();
        let mut s = self.inner.lock();
        let since = *s.since.get_or_insert(now);
        s.failures += 1;
        if s.last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            s.last_warn = Some(now);
            tracing::warn!(
                error = why,
                down_s = now.duration_since(since).as_secs(),
                failed_attempts = s.failures,
                "SMTP server unreachable; mail waits for it (retried with backoff, no invitation fails for this)"
            );
        }
        let age = now.duration_since(since);
        let base = (age / 2).clamp(MIN_DELAY, MAX_DELAY);
        // ±12.5% jitter so waiting mails do not come back all at once.
        let jitter = rand::random::<u64>() % (base.as_millis() as u64 / 4 + 1);
        base - base / 8 + Duration::from_millis(jitter)
    }

    /// The server answered (a mail accepted, or refused for its own reasons).
    pub fn reachable(&self) {
        let mut s = self.inner.lock();
        if let Some(since) = s.since.take() {
            tracing::info!(
                down_s = since.elapsed().as_secs(),
                failed_attempts = s.failures,
                "SMTP server reachable again"
            );
            s.failures = 0;
            s.last_warn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_with_the_outage_and_resets() {
        let o = Outage::default();
        let d = o.unreachable("connection refused");
        assert!(d >= MIN_DELAY - MIN_DELAY / 8 && d <= MIN_DELAY + MIN_DELAY / 8);
        // An outage 100 s old, and however long the call itself took on a
        // loaded machine (the age, and with it the delay, grows by that).
        let before = Instant::now();
        o.inner.lock().since = Some(before - Duration::from_secs(100));
        let d = o.unreachable("connection refused");
        let took = before.elapsed();
        assert!(
            d >= Duration::from_millis(43_750) && d <= Duration::from_millis(56_250) + took,
            "{d:?} ({took:?} in the call)"
        );
        o.inner.lock().since = Some(Instant::now() - Duration::from_secs(3600));
        assert!(o.unreachable("x") <= MAX_DELAY + MAX_DELAY / 8);
        o.reachable();
        assert!(o.inner.lock().since.is_none());
    }
}
