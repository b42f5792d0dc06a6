//! Writing into a watched directory's `rejected/`: the reports of bad rows
//! (`NAME.rejected.txt`) and the files set aside whole because they can
//! never be taken in (a name that cannot be used, not a regular file, not
//! readable). Anyone who can write in the watched directory could leave a
//! symbolic link where a report goes, so nothing here follows one: reports
//! are opened with `O_NOFOLLOW` (a link found in their place is removed, not
//! written through), and `rejected/` itself must be a real directory.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The longest file name Linux file systems take (`NAME_MAX`).
const NAME_MAX: usize = 255;
/// What a report adds to the name of the file it is about.
const REPORT_SUFFIX: &str = ".rejected.txt";

/// Why a file in a watched directory can never be taken in as it is.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the file name is not valid UTF-8; rename the file and place it again")]
    NotUtf8,
    #[error("the file name holds a control character; rename the file and place it again")]
    ControlCharacter,
    #[error(
        "the file name is {0} bytes long, more than the {max} a name may have here; rename the file and place it again",
        max = NAME_MAX - REPORT_SUFFIX.len()
    )]
    TooLong(usize),
    #[error("not a regular file but {0}; place the file itself")]
    NotRegular(&'static str),
    #[error("cannot be read: {error}{}", resume_note(*stored_through))]
    Unreadable {
        error: io::Error,
        /// The last line already stored (0: none).
        stored_through: u64,
    },
}

fn resume_note(line: u64) -> String {
    match line {
        0 => String::new(),
        n => format!(
            " (rows through line {n} were stored; placed again under the same name, the file is read on from line {})",
            n + 1
        ),
    }
}

/// `name` as text, or why it cannot be used as a file's name here (a
/// report `NAME.rejected.txt` must fit, and logs and reports quote it).
pub(crate) fn usable_name(name: &OsStr) -> Result<&str, Refusal> {
    let text = name.to_str().ok_or(Refusal::NotUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(Refusal::ControlCharacter);
    }
    if text.len() + REPORT_SUFFIX.len() > NAME_MAX {
        return Err(Refusal::TooLong(text.len()));
    }
    Ok(text)
}

/// `dir/rejected`, refused when it is not a real directory.
fn rejected_dir(dir: &Path) -> io::Result<PathBuf> {
    let rejected = dir.join("rejected");
    if !std::fs::symlink_metadata(&rejected)?.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory (a symbolic link or a file); nothing is written through it",
            rejected.display()
        )));
    }
    Ok(rejected)
}

/// The report `rejected/{name}.rejected.txt`, opened (or made) for
/// appending without following a link.
pub(crate) fn open_report(dir: &Path, name: &str) -> io::Result<File> {
    let path = rejected_dir(dir)?.join(format!("{name}{REPORT_SUFFIX}"));
    match open_no_follow(&path) {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            tracing::warn!(path = %path.display(), "a symbolic link stood where a rejected-rows report goes: removed, not followed");
            std::fs::remove_file(&path)?;
            open_no_follow(&path)
        }
        other => other,
    }
}

/// Open `path` for appending, creating it; never through a link, never
/// blocking on a FIFO, and only a regular file.
fn open_no_follow(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(file)
}

/// Move `path` out of the watched directory `dir` into `rejected/` (under
/// a usable name that is free there) and write why beside it. Returns where
/// it went.
pub(crate) fn set_aside(dir: &Path, path: &Path, why: &Refusal) -> io::Result<PathBuf> {
    let rejected = rejected_dir(dir)?;
    let original = path.file_name().unwrap_or_default();
    let base = match usable_name(original) {
        Ok(name) => name.to_string(),
        Err(_) => safe_name(original),
    };
    let mut name = base.clone();
    let mut n = 1;
    while std::fs::symlink_metadata(rejected.join(&name)).is_ok() {
        n += 1;
        name = format!("{base}.{n}");
    }
    let dest = rejected.join(&name);
    std::fs::rename(path, &dest)?;
    let mut report = open_report(dir, &name)?;
    writeln!(
        report,
        "{}: not taken in: {why}",
        String::from_utf8_lossy(original.as_bytes()).escape_debug()
    )?;
    report.sync_all()?;
    Ok(dest)
}

/// A usable name for a file whose own name cannot be used: its printable
/// ASCII kept (others as `_`), shortened, after the time it was set aside.
fn safe_name(original: &OsStr) -> String {
    let kept: String = String::from_utf8_lossy(original.as_bytes())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("renamed-{ms}-{kept}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn a_link_in_a_reports_place_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rejected")).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me\n").unwrap();
        let report = dir.path().join("rejected/x.csv.rejected.txt");
        std::os::unix::fs::symlink(&victim, &report).unwrap();
        writeln!(open_report(dir.path(), "x.csv").unwrap(), "x.csv:2: bad").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        assert!(!std::fs::symlink_metadata(&report).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&report).unwrap(), "x.csv:2: bad\n");
    }

    #[test]
    fn a_link_in_place_of_rejected_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("rejected")).unwrap();
        assert!(open_report(dir.path(), "x.csv").is_err());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_unusable_name_is_set_aside_under_a_usable_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rejected")).unwrap();
        let name = OsString::from_vec(b"bad\xffname.csv".to_vec());
        let path = dir.path().join(&name);
        std::fs::write(&path, "email\n").unwrap();
        let why = usable_name(&name).unwrap_err();
        let dest = set_aside(dir.path(), &path, &why).unwrap();
        assert!(!path.exists());
        let shown = dest.file_name().unwrap().to_str().unwrap().to_string();
        assert!(shown.ends_with("-bad_name.csv"), "{shown}");
        let report =
            std::fs::read_to_string(dir.path().join(format!("rejected/{shown}.rejected.txt")))
                .unwrap();
        assert!(report.contains("not valid UTF-8"), "{report}");
        let long = "x".repeat(250) + ".csv";
        assert!(matches!(
            usable_name(OsStr::new(&long)),
            Err(Refusal::TooLong(254))
        ));
        assert!(matches!(
            usable_name(OsStr::new("a\nb.csv")),
            Err(Refusal::ControlCharacter)
        ));
    }
}
