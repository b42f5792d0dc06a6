//! The open-invitation index in memory: a sorted array of `(tag, id)`, one
//! entry per invitation, where a tag is 40 bits of the person hash then 24
//! bits of the keyed hash of campaign, kind and identity
//! (`open_index.rs`). Looking a person up on disk would cost the engine a
//! random-keyed read and write per invitation stored, its weakest access;
//! here it costs a binary search, and the disk keeps the tags in blocks of
//! 64 consecutive ids, written in key order (`open_blocks.rs`).
//!
//! A tag only narrows the search: two people, or one person's two
//! campaigns, may share one. Callers confirm each candidate against its
//! record. 16 bytes an invitation: 16 MiB for a million.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::error::StoreError;

/// Entries added since the last merge are kept apart until they number
/// this many, or an eighth of the merged ones: a merge moves every entry.
const RECENT_MIN: usize = 4_096;

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

/// The entries, merged and recent.
#[derive(Default)]
pub(super) struct Tags {
    merged: Vec<(u64, u64)>,
    recent: BTreeSet<(u64, u64)>,
}

impl OpenTags {
    /// Install what was read from disk (in any order, or why it could not
    /// be read) and wake the waiters.
    pub(super) fn install(&self, read: Result<Vec<(u64, u64)>, StoreError>) {
        let load = match read {
            Ok(mut entries) => {
                entries.sort_unstable();
                entries.dedup();
                entries.shrink_to_fit();
                Load::Ready(Tags {
                    merged: entries,
                    recent: BTreeSet::new(),
                })
            }
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
    merged: Vec::new(),
    recent: BTreeSet::new(),
};

impl Tags {
    /// Ids whose tags lie in `lo..=hi`, ascending.
    fn ids_in(&self, lo: u64, hi: u64) -> Vec<u64> {
        let start = self.merged.partition_point(|&(t, _)| t < lo);
        let mut out: Vec<u64> = self.merged[start..]
            .iter()
            .take_while(|&&(t, _)| t <= hi)
            .map(|&(_, id)| id)
            .collect();
        out.extend(
            self.recent
                .range((lo, 0)..=(hi, u64::MAX))
                .map(|&(_, id)| id),
        );
        out.sort_unstable();
        out
    }

    /// Ids of invitations that may be under `tag`, ascending.
    pub(super) fn candidates(&self, tag: u64) -> Vec<u64> {
        self.ids_in(tag, tag)
    }

    /// Ids of invitations that may be `person`'s (the tag's first 40 bits).
    pub(super) fn of_person(&self, person_bits: u64) -> Vec<u64> {
        let lo = person_bits << 24;
        self.ids_in(lo, lo | 0xFF_FFFF)
    }

    pub(super) fn add(&mut self, tag: u64, id: u64) {
        self.recent.insert((tag, id));
        if self.recent.len() >= RECENT_MIN.max(self.merged.len() / 8) {
            self.merge();
        }
    }

    pub(super) fn remove(&mut self, tag: u64, id: u64) {
        if !self.recent.remove(&(tag, id))
            && let Ok(at) = self.merged.binary_search(&(tag, id))
        {
            self.merged.remove(at);
        }
    }

    /// Entries held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.merged.len() + self.recent.len()
    }

    /// The recent entries merged into the sorted array, in place from the
    /// back (no second array of the whole index).
    fn merge(&mut self) {
        let recent = std::mem::take(&mut self.recent);
        let old = self.merged.len();
        self.merged.reserve_exact(recent.len());
        self.merged
            .extend(std::iter::repeat_n((0, 0), recent.len()));
        let mut write = self.merged.len();
        let mut read = old;
        for &entry in recent.iter().rev() {
            while read > 0 && self.merged[read - 1] > entry {
                write -= 1;
                read -= 1;
                self.merged[write] = self.merged[read];
            }
            write -= 1;
            self.merged[write] = entry;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(entries: Vec<(u64, u64)>) -> OpenTags {
        let t = OpenTags::default();
        t.install(Ok(entries));
        t
    }

    #[test]
    fn candidates_come_from_merged_and_recent_entries_in_id_order() {
        let t = loaded(vec![(7, 3), (5, 1), (7, 2)]);
        let mut g = t.lock().unwrap();
        g.add(7, 10);
        g.add(8, 11);
        assert_eq!(g.candidates(7), vec![2, 3, 10]);
        assert_eq!(g.candidates(8), vec![11]);
        assert_eq!(g.candidates(6), Vec::<u64>::new());
        g.remove(7, 3);
        g.remove(7, 10);
        assert_eq!(g.candidates(7), vec![2]);
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn a_person_is_every_tag_with_their_first_forty_bits() {
        let ann = 0xAB_CDEF_0123u64;
        let t = loaded(vec![
            (ann << 24, 1),
            ((ann << 24) | 0xFF_FFFF, 2),
            (((ann + 1) << 24), 3),
            (((ann - 1) << 24) | 0xFF_FFFF, 4),
        ]);
        assert_eq!(t.lock().unwrap().of_person(ann), vec![1, 2]);
    }

    #[test]
    fn merges_keep_the_array_sorted_and_lose_nothing() {
        let t = loaded(Vec::new());
        let mut g = t.lock().unwrap();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut all = Vec::new();
        for id in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let tag = x % 5_000;
            g.add(tag, id);
            all.push((tag, id));
        }
        assert!(g.merged.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(g.len(), 20_000);
        for tag in [0, 17, 4_999] {
            let mut want: Vec<u64> = all
                .iter()
                .filter(|(t, _)| *t == tag)
                .map(|(_, id)| *id)
                .collect();
            want.sort_unstable();
            assert_eq!(g.candidates(tag), want);
        }
    }

    #[test]
    fn a_lock_waits_for_the_load() {
        let t = std::sync::Arc::new(OpenTags::default());
        let waiter = {
            let t = t.clone();
            std::thread::spawn(move || t.lock().unwrap().candidates(1))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        t.install(Ok(vec![(1, 9)]));
        assert_eq!(waiter.join().unwrap(), vec![9]);
    }

    #[test]
    fn an_index_that_could_not_be_read_fails_every_caller() {
        let t = OpenTags::default();
        t.install(Err(StoreError::Corrupt("an entry".into())));
        assert!(t.lock().is_err());
    }
}
