//! When a file in a watched directory (`queue.dir`, `delivery.dir`) is whole.
//! `enqueue` and `deliver` place files whole (written under a dot name, then
//! renamed), but another tool may copy a file in and still be writing it
//! when the daemon looks: read then, the rows written after are lost. So a
//! file is taken:
//!
//! - at once when `enqueue`/`deliver` named it, or the watcher saw it renamed
//!   into the directory, and no write to it was seen since;
//! - otherwise only while no write is in progress as far as the watcher saw
//!   (data written and the file not closed since), and once its size,
//!   modification and change times and inode have stayed the same for
//!   `settle` (`queue.settle`, `delivery.file_settle`).
//!
//! A file seen waiting is logged once.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What the watcher saw happen to files, by name.
#[derive(Default)]
pub(crate) struct Marks {
    /// Data written and no close after a write since.
    writing: HashSet<OsString>,
    /// Renamed into the directory, nothing written since.
    renamed_in: HashSet<OsString>,
}

impl Marks {
    /// Note one event of the directory's watcher.
    pub(crate) fn note(&mut self, ev: &notify::Event) {
        use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
        if ev.need_rescan() {
            // Events were lost: what is known is forgotten, the fingerprints decide.
            self.writing.clear();
            self.renamed_in.clear();
            return;
        }
        for name in ev.paths.iter().filter_map(|p| p.file_name()) {
            let name = name.to_os_string();
            match ev.kind {
                EventKind::Modify(ModifyKind::Data(_)) => {
                    self.renamed_in.remove(&name);
                    self.writing.insert(name);
                }
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    self.writing.remove(&name);
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                    self.writing.remove(&name);
                    self.renamed_in.insert(name);
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::From))
                | EventKind::Remove(_)
                | EventKind::Create(_) => {
                    self.writing.remove(&name);
                    self.renamed_in.remove(&name);
                }
                _ => {}
            }
        }
    }
}

/// What a file's metadata says about its content: any write changes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Fingerprint {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
}

impl Fingerprint {
    fn of(meta: &Metadata) -> Self {
        Fingerprint {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

struct Seen {
    print: Fingerprint,
    since: Instant,
}

/// Whether to take a file now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Take,
    /// The watcher saw it written and not closed since.
    BeingWritten,
    /// Not unchanged for the settle time yet.
    Settling,
}

/// The files of one directory waiting to be whole.
pub(crate) struct Settle {
    period: Duration,
    marks: Arc<Mutex<Marks>>,
    seen: HashMap<OsString, Seen>,
}

impl Settle {
    pub(crate) fn new(period: Duration, marks: Arc<Mutex<Marks>>) -> Self {
        Settle {
            period,
            marks,
            seen: HashMap::new(),
        }
    }

    /// Whether the file `name` (with metadata `meta`) is whole at `now`.
    /// The first `Settling`/`BeingWritten` verdict for a file is the one
    /// the caller logs (`first_wait`).
    pub(crate) fn verdict(&mut self, name: &str, meta: &Metadata, now: Instant) -> (Verdict, bool) {
        let key = OsStr::new(name);
        let (writing, renamed_in) = {
            let marks = self.marks.lock();
            (marks.writing.contains(key), marks.renamed_in.contains(key))
        };
        let print = Fingerprint::of(meta);
        let first = !self.seen.contains_key(key);
        let seen = self
            .seen
            .entry(key.to_os_string())
            .or_insert(Seen { print, since: now });
        if seen.print != print {
            *seen = Seen { print, since: now };
        }
        let whole = (renamed_in || placed_whole(name)) && meta.len() > 0;
        let unchanged = now.saturating_duration_since(seen.since) >= self.period;
        let verdict = if writing {
            Verdict::BeingWritten
        } else if whole || unchanged {
            Verdict::Take
        } else {
            Verdict::Settling
        };
        (verdict, first && verdict != Verdict::Take)
    }

    /// Forget files no longer in the directory.
    pub(crate) fn keep_only(&mut self, present: &HashSet<OsString>) {
        self.seen.retain(|name, _| present.contains(name));
    }
}

/// A name `enqueue` or `deliver` gives the files they place whole:
/// `{milliseconds}-{32 hex digits}-{stem}.jsonl`.
fn placed_whole(name: &str) -> bool {
    let Some((ms, rest)) = name.split_once('-') else {
        return false;
    };
    let Some((unique, rest)) = rest.split_once('-') else {
        return false;
    };
    !ms.is_empty()
        && ms.bytes().all(|b| b.is_ascii_digit())
        && unique.len() == 32
        && unique
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && rest.ends_with(".jsonl")
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, DataChange, EventKind, ModifyKind, RenameMode};
    use std::io::Write;

    fn event(kind: EventKind, path: &std::path::Path) -> notify::Event {
        notify::Event::new(kind).add_path(path.to_path_buf())
    }

    #[test]
    fn names_of_enqueue_and_deliver_are_known() {
        assert!(placed_whole(
            "1733500000000-0123456789abcdef0123456789abcdef-people.jsonl"
        ));
        assert!(placed_whole(
            "1733500000000-0123456789abcdef0123456789abcdef-readings.jsonl"
        ));
        assert!(!placed_whole("people.jsonl"));
        assert!(!placed_whole(
            "1733500000000-0123456789abcdef0123456789abcdef-people.csv"
        ));
        assert!(!placed_whole(
            "17335-0123456789ABCDEF0123456789abcdef-x.jsonl"
        ));
    }

    #[test]
    fn a_copied_file_waits_until_unchanged_and_while_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.csv");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"email\n").unwrap();
        let marks = Arc::new(Mutex::new(Marks::default()));
        let mut settle = Settle::new(Duration::from_secs(5), marks.clone());
        let t0 = Instant::now();
        let meta = || std::fs::metadata(&path).unwrap();
        assert_eq!(
            settle.verdict("people.csv", &meta(), t0),
            (Verdict::Settling, true)
        );
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(
            settle.verdict("people.csv", &meta(), t1).0,
            Verdict::Settling
        );
        // A write restarts the wait.
        f.write_all(b"a@example.com\n").unwrap();
        let t2 = t0 + Duration::from_secs(6);
        assert_eq!(
            settle.verdict("people.csv", &meta(), t2),
            (Verdict::Settling, false)
        );
        // Unchanged long enough, but still open after a write: it waits.
        marks.lock().note(&event(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &path,
        ));
        let t3 = t2 + Duration::from_secs(6);
        assert_eq!(
            settle.verdict("people.csv", &meta(), t3).0,
            Verdict::BeingWritten
        );
        marks.lock().note(&event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            &path,
        ));
        assert_eq!(settle.verdict("people.csv", &meta(), t3).0, Verdict::Take);
    }

    #[test]
    fn a_file_renamed_in_is_taken_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.csv");
        std::fs::write(&path, "email\na@example.com\n").unwrap();
        let marks = Arc::new(Mutex::new(Marks::default()));
        let mut settle = Settle::new(Duration::from_secs(5), marks.clone());
        marks.lock().note(&event(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            &path,
        ));
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            settle.verdict("people.csv", &meta, Instant::now()),
            (Verdict::Take, false)
        );
    }
}
