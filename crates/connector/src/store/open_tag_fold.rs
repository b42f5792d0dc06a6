//! Once per store whose open-invitation index is led by the person (`op/`,
//! schema 4 and before): each key becomes a tag for every invitation it
//! names, in the blocks keyed by id (`ot/`, `open_blocks.rs`); and at every
//! open, the copy in memory is loaded from those blocks.
//!
//! Resumable without a cursor: a chunk's tags and the removal of its old
//! keys are one transaction, so a kill leaves only old keys not yet
//! folded, and folding a key twice writes the same tags.

use super::engine::{Transactional, TxError, TxTable};
use super::open_index::{ids, tag_of_person_led};
use super::schema::{self, IdxKey};
use super::{Core, Result, StoreError, TxResult};

/// Old keys folded per atomic batch.
const CHUNK: usize = 1_000;

impl Core {
    /// Fold what is left of a person-led index, logging as it goes.
    pub(super) fn fold_open_tags_once(&self) -> Result<()> {
        let mut folded = 0u64;
        let mut next_log = 100_000;
        loop {
            let chunk: Vec<_> = self
                .idx
                .scan_prefix(schema::OPEN_PREFIX)
                .take(CHUNK)
                .collect::<std::result::Result<_, _>>()?;
            if chunk.is_empty() {
                break;
            }
            if folded == 0 {
                tracing::info!(
                    invitations = self.invitations.len() as u64,
                    "store: keying the open-invitation index by invitation (once)"
                );
            }
            (&self.idx).transaction(|idx| {
                for (k, v) in &chunk {
                    fold_key(idx, k, v)?;
                    idx.remove(k)?;
                }
                Ok::<_, TxError<StoreError>>(())
            })?;
            folded += chunk.len() as u64;
            if folded >= next_log {
                tracing::info!(keys = folded, "store: keying the open-invitation index");
                next_log += 100_000;
            }
        }
        if folded > 0 {
            self.db.flush()?;
            tracing::info!(
                keys = folded,
                "store: the open-invitation index is keyed by invitation"
            );
        }
        Ok(())
    }

    /// Read the index's entries and hand them to the copy in memory, on a
    /// thread of its own: the daemon is ready meanwhile, and what needs the
    /// index (storing invitations, suppressing, forgetting) waits for it.
    /// The thread holds the database open while it reads, so it stops as
    /// soon as every handle of the store is dropped (a command that opened
    /// the store and is done, a test reopening it).
    pub(super) fn load_open_tags(&self) {
        let (idx, open) = (self.idx.clone(), self.open.clone());
        // Every invitation has a tag, forgotten ones aside: the counters say
        // how many without a walk.
        let expected: u64 = crate::domain::State::ALL
            .iter()
            .filter_map(|s| self.counter(&super::schema::Counter::Invitations(*s)).ok())
            .sum();
        let spawned = std::thread::Builder::new()
            .name("open-index-load".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                // This thread's handle is the last one: nobody will ask.
                let wanted = || std::sync::Arc::strong_count(&open) > 1;
                let read = match super::open_blocks::entries(&idx, expected as usize, &wanted, super::open_tags::entry) {
                    Ok(Some(entries)) => Ok(entries),
                    Ok(None) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "store: the open-invitation index could not be read");
                        Err(e)
                    }
                };
                let n = read.as_ref().map_or(0, Vec::len);
                open.install(read);
                tracing::debug!(
                    entries = n,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "store: open-invitation index loaded"
                );
            });
        if let Err(e) = spawned {
            self.open.install(Err(StoreError::Blocking(format!(
                "no thread to load the open-invitation index: {e}"
            ))));
        }
    }
}

/// One person-led key's ids given its tag, and the one that blocked (the
/// last) reopened past the others if it is not the newest.
fn fold_key(idx: &TxTable<'_>, key: &[u8], v: &[u8]) -> TxResult<()> {
    let Some(tag) = tag_of_person_led(key) else {
        return Ok(());
    };
    let mut all: Vec<u64> = ids(v).collect();
    let (Some(&last), Some(&max)) = (all.last(), all.iter().max()) else {
        return Ok(());
    };
    if last != max {
        // `max + 1`: above every other id of this identity; an invitation
        // inserted later gets an id at least as high, and wins a tie.
        idx.insert(
            IdxKey::OpenReopened(last).encode(),
            max.saturating_add(1).to_be_bytes(),
        )?;
    }
    all.sort_unstable();
    all.dedup();
    let tagged: Vec<(u64, u64)> = all.into_iter().map(|id| (id, tag)).collect();
    super::open_blocks::tx_set(idx, &tagged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_blocking_id_is_reopened_past_the_others() {
        let key = IdxKey::Open {
            person: [0x11; 32],
            what: [0x22; 16],
        }
        .encode();
        let tag = tag_of_person_led(&key).unwrap();
        use super::super::open_index::with_current;
        let v = with_current(Some(&with_current(None, 9)), 5);
        let (_dir, _db, t) = super::super::open_blocks::tests::scratch_idx();
        (&t).transaction(|idx| fold_key(idx, &key, &v)).unwrap();
        let reopened = t.get(IdxKey::OpenReopened(5).encode()).unwrap().unwrap();
        assert_eq!(super::super::decode_u64(&reopened), 10);
        assert!(t.get(IdxKey::OpenReopened(9).encode()).unwrap().is_none());
        let mut e = super::super::open_blocks::entries(&t, 2, &|| true, |t, i| (t, i))
            .unwrap()
            .unwrap();
        e.sort();
        assert_eq!(e, vec![(tag, 5), (tag, 9)]);
    }
}
