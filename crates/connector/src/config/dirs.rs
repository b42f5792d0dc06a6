//! The directories the daemon owns must not overlap: with `queue.dir` equal
//! to `delivery.dir`, readings files were taken as invitee files and lost;
//! a store inside a watched directory (or a watched directory inside the
//! store) mixes the daemon's own files with files it takes in. Each pair is
//! compared as the file system resolves it (symbolic links followed as far
//! as the path exists), so two spellings of one directory are caught.

use std::path::{Component, Path, PathBuf};

use super::error::ConfigError;
use super::validate::Validator;

/// `path` as the file system resolves it: `.` and `..` applied, then its
/// longest existing ancestor canonicalised (links resolved) and the rest
/// appended.
fn resolved(path: &Path) -> PathBuf {
    let mut lexical = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

/// How `a` stands to `b`, if they overlap.
fn overlap(a: &Path, b: &Path) -> Option<&'static str> {
    if a == b {
        Some("is the same directory as")
    } else if a.starts_with(b) {
        Some("is inside")
    } else if b.starts_with(a) {
        Some("contains")
    } else {
        None
    }
}

impl Validator {
    /// No two of the named directories overlap; the error names the later key.
    pub(super) fn distinct_dirs(&self, dirs: &[(&str, &Path)]) -> Result<(), ConfigError> {
        let resolved: Vec<(&str, &Path, PathBuf)> =
            dirs.iter().map(|(k, p)| (*k, *p, resolved(p))).collect();
        for (i, (key, path, real)) in resolved.iter().enumerate() {
            for (other_key, other_path, other_real) in &resolved[..i] {
                if let Some(how) = overlap(real, other_real) {
                    return Err(self.err(
                        key,
                        format!(
                            "{} {how} {other_key} ({}): each must be a directory of its own, apart from the others",
                            path.display(),
                            other_path.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{overlap, resolved};
    use std::path::Path;

    #[test]
    fn spellings_of_one_directory_resolve_alike() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let a = resolved(&dir.path().join("link/q"));
        let b = resolved(&dir.path().join("real/x/../q/."));
        assert_eq!(a, b);
        assert_eq!(overlap(&a, &b), Some("is the same directory as"));
        assert_eq!(
            overlap(&resolved(&real.join("q/done")), &b),
            Some("is inside")
        );
        assert_eq!(
            overlap(&b, &resolved(&real.join("q/done"))),
            Some("contains")
        );
        assert_eq!(overlap(Path::new("/a/qq"), Path::new("/a/q")), None);
    }
}
