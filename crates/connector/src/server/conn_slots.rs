//! The connections a public listener holds, each with the phase it is in,
//! so that a full listener makes room by dropping the connection that has
//! waited longest without sending a complete request, instead of refusing
//! the newcomer. Mydex sends its request at once: its connection leaves the
//! incomplete phases within milliseconds, while connections opened and left
//! silent, or stalled in the middle of a body, stay in them and go first.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Where a connection stands. `Opening` and `Reading` have not sent a
/// complete request; `Idle` has, and waits (keep-alive) for another one;
/// `Busy` is being answered and is never evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted (TLS handshake, or waiting for a request's headers).
    Opening = 0,
    /// Headers in, body not yet complete.
    Reading = 1,
    /// A complete request is being handled and answered.
    Busy = 2,
    /// Answered; waiting for the next request on the same connection.
    Idle = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Opening,
            1 => Self::Reading,
            2 => Self::Busy,
            _ => Self::Idle,
        }
    }

    /// Which connections go first when the listener is full (lower first);
    /// none for a connection being answered.
    fn eviction_rank(self) -> Option<u8> {
        match self {
            Self::Opening | Self::Reading => Some(0),
            Self::Idle => Some(1),
            Self::Busy => None,
        }
    }
}

/// Why a connection was dropped to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evicted {
    /// It had not sent a complete request (silent, or stalled mid-request).
    Incomplete,
    /// It was idle between requests (keep-alive).
    Idle,
}

/// One connection's phase and the signal that evicts it.
pub struct Slot {
    phase: AtomicU8,
    /// When it entered its phase, on the listener's own sequence (older is
    /// smaller).
    since: AtomicU64,
    clock: Arc<AtomicU64>,
    evict: CancellationToken,
}

impl Slot {
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    pub fn set_phase(&self, phase: Phase) {
        self.since.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Fires when the listener drops this connection to make room.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evict
    }
}

/// Every connection a listener serves now.
#[derive(Default)]
pub struct Slots {
    held: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    clock: Arc<AtomicU64>,
}

/// A connection's place in `Slots`, given up when dropped.
pub struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
    pub slot: Arc<Slot>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.held.lock().remove(&self.id);
    }
}

impl Slots {
    /// A new connection, in phase `Opening`.
    pub fn register(self: &Arc<Self>) -> SlotGuard {
        let slot = Arc::new(Slot {
            phase: AtomicU8::new(Phase::Opening as u8),
            since: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed)),
            clock: self.clock.clone(),
            evict: CancellationToken::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.held.lock().insert(id, slot.clone());
        SlotGuard {
            slots: self.clone(),
            id,
            slot,
        }
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.held.lock().len()
    }

    /// Evict the connection that has waited longest without a complete
    /// request, else the one idle longest; none when every connection is
    /// being answered (or already evicted). Each connection is evicted at
    /// most once, so every eviction frees one place.
    pub fn evict_one(&self) -> Option<Evicted> {
        let held = self.held.lock();
        let victim = held
            .values()
            .filter(|s| !s.evict.is_cancelled())
            .filter_map(|s| {
                let rank = s.phase().eviction_rank()?;
                Some(((rank, s.since.load(Ordering::Relaxed)), s))
            })
            .min_by_key(|(key, _)| *key)
            .map(|(_, s)| s.clone())?;
        let kind = match victim.phase() {
            Phase::Idle => Evicted::Idle,
            _ => Evicted::Incomplete,
        };
        victim.evict.cancel();
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_incomplete_connection_goes_first_then_the_idle_never_the_busy() {
        let slots = Arc::new(Slots::default());
        let busy = slots.register();
        busy.slot.set_phase(Phase::Busy);
        let idle = slots.register();
        idle.slot.set_phase(Phase::Idle);
        let silent = slots.register();
        let stalled = slots.register();
        stalled.slot.set_phase(Phase::Reading);
        let newest = slots.register();

        assert_eq!(slots.evict_one(), Some(Evicted::Incomplete));
        assert!(silent.slot.evicted().is_cancelled());
        assert_eq!(slots.evict_one(), Some(Evicted::Incomplete));
        assert!(stalled.slot.evicted().is_cancelled());
        assert_eq!(slots.evict_one(), Some(Evicted::Incomplete));
        assert!(newest.slot.evicted().is_cancelled());
        assert_eq!(slots.evict_one(), Some(Evicted::Idle));
        assert!(idle.slot.evicted().is_cancelled());
        assert_eq!(slots.evict_one(), None, "a connection being answered stays");
        assert!(!busy.slot.evicted().is_cancelled());
        assert_eq!(slots.open(), 5);
        drop((idle, silent, stalled, newest));
        assert_eq!(slots.open(), 1);
    }

    #[test]
    fn a_connection_that_finished_its_request_is_younger_than_the_silent_ones() {
        let slots = Arc::new(Slots::default());
        let returning = slots.register();
        let silent = slots.register();
        // The first connection sends a request and starts another one.
        returning.slot.set_phase(Phase::Busy);
        returning.slot.set_phase(Phase::Reading);
        assert_eq!(slots.evict_one(), Some(Evicted::Incomplete));
        assert!(silent.slot.evicted().is_cancelled());
        assert!(!returning.slot.evicted().is_cancelled());
    }
}
