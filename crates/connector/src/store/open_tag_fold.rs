//! Once per store whose open-invitation index is led by the person (`op/`,
//! schema 4 and before): each key becomes one entry per invitation it
//! names, keyed by id (`ot/`, `open_index.rs`), and the copy in memory is
//! loaded from those entries at every open.
//!
//! Resumable without a cursor: a chunk's new entries and the removal of
//! its old keys are one atomic batch, so a kill leaves only old keys not
//! yet folded, and folding a key twice writes the same entries.

use super::engine::{Table, WriteBatch};
use super::open_index::{ids, parse_value, tag_of_person_led, value};
use super::schema::{self, IdxKey};
use super::{Core, Result, StoreError};

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
            let mut batch = WriteBatch::default();
            for (k, v) in &chunk {
                fold_key(&mut batch, k, v);
                batch.remove(k);
            }
            self.idx.apply_batch(batch)?;
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
    pub(super) fn load_open_tags(&self) {
        let (idx, open) = (self.idx.clone(), self.open.clone());
        let spawned = std::thread::Builder::new()
            .name("open-index-load".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let read = entries(&idx);
                if let Err(e) = &read {
                    tracing::error!(error = %e, "store: the open-invitation index could not be read");
                }
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

/// One person-led key's entries: each id under it, and the one that
/// blocked (the last) reopened past the others if it is not the newest.
fn fold_key(batch: &mut WriteBatch, key: &[u8], v: &[u8]) {
    let Some(tag) = tag_of_person_led(key) else {
        return;
    };
    let all: Vec<u64> = ids(v).collect();
    let (Some(&last), Some(&max)) = (all.last(), all.iter().max()) else {
        return;
    };
    for &id in &all {
        // `max + 1`: above every other id of this identity; an invitation
        // inserted later gets an id at least as high, and wins a tie.
        let opened = (id == last && last != max).then_some(max.saturating_add(1));
        batch.insert(IdxKey::OpenTag(id).encode(), value(tag, opened));
    }
}

/// Every entry of the index as `(tag, id)`.
fn entries(idx: &Table) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for item in idx.scan_prefix(schema::OPEN_TAG_PREFIX) {
        let (k, v) = item?;
        let (Some(IdxKey::OpenTag(id)), Some((tag, _))) = (IdxKey::decode(&k), parse_value(&v))
        else {
            return Err(StoreError::Corrupt("an open-index entry".into()));
        };
        out.push((tag, id));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_blocking_id_is_reopened_past_the_others() {
        let person = [0x11; 32];
        let what = [0x22; 16];
        let key = IdxKey::Open { person, what }.encode();
        let tag = tag_of_person_led(&key).unwrap();
        use super::super::open_index::with_current;
        let v = with_current(Some(&with_current(None, 9)), 5);
        let mut batch = WriteBatch::default();
        fold_key(&mut batch, &key, &v);
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::engine::Engine::open(
            dir.path(),
            &super::super::engine::Tuning {
                cache_bytes: 1 << 20,
                flush_every_ms: None,
            },
        )
        .unwrap();
        let t = db.table("idx").unwrap();
        t.apply_batch(batch).unwrap();
        let read = |id: u64| parse_value(&t.get(IdxKey::OpenTag(id).encode()).unwrap().unwrap());
        assert_eq!(read(9), Some((tag, None)));
        assert_eq!(read(5), Some((tag, Some(10))));
        let mut e = entries(&t).unwrap();
        e.sort();
        assert_eq!(e, vec![(tag, 5), (tag, 9)]);
    }
}
