//! The store's schema version, and the upgrade of an older store in place.
//!
//! A store carries the version of its layout in `meta` (`schema_version`,
//! a big-endian `u32`); a store written before versions existed has none
//! and is version 1. On open, before anything else writes, a store newer
//! than this binary is refused ([`StoreError::TooNew`], exit 78) and an older
//! one is brought to [`CURRENT`] by the ordered [`STEPS`]. The number is
//! also kept in a small file beside the engine's own ([`VERSION_FILE`]), read
//! before the engine opens the directory: it writes when it opens a database
//! (its snapshot), so a newer store is refused without a byte changed, and
//! `check-config` can read it while the daemon holds the store's lock.
//!
//! Adding a step: write `fn my_step(w: &mut Walker) -> Result<()>` and add
//! one line to [`STEPS`] with the next version (and raise [`CURRENT`]). A
//! step that moves records goes through [`Walker::rewrite`]: each batch's
//! writes and the step's progress are one transaction, so a `kill -9`
//! resumes after the last batch written and never applies a batch twice;
//! each finished step stamps its version (removing its progress), so a
//! later kill resumes at the next step.
//! `rotate-key` re-seals a store as it finds it: a step that changes what a
//! sealed value looks like must teach `rotation.rs` the old form too, or
//! make `rotate-key` upgrade first.

use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

use super::engine::{Engine, EngineError, Table, Transactional, TxError, WriteBatch};
use super::schema::tables;

use super::error::{Result, StoreError};

/// The layout this binary reads and writes.
pub const CURRENT: u32 = 5;

/// In `meta`: the store's schema version.
const VERSION_KEY: &str = "schema_version";

/// Beside the engine's files in `store.path`: the version as text (a mirror of
/// `meta`, written after it).
pub const VERSION_FILE: &str = "schema-version";

/// In `meta`: where an unfinished step stands (`migrate/{step}/{tree}/…`),
/// removed when the version is stamped.
const PROGRESS: &str = "migrate/";

/// Records per transaction when a step rewrites a tree.
const BATCH: usize = 1000;

/// Batches written by steps since this process started: the daemon asks
/// systemd for more start time while it grows (`app/store_open.rs`).
static BATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See [`BATCHES`].
pub fn batches_done() -> u64 {
    BATCHES.load(std::sync::atomic::Ordering::Relaxed)
}

/// How often a running step logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// One upgrade: from the version before `to`, to `to`.
struct Step {
    to: u32,
    name: &'static str,
    run: fn(&mut Walker) -> Result<()>,
}

/// In order; a store at version `v` runs every step with `to > v`.
const STEPS: &[Step] = &[
    Step {
        to: 2,
        name: "stamp the schema version",
        run: stamp_only,
    },
    // Readings keyed by where they stand: the rows are moved (and sealed
    // under their new keys) by `Core::migrate_readings_layout` right after
    // the steps, resumably, under its own marker; the version says that
    // an older release must not open the store.
    Step {
        to: 3,
        name: "readings keyed by state",
        run: stamp_only,
    },
    // Invitations sealed as raw bytes, the person index folded into the
    // open-invitation index (`op/`) and the work index kept as bits
    // (`wb/`): moved by `fold_person_index_once` and
    // `fold_work_index_once` right after the steps, as above.
    Step {
        to: 4,
        name: "invitation indexes folded",
        run: stamp_only,
    },
    // The open-invitation index keyed by invitation (`ot/`), not led by
    // the person: moved by `fold_open_tags_once` right after the steps.
    Step {
        to: 5,
        name: "open-invitation index keyed by invitation",
        run: stamp_only,
    },
];

/// Version 2 is the first to carry a version: the layout is version 1's.
fn stamp_only(_: &mut Walker) -> Result<()> {
    Ok(())
}

/// What a store is, before it is opened for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// No key check yet: nothing was ever written by a daemon.
    New,
    At(u32),
}

/// The store at `path` as seen without opening it (for `check-config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk {
    /// No store there yet: the first start creates it.
    NoStore,
    /// A store with no version file: written by a release before versions
    /// (or stamped by a start that was killed before writing the file).
    Unstamped,
    Stamped(u32),
}

fn too_new(path: &Path, found: u32) -> StoreError {
    StoreError::TooNew {
        path: path.display().to_string(),
        found,
        supported: CURRENT,
    }
}

/// The store at `path` without opening it; a newer one is
/// [`StoreError::TooNew`].
pub fn on_disk(path: &Path) -> Result<OnDisk> {
    let file = path.join(VERSION_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match path.join("db").try_exists() {
                Ok(true) => Ok(OnDisk::Unstamped),
                Ok(false) => Ok(OnDisk::NoStore),
                Err(e) => Err(StoreError::Engine(EngineError::from_io(e))),
            };
        }
        Err(e) => return Err(StoreError::Engine(EngineError::from_io(e))),
    };
    let v: u32 = text
        .trim()
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("{}: not a version", file.display())))?;
    if v > CURRENT {
        return Err(too_new(path, v));
    }
    Ok(OnDisk::Stamped(v))
}

/// The version in `meta` (checked before anything writes); newer than this
/// binary is [`StoreError::TooNew`].
pub(super) fn found(meta: &Table, path: &Path) -> Result<Found> {
    match meta.get(VERSION_KEY)? {
        Some(v) => {
            let v = <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("meta/schema_version".into()))?;
            if v > CURRENT {
                return Err(too_new(path, v));
            }
            Ok(Found::At(v))
        }
        None if meta.get(super::db::KEY_CHECK_NAME)?.is_none() => Ok(Found::New),
        None => Ok(Found::At(1)),
    }
}

/// Bring the store to [`CURRENT`]: a new one is stamped, an older one runs
/// the steps it lacks (each resuming where a killed run left it).
pub(super) fn upgrade(db: &Engine, path: &Path, found: Found) -> Result<()> {
    let meta = db.table(tables::META)?;
    let from = match found {
        Found::New => return stamp(&meta, path, CURRENT),
        Found::At(v) if v == CURRENT => return mirror(path, CURRENT),
        Found::At(v) => v,
    };
    tracing::info!(
        from,
        to = CURRENT,
        path = %path.display(),
        "store migration: upgrading the store in place"
    );
    let started = Instant::now();
    if let Some(pause) = drill() {
        let mut w = Walker::new(db, &meta, "drill");
        w.batch = 4;
        w.pause = pause;
        drill_all(&mut w)?;
    }
    for step in STEPS.iter().filter(|s| s.to > from) {
        tracing::info!(step = step.name, to = step.to, "store migration: step");
        (step.run)(&mut Walker::new(db, &meta, step.name))?;
        // Done: a later kill resumes at the next step.
        stamp(&meta, path, step.to)?;
    }
    tracing::info!(
        from,
        to = CURRENT,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store migration: finished"
    );
    Ok(())
}

/// Write `version` in `meta` with the progress of the steps before it
/// removed, make it durable, then the mirror file.
fn stamp(meta: &Table, path: &Path, version: u32) -> Result<()> {
    let mut batch = WriteBatch::default();
    for item in meta.scan_prefix(PROGRESS) {
        batch.remove(item?.0);
    }
    batch.insert(VERSION_KEY, version.to_be_bytes());
    meta.apply_batch(batch)?;
    meta.flush()?;
    mirror(path, version)
}

/// The version file, written whole (temporary file, fsync, rename) unless
/// it already says `version`.
fn mirror(path: &Path, version: u32) -> Result<()> {
    let io = |e| StoreError::Engine(EngineError::from_io(e));
    let file = path.join(VERSION_FILE);
    let text = format!("{version}\n");
    if std::fs::read_to_string(&file).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let tmp = path.join(format!("{VERSION_FILE}.tmp"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &file).map_err(io)?;
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// What a step makes of one record: `(key, value)` → its [`Change`].
pub(super) type Rewrite<'f> = &'f dyn Fn(&[u8], &[u8]) -> Result<Change>;

/// What becomes of one record visited by [`Walker::rewrite`].
#[allow(dead_code)]
pub(super) enum Change {
    Keep,
    Put(Vec<u8>),
    Remove,
    /// Removed from its key and written under another of the same tree
    /// (the walk goes on in the old keys' order: a step that moves records
    /// forward must recognise a moved one and keep it).
    Move {
        key: Vec<u8>,
        value: Vec<u8>,
    },
}

/// A running step: the database, and where the step stands in `meta`.
pub(super) struct Walker<'a> {
    db: &'a Engine,
    meta: &'a Table,
    step: &'static str,
    batch: usize,
    /// Between batches (the drill only).
    pause: Duration,
    /// When progress was last logged (over every tree of the step).
    logged: Instant,
}

impl<'a> Walker<'a> {
    fn new(db: &'a Engine, meta: &'a Table, step: &'static str) -> Self {
        Self {
            db,
            meta,
            step,
            batch: BATCH,
            pause: Duration::ZERO,
            logged: Instant::now(),
        }
    }

    fn keys(&self, tree: &str) -> (String, String) {
        let base = format!("{PROGRESS}{}/{tree}/", self.step);
        (format!("{base}after"), format!("{base}done"))
    }

    /// Visit every record of `tree` in key order and apply `change` to each;
    /// a batch's changes and the step's progress are one transaction, so a
    /// killed run resumes after the last batch written.
    pub(super) fn rewrite(&mut self, tree: &str, change: Rewrite) -> Result<()> {
        let t = self.db.table(tree)?;
        let (after_key, done_key) = self.keys(tree);
        let mut after = self.meta.get(&after_key)?.map(|v| v.to_vec());
        let mut done = self
            .meta
            .get(&done_key)?
            .map(|v| super::codec::decode_u64(&v))
            .unwrap_or(0);
        let total = t.len() as u64;
        let step = self.step;
        if after.is_some() {
            tracing::info!(step, tree, done, total, "store migration: resuming");
        }
        loop {
            let start = after
                .as_deref()
                .map_or(Bound::Unbounded, |k| Bound::Excluded(k.to_vec()));
            let mut ops = Vec::with_capacity(self.batch);
            for item in t.range((start, Bound::Unbounded)).take(self.batch) {
                let (k, v) = item?;
                ops.push((k.to_vec(), change(&k, &v)?));
            }
            let Some(last) = ops.last().map(|(k, _)| k.clone()) else {
                break;
            };
            done += ops.len() as u64;
            apply(&t, self.meta, &ops, (&after_key, &last), (&done_key, done))?;
            after = Some(last);
            BATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if self.logged.elapsed() >= PROGRESS_EVERY {
                tracing::info!(step, tree, done, total, "store migration: progress");
                self.logged = Instant::now();
            }
            std::thread::sleep(self.pause);
        }
        tracing::info!(step, tree, done, total, "store migration: tree done");
        Ok(())
    }
}

/// One batch: the records' changes and the step's progress, atomically.
fn apply(
    t: &Table,
    meta: &Table,
    ops: &[(Vec<u8>, Change)],
    (after_key, last): (&str, &[u8]),
    (done_key, done): (&str, u64),
) -> Result<()> {
    (t, meta).transaction(|(t, m)| {
        for (k, op) in ops {
            match op {
                Change::Keep => {}
                Change::Put(v) => {
                    t.insert(k.as_slice(), v.as_slice())?;
                }
                Change::Remove => {
                    t.remove(k.as_slice())?;
                }
                Change::Move { key, value } => {
                    t.remove(k.as_slice())?;
                    t.insert(key.as_slice(), value.as_slice())?;
                }
            }
        }
        m.insert(after_key, last)?;
        m.insert(done_key, done.to_be_bytes())?;
        Ok::<(), TxError<StoreError>>(())
    })
}

/// Debug builds only: `MYDEX_CONNECTOR_MIGRATION_DRILL=<ms>` makes an
/// upgrade first rewrite every record unchanged, four at a time with that
/// pause between batches, so a test can kill it midway and see it resume
/// (`tests/it/store_migration.rs`). Release builds ignore it.
fn drill() -> Option<Duration> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let ms = std::env::var("MYDEX_CONNECTOR_MIGRATION_DRILL").ok()?;
    ms.trim().parse().ok().map(Duration::from_millis)
}

/// The drill: every tree but `meta`, each value written back as it is.
fn drill_all(w: &mut Walker) -> Result<()> {
    for name in tables::ALL.into_iter().filter(|n| *n != tables::META) {
        w.rewrite(name, &|_, v| Ok(Change::Put(v.to_vec())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &Path) -> Engine {
        super::super::db::open_db(dir).unwrap()
    }

    #[test]
    fn a_new_store_is_stamped_and_a_newer_one_refused_before_the_engine_opens() {
        let dir = tempfile::tempdir().unwrap();
        let d = db(dir.path());
        let meta = d.table(tables::META).unwrap();
        assert_eq!(found(&meta, dir.path()).unwrap(), Found::New);
        upgrade(&d, dir.path(), Found::New).unwrap();
        assert_eq!(found(&meta, dir.path()).unwrap(), Found::At(CURRENT));
        assert_eq!(on_disk(dir.path()).unwrap(), OnDisk::Stamped(CURRENT));
        meta.insert(VERSION_KEY, (CURRENT + 1).to_be_bytes())
            .unwrap();
        let r = found(&meta, dir.path());
        assert!(matches!(r, Err(StoreError::TooNew { found, .. }) if found == CURRENT + 1));
        std::fs::write(dir.path().join(VERSION_FILE), format!("{}\n", CURRENT + 1)).unwrap();
        assert!(matches!(
            on_disk(dir.path()),
            Err(StoreError::TooNew { .. })
        ));
        assert!(
            StoreError::TooNew {
                path: String::new(),
                found: 3,
                supported: 2
            }
            .is_config_problem()
        );
    }

    #[test]
    fn the_steps_go_one_version_at_a_time_up_to_current() {
        let to: Vec<u32> = STEPS.iter().map(|s| s.to).collect();
        let want: Vec<u32> = (2..=CURRENT).collect();
        assert_eq!(to, want);
    }

    /// A step that moves every record to a prefixed key, killed (an error)
    /// after two batches, then run again: every record moved once.
    #[test]
    fn a_rewrite_interrupted_resumes_after_its_last_batch() {
        let dir = tempfile::tempdir().unwrap();
        let d = db(dir.path());
        let meta = d.table(tables::META).unwrap();
        let t = d.table("t").unwrap();
        for i in 0u64..10 {
            t.insert(i.to_be_bytes(), i.to_be_bytes()).unwrap();
        }
        let calls = std::cell::Cell::new(0);
        let step = |k: &[u8], v: &[u8]| -> Result<Change> {
            if k.starts_with(b"new/") {
                return Ok(Change::Keep);
            }
            calls.set(calls.get() + 1);
            if calls.get() == 7 {
                return Err(StoreError::Corrupt("killed".into()));
            }
            let mut key = b"new/".to_vec();
            key.extend_from_slice(k);
            Ok(Change::Move {
                key,
                value: v.to_vec(),
            })
        };
        let mut w = Walker::new(&d, &meta, "test");
        w.batch = 3;
        assert!(w.rewrite("t", &step).is_err());
        // Two batches of three written; the third was not.
        assert_eq!(t.scan_prefix("new/").count(), 6);
        assert_eq!(t.len(), 10);
        let mut w = Walker::new(&d, &meta, "test");
        w.batch = 3;
        w.rewrite("t", &step).unwrap();
        assert_eq!(t.scan_prefix("new/").count(), 10);
        assert_eq!(t.len(), 10);
        for i in 0u64..10 {
            let mut key = b"new/".to_vec();
            key.extend_from_slice(&i.to_be_bytes());
            assert_eq!(t.get(key).unwrap().unwrap().as_ref(), i.to_be_bytes());
        }
        stamp(&meta, dir.path(), CURRENT).unwrap();
        assert_eq!(meta.scan_prefix(PROGRESS).count(), 0);
    }
}
