//! Swapping a compacted copy in for the store so that a kill at any moment
//! leaves one whole store at `store.path`, and clearing what a killed
//! compaction left beside it at the next open (the daemon's, `store
//! compact`'s, `rotate-key`'s), before sled opens the store: sled would
//! create an empty store where the old one was moved away.
//!
//! Beside the store, in its parent directory (so on its filesystem), a
//! compaction writes `<name>.compact-new`, then: renames the store to
//! `<name>.compact-old`, renames `.compact-new` to the store, fsyncs the
//! parent, removes `.compact-old`. What a kill leaves, and the recovery:
//!
//! | found | how | recovery |
//! |---|---|---|
//! | store, `.compact-new` | copy not swapped | `.compact-new` removed |
//! | `.compact-old`, `.compact-new`, no store | between the renames | rolled back: `.compact-old` renamed to the store, `.compact-new` removed |
//! | store, `.compact-old` | swapped, old not yet removed | `.compact-old` removed |
//!
//! Anything else beside the store is left alone and refused. A compaction
//! holds the lock sled takes (`flock` on a store's `db` file) on the store
//! or the copy at every moment, and on both during the swap, so an open
//! that finds one of them locked is `InUse` and touches nothing under way.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::compact_error::CompactError;
use crate::store::error::{Result, StoreError};

/// Where a step of a compaction stands (for progress, and for the test
/// knob that stops the command at a step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactStep {
    /// Records copied so far into `.compact-new` (after each flushed batch).
    Copying { records: u64 },
    /// The copy complete, read back and verified; nothing swapped yet.
    Verified,
    /// The store renamed to `.compact-old`: no store at `store.path`.
    OldMoved,
    /// The copy renamed to `store.path`; `.compact-old` still there.
    NewMoved,
    /// `.compact-old` partly removed (its log file gone).
    OldRemoving,
}

impl CompactStep {
    /// The step's name (`copying`, `verified`, `old-moved`, `new-moved`,
    /// `old-removing`).
    pub fn name(&self) -> &'static str {
        match self {
            CompactStep::Copying { .. } => "copying",
            CompactStep::Verified => "verified",
            CompactStep::OldMoved => "old-moved",
            CompactStep::NewMoved => "new-moved",
            CompactStep::OldRemoving => "old-removing",
        }
    }
}

/// The directories beside a store that a compaction uses.
#[derive(Debug, Clone)]
pub(crate) struct Sides {
    pub(crate) store: PathBuf,
    pub(crate) new: PathBuf,
    pub(crate) old: PathBuf,
    parent: PathBuf,
}

impl Sides {
    pub(crate) fn of(path: &Path) -> Self {
        // Without a trailing `/`, which would put the names inside the store.
        let store: PathBuf = path.components().collect();
        let beside = |suffix: &str| {
            let mut s = store.as_os_str().to_owned();
            s.push(suffix);
            PathBuf::from(s)
        };
        let (new, old) = (beside(".compact-new"), beside(".compact-old"));
        let parent = match store.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Self {
            store,
            new,
            old,
            parent,
        }
    }

    fn fsync_parent(&self) -> Result<()> {
        fsync(&self.parent)
    }
}

/// A store directory's lock, held: the `flock` sled takes on its `db` file.
pub(crate) struct Held {
    _file: File,
}

/// Take `dir`'s lock if it has a `db` file (`None` if not); `InUse` if
/// another open file holds it (sled, in this process or another).
fn try_hold(dir: &Path) -> Result<Option<Held>> {
    let db = dir.join("db");
    let file = match File::open(&db) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CompactError::io("open", &db)(e).into()),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(Held { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(CompactError::io("lock", &db)(e).into()),
    }
}

/// Take `dir`'s lock, waiting up to `limit` for a sled handle of ours just
/// dropped to let go of it (its threads close the file a moment later).
pub(crate) fn hold(dir: &Path, limit: Duration) -> Result<Held> {
    let until = Instant::now() + limit;
    loop {
        match try_hold(dir) {
            Ok(Some(held)) => return Ok(held),
            Ok(None) => {
                let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
                return Err(CompactError::io("lock", &dir.join("db"))(gone).into());
            }
            Err(StoreError::InUse { .. }) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e),
        }
    }
}

/// What the recovery at open found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing beside the store.
    Clean,
    /// A copy never swapped in, removed.
    Discarded,
    /// Killed between the renames: the old store put back.
    RolledBack,
    /// Swapped; the old store, left behind, removed.
    Finished,
}

/// Before the store at `path` is opened: clear what a killed compaction
/// left beside it (see the module's table).
pub(crate) fn recover(path: &Path) -> Result<Recovery> {
    let sides = Sides::of(path);
    let (new, old) = (exists(&sides.new)?, exists(&sides.old)?);
    if !new && !old {
        return Ok(Recovery::Clean);
    }
    // Held while we act, so that two opens never recover at once.
    let _held = (
        try_hold(&sides.store)?,
        try_hold(&sides.new)?,
        try_hold(&sides.old)?,
    );
    let store = exists(&sides.store)?;
    let done = match (store, old, new) {
        (false, true, _) => {
            rename(&sides.old, &sides.store)?;
            sides.fsync_parent()?;
            if new {
                remove_store_dir(&sides, &sides.new, &mut |_| {})?;
            }
            Recovery::RolledBack
        }
        (true, true, false) => {
            remove_store_dir(&sides, &sides.old, &mut |_| {})?;
            Recovery::Finished
        }
        (true, false, true) => {
            remove_store_dir(&sides, &sides.new, &mut |_| {})?;
            Recovery::Discarded
        }
        (_, _, _) => {
            let found = if old { sides.old } else { sides.new };
            return Err(CompactError::Leftover {
                found,
                path: sides.store,
            }
            .into());
        }
    };
    tracing::warn!(
        store = %sides.store.display(),
        recovery = ?done,
        "an interrupted store compaction was found and cleared"
    );
    Ok(done)
}

/// Swap the verified copy at `.compact-new` in for the store; the caller
/// holds both locks (`hold`). Each step is durable before the next.
pub(crate) fn swap(sides: &Sides, on_step: &mut dyn FnMut(CompactStep)) -> Result<()> {
    fsync_tree(&sides.new)?;
    rename(&sides.store, &sides.old)?;
    sides.fsync_parent()?;
    on_step(CompactStep::OldMoved);
    rename(&sides.new, &sides.store)?;
    sides.fsync_parent()?;
    on_step(CompactStep::NewMoved);
    remove_store_dir(sides, &sides.old, on_step)
}

/// Remove a store directory that is not the store: its log file first
/// (the bulk), then the rest; the parent fsynced.
pub(crate) fn remove_store_dir(
    sides: &Sides,
    dir: &Path,
    on_step: &mut dyn FnMut(CompactStep),
) -> Result<()> {
    let db = dir.join("db");
    match std::fs::remove_file(&db) {
        Ok(()) => on_step(CompactStep::OldRemoving),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CompactError::io("remove", &db)(e).into()),
    }
    std::fs::remove_dir_all(dir).map_err(CompactError::io("remove", dir))?;
    sides.fsync_parent()
}

/// Bytes the files under `dir` take on disk (as `du` counts them).
pub(crate) fn bytes_on_disk(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(CompactError::io("read", &d))? {
            let entry = entry.map_err(CompactError::io("read", &d))?;
            let meta = entry
                .metadata()
                .map_err(CompactError::io("read", &entry.path()))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

fn exists(p: &Path) -> Result<bool> {
    p.try_exists()
        .map_err(|e| CompactError::io("read", p)(e).into())
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| CompactError::io("rename", from)(e).into())
}

fn fsync(p: &Path) -> Result<()> {
    File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| CompactError::io("fsync", p)(e).into())
}

/// fsync every file and directory under `dir` (sled does not sync its
/// `conf` file, nor its directories).
fn fsync_tree(dir: &Path) -> Result<()> {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(CompactError::io("read", &d))? {
            let p = entry.map_err(CompactError::io("read", &d))?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                fsync(&p)?;
            }
        }
        fsync(&d)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_dir(p: &Path, tag: &str) {
        std::fs::create_dir_all(p.join("blobs")).unwrap();
        std::fs::write(p.join("db"), tag).unwrap();
        std::fs::write(p.join("conf"), tag).unwrap();
    }

    fn tag(p: &Path) -> String {
        std::fs::read_to_string(p.join("db")).unwrap()
    }

    #[test]
    fn names_sit_beside_the_store_even_with_a_trailing_slash() {
        let s = Sides::of(Path::new("/var/lib/x/db/"));
        assert_eq!(s.new, Path::new("/var/lib/x/db.compact-new"));
        assert_eq!(s.old, Path::new("/var/lib/x/db.compact-old"));
        assert_eq!(Sides::of(Path::new("db")).parent, Path::new("."));
    }

    #[test]
    fn each_state_a_kill_leaves_recovers_to_one_store() {
        let dir = tempfile::tempdir().unwrap();
        let sides = Sides::of(&dir.path().join("db"));
        assert_eq!(recover(&sides.store).unwrap(), Recovery::Clean);
        // A copy never swapped in.
        store_dir(&sides.store, "original");
        store_dir(&sides.new, "copy");
        assert_eq!(recover(&sides.store).unwrap(), Recovery::Discarded);
        assert_eq!(tag(&sides.store), "original");
        assert!(!sides.new.exists());
        // Killed between the renames.
        std::fs::rename(&sides.store, &sides.old).unwrap();
        store_dir(&sides.new, "copy");
        assert_eq!(recover(&sides.store).unwrap(), Recovery::RolledBack);
        assert_eq!(tag(&sides.store), "original");
        assert!(!sides.new.exists() && !sides.old.exists());
        // Swapped, the old one left (partly removed).
        store_dir(&sides.old, "stale");
        std::fs::remove_file(sides.old.join("db")).unwrap();
        assert_eq!(recover(&sides.store).unwrap(), Recovery::Finished);
        assert_eq!(tag(&sides.store), "original");
        assert!(!sides.old.exists());
    }

    #[test]
    fn a_state_no_compaction_leaves_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let sides = Sides::of(&dir.path().join("db"));
        store_dir(&sides.new, "copy");
        let e = recover(&sides.store).unwrap_err();
        assert!(e.to_string().contains("no compaction leaves"), "{e}");
        assert_eq!(tag(&sides.new), "copy");
        // All three: which is the store is not ours to guess.
        store_dir(&sides.store, "a");
        store_dir(&sides.old, "b");
        assert!(recover(&sides.store).is_err());
        let tags = (tag(&sides.store), tag(&sides.old), tag(&sides.new));
        assert_eq!(tags, ("a".into(), "b".into(), "copy".into()));
    }

    #[test]
    fn a_locked_leftover_is_a_compaction_under_way_and_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let sides = Sides::of(&dir.path().join("db"));
        store_dir(&sides.store, "original");
        store_dir(&sides.new, "copy");
        let held = hold(&sides.new, Duration::from_secs(1)).unwrap();
        let e = recover(&sides.store).unwrap_err();
        assert!(matches!(e, StoreError::InUse { .. }), "{e}");
        assert_eq!(tag(&sides.new), "copy");
        drop(held);
        assert_eq!(recover(&sides.store).unwrap(), Recovery::Discarded);
    }
}
