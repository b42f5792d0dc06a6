//! How taking a queue file in can fail: the daemon's ingestion (retried at
//! the next poll) and `enqueue` (the command's error). The texts are the
//! ones operators know.

use std::path::PathBuf;

use super::reader::FileError;
use crate::store::StoreError;

/// Why the daemon could not ingest a queue file this time (it stays in the
/// queue and is tried again).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file itself cannot be read (it is set aside, not retried).
    #[error("cannot read the file: {error}")]
    Unreadable {
        error: std::io::Error,
        /// The last line already stored (0: none).
        stored_through: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why `enqueue` could not place a file in the queue.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("campaign {0:?} is not configured")]
    UnknownCampaign(String),
    /// The input file itself: its name, or reading it.
    #[error("{}: {error}", path.display())]
    Input { path: PathBuf, error: FileError },
    /// A row of the input could not be read.
    #[error(transparent)]
    Read(#[from] FileError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// An error and its causes on one line, `a: b: c`.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
