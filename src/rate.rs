//! An exact sliding-window limit: no window of length `per` ever holds more
//! than `count` sends. The times of the last `count` sends are kept; a send
//! waits until the oldest of them leaves the window.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::Rate;

pub struct SlidingWindow {
    rate: Rate,
    sent: Mutex<VecDeque<Instant>>,
}

impl SlidingWindow {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            sent: Mutex::new(VecDeque::with_capacity(rate.count as usize)),
        }
    }

    /// Wait for a slot and take it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.rate.per)
                {
                    sent.pop_front();
                }
                if sent.len() < self.rate.count as usize {
                    sent.push_back(now);
                    return;
                }
                // Full: wait for the oldest to leave the window.
                sent.front()
                    .map(|t| self.rate.per.saturating_sub(now.duration_since(*t)))
                    .unwrap_or(Duration::from_millis(1))
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_count_in_any_window() {
        let w = std::sync::Arc::new(SlidingWindow::new(Rate {
            count: 5,
            per: Duration::from_secs(1),
        }));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..23 {
            w.acquire().await;
            times.push(start.elapsed());
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .filter(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(in_window <= 5, "window at {t:?} holds {in_window}");
        }
        assert!(times[22] >= Duration::from_secs(4));
    }
}
