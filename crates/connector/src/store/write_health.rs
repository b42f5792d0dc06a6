//! Whether the store can still write. The engine makes an I/O error sticky: after
//! a write to its log fails (a full disk: ENOSPC), every later write and
//! flush of that open database fails too, even once space is freed; only
//! reopening clears it. So the first failed flush marks the store failed:
//! `/readyz` says why, callbacks are answered 503 (Mydex retries them), the
//! dispatcher stops starting steps (no link fetched or mail sent that could
//! not be recorded), and the daemon waits until the disk takes writes again,
//! then exits with `EX_TEMPFAIL` (75) for the service manager to restart it
//! on a freshly opened store. Nothing acknowledged is lost: a callback is
//! answered 2xx only after a flush that succeeded.

use std::path::Path;

use parking_lot::Mutex;
use tokio::sync::watch;

/// The exit code of a daemon stopped by a store that cannot write.
pub const EXIT_STORE_FAILED: u8 = 75;

pub struct StoreHealth {
    failure: Mutex<Option<String>>,
    failed: watch::Sender<bool>,
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self {
            failure: Mutex::new(None),
            failed: watch::channel(false).0,
        }
    }
}

impl StoreHealth {
    /// Mark the store failed (the first cause is kept).
    pub fn mark_failed(&self, why: &str) {
        let mut f = self.failure.lock();
        if f.is_none() {
            tracing::error!(
                error = why,
                "the store cannot write to disk; callbacks are answered 503 and dispatch stops until the daemon restarts on a reopened store (nothing acknowledged is lost)"
            );
            *f = Some(why.to_string());
            self.failed.send_replace(true);
        }
    }

    /// Why the store cannot write, if it cannot.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    /// Resolves once the store is marked failed.
    pub async fn wait_failed(&self) {
        let mut rx = self.failed.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }
}

/// An I/O error in the operating system's words. The engine hands back clones of
/// its sticky error whose message is the original's Debug form, so the
/// kind is what is reliable.
pub fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::StorageFull => "no space left on device (ENOSPC)".into(),
        std::io::ErrorKind::QuotaExceeded => "disk quota exceeded (EDQUOT)".into(),
        std::io::ErrorKind::ReadOnlyFilesystem => "read-only file system (EROFS)".into(),
        _ => e.to_string(),
    }
}

/// Whether `dir`'s file system takes a write of `bytes` right now: a
/// scratch file written, synced and removed.
pub fn disk_takes_writes(dir: &Path, bytes: usize) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(".write-probe");
    let result = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; bytes])?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result
}
