//! Backoff between attempts of a step, shared by the invitation dispatcher
//! and the readings delivery: 2 s doubling to 10 min, with jitter.

use std::time::Duration;

pub fn retry_delay(attempts: u32) -> Duration {
    let base = 2u64.saturating_mul(1u64 << attempts.min(9)).min(600);
    let jitter = rand::random::<u64>() % (base * 250 + 1);
    Duration::from_millis(base * 1000 - base * 125 + jitter)
}
