//! Where a file placed by `enqueue` or `deliver` came from: the daemon
//! reads a converted copy under a name of its own, so the command leaves
//! beside it (hidden, written and synced before the copy is renamed in)
//! the file as the operator named it and the rows the command itself
//! refused. The copy keeps the operator's line numbers (a refused row or
//! a CSV header stays as an empty line, which intake skips), so every
//! rejection the daemon records names the operator's own file and line.
//! The daemon removes the note once the file has gone to `done/`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest note read back (a note is one line per refused row).
const MAX_NOTE: u64 = 256 * 1024 * 1024;

/// One row the placing command refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub line: u64,
    pub reason: String,
}

/// The note beside a placed file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The file as the operator named it.
    pub file: String,
    /// When the command refused its rows.
    pub at_ms: u64,
    pub refused: Vec<Refused>,
}

/// The note of the file placed as `placed` in `dir`.
pub(crate) fn note_path(dir: &Path, placed: &str) -> PathBuf {
    dir.join(format!(".{placed}.origin"))
}

/// Write the note of `placed` durably (before the file is renamed in).
pub(crate) fn write(dir: &Path, placed: &str, origin: &Origin) -> std::io::Result<()> {
    let path = note_path(dir, placed);
    let tmp = dir.join(format!(".{placed}.origin.tmp"));
    let file = std::fs::File::create(&tmp)?;
    super::owner::hand_to_dir_owner(&file, dir)?;
    let mut out = std::io::BufWriter::new(file);
    serde_json::to_writer(&mut out, origin)?;
    out.write_all(b"\n")?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// The note of `placed`, if it has one (a file copied in by another tool
/// has none: its own name and lines are the operator's).
pub(crate) fn read(dir: &Path, placed: &str) -> Option<Origin> {
    use std::io::Read;
    let path = note_path(dir, placed);
    let file = super::watched::open_regular(&path).ok()?;
    let mut text = Vec::new();
    if let Err(e) = file.take(MAX_NOTE).read_to_end(&mut text) {
        tracing::warn!(file = %placed, error = %e, "cannot read the note of where a placed file came from; its own name is used");
        return None;
    }
    match serde_json::from_slice(&text) {
        Ok(origin) => Some(origin),
        Err(e) => {
            tracing::warn!(file = %placed, error = %e, "the note of where a placed file came from is not readable; its own name is used");
            None
        }
    }
}

/// Remove the note of `placed` (the file has been taken in).
pub(crate) fn remove(dir: &Path, placed: &str) {
    let path = note_path(dir, placed);
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %placed, error = %e, "cannot remove the note of where a taken-in file came from");
    }
}

/// Writes the rows a command keeps so that each stays on its own line
/// number: a line skipped (refused, a header) stays as an empty line.
pub(crate) struct LineKeeper {
    written: u64,
}

impl LineKeeper {
    pub(crate) fn new() -> Self {
        LineKeeper { written: 0 }
    }

    /// Write `row` (one JSON object) as line `line` of `out`.
    pub(crate) fn put(
        &mut self,
        out: &mut impl Write,
        line: u64,
        row: &impl Serialize,
    ) -> std::io::Result<()> {
        while self.written + 1 < line {
            out.write_all(b"\n")?;
            self.written += 1;
        }
        serde_json::to_writer(&mut *out, row)?;
        out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_rows_stay_on_their_lines() {
        let mut out = Vec::new();
        let mut k = LineKeeper::new();
        k.put(&mut out, 2, &serde_json::json!({"a": 1})).unwrap();
        k.put(&mut out, 5, &serde_json::json!({"b": 2})).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\n{\"a\":1}\n\n\n{\"b\":2}\n"
        );
    }

    #[test]
    fn a_note_is_written_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let o = Origin {
            file: "in.csv".into(),
            at_ms: 5,
            refused: vec![Refused {
                line: 3,
                reason: "bad".into(),
            }],
        };
        write(dir.path(), "x.jsonl", &o).unwrap();
        assert_eq!(read(dir.path(), "x.jsonl"), Some(o));
        remove(dir.path(), "x.jsonl");
        assert_eq!(read(dir.path(), "x.jsonl"), None);
    }
}
