//! The connections a public listener holds, each with the phase it is in,
//! so that a full listener makes room by dropping the connection that has
//! waited longest without sending a complete request, instead of refusing
//! the newcomer. Mydex sends its request at once: its connection leaves the
//! incomplete phases within milliseconds, while connections opened and left
//! silent, or stalled in the middle of a body, stay in them and go first.
//!
//! An incomplete connection is not dropped before it has had `grace` to
//! send its request: a daemon taking over a backlog (after a restart, or
//! with every place busy) accepts many connections at once, and each has
//! its request waiting unread in the kernel until its task first runs. A
//! newcomer must not push out a connection younger than that; it waits for
//! a place instead (`serve.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
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

/// The instant phases are timed from (`Slot::entered`).
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_nanos() -> u64 {
    u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Why no connection could be dropped to make room: how long until one
/// can be (the youngest incomplete ones are within their grace), or none
/// when every connection is being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoneEvictable(pub Option<Duration>);

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
    /// When it entered its phase (nanoseconds since `EPOCH`).
    entered: AtomicU64,
    clock: Arc<AtomicU64>,
    /// Woken at every change of phase.
    changed: Notify,
    evict: CancellationToken,
    /// The client's address, when it is held to its share
    /// (`peer_share.rs`); none for a trusted proxy.
    peer: Option<IpAddr>,
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
        self.entered.store(now_nanos(), Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Returns once the connection has left `Opening` (its request's
    /// headers are in).
    pub async fn left_opening(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.phase() != Phase::Opening {
                return;
            }
            changed.await;
        }
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
    /// Connections per counted client address (`peer_share.rs`).
    peers: Mutex<HashMap<IpAddr, usize>>,
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

/// A connection's count against its address's share, given up when dropped.
pub struct PeerHold {
    slots: Arc<Slots>,
    peer: IpAddr,
}

impl Drop for PeerHold {
    fn drop(&mut self) {
        let mut peers = self.slots.peers.lock();
        if let Some(n) = peers.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

impl Slots {
    /// A new connection, in phase `Opening`, from `peer` when that address
    /// is held to its share.
    pub fn register(self: &Arc<Self>, peer: Option<IpAddr>) -> SlotGuard {
        let slot = Arc::new(Slot {
            phase: AtomicU8::new(Phase::Opening as u8),
            since: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed)),
            entered: AtomicU64::new(now_nanos()),
            clock: self.clock.clone(),
            changed: Notify::new(),
            evict: CancellationToken::new(),
            peer,
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

    /// Count a connection from `peer` from the moment it is accepted (before
    /// its task registers it), until the hold is dropped; with how many it
    /// held before this one.
    pub fn hold_peer(self: &Arc<Self>, peer: IpAddr) -> (PeerHold, usize) {
        let mut peers = self.peers.lock();
        let n = peers.entry(peer).or_insert(0);
        let before = *n;
        *n += 1;
        let hold = PeerHold {
            slots: self.clone(),
            peer,
        };
        (hold, before)
    }

    /// Evict the connection that has waited longest without a complete
    /// request (for at least `grace`), else the one idle longest; none when
    /// every connection is being answered, already evicted, or incomplete
    /// for less than `grace`. Each connection is evicted at most once, so
    /// every eviction frees one place.
    pub fn evict_one(&self, grace: Duration) -> Result<Evicted, NoneEvictable> {
        self.evict_where(grace, |_| true)
    }

    /// The same among `peer`'s connections only, and without a grace: an
    /// address at its share makes room from its own.
    pub fn evict_one_from(&self, peer: IpAddr) -> Option<Evicted> {
        self.evict_where(Duration::ZERO, |s| s.peer == Some(peer))
            .ok()
    }

    fn evict_where(
        &self,
        grace: Duration,
        among: impl Fn(&Slot) -> bool,
    ) -> Result<Evicted, NoneEvictable> {
        let grace = u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX);
        let now = now_nanos();
        let mut ripening: Option<u64> = None;
        let held = self.held.lock();
        let victim = held
            .values()
            .filter(|s| !s.evict.is_cancelled() && among(s))
            .filter_map(|s| {
                let phase = s.phase();
                let rank = phase.eviction_rank()?;
                let age = now.saturating_sub(s.entered.load(Ordering::Relaxed));
                if phase != Phase::Idle && age < grace {
                    let left = grace - age;
                    ripening = Some(ripening.map_or(left, |r| r.min(left)));
                    return None;
                }
                Some(((rank, s.since.load(Ordering::Relaxed)), s))
            })
            .min_by_key(|(key, _)| *key)
            .map(|(_, s)| s.clone())
            .ok_or(NoneEvictable(ripening.map(Duration::from_nanos)))?;
        let kind = match victim.phase() {
            Phase::Idle => Evicted::Idle,
            _ => Evicted::Incomplete,
        };
        victim.evict.cancel();
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_incomplete_connection_goes_first_then_the_idle_never_the_busy() {
        let slots = Arc::new(Slots::default());
        let busy = slots.register(None);
        busy.slot.set_phase(Phase::Busy);
        let idle = slots.register(None);
        idle.slot.set_phase(Phase::Idle);
        let silent = slots.register(None);
        let stalled = slots.register(None);
        stalled.slot.set_phase(Phase::Reading);
        let newest = slots.register(None);

        assert_eq!(slots.evict_one(Duration::ZERO), Ok(Evicted::Incomplete));
        assert!(silent.slot.evicted().is_cancelled());
        assert_eq!(slots.evict_one(Duration::ZERO), Ok(Evicted::Incomplete));
        assert!(stalled.slot.evicted().is_cancelled());
        assert_eq!(slots.evict_one(Duration::ZERO), Ok(Evicted::Incomplete));
        assert!(newest.slot.evicted().is_cancelled());
        assert_eq!(slots.evict_one(Duration::ZERO), Ok(Evicted::Idle));
        assert!(idle.slot.evicted().is_cancelled());
        assert_eq!(
            slots.evict_one(Duration::ZERO),
            Err(NoneEvictable(None)),
            "a connection being answered stays"
        );
        assert!(!busy.slot.evicted().is_cancelled());
        assert_eq!(slots.open(), 5);
        drop((idle, silent, stalled, newest));
        assert_eq!(slots.open(), 1);
    }

    #[test]
    fn a_connection_that_finished_its_request_is_younger_than_the_silent_ones() {
        let slots = Arc::new(Slots::default());
        let returning = slots.register(None);
        let silent = slots.register(None);
        // The first connection sends a request and starts another one.
        returning.slot.set_phase(Phase::Busy);
        returning.slot.set_phase(Phase::Reading);
        assert_eq!(slots.evict_one(Duration::ZERO), Ok(Evicted::Incomplete));
        assert!(silent.slot.evicted().is_cancelled());
        assert!(!returning.slot.evicted().is_cancelled());
    }

    #[test]
    fn an_incomplete_connection_within_its_grace_stays_and_says_when_it_ripens() {
        let slots = Arc::new(Slots::default());
        let busy = slots.register(None);
        busy.slot.set_phase(Phase::Busy);
        let fresh = slots.register(None);
        let grace = Duration::from_secs(60);
        let Err(NoneEvictable(Some(left))) = slots.evict_one(grace) else {
            panic!("a connection accepted just now was evicted");
        };
        assert!(left > Duration::from_secs(50) && left <= grace, "{left:?}");
        assert!(!fresh.slot.evicted().is_cancelled());
        // An idle one has had its request answered: no grace.
        let idle = slots.register(None);
        idle.slot.set_phase(Phase::Idle);
        assert_eq!(slots.evict_one(grace), Ok(Evicted::Idle));
        assert!(idle.slot.evicted().is_cancelled());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            slots.evict_one(Duration::from_millis(10)),
            Ok(Evicted::Incomplete)
        );
        assert!(fresh.slot.evicted().is_cancelled());
    }

    #[test]
    fn an_address_at_its_share_makes_room_from_its_own_connections() {
        let slots = Arc::new(Slots::default());
        let mydex: IpAddr = "192.0.2.1".parse().unwrap();
        let flood: IpAddr = "198.51.100.9".parse().unwrap();
        // Mydex's connection opened first: the oldest incomplete one.
        let callback = slots.register(Some(mydex));
        let f1 = slots.register(Some(flood));
        let f2 = slots.register(Some(flood));
        let proxy = slots.register(None);
        assert_eq!(slots.evict_one_from(flood), Some(Evicted::Incomplete));
        assert!(f1.slot.evicted().is_cancelled());
        assert!(
            !callback.slot.evicted().is_cancelled(),
            "another address's place is kept"
        );
        f2.slot.set_phase(Phase::Busy);
        assert_eq!(
            slots.evict_one_from(flood),
            None,
            "one being answered stays"
        );
        assert!(!proxy.slot.evicted().is_cancelled());
    }

    #[test]
    fn an_address_is_counted_from_accept_until_its_hold_is_dropped() {
        let slots = Arc::new(Slots::default());
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        let (a, before) = slots.hold_peer(ip);
        assert_eq!(before, 0);
        let (b, before) = slots.hold_peer(ip);
        assert_eq!(before, 1);
        drop(a);
        let (_c, before) = slots.hold_peer(ip);
        assert_eq!(before, 1);
        drop(b);
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(slots.hold_peer(other).1, 0);
    }
}
