//! A member's dataset whose readings Mydex refused (a 403 about the member or
//! their grant), or that could not be sent (no key to send with): its rows
//! wait, held, and the group is tried again only when the cause may have
//! cleared (the member's record changed after the refused try: their
//! callback, an update, a status check that found them connected) or,
//! failing that, after a backoff that doubles from a minute to an hour.
//! Without it a held row went back to the queue on every pass and was sent
//! again, every few seconds, for as long as the member stayed revoked.

use std::time::Duration;

use backon::BackoffBuilder;
use serde::{Deserialize, Serialize};

/// The wait after the first refused try.
pub const FIRST_RETRY: Duration = Duration::from_secs(60);
/// The longest wait: at most one try per member and dataset an hour.
pub const MAX_RETRY: Duration = Duration::from_secs(3600);

/// One member and dataset whose last try was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldGroup {
    /// When the first refused try of this run of refusals was claimed.
    pub since_ms: u64,
    /// When the last refused try was claimed: a member record changed
    /// after this may have cleared the cause.
    pub tried_ms: u64,
    /// Refused tries in a row.
    pub tries: u32,
    /// No try before this, unless the member's record changed.
    pub next_ms: u64,
    /// Why the last try was refused.
    pub why: String,
}

/// Why a held group may be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// The member's record changed after the refused try.
    MemberChanged,
    /// The backoff is over.
    Backoff,
}

impl RetryCause {
    /// The `cause` label of `held_retries_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryCause::MemberChanged => "member_changed",
            RetryCause::Backoff => "backoff",
        }
    }
}

impl HeldGroup {
    /// The group after a refused try claimed at `tried_ms` and settled at
    /// `now_ms`; `prev` is what it was (none: the first refusal).
    pub fn refused(prev: Option<&HeldGroup>, tried_ms: u64, now_ms: u64, why: &str) -> Self {
        let tries = prev.map_or(0, |g| g.tries).saturating_add(1);
        HeldGroup {
            since_ms: prev.map_or(tried_ms, |g| g.since_ms),
            tried_ms,
            tries,
            next_ms: now_ms.saturating_add(retry_after(tries).as_millis() as u64),
            why: why.to_string(),
        }
    }

    /// Whether the group may be tried at `now_ms`, and why; `None`: wait.
    /// `member_updated_ms` is the member record's last change.
    pub fn due(&self, now_ms: u64, member_updated_ms: u64) -> Option<RetryCause> {
        if member_updated_ms > self.tried_ms {
            Some(RetryCause::MemberChanged)
        } else if now_ms >= self.next_ms {
            Some(RetryCause::Backoff)
        } else {
            None
        }
    }
}

/// The wait after `tries` refused tries in a row: a minute, doubling, at
/// most an hour (no jitter: the delivery rate limit spreads the tries).
pub fn retry_after(tries: u32) -> Duration {
    let n = tries.saturating_sub(1).min(32) as usize;
    backon::ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY)
        .with_max_delay(MAX_RETRY)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(n)
        .unwrap_or(MAX_RETRY)
        .min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_a_minute_to_an_hour() {
        let mins: Vec<u64> = (1..=9).map(|n| retry_after(n).as_secs() / 60).collect();
        assert_eq!(mins, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_after(0), FIRST_RETRY);
        assert_eq!(retry_after(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn due_after_the_backoff_or_when_the_member_changed() {
        let g = HeldGroup::refused(None, 1_000, 2_000, "Permission Denied");
        assert_eq!((g.tries, g.since_ms, g.next_ms), (1, 1_000, 62_000));
        assert_eq!(g.due(61_999, 900), None);
        assert_eq!(g.due(62_000, 900), Some(RetryCause::Backoff));
        // A callback or a status check after the try: go now.
        assert_eq!(g.due(3_000, 1_001), Some(RetryCause::MemberChanged));
        // A change before the try does not count.
        assert_eq!(g.due(3_000, 1_000), None);
        let again = HeldGroup::refused(Some(&g), 62_000, 62_500, "Permission Denied");
        assert_eq!(
            (again.tries, again.since_ms, again.next_ms),
            (2, 1_000, 182_500)
        );
        assert_eq!(again.due(100_000, 1_001), None, "seen by this try");
    }
}
