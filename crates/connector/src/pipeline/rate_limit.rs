//! An exact sliding-window limit: no window of length `per` ever holds more
//! than `count` sends. A send holds its slot from the moment it starts until
//! `per` after it finished, so the limit holds even as the receiving end
//! measures it (a slow send cannot bunch up with the next ones).

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::config::Rate;

pub struct SlidingWindow {
    rate: Rate,
    state: Mutex<WindowState>,
}

struct WindowState {
    /// When each of the recent sends finished, oldest first.
    finished: VecDeque<Instant>,
    in_flight: usize,
}

/// A taken slot: the send it stands for is finished when it is dropped.
pub struct Slot<'a> {
    window: &'a SlidingWindow,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut s = self.window.state.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.finished.push_back(Instant::now());
    }
}

impl SlidingWindow {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            state: Mutex::new(WindowState {
                finished: VecDeque::with_capacity(rate.count as usize),
                in_flight: 0,
            }),
        }
    }

    /// Wait for a slot and take it; drop the slot once the send is over.
    pub async fn acquire(&self) -> Slot<'_> {
        loop {
            let wait = {
                let mut s = self.state.lock();
                let now = Instant::now();
                while s
                    .finished
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.rate.per)
                {
                    s.finished.pop_front();
                }
                if s.finished.len() + s.in_flight < self.rate.count as usize {
                    s.in_flight += 1;
                    return Slot { window: self };
                }
                // Full: wait for the oldest to leave the window (or, when
                // every slot is a send still going, a little while).
                s.finished
                    .front()
                    .map(|t| self.rate.per.saturating_sub(now.duration_since(*t)))
                    .unwrap_or(Duration::from_millis(20))
                    .min(Duration::from_millis(250))
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    //! On the real clock: what is checked is what the window enforces
    //! (lower bounds between sends), which a slow machine only widens.

    use super::*;

    const PER: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn never_more_than_count_in_any_window() {
        let w = std::sync::Arc::new(SlidingWindow::new(Rate { count: 5, per: PER }));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..23 {
            let slot = w.acquire().await;
            times.push(start.elapsed());
            drop(slot);
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..].iter().filter(|u| **u < *t + PER).count();
            assert!(in_window <= 5, "window at {t:?} holds {in_window}");
        }
        assert!(times[22] >= PER * 4);
    }

    #[tokio::test]
    async fn a_slow_send_keeps_its_slot_until_it_ends() {
        let w = SlidingWindow::new(Rate { count: 1, per: PER });
        let slot = w.acquire().await;
        tokio::time::sleep(PER * 3).await;
        let ended = Instant::now();
        drop(slot);
        let _next = w.acquire().await;
        // The next send starts a full window after the slow one ended.
        assert!(ended.elapsed() >= PER);
    }
}
