//! The open-invitation index in memory: a sorted array of `(key, id)`, one
//! entry per invitation. On disk a tag is 40 bits of the person hash then
//! 24 bits of the keyed hash of campaign, kind and identity
//! (`open_index.rs`); here the key is the first 24 bits of each, 32 in all,
//! so an entry is 12 bytes, not 16. Looking a person up on disk would cost
//! the engine a random-keyed read and write per invitation stored, its
//! weakest access; here it costs a search in memory, and the disk keeps the
//! tags in blocks of 64 consecutive ids, written in key order
//! (`open_blocks.rs`).
//!
//! A key only narrows the search: two people, or one person's two
//! campaigns, may share one. With ten million invitations the duplicate
//! check meets a stranger about once in 430 lookups, and a person's lookup
//! (forgetting, suppressing: 24 bits) about 0.6 strangers each time.
//! Callers confirm each candidate against its record.
//!
//! The array is cut into sorted blocks of at most [`BLOCK`] entries, so an
//! insert moves a few kilobytes, not half the index, and no allocation is
//! ever the size of the whole index: one array of ten million entries,
//! grown or merged, would for a moment need twice its 160 MiB. Each
//! block's first entry is kept again in one array of its own, so finding a
//! block touches that array, not every block on the way. 12 bytes an
//! entry, plus the room left in blocks split by inserts.

use std::sync::{Condvar, Mutex, MutexGuard};

use super::error::StoreError;

/// Entries a block holds at most (6 KiB); a full block is split in two.
const BLOCK: usize = 512;

/// Entries a block gets when the index is loaded: room left for a fifth
/// more before inserts split it (a block split by inserts holds 256 to 511,
/// about 69% on average), so a daemon at rest holds the index in 15 bytes
/// an invitation, not 16, and an ingest of a fifth of what is held splits
/// no block.
const LOAD_FILL: usize = BLOCK * 13 / 16;

/// An entry: the key, then the id's high and low halves, so that it sorts
/// as `(key, id)` and takes 12 bytes.
type Entry = (u32, u32, u32);

/// The entry of invitation `id` under `tag`.
pub(super) fn entry(tag: u64, id: u64) -> Entry {
    (key_of(tag), (id >> 32) as u32, id as u32)
}

/// The first 24 bits of the person's 40, then the first 8 of the 24 that
/// tell their invitations apart.
fn key_of(tag: u64) -> u32 {
    (((tag >> 40) << 8) | ((tag >> 16) & 0xFF)) as u32
}

fn id_of(e: &Entry) -> u64 {
    (u64::from(e.1) << 32) | u64::from(e.2)
}

/// The index, and whether it has been loaded from disk yet.
#[derive(Default)]
pub(super) struct OpenTags {
    inner: Mutex<Load>,
    loaded: Condvar,
}

#[derive(Default)]
enum Load {
    #[default]
    Loading,
    Ready(Tags),
    /// Reading the entries failed: no insert may trust an index with
    /// holes, so every caller gets the error.
    Failed(String),
}

/// The entries in sorted blocks: every entry of a block sorts before every
/// entry of the next; no block is empty; `firsts[i]` is `blocks[i][0]`.
#[derive(Default)]
pub(super) struct Tags {
    firsts: Vec<Entry>,
    blocks: Vec<Vec<Entry>>,
}

impl OpenTags {
    /// Install what was read from disk (entries made by [`entry`], in any
    /// order, or why it could not be read) and wake the waiters.
    pub(super) fn install(&self, read: Result<Vec<Entry>, StoreError>) {
        let load = match read {
            Ok(entries) => Load::Ready(Tags::from_entries(entries)),
            Err(e) => Load::Failed(e.to_string()),
        };
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = load;
        self.loaded.notify_all();
    }

    /// The index, once loaded, held for the caller alone: an insert holds it
    /// from its duplicate check to its commit, so two inserts of one person
    /// cannot both pass the check.
    pub(super) fn lock(&self) -> Result<TagsGuard<'_>, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match &*inner {
                Load::Loading => {
                    inner = self.loaded.wait(inner).unwrap_or_else(|p| p.into_inner());
                }
                Load::Ready(_) => return Ok(TagsGuard(inner)),
                Load::Failed(e) => {
                    return Err(StoreError::Corrupt(format!(
                        "the open-invitation index could not be read: {e}"
                    )));
                }
            }
        }
    }
}

/// [`Tags`] behind the lock (always [`Load::Ready`]).
pub(super) struct TagsGuard<'a>(MutexGuard<'a, Load>);

impl std::ops::Deref for TagsGuard<'_> {
    type Target = Tags;
    fn deref(&self) -> &Tags {
        match &*self.0 {
            Load::Ready(t) => t,
            _ => &EMPTY,
        }
    }
}

impl std::ops::DerefMut for TagsGuard<'_> {
    fn deref_mut(&mut self) -> &mut Tags {
        if !matches!(*self.0, Load::Ready(_)) {
            *self.0 = Load::Ready(Tags::default());
        }
        match &mut *self.0 {
            Load::Ready(t) => t,
            _ => unreachable!("made ready just above"),
        }
    }
}

static EMPTY: Tags = Tags {
    firsts: Vec::new(),
    blocks: Vec::new(),
};

impl Tags {
    /// Blocks of `entries` (in any order), each [`LOAD_FILL`] full; the
    /// array given is let go block by block from its end, so the two are
    /// never both whole.
    fn from_entries(mut entries: Vec<Entry>) -> Self {
        entries.sort_unstable();
        entries.dedup();
        let fill = LOAD_FILL;
        let mut blocks = Vec::with_capacity(entries.len().div_ceil(fill));
        while !entries.is_empty() {
            let at = (entries.len() - 1) / fill * fill;
            let mut block = Vec::with_capacity(BLOCK);
            block.extend_from_slice(&entries[at..]);
            blocks.push(block);
            entries.truncate(at);
            if entries.capacity() > entries.len() * 2 + BLOCK {
                entries.shrink_to_fit();
            }
        }
        blocks.reverse();
        let firsts = blocks.iter().filter_map(|b| b.first().copied()).collect();
        Tags { firsts, blocks }
    }

    /// The block where `entry` belongs (or would): the last whose first
    /// entry is not after it.
    fn block_of(&self, entry: Entry) -> usize {
        self.firsts
            .partition_point(|f| *f <= entry)
            .saturating_sub(1)
    }

    /// Ids whose keys lie in `lo..=hi`, ascending.
    fn ids_in(&self, lo: u32, hi: u32) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        for block in &self.blocks[self.block_of((lo, 0, 0)).min(self.blocks.len())..] {
            let start = seek(block, (lo, 0, 0)).unwrap_or_else(|at| at);
            let mut past = false;
            for e in &block[start..] {
                if e.0 > hi {
                    past = true;
                    break;
                }
                out.push(id_of(e));
            }
            if past {
                break;
            }
        }
        out.sort_unstable();
        out
    }

    /// Ids of invitations that may be under `tag`, ascending.
    pub(super) fn candidates(&self, tag: u64) -> Vec<u64> {
        let key = key_of(tag);
        self.ids_in(key, key)
    }

    /// Ids of invitations that may be `person`'s (`person_bits`: the first
    /// 40 bits of their hash, a tag's high bits).
    pub(super) fn of_person(&self, person_bits: u64) -> Vec<u64> {
        let lo = key_of(person_bits << 24);
        self.ids_in(lo, lo | 0xFF)
    }

    pub(super) fn add(&mut self, tag: u64, id: u64) {
        let entry = entry(tag, id);
        if self.blocks.is_empty() {
            self.blocks.push(Vec::with_capacity(BLOCK));
            self.firsts.push(entry);
        }
        let at = self.block_of(entry);
        let block = &mut self.blocks[at];
        let Err(pos) = seek(block, entry) else {
            return;
        };
        if block.len() == block.capacity() {
            block.reserve_exact(BLOCK.saturating_sub(block.len()).max(1));
        }
        block.insert(pos, entry);
        if pos == 0 {
            self.firsts[at] = entry;
        }
        if block.len() >= BLOCK {
            let mut upper = Vec::with_capacity(BLOCK);
            upper.extend_from_slice(&block[BLOCK / 2..]);
            block.truncate(BLOCK / 2);
            self.firsts.insert(at + 1, upper[0]);
            self.blocks.insert(at + 1, upper);
        }
    }

    pub(super) fn remove(&mut self, tag: u64, id: u64) {
        let entry = entry(tag, id);
        let at = self.block_of(entry);
        let Some(block) = self.blocks.get_mut(at) else {
            return;
        };
        if let Ok(pos) = seek(block, entry) {
            block.remove(pos);
            match block.first() {
                None => {
                    self.blocks.remove(at);
                    self.firsts.remove(at);
                }
                Some(first) => self.firsts[at] = *first,
            }
        }
    }

    /// Entries held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.blocks.iter().map(Vec::len).sum()
    }
}

/// Where `entry` is in `block`, or would go, as `binary_search` says it.
/// Keys are hashes, so spread evenly: the position is guessed from the
/// key's place between the block's first and last, then walked to, a few
/// neighbouring entries at most. A binary search would touch a cache line
/// at each of its nine steps, in a block not touched for a while.
fn seek(block: &[Entry], entry: Entry) -> Result<usize, usize> {
    let (Some(first), Some(last)) = (block.first(), block.last()) else {
        return Err(0);
    };
    let span = u64::from(last.0.saturating_sub(first.0));
    let guess = if span == 0 {
        0
    } else {
        let off = u64::from(entry.0.saturating_sub(first.0)).min(span);
        (off * (block.len() as u64 - 1) / span) as usize
    };
    let mut at = guess;
    while at > 0 && block[at - 1] >= entry {
        at -= 1;
    }
    while at < block.len() && block[at] < entry {
        at += 1;
    }
    match block.get(at) {
        Some(e) if *e == entry => Ok(at),
        _ => Err(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tag whose key is `n` (the bits the index keeps), with `noise` in
    /// the bits it drops.
    fn tag(n: u32, noise: u64) -> u64 {
        let n = u64::from(n);
        ((n >> 8) << 40) | ((noise & 0xFFFF) << 24) | ((n & 0xFF) << 16) | (noise & 0xFFFF)
    }

    fn loaded(entries: Vec<(u64, u64)>) -> OpenTags {
        let t = OpenTags::default();
        t.install(Ok(entries
            .into_iter()
            .map(|(t, id)| entry(t, id))
            .collect()));
        t
    }

    #[test]
    fn candidates_come_from_loaded_and_added_entries_in_id_order() {
        let t = loaded(vec![(tag(7, 0), 3), (tag(5, 0), 1), (tag(7, 1), 2)]);
        let mut g = t.lock().unwrap();
        g.add(tag(7, 2), 10);
        g.add(tag(8, 0), 11);
        g.add(tag(8, 0), 1 << 40);
        // The bits a key drops do not tell entries apart: callers confirm.
        assert_eq!(g.candidates(tag(7, 9)), vec![2, 3, 10]);
        assert_eq!(g.candidates(tag(8, 0)), vec![11, 1 << 40]);
        assert_eq!(g.candidates(tag(6, 0)), Vec::<u64>::new());
        g.remove(tag(7, 0), 3);
        g.remove(tag(7, 2), 10);
        assert_eq!(g.candidates(tag(7, 0)), vec![2]);
        assert_eq!(g.len(), 4);
    }

    #[test]
    fn a_person_is_every_key_with_their_first_twenty_four_bits() {
        let ann = 0xAB_CDEF_0123u64;
        let t = loaded(vec![
            (ann << 24, 1),
            ((ann << 24) | 0xFF_FFFF, 2),
            // Another person with Ann's first 24 bits: a candidate.
            (((ann + 1) << 24), 3),
            // Other first 24 bits on either side: not.
            (((ann - 0x1_0000) << 24) | 0xFF_FFFF, 4),
            ((ann + 0x1_0000) << 24, 5),
        ]);
        assert_eq!(t.lock().unwrap().of_person(ann), vec![1, 2, 3]);
    }

    #[test]
    fn splits_keep_the_blocks_sorted_and_lose_nothing() {
        let t = loaded(Vec::new());
        let mut g = t.lock().unwrap();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut all = Vec::new();
        for id in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 5_000) as u32;
            g.add(tag(key, x >> 48), id);
            all.push((key, id));
        }
        let flat: Vec<Entry> = g.blocks.iter().flatten().copied().collect();
        assert!(flat.windows(2).all(|w| w[0] < w[1]));
        assert!(g.blocks.iter().all(|b| !b.is_empty() && b.len() < BLOCK));
        assert!(g.blocks.len() > 5, "inserts split blocks");
        let firsts: Vec<Entry> = g.blocks.iter().map(|b| b[0]).collect();
        assert_eq!(g.firsts, firsts);
        assert_eq!(g.len(), 20_000);
        for key in 0..5_000 {
            let mut want: Vec<u64> = all
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, id)| *id)
                .collect();
            want.sort_unstable();
            assert_eq!(g.candidates(tag(key, 0)), want);
        }
    }

    #[test]
    fn removals_keep_each_blocks_first_entry_and_drop_empty_blocks() {
        let entries: Vec<(u64, u64)> = (0..2_000u32).map(|n| (tag(n, 0), u64::from(n))).collect();
        let t = loaded(entries);
        let mut g = t.lock().unwrap();
        let blocks = g.blocks.len();
        // The whole first block, then every first entry of the others.
        let first_block: Vec<Entry> = g.blocks[0].clone();
        for e in first_block {
            g.remove(tag(e.0, 0), id_of(&e));
        }
        assert_eq!(g.blocks.len(), blocks - 1);
        let heads: Vec<Entry> = g.firsts.clone();
        for e in heads {
            g.remove(tag(e.0, 0), id_of(&e));
        }
        let firsts: Vec<Entry> = g.blocks.iter().map(|b| b[0]).collect();
        assert_eq!(g.firsts, firsts);
        g.add(tag(0, 0), 0);
        assert_eq!(g.firsts[0], entry(tag(0, 0), 0));
        assert_eq!(g.candidates(tag(0, 0)), vec![0]);
        assert_eq!(g.candidates(tag(1_999, 0)), vec![1_999]);
    }

    #[test]
    fn a_large_load_is_cut_into_blocks_that_lookups_cross() {
        let entries: Vec<(u64, u64)> = (0..10_000u64)
            .map(|id| (tag((id / 7) as u32, id), id))
            .rev()
            .collect();
        let t = loaded(entries);
        let g = t.lock().unwrap();
        assert_eq!(g.blocks.len(), 10_000usize.div_ceil(LOAD_FILL));
        assert_eq!(g.firsts.len(), g.blocks.len());
        assert!(g.blocks.iter().all(|b| b.capacity() == BLOCK));
        for key in 0..=(9_999 / 7) {
            let want: Vec<u64> =
                (u64::from(key) * 7..(u64::from(key) * 7 + 7).min(10_000)).collect();
            assert_eq!(g.candidates(tag(key, 3)), want);
        }
        assert_eq!(g.candidates(tag(10_000, 0)), Vec::<u64>::new());
        assert_eq!(g.len(), 10_000);
    }

    #[test]
    fn seek_finds_what_a_binary_search_finds() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for len in [0usize, 1, 2, 3, 17, 511] {
            let mut block: Vec<Entry> = (0..len)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Few keys, so that some repeat with other ids.
                    ((x % 300) as u32, 0, i as u32)
                })
                .collect();
            block.sort_unstable();
            block.dedup();
            for key in 0..305u32 {
                for low in [0u32, 5, 600] {
                    let e = (key, 0, low);
                    assert_eq!(seek(&block, e), block.binary_search(&e), "{e:?} in {len}");
                }
            }
        }
    }

    #[test]
    fn a_lock_waits_for_the_load() {
        let t = std::sync::Arc::new(OpenTags::default());
        let waiter = {
            let t = t.clone();
            std::thread::spawn(move || t.lock().unwrap().candidates(tag(1, 0)))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        t.install(Ok(vec![entry(tag(1, 0), 9)]));
        assert_eq!(waiter.join().unwrap(), vec![9]);
    }

    #[test]
    fn an_index_that_could_not_be_read_fails_every_caller() {
        let t = OpenTags::default();
        t.install(Err(StoreError::Corrupt("an entry".into())));
        assert!(t.lock().is_err());
    }
}
