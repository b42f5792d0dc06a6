//! The copy behind `store compact`: every tree's live keys and values
//! written into a fresh sled database, so that what old log segments still
//! hold (values overwritten or removed: clear copies from stores written
//! before sealing, the index keys of forgotten people) is not carried over;
//! then the copy reopened and read back, each tree's record count and a
//! digest of its keys and values compared with the store's, before anything
//! is swapped (`compact_swap.rs`).
//!
//! sled hands out ids (`generate_id`: invitations, readings, callbacks)
//! from a counter of its own, not from a tree: the copy's counter is set
//! past the store's, so no id is ever handed out twice.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::compact_error::CompactError;
use super::compact_swap::CompactStep;
use crate::store::error::Result;

/// Records per batch written to the copy (one flush each) ...
const BATCH_RECORDS: usize = 10_000;
/// ... or fewer, when their keys and values reach this many bytes.
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// sled's id persist interval, which every open of the store uses (its
/// default).
const IDGEN_INTERVAL: u64 = 1_000_000;
/// sled's page cache for the copy (as for the store: `db.rs`).
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// One tree as copied: its name, how many records, and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeFigures {
    pub(crate) name: String,
    pub(crate) records: u64,
    digest: [u8; 32],
}

/// What the copy holds, to be found again when it is read back.
#[derive(Debug, Clone)]
pub(crate) struct Copied {
    pub(crate) trees: Vec<TreeFigures>,
    /// The store's next id: every id it handed out is below.
    next_id: u64,
}

impl Copied {
    pub(crate) fn records(&self) -> u64 {
        self.trees.iter().map(|t| t.records).sum()
    }
}

/// The digest of a tree: its name, then each key and value, length-prefixed.
struct TreeDigest(Sha256);

impl TreeDigest {
    fn new(name: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"mydex-connector compact digest v1\0");
        Self::field(&mut h, name);
        Self(h)
    }

    fn field(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }

    fn add(&mut self, key: &[u8], value: &[u8]) {
        Self::field(&mut self.0, key);
        Self::field(&mut self.0, value);
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// Copy every tree of `src` into a new database at `dest` (which must not
/// exist), in batches, each flushed; `on_step` after each batch.
pub(crate) fn copy(
    src: &super::Engine,
    dest: &Path,
    on_step: &mut dyn FnMut(CompactStep),
) -> Result<Copied> {
    let src = &src.db;
    let next_id = src.generate_id()?;
    let dst = sled::Config::new()
        .path(dest)
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(None)
        .create_new(true)
        .open()?;
    let mut names = src.tree_names();
    names.sort();
    let mut trees = Vec::with_capacity(names.len());
    let mut copied = 0u64;
    for name in names {
        let (from, to) = (src.open_tree(&name)?, dst.open_tree(&name)?);
        let mut digest = TreeDigest::new(&name);
        let (mut batch, mut in_batch, mut bytes, mut records) = (sled::Batch::default(), 0, 0, 0);
        for item in from.iter() {
            let (k, v) = item?;
            digest.add(&k, &v);
            (in_batch, bytes, records) = (in_batch + 1, bytes + k.len() + v.len(), records + 1);
            batch.insert(k, v);
            if in_batch >= BATCH_RECORDS || bytes >= BATCH_BYTES {
                to.apply_batch(std::mem::take(&mut batch))?;
                dst.flush()?;
                (in_batch, bytes) = (0, 0);
                on_step(CompactStep::Copying {
                    records: copied + records,
                });
            }
        }
        to.apply_batch(batch)?;
        dst.flush()?;
        copied += records;
        on_step(CompactStep::Copying { records: copied });
        trees.push(TreeFigures {
            name: String::from_utf8_lossy(&name).into_owned(),
            records,
            digest: digest.finish(),
        });
    }
    Ok(Copied { trees, next_id })
}

/// Reopen the copy at `dest` and read it all back: the same trees, each
/// with the same records and digest as `copied`; and set its id counter
/// past the store's. Flushed and closed when it returns.
pub(crate) fn verify(dest: &Path, copied: &Copied) -> Result<()> {
    // At open, sled resumes its id counter at the value it last persisted
    // plus twice its persist interval, and persists the first id handed out
    // after, rounded down to the interval; every open asserts the persisted
    // value is a multiple of the interval it runs with (the store's: sled's
    // default). So this open runs with half a multiple of that default, and
    // the one id taken here persists that multiple, past `next_id`.
    let multiple = copied.next_id / IDGEN_INTERVAL + 1;
    let interval = multiple * (IDGEN_INTERVAL / 2);
    let dst = open_waiting(
        sled::Config::new()
            .path(dest)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(None)
            .idgen_persist_interval(interval),
    )?;
    let taken = dst.generate_id()?;
    if taken <= copied.next_id {
        return Err(mismatch(format!(
            "its id counter is at {taken}, not past the store's {}",
            copied.next_id
        )));
    }
    let mut names = dst.tree_names();
    names.sort();
    let found: Vec<String> = names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let wanted: Vec<&str> = copied.trees.iter().map(|t| t.name.as_str()).collect();
    if found != wanted {
        return Err(mismatch(format!("trees {found:?}, not {wanted:?}")));
    }
    for (name, want) in names.iter().zip(&copied.trees) {
        let mut digest = TreeDigest::new(name);
        let mut records = 0u64;
        for item in dst.open_tree(name)?.iter() {
            let (k, v) = item?;
            digest.add(&k, &v);
            records += 1;
        }
        if records != want.records || digest.finish() != want.digest {
            return Err(mismatch(format!(
                "tree {}: {records} records read back of {}, or their digest differs",
                want.name, want.records
            )));
        }
    }
    dst.flush()?;
    Ok(())
}

/// Open with `config`, waiting up to a minute while a handle of ours just
/// dropped still holds sled's lock (its threads let go a moment later).
fn open_waiting(config: sled::Config) -> Result<sled::Db> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < until =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return Ok(r?),
        }
    }
}

fn mismatch(what: String) -> crate::store::error::StoreError {
    CompactError::Mismatch { what }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reopen(path: &Path) -> sled::Db {
        open_waiting(sled::Config::new().path(path)).unwrap()
    }

    fn filled(path: &Path) -> sled::Db {
        let db = sled::open(path).unwrap();
        for t in ["a", "b"] {
            let tree = db.open_tree(t).unwrap();
            for i in 0u32..25_000 {
                tree.insert(i.to_be_bytes(), format!("{t}-{i}").as_bytes())
                    .unwrap();
            }
        }
        // Overwritten and removed values: not live, not copied.
        let a = db.open_tree("a").unwrap();
        a.insert(b"gone", b"stale secret".as_slice()).unwrap();
        a.remove(b"gone").unwrap();
        db.insert(b"default-key", b"default value".as_slice())
            .unwrap();
        for _ in 0..5000 {
            db.generate_id().unwrap();
        }
        db.flush().unwrap();
        db
    }

    #[test]
    fn the_copy_holds_every_live_record_and_ids_go_on_past_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let src = filled(&dir.path().join("src"));
        let dest = dir.path().join("dest");
        let mut steps = Vec::new();
        let copied = copy(&super::super::Engine { db: src.clone() }, &dest, &mut |s| {
            steps.push(s)
        })
        .unwrap();
        assert_eq!(copied.records(), 50_001);
        assert!(steps.len() >= 5, "a step per batch and per tree: {steps:?}");
        assert_eq!(
            steps.last(),
            Some(&CompactStep::Copying { records: 50_001 })
        );
        let last_id = src.generate_id().unwrap();
        drop(src);
        verify(&dest, &copied).unwrap();
        let db = reopen(&dest);
        assert!(db.generate_id().unwrap() > last_id);
        assert_eq!(db.open_tree("b").unwrap().len(), 25_000);
        assert_eq!(
            db.get(b"default-key").unwrap().as_deref(),
            Some(b"default value".as_slice())
        );
        assert_eq!(db.open_tree("a").unwrap().get(b"gone").unwrap(), None);
    }

    #[test]
    fn a_copy_that_differs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = filled(&dir.path().join("src"));
        let dest = dir.path().join("dest");
        let copied = copy(
            &super::super::Engine { db: src.clone() },
            &dest,
            &mut |_| {},
        )
        .unwrap();
        {
            let db = reopen(&dest);
            db.open_tree("b")
                .unwrap()
                .insert(b"zz", b"x".as_slice())
                .unwrap();
            db.flush().unwrap();
        }
        let e = verify(&dest, &copied).unwrap_err();
        assert!(e.to_string().contains("tree b"), "{e}");
    }
}
