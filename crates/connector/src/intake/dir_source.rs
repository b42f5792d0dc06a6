//! A watched directory as a source of rows, one loop for every kind of
//! file the daemon takes in (invitee files in `queue.dir`, readings files
//! in `delivery.dir`): wake on an arrival or at each poll, take nothing
//! while the store cannot write, take each file once it is whole (a file
//! whose rows the store began to take in before a restart at once), set
//! aside a file that can never be read, log a repeated failure once, and
//! wake the worker downstream after each file. What differs between kinds
//! (how a file's rows are read and stored) is a [`FileKind`].

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::rejected::Refusal;
use super::watched::WatchedDir;
use crate::store::{Store, StoreError};

/// Why a file could not be taken in this time.
pub(crate) enum Failure {
    /// The file itself cannot be read: it is set aside, not retried.
    Unreadable {
        error: std::io::Error,
        /// The last line already stored (0: none).
        stored_through: u64,
    },
    /// The store failed (noted, so a failing disk stops new work); the
    /// file is tried again at the next poll.
    Store(StoreError, String),
    /// Anything else; tried again at the next poll.
    Other(String),
}

/// A kind of file a watched directory takes in.
pub(crate) trait FileKind: Send + Sync {
    /// `queue` or `readings`, in log lines.
    const WHAT: &'static str;

    /// Take one file in (its rows stored, the file moved to `done/`).
    fn ingest(
        &self,
        store: &Store,
        path: &Path,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Of `names`, those whose rows the store already began to take in.
    fn begun(
        &self,
        store: &Store,
        names: Vec<String>,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

/// Where and how often a directory is watched.
pub(crate) struct Watch<'a> {
    pub(crate) dir: &'a Path,
    /// How long a file copied in by another tool must stay unchanged.
    pub(crate) settle: Duration,
    pub(crate) poll: Duration,
}

/// Watch `at.dir` and take its files in with `kind` until cancelled.
pub(crate) async fn run<K: FileKind>(
    kind: K,
    at: Watch<'_>,
    store: Store,
    wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut dir = WatchedDir::open(at.dir, K::WHAT, at.settle);
    let mut tick = tokio::time::interval(at.poll);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            _ = dir.arrival() => {}
        }
        // A store that cannot write (see `store/write_health.rs`) cannot take
        // the files in; they wait, and the log is not filled with one error
        // per file per poll.
        if store.failure().is_some() {
            continue;
        }
        let begun = begun_files(&kind, &store, at.dir).await;
        for file in dir.ready(&|name: &str| begun.contains(name)) {
            if shutdown.is_cancelled() {
                return;
            }
            take_in(&kind, &store, &mut dir, &file, &wake).await;
        }
    }
}

/// One file: taken in (and the worker woken), set aside, or failed.
async fn take_in<K: FileKind>(
    kind: &K,
    store: &Store,
    dir: &mut WatchedDir,
    file: &Path,
    wake: &tokio::sync::Notify,
) {
    match kind.ingest(store, file).await {
        Ok(()) => {
            dir.succeeded(file);
            wake.notify_one()
        }
        Err(Failure::Unreadable {
            error,
            stored_through,
        }) => dir.refuse(
            file,
            Refusal::Unreadable {
                error,
                stored_through,
            },
        ),
        Err(Failure::Store(se, message)) => {
            store.note_error(&se);
            dir.failed(file, message)
        }
        Err(Failure::Other(message)) => dir.failed(file, message),
    }
}

/// The names in `dir` whose rows the store already began to take in,
/// asked in one store call before the listing is judged (which cannot
/// wait on the store).
async fn begun_files<K: FileKind>(
    kind: &K,
    store: &Store,
    dir: &Path,
) -> std::collections::HashSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Default::default();
    };
    let names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    kind.begun(store, names)
        .await
        .unwrap_or_default()
        .into_iter()
        .collect()
}
