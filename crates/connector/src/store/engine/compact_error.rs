//! What can stop `store compact` (beyond the store's own errors: a wrong
//! key, an unfinished rotation, a store in use), with the texts operators
//! see. Each says whether the store was changed: until the swap, never.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("there is no store at {} (store.path); nothing to compact", path.display())]
    NoStore { path: PathBuf },
    /// The copy read back differs from the store: the swap did not happen.
    #[error(
        "the compacted copy does not match the store ({what}); the store was not changed and the copy was removed"
    )]
    Mismatch { what: String },
    /// Beside the store, something no compaction leaves: not touched.
    #[error(
        "found {} beside the store at {}, a state no compaction leaves: check which directory holds your records, move the other aside, then start again; nothing was changed",
        found.display(),
        path.display()
    )]
    Leftover { found: PathBuf, path: PathBuf },
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CompactError {
    /// An I/O error on `path`, with what was being done.
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| CompactError::Io { what, path, source }
    }
}
