//! Where the rows a file's intake rejects go: the report beside the file in
//! `rejected/` (`NAME.rejected.txt`, line and reason, as ever) and the
//! store's rejects, which `rejects list` shows long after, named by the
//! file as the operator named it (`origin.rs`). Rows are kept in the store
//! a batch at a time, right after the batch they belong to.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::rejected;
use crate::domain::Rejection;
use crate::store::{Store, StoreError, now_ms};

/// The rejected rows of one file.
pub(crate) struct RejectSink {
    /// The name the file has in the watched directory (its report's name).
    source: String,
    /// The file as the operator named it.
    file: String,
    /// The watched directory (the report goes to its `rejected/`).
    dir: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    pending: Vec<Rejection>,
}

impl RejectSink {
    pub(crate) fn new(dir: &Path, source: &str, file: &str) -> Self {
        RejectSink {
            source: source.to_owned(),
            file: file.to_owned(),
            dir: dir.to_path_buf(),
            out: None,
            pending: Vec::new(),
        }
    }

    /// The name the file has in the watched directory.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The file as the operator named it.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// Row `line` was rejected for `reason`: into the report, and to keep.
    pub(crate) fn write(&mut self, line: u64, reason: &str) -> std::io::Result<()> {
        if self.out.is_none() {
            let f = rejected::open_report(&self.dir, &self.source)?;
            self.out = Some(std::io::BufWriter::new(f));
        }
        if let Some(w) = self.out.as_mut() {
            writeln!(w, "{}:{line}: {reason}", self.source)?;
        }
        self.note(now_ms(), line, reason);
        Ok(())
    }

    /// Row `line` was rejected at `at_ms` (by the command that placed the
    /// file): to keep, not in the report.
    pub(crate) fn note(&mut self, at_ms: u64, line: u64, reason: &str) {
        self.pending.push(Rejection {
            file: self.file.clone(),
            source: self.source.clone(),
            line,
            reason: reason.to_owned(),
            at_ms,
        });
    }

    /// Keep the rows rejected since the last call in the store.
    pub(crate) async fn keep(&mut self, store: &Store) -> Result<(), StoreError> {
        store
            .record_rejects(std::mem::take(&mut self.pending))
            .await
    }

    /// The report made durable.
    pub(crate) fn finish(self) -> std::io::Result<()> {
        match self.out {
            Some(w) => w.into_inner().map_err(|e| e.into_error())?.sync_all(),
            None => Ok(()),
        }
    }
}
