//! Forgetting a person reaches the files we keep too: the `done/` and
//! `rejected/` directories of `queue.dir` and `delivery.dir` hold the rows
//! as they came in. Each file with a line naming the person's address (any
//! case) or external ref (as a whole field, any case) is rewritten without
//! those lines: a temporary file beside it, synced, renamed over it, and
//! the directory synced, so a crash leaves the old file or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What was rewritten.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub files: usize,
    pub lines: usize,
}

/// The `done/` and `rejected/` directories under each of `dirs`.
pub fn kept_dirs(dirs: &[&Path]) -> Vec<PathBuf> {
    dirs.iter()
        .flat_map(|d| [d.join("done"), d.join("rejected")])
        .collect()
}

/// Drop every line naming one of `emails` or `refs` from the files in
/// `dirs` (missing directories are skipped).
pub fn erase_lines(
    dirs: &[PathBuf],
    emails: &[String],
    refs: &[String],
) -> std::io::Result<Erased> {
    let emails: Vec<String> = emails
        .iter()
        .filter(|e| !e.is_empty())
        .map(|e| e.to_lowercase())
        .collect();
    let refs: Vec<String> = refs
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| r.to_lowercase())
        .collect();
    let mut out = Erased::default();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_file() || entry.file_name().to_string_lossy().starts_with('.')
            {
                continue;
            }
            let n = rewrite(&entry.path(), &emails, &refs)?;
            if n > 0 {
                out.files += 1;
                out.lines += n;
            }
        }
        if out.files > 0 {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(out)
}

/// Rewrite one file without the lines naming the person; how many went.
fn rewrite(path: &Path, emails: &[String], refs: &[String]) -> std::io::Result<usize> {
    let bytes = std::fs::read(path)?;
    let mut kept = Vec::with_capacity(bytes.len());
    let mut dropped = 0;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if names(line, emails, refs) {
            dropped += 1;
        } else {
            kept.extend_from_slice(line);
        }
    }
    if dropped == 0 {
        return Ok(0);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.forget.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&kept)?;
    f.set_permissions(std::fs::metadata(path)?.permissions())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(dropped)
}

fn names(line: &[u8], emails: &[String], refs: &[String]) -> bool {
    let lower = String::from_utf8_lossy(line).to_lowercase();
    emails.iter().any(|e| lower.contains(e.as_str())) || refs.iter().any(|r| has_field(&lower, r))
}

/// `needle` in `hay` with no letter or digit right before or after it.
fn has_field(hay: &str, needle: &str) -> bool {
    let mut from = 0;
    while let Some(i) = hay[from..].find(needle) {
        let start = from + i;
        let end = start + needle.len();
        let before = hay[..start].chars().next_back();
        let after = hay[end..].chars().next();
        let edge = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        if edge(before) && edge(after) {
            return true;
        }
        from = start + hay[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_naming_the_person_go_and_the_rest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        std::fs::create_dir_all(&done).unwrap();
        let csv = "email,name,external_ref\nAnn@Example.com,Ann,REF-1\nbob@example.com,Bob,REF-10\ncat@example.com,Cat,ref-1\n";
        std::fs::write(done.join("a.csv"), csv).unwrap();
        std::fs::write(done.join("b.csv"), "email\nzed@example.com\n").unwrap();
        let e = erase_lines(
            &kept_dirs(&[dir.path()]),
            &["ann@example.com".into()],
            &["REF-1".into()],
        )
        .unwrap();
        assert_eq!(e, Erased { files: 1, lines: 2 });
        let left = std::fs::read_to_string(done.join("a.csv")).unwrap();
        assert_eq!(
            left,
            "email,name,external_ref\nbob@example.com,Bob,REF-10\n"
        );
        assert_eq!(
            std::fs::read_to_string(done.join("b.csv")).unwrap(),
            "email\nzed@example.com\n"
        );
        assert!(
            std::fs::read_dir(&done).unwrap().count() == 2,
            "no temporary file left"
        );
    }
}
