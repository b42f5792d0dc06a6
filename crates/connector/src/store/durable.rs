//! Group commit: one thread of ours makes the store durable for everyone who
//! asks. A caller that needs its writes on disk (a callback about to be
//! answered 2xx) takes a ticket and waits; the flusher runs one `fsync` for
//! every ticket taken before that flush began, so 64 concurrent callbacks
//! cost a few flushes, not 64.
//!
//! It also keeps flushes off the engine's own I/O pool: its `flush_async`
//! runs the flush on that pool, and under concurrent transactions every pool
//! thread ended up waiting for writes only the pool could perform (the engine
//! issue #1308) — the daemon hung with hundreds of callbacks in flight.

use super::engine::Engine;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

/// Why a flush did not make the writes durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    #[error("the store flusher has stopped")]
    Stopped,
    /// The flush failed: the OS's words for the I/O error.
    #[error("{0}")]
    Failed(String),
}

/// The last finished flush: the highest ticket it covered and how it went.
#[derive(Clone, Debug)]
struct Done {
    ticket: u64,
    error: Option<String>,
}

struct Shared {
    /// Tickets handed out so far; the flusher covers all of them at once.
    requested: Mutex<Requests>,
    wake: Condvar,
    done: watch::Sender<Done>,
    flushes: AtomicU64,
}

struct Requests {
    last: u64,
    stopping: bool,
}

/// Handle for callers; cheap to clone. The flusher thread stops when the
/// last handle is dropped.
#[derive(Clone)]
pub struct GroupCommit {
    inner: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Handle {
    /// The last handle gone: let the flusher finish its flush and release
    /// its handle on the database.
    fn drop(&mut self) {
        self.shared.requested.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl GroupCommit {
    pub fn start(
        db: Engine,
        health: Arc<super::write_health::StoreHealth>,
    ) -> std::io::Result<Self> {
        let (done, _) = watch::channel(Done {
            ticket: 0,
            error: None,
        });
        let shared = Arc::new(Shared {
            requested: Mutex::new(Requests {
                last: 0,
                stopping: false,
            }),
            wake: Condvar::new(),
            done,
            flushes: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || flusher(&s, &db, &health))?;
        Ok(Self {
            inner: Arc::new(Handle {
                shared,
                thread: Some(thread),
            }),
        })
    }

    fn ticket(&self) -> u64 {
        let mut r = self.inner.shared.requested.lock();
        r.last += 1;
        let t = r.last;
        drop(r);
        self.inner.shared.wake.notify_one();
        t
    }

    /// How many flushes the flusher has run.
    pub fn flushes(&self) -> u64 {
        self.inner.shared.flushes.load(Ordering::Relaxed)
    }

    /// Wait until everything written before this call is on disk.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let mine = self.ticket();
        let mut rx = self.inner.shared.done.subscribe();
        let done = rx
            .wait_for(|d| d.ticket >= mine)
            .await
            .map_err(|_| FlushError::Stopped)?
            .clone();
        match done.error {
            Some(e) => Err(FlushError::Failed(e)),
            None => Ok(()),
        }
    }
}

fn flusher(shared: &Shared, db: &Engine, health: &super::write_health::StoreHealth) {
    let mut covered = 0;
    loop {
        let upto = {
            let mut r = shared.requested.lock();
            while r.last == covered && !r.stopping {
                shared.wake.wait(&mut r);
            }
            if r.last == covered {
                return;
            }
            r.last
        };
        // Every ticket up to `upto` was taken after its writes were made,
        // and before this flush starts: this flush covers them all.
        let error = db.flush().err().map(|e| match e.io() {
            // The engine shows the I/O error's Debug form; the OS's words read better.
            Some(io) => format!("I/O error: {}", super::write_health::io_words(io)),
            None => e.to_string(),
        });
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = &error {
            tracing::error!(error = %e, "cannot flush the store to disk");
            // The engine keeps failing after an I/O error until reopened.
            health.mark_failed(e);
        }
        covered = upto;
        shared.done.send_replace(Done {
            ticket: upto,
            error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_waiters_share_flushes_and_all_return() {
        let db = Engine::temporary();
        let t = db.table("t").unwrap();
        let gc = GroupCommit::start(db.clone(), Arc::default()).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200u32 {
            let (gc, t) = (gc.clone(), t.clone());
            tasks.spawn(async move {
                t.insert(i.to_be_bytes(), b"v").unwrap();
                gc.flush().await
            });
        }
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap(), Ok(()));
        }
        // Every waiter was answered by a flush, and they shared them.
        assert!(gc.flushes() >= 1 && gc.flushes() <= 200, "{}", gc.flushes());
        assert_eq!(t.len(), 200);
        // The flusher stops with the last handle (it joins the thread).
        drop(gc);
    }
}
