//! The one door to the store for the rest of the daemon. The store's work
//! blocks on disk, so it must not run on the runtime's threads; this is the
//! only place that crosses to a blocking thread, and it reports a blocking
//! task that failed in one way ([`StoreError::Blocking`]). Its methods are
//! named for what the daemon does, one file per area; each is a thin
//! [`Store::run`] over the synchronous core (`store/*.rs`), which nothing
//! outside `store/` names. Listings come in pages (bounded in memory),
//! never as one collection of everything held.

mod callbacks;
mod invitations;
mod lifecycle;
mod people;
mod readings;
mod rejects;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretBox;

use super::{Core, MailKeys, Result, RotationReport, Sealer, StatusCounts, StoreError};

pub use people::{BounceReport, NewMember};
pub use readings::{ReadingPlacer, ReadingToPlace};

/// Run `work` on a blocking thread: the one crossing of the daemon, with
/// the one way of reporting a task that failed ([`StoreError::Blocking`]).
async fn off_runtime<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Blocking(e.to_string()))?
}

/// The store, shared by every part of the daemon (cheap to clone).
#[derive(Clone)]
pub struct Store {
    core: Arc<Core>,
    gate: Arc<tokio::sync::Semaphore>,
}

/// How many store tasks run on blocking threads at once: twice the cores,
/// at least four. The engine writes one transaction at a time, so more
/// would only wait on its lock, each on a thread of its own that the
/// runtime starts for it, with its own stack and allocator cache; a burst
/// of requests waits its turn here instead, first come first served.
fn gate_size() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

impl Store {
    /// Open (or create) the store at `path` with `key`: refused for a key
    /// that does not open it, and for a store whose key rotation is
    /// unfinished. Blocks on disk: call it at start, before serving.
    pub fn open(path: &Path, key: &SecretBox<[u8; 32]>) -> Result<Self> {
        Ok(Self {
            core: Arc::new(Core::open(path, key)?),
            gate: Arc::new(tokio::sync::Semaphore::new(gate_size().max(4))),
        })
    }

    /// [`Store::open`] from async code.
    pub async fn open_async(path: PathBuf, key: SecretBox<[u8; 32]>) -> Result<Self> {
        off_runtime(move || Self::open(&path, &key)).await
    }

    /// Re-seal the store at `path` from key `old` to `new` (`rotate-key`:
    /// the store is not open anywhere); `progress(done, total)` after each
    /// batch of members.
    pub async fn rotate_key(
        path: PathBuf,
        old: SecretBox<[u8; 32]>,
        new: SecretBox<[u8; 32]>,
        mut progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<RotationReport> {
        off_runtime(move || super::rotation::rotate_key(&path, &old, &new, &mut progress)).await
    }

    /// Compact the store at `path` (`store compact`: the store is not open
    /// anywhere); `on_step` after each step and batch.
    pub async fn compact(
        path: PathBuf,
        key: SecretBox<[u8; 32]>,
        mut on_step: impl FnMut(super::CompactStep) + Send + 'static,
    ) -> Result<super::CompactReport> {
        off_runtime(move || super::compact_store(&path, &key, &mut on_step)).await
    }

    /// Run `work` on the core on a blocking thread, once the gate lets it
    /// ([`gate_size`]). The turn is held until the work ends, even if the
    /// caller stops waiting for it.
    async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Core) -> Result<T> + Send + 'static,
    {
        let turn = self
            .gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Blocking(e.to_string()))?;
        let core = self.core.clone();
        off_runtime(move || {
            let done = work(&core);
            drop(turn);
            done
        })
        .await
    }

    /// Make everything written so far durable (callers waiting at the same
    /// time share one flush).
    pub async fn flush(&self) -> Result<()> {
        self.core.flush().await
    }

    /// A number that changes whenever the dispatcher may have new work
    /// (read without crossing to a blocking thread: it is in memory).
    pub fn work_generation(&self) -> u64 {
        self.core.work_generation()
    }

    /// Why the store cannot write, if a flush failed.
    pub fn failure(&self) -> Option<String> {
        self.core.failure()
    }

    /// Note an error from a store call: an I/O error means this open
    /// database cannot write any more.
    pub fn note_error(&self, e: &StoreError) {
        self.core.note_error(e)
    }

    /// Resolves once a flush has failed.
    pub async fn wait_failed(&self) {
        self.core.wait_failed().await
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        self.core.path()
    }

    /// How many flushes the group commit has run (metrics and benches).
    pub fn flushes(&self) -> u64 {
        self.core.flushes()
    }

    /// Suppression hashes and mail tokens (keyed hashes, in memory).
    pub fn mail_keys(&self) -> &MailKeys {
        self.core.mail_keys()
    }

    /// Seals and opens members' keys (in memory).
    pub fn sealer(&self) -> &Sealer {
        self.core.sealer()
    }

    /// For `/readyz`: a small write made durable (so a full disk shows),
    /// and the counters read back.
    pub async fn probe(&self, current_version: u32) -> Result<()> {
        if let Some(why) = self.failure() {
            return Err(StoreError::Flush(why));
        }
        let wrote = self.run(move |c| c.probe_write(current_version)).await;
        if let Err(e) = &wrote {
            self.note_error(e);
        }
        wrote?;
        self.flush().await
    }

    /// Counts for `/status`.
    pub async fn counts(&self, current_version: u32) -> Result<StatusCounts> {
        self.run(move |c| c.counts(current_version)).await
    }

    /// Everything `/status` reads from the store, in one trip to a blocking
    /// thread: while an ingest keeps both cores busy, each trip waits its
    /// turn, and six of them made the answer slow.
    pub async fn status_reads(&self, current_version: u32) -> Result<StatusReads> {
        self.run(move |c| {
            Ok(StatusReads {
                counts: c.counts(current_version)?,
                notifications: c.notification_counts()?,
                suppressed: c.suppressed_count()?,
                records: c.record_counts()?,
                by_campaign: c.counts_by_campaign()?,
                members_by_version: c.members_by_version()?,
                rejected: c.rejected_count()?,
            })
        })
        .await
    }

    /// The database files' size on disk.
    pub async fn size_on_disk(&self) -> Result<u64> {
        self.run(|c| c.size_on_disk()).await
    }
}

/// What `/status` reads from the store ([`Store::status_reads`]).
pub struct StatusReads {
    pub counts: StatusCounts,
    /// Notifications by dataset and action.
    pub notifications: Vec<(String, u64)>,
    pub suppressed: u64,
    pub records: super::RecordCounts,
    pub by_campaign: std::collections::HashMap<(String, super::State), u64>,
    pub members_by_version: Vec<(u32, u64)>,
    /// Rejected rows kept (`rejects list`).
    pub rejected: u64,
}
