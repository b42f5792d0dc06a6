//! How many raw callbacks have been judged and how many are quarantined,
//! exact after any kill. A counter key moved beside the keys it counts
//! (the pending mark removed, then the count bumped) is off by one for good
//! when a kill falls between the two writes, and making them one engine
//! transaction holds every writer of the database off while it commits.
//! So a callback judged is a bit in a bitmap of its block of 64 ids
//! (`c/j/{block}`, 8 bytes: no bigger than the counter was, under the
//! same contention), set by one single-key write that is its own count:
//! setting it twice (the callback judged again at start, after a kill)
//! changes nothing. The totals live in memory: at open, the bits are
//! summed (one key per 64 ids of the database's sequence: about 150,000
//! keys, a few megabytes, for 5 million callbacks) and the quarantine index
//! (`q/`, a few keys) is counted; then every change that flips a bit or
//! adds or removes an index key moves them. A store counted the old way is
//! converted once at open (every record not pending gets its bit).

use std::sync::atomic::{AtomicU64, Ordering};

use super::engine::Table;
use super::error::Result;
use super::schema::{self, RawKey};

/// The id of the raw callback record `value` when it is judged, read by
/// its own module (`raw_callbacks.rs`).
pub(super) type JudgedId = fn(&[u8]) -> Result<Option<u64>>;

/// Ids per bitmap.
const BLOCK: u64 = 64;
/// Bytes per bitmap.
const BLOCK_BYTES: usize = (BLOCK / 8) as usize;

/// The judged and quarantined totals of tree `raw`.
#[derive(Debug, Default)]
pub(super) struct RawTally {
    judged: AtomicU64,
    quarantined: AtomicU64,
}

/// Where id `id`'s bit is: its block's key, the byte, the bit.
fn place(id: u64) -> (Vec<u8>, usize, u8) {
    let offset = id % BLOCK;
    (
        RawKey::JudgedBits(id / BLOCK).encode(),
        (offset / 8) as usize,
        1u8 << (offset % 8),
    )
}

/// Set (`on`) or clear id `id`'s bit; whether it changed.
fn flip(raw: &Table, id: u64, on: bool) -> Result<bool> {
    let (key, byte, bit) = place(id);
    let old = raw.fetch_and_update(&key, |old| {
        let mut bits = old.map(<[u8]>::to_vec).unwrap_or_default();
        bits.resize(BLOCK_BYTES, 0);
        if on {
            bits[byte] |= bit;
        } else {
            bits[byte] &= !bit;
        }
        Some(bits)
    })?;
    let was = old
        .as_deref()
        .and_then(|b| b.get(byte))
        .is_some_and(|b| b & bit != 0);
    Ok(was != on)
}

impl RawTally {
    /// Count the totals of `raw` (at open), converting a store counted the
    /// old way first.
    pub(super) fn load(&self, raw: &Table, judged_id: JudgedId) -> Result<()> {
        if raw.get(RawKey::StoredCount.encode())?.is_some() {
            Self::convert(raw, judged_id)?;
        }
        let mut judged = 0u64;
        for item in raw.scan_prefix(schema::RAW_JUDGED_PREFIX) {
            let (_, bits) = item?;
            judged += bits.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
        }
        let quarantined = raw
            .scan_prefix(schema::RAW_QUARANTINED_PREFIX)
            .keys()
            .try_fold(0u64, |n, k| k.map(|_| n + 1))?;
        self.judged.store(judged, Ordering::Relaxed);
        self.quarantined.store(quarantined, Ordering::Relaxed);
        Ok(())
    }

    /// Give every record judged its bit, then drop the old counters (last:
    /// a stop before it converts again, setting the same bits).
    fn convert(raw: &Table, judged_id: JudgedId) -> Result<()> {
        for item in raw.scan_prefix(schema::RAW_RECORD_PREFIX) {
            let (_, v) = item?;
            if let Some(id) = judged_id(&v)? {
                flip(raw, id, true)?;
            }
        }
        raw.flush()?;
        raw.remove(RawKey::StoredCount.encode())?;
        raw.remove(RawKey::QuarantinedCount.encode())?;
        Ok(())
    }

    /// Callback `id` judged (again, perhaps).
    pub(super) fn judged(&self, raw: &Table, id: u64) -> Result<()> {
        if flip(raw, id, true)? {
            self.judged.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Callback `id` erased.
    pub(super) fn erased(&self, raw: &Table, id: u64) -> Result<()> {
        if flip(raw, id, false)? {
            let _ = self
                .judged
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        Ok(())
    }

    /// A quarantine index key added (`true`) or removed.
    pub(super) fn quarantine(&self, added: bool) {
        if added {
            self.quarantined.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .quarantined
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
    }

    /// (judged, quarantined).
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.judged.load(Ordering::Relaxed),
            self.quarantined.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bit_per_id_counted_once_however_often_it_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::db::open_db(dir.path()).unwrap();
        let raw = db.table("raw").unwrap();
        let none: JudgedId = |_| Ok(None);
        let tally = RawTally::default();
        tally.load(&raw, none).unwrap();
        for id in [0, 7, 63, 64, 9_000_001] {
            tally.judged(&raw, id).unwrap();
            tally.judged(&raw, id).unwrap();
        }
        assert_eq!(tally.counts(), (5, 0));
        tally.erased(&raw, 7).unwrap();
        tally.erased(&raw, 7).unwrap();
        tally.erased(&raw, 8).unwrap();
        assert_eq!(tally.counts(), (4, 0));
        raw.insert(RawKey::Quarantined(3).encode(), []).unwrap();
        let again = RawTally::default();
        again.load(&raw, none).unwrap();
        assert_eq!(again.counts(), (4, 1), "summed from the bits at open");
    }

    #[test]
    fn a_store_counted_the_old_way_gets_a_bit_per_judged_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::db::open_db(dir.path()).unwrap();
        let raw = db.table("raw").unwrap();
        // Records whose value here says "judged ID" or "pending"; the old
        // counter one off, as a kill could leave it.
        for (id, v) in [
            (3u64, "judged 3"),
            (70, "judged 70"),
            (71, "pending"),
            (9000, "judged 9000"),
        ] {
            raw.insert(RawKey::Record(id).encode(), v).unwrap();
        }
        raw.insert(RawKey::StoredCount.encode(), 2u64.to_be_bytes())
            .unwrap();
        raw.insert(RawKey::QuarantinedCount.encode(), 0u64.to_be_bytes())
            .unwrap();
        let judged_id: JudgedId = |v| {
            Ok(std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.strip_prefix("judged "))
                .and_then(|id| id.parse().ok()))
        };
        let tally = RawTally::default();
        tally.load(&raw, judged_id).unwrap();
        assert_eq!(tally.counts(), (3, 0));
        assert!(raw.get(RawKey::StoredCount.encode()).unwrap().is_none());
        assert!(
            raw.get(RawKey::QuarantinedCount.encode())
                .unwrap()
                .is_none()
        );
        let again = RawTally::default();
        again.load(&raw, judged_id).unwrap();
        assert_eq!(
            again.counts(),
            (3, 0),
            "converted once, then counted from the bits"
        );
    }
}
