//! Files `enqueue` places in the queue directory must be readable by the
//! daemon. Under systemd the daemon runs as a dynamic user that owns the
//! directory, while `enqueue` runs as root, often with `umask 077`: a file
//! left as root's, mode 0600, would sit in the queue unread. So each file is
//! given to the directory's owner and made readable by owner and group,
//! whatever the umask.

use std::fs::{File, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt, fchown};
use std::path::Path;

/// The mode of a placed file: its owner (the daemon) and group may read it;
/// nobody else (the rows are personal data).
const MODE: u32 = 0o640;

/// Give `file` (just created in `dir`) to `dir`'s owner and group and set
/// its mode to 0640. Only root may give a file away: anyone else keeps it
/// and hands over only the group, if they are in it (the daemon reads it
/// through the group then).
pub(crate) fn hand_to_dir_owner(file: &File, dir: &Path) -> std::io::Result<()> {
    let want = std::fs::metadata(dir)?;
    let have = file.metadata()?;
    if have.uid() != want.uid() || have.gid() != want.gid() {
        let whole = fchown(file, Some(want.uid()), Some(want.gid()));
        if matches!(&whole, Err(e) if e.kind() == ErrorKind::PermissionDenied) {
            match fchown(file, None, Some(want.gid())) {
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {}
                other => other?,
            }
        } else {
            whole?;
        }
    }
    file.set_permissions(Permissions::from_mode(MODE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }

    #[test]
    fn a_file_made_under_umask_077_becomes_the_directorys_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = 54_321;
        if is_root() {
            // The daemon's dynamic user owns the queue directory.
            std::os::unix::fs::chown(dir.path(), Some(foreign), Some(foreign)).unwrap();
        }
        let path = dir.path().join("f.jsonl");
        let file = File::create(&path).unwrap();
        file.set_permissions(Permissions::from_mode(0o600)).unwrap();
        hand_to_dir_owner(&file, dir.path()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, MODE);
        if is_root() {
            assert_eq!((meta.uid(), meta.gid()), (foreign, foreign));
        } else {
            let d = std::fs::metadata(dir.path()).unwrap();
            assert_eq!(meta.uid(), d.uid());
        }
    }
}
