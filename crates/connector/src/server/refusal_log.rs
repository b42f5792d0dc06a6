//! A warning that a flood of refused requests cannot turn into a flood of
//! log lines: at most one line a second for each kind of refusal, carrying
//! how many were refused since the last line. The callback listener's
//! `Authentication` check and the admin API's token and Host checks share
//! it; each counts every refusal in `/metrics` besides.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct RefusalLog {
    last_second: AtomicU64,
    since: AtomicU64,
}

impl RefusalLog {
    /// Count one refusal. `Some(refused)` when this one is to be logged,
    /// with how many were refused since the last logged line (this one
    /// included: `refused - 1` lines were left out); `None` when its line
    /// is left out.
    pub fn note(&self) -> Option<u64> {
        self.since.fetch_add(1, Ordering::Relaxed);
        let now = crate::store::now_ms() / 1000;
        let last = self.last_second.load(Ordering::Relaxed);
        if now != last
            && self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.since.swap(0, Ordering::Relaxed));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_and_every_refusal_counted() {
        let log = RefusalLog::default();
        let start = std::time::Instant::now();
        let mut logged = Vec::new();
        for _ in 0..10_000 {
            if let Some(n) = log.note() {
                logged.push(n);
            }
        }
        // At most one line for each second begun (however slow the machine).
        let seconds = start.elapsed().as_secs() + 2;
        assert!(
            !logged.is_empty() && logged.len() as u64 <= seconds,
            "{logged:?}"
        );
        assert_eq!(logged[0], 1, "the first refusal is logged at once");
        let pending = log.since.load(Ordering::Relaxed);
        assert_eq!(logged.iter().sum::<u64>() + pending, 10_000);
    }
}
