//! The messages a daemon holds in NATS instead of taking them: sealed, by
//! an edge holding our Connection Token, to a key this daemon does not hold
//! (a wrong `nats.seal_key_file`, or edges given a new key before the
//! daemon). They stay in the stream, delivered again every
//! [`HOLD_DELAY`] for as long as `nats.retention`, never terminated: a
//! member's key comes once. This is what the daemon remembers of them: the
//! ones delivered lately, by stream and by the key they name, for one error
//! line per key (not one per delivery), `/metrics` and `/readyz`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::consume::HOLD_DELAY;

/// A held message not delivered again within this long has left the stream
/// (its retention ended, or a daemon holding its key took it).
pub const FORGET_AFTER: Duration = Duration::from_secs(4 * HOLD_DELAY.as_secs());

/// The held messages of this process.
pub struct Held {
    /// The streams it reads (each reported, held or not).
    streams: Vec<String>,
    /// The daemon's own fingerprints (current, then previous).
    ours: Vec<String>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (stream, sequence) → the key it names, and when last delivered.
    seen: HashMap<(String, u64), (String, Instant)>,
    /// The keys already named in an error line.
    logged: HashSet<String>,
}

impl Inner {
    fn forget_old(&mut self, now: Instant) {
        self.seen
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < FORGET_AFTER);
    }
}

impl Held {
    pub fn new(streams: Vec<String>, ours: Vec<String>) -> Self {
        Self {
            streams,
            ours,
            inner: Mutex::default(),
        }
    }

    /// The daemon's own fingerprints (current, then previous).
    pub fn ours(&self) -> &[String] {
        &self.ours
    }

    /// Message `sequence` of `stream`, sealed to `fingerprint`, was held
    /// now. True the first time this process holds one sealed to that key
    /// (the time to say so in the log).
    pub fn hold(&self, stream: &str, sequence: u64, fingerprint: &str, now: Instant) -> bool {
        let mut inner = self.inner.lock();
        inner.forget_old(now);
        inner.seen.insert(
            (stream.to_string(), sequence),
            (fingerprint.to_string(), now),
        );
        inner.logged.insert(fingerprint.to_string())
    }

    /// Per stream it reads: the messages held lately (0 for none).
    pub fn by_stream(&self, now: Instant) -> Vec<(String, u64)> {
        let mut inner = self.inner.lock();
        inner.forget_old(now);
        let mut counts: BTreeMap<&str, u64> =
            self.streams.iter().map(|s| (s.as_str(), 0)).collect();
        for (stream, _) in inner.seen.keys() {
            if let Some(n) = counts.get_mut(stream.as_str()) {
                *n += 1;
            }
        }
        counts
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect()
    }

    /// Per key named: the messages held lately; empty when none is.
    pub fn by_key(&self, now: Instant) -> BTreeMap<String, u64> {
        let mut inner = self.inner.lock();
        inner.forget_old(now);
        let mut counts = BTreeMap::new();
        for (fingerprint, _) in inner.seen.values() {
            *counts.entry(fingerprint.clone()).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_messages_are_counted_once_and_forgotten_when_gone() {
        let held = Held::new(vec!["S_CB".into(), "S_UN".into()], vec!["ours".into()]);
        let t0 = Instant::now();
        assert!(held.by_key(t0).is_empty());
        assert_eq!(
            held.by_stream(t0),
            vec![("S_CB".into(), 0), ("S_UN".into(), 0)]
        );
        assert!(
            held.hold("S_CB", 1, "aaaa", t0),
            "the first of its key: logged"
        );
        assert!(!held.hold("S_CB", 2, "aaaa", t0), "the second: not logged");
        assert!(
            !held.hold("S_CB", 1, "aaaa", t0 + HOLD_DELAY),
            "a redelivery"
        );
        assert!(held.hold("S_UN", 1, "bbbb", t0), "another key: logged");
        let later = t0 + HOLD_DELAY;
        assert_eq!(
            held.by_stream(later),
            vec![("S_CB".into(), 2), ("S_UN".into(), 1)]
        );
        let keys: Vec<_> = held.by_key(later).into_iter().collect();
        assert_eq!(keys, vec![("aaaa".into(), 2), ("bbbb".into(), 1)]);
        // Only message 1 was delivered again lately; the others have left.
        let gone = t0 + FORGET_AFTER;
        assert_eq!(
            held.by_stream(gone),
            vec![("S_CB".into(), 1), ("S_UN".into(), 0)]
        );
        assert!(held.by_key(gone + HOLD_DELAY * 4).is_empty());
        // A key already named is not named again.
        assert!(!held.hold("S_CB", 3, "aaaa", gone));
        assert_eq!(held.ours(), ["ours".to_string()]);
    }
}
