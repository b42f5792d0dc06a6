//! A directory the daemon takes files in from (`queue.dir`, `delivery.dir`):
//! its watcher, which of its files are ready to read (`settle.rs`), the ones
//! that can never be read as they are, set aside into `rejected/` once with
//! one log line (`rejected.rs`), and failures logged once per file and
//! error rather than at every poll.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::reader::Format;
use super::rejected::{Refusal, set_aside, usable_name};
use super::settle::{Marks, Settle, Verdict};

/// A file that may have arrived: created, renamed in, or closed after
/// writing. Not opens and reads: listing the directory and reading a file
/// raise those, and waking on them made the watcher wake itself forever.
pub(crate) fn is_arrival(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// Open a file of a watched directory for reading: never through a link,
/// never blocking on a FIFO put in its place, and only a regular file.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// One watched directory and what is known of its files.
pub(crate) struct WatchedDir {
    dir: PathBuf,
    /// `queue` or `readings`, in log lines.
    what: &'static str,
    settle: Settle,
    period: Duration,
    _watcher: Option<notify::RecommendedWatcher>,
    arrivals: tokio::sync::mpsc::Receiver<()>,
    /// The error last logged for a file (or for listing, under the dir's
    /// own path), so that a failure repeated at every poll is logged once.
    failing: HashMap<PathBuf, String>,
}

impl WatchedDir {
    /// Watch `dir` (polling only, logged, when no watcher can be had).
    pub(crate) fn open(dir: &Path, what: &'static str, period: Duration) -> Self {
        let marks = Arc::new(Mutex::new(Marks::default()));
        let (tx, arrivals) = tokio::sync::mpsc::channel::<()>(1);
        let watcher = watch(dir, what, marks.clone(), tx);
        WatchedDir {
            dir: dir.to_path_buf(),
            what,
            settle: Settle::new(period, marks),
            period,
            _watcher: watcher,
            arrivals,
            failing: HashMap::new(),
        }
    }

    /// Resolves when the watcher saw a file arrive.
    pub(crate) async fn arrival(&mut self) {
        if self.arrivals.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }

    /// The files to read now, oldest name first. Files that can never be
    /// read as they are go to `rejected/` on the way. `begun` says whether
    /// the daemon already stored rows of a file (its progress mark): such a
    /// file was judged whole before a restart and is read on at once.
    pub(crate) fn ready(&mut self, begun: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                let dir = self.dir.clone();
                self.failed(&dir, format!("cannot list the directory: {e}"));
                return Vec::new();
            }
        };
        let dir = self.dir.clone();
        self.succeeded(&dir);
        let now = Instant::now();
        let mut present = HashSet::new();
        let mut ready = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !is_candidate(&name) {
                continue;
            }
            present.insert(name.clone());
            if let Some(path) = self.judge(&entry, now, begun) {
                ready.push(path);
            }
        }
        self.settle.keep_only(&present);
        ready.sort();
        ready
    }

    /// Whether the entry is ready; sets it aside when it never can be.
    fn judge(
        &mut self,
        entry: &std::fs::DirEntry,
        now: Instant,
        begun: &dyn Fn(&str) -> bool,
    ) -> Option<PathBuf> {
        let path = entry.path();
        let name = entry.file_name();
        let refusal = match (usable_name(&name), std::fs::symlink_metadata(&path)) {
            (Err(why), _) => why,
            (Ok(_), Err(_)) => return None, // gone since the listing
            (Ok(text), Ok(meta)) => match kind_of(&meta.file_type()) {
                None => {
                    let (mut verdict, first_wait) = self.settle.verdict(text, &meta, now);
                    if verdict == Verdict::Settling && begun(text) {
                        verdict = Verdict::Take;
                    } else if first_wait {
                        self.log_waiting(text, verdict);
                    }
                    return (verdict == Verdict::Take).then_some(path);
                }
                Some(kind) => Refusal::NotRegular(kind),
            },
        };
        self.refuse(&path, refusal);
        None
    }

    fn log_waiting(&self, name: &str, verdict: Verdict) {
        let wait = humantime::format_duration(self.period).to_string();
        let why = match verdict {
            Verdict::BeingWritten => "still being written (written to and not closed)",
            _ => "copied in by another tool",
        };
        tracing::info!(dir = self.what, file = %name, settle = %wait, "a file {why}: it is read once it has not changed for the settle time");
    }

    /// Move a file that can never be read as it is into `rejected/`, with
    /// one log line.
    pub(crate) fn refuse(&mut self, path: &Path, why: Refusal) {
        match set_aside(&self.dir, path, &why) {
            Ok(dest) => {
                self.failing.remove(path);
                tracing::error!(dir = self.what, file = %shown(path), moved_to = %dest.display(), reason = %why, "file cannot be taken in: moved to rejected/ with the reason beside it");
            }
            Err(e) => self.failed(
                path,
                format!("cannot be taken in ({why}) nor moved to rejected/: {e}"),
            ),
        }
    }

    /// A failure to take `path` in, retried at the next poll: logged when
    /// it is new for the file, not again while it repeats.
    pub(crate) fn failed(&mut self, path: &Path, error: String) {
        if self.failing.get(path) == Some(&error) {
            tracing::debug!(dir = self.what, file = %shown(path), error = %error, "still failing");
            return;
        }
        tracing::error!(dir = self.what, file = %shown(path), error = %error, "cannot take the file in; retried at every poll, logged again only if the error changes");
        self.failing.insert(path.to_path_buf(), error);
    }

    /// `path` was taken in (or listing worked again).
    pub(crate) fn succeeded(&mut self, path: &Path) {
        if self.failing.remove(path).is_some() {
            tracing::info!(dir = self.what, file = %shown(path), "taken in after earlier failures");
        }
    }
}

/// A path as log lines show it: not UTF-8 replaced, control characters
/// escaped (a name holding a newline cannot forge a log line).
fn shown(path: &Path) -> String {
    path.to_string_lossy().escape_debug().to_string()
}

/// A name the directory's files may have: `.csv`, `.jsonl` or `.ndjson`,
/// not hidden (the `.tmp` files of `enqueue` and `deliver`). Judged on the
/// bytes, so a name that is not UTF-8 is still seen (and set aside).
fn is_candidate(name: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    !bytes.starts_with(b".")
        && Format::of(Path::new(&String::from_utf8_lossy(bytes).into_owned())).is_some()
}

/// What an entry is when it is not a regular file.
fn kind_of(t: &std::fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_symlink() {
        Some("a symbolic link (links are not followed)")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("a device")
    }
}

/// The watcher of `dir`, noting events in `marks` and waking on arrivals;
/// none (polling only, logged) when it cannot be had.
fn watch(
    dir: &Path,
    what: &'static str,
    marks: Arc<Mutex<Marks>>,
    tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            marks.lock().note(&ev);
            if is_arrival(&ev.kind) {
                let _ = tx.try_send(());
            }
        }
    };
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(dir = what, error = %e, "no file watcher; polling only, and files copied in are judged by their size and times alone");
            return None;
        }
    };
    match w.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => {
            tracing::info!(path = %dir.display(), "watching the {what} directory for files");
            Some(w)
        }
        Err(e) => {
            tracing::warn!(dir = what, path = %dir.display(), error = %e, "cannot watch the directory; polling only, and files copied in are judged by their size and times alone");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_arrival;
    use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};

    #[test]
    fn only_arrivals_wake_the_watcher() {
        assert!(is_arrival(&EventKind::Create(CreateKind::File)));
        assert!(is_arrival(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(is_arrival(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        // Our own directory listing and file reads must not wake us again.
        assert!(!is_arrival(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_arrival(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!is_arrival(&EventKind::Access(AccessKind::Read)));
    }
}
