//! `store compact` (the daemon stopped): the store's live records rewritten
//! into a fresh store that is swapped in for it, so that what the engine's old
//! log segments still held (values overwritten or removed: clear copies
//! left by stores written before sealing, the index keys of people
//! forgotten) is gone from the disk. The store is opened as the daemon
//! opens it (same key check, same refusal of an unfinished rotation, same
//! sealing of clear records left by an older release), copied and verified
//! (`engine/compact.rs`), and swapped in so that a kill at any moment
//! leaves one whole store (`engine/compact_swap.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use secrecy::SecretBox;

use super::engine::compact::{Copied, copy, verify};
use super::engine::compact_error::CompactError;
use super::engine::compact_swap::{
    CompactStep, Recovery, Sides, bytes_on_disk, hold, recover, remove_store_dir, swap,
};
use super::{Core, Result};

/// How long to wait for an engine handle of ours, just closed, to let go of
/// its lock (its threads close its files a moment after the drop).
const LET_GO: Duration = Duration::from_secs(60);

/// What a compaction did.
#[derive(Debug, Clone)]
pub struct CompactReport {
    /// What an earlier, interrupted compaction had left, cleared first.
    pub recovered: Recovery,
    /// The store's files on disk before and after (bytes, as `du` counts).
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Each tree and the records copied from it.
    pub trees: Vec<(String, u64)>,
    pub records: u64,
    pub elapsed: Duration,
}

/// Compact the store at `path` (opened with `key`): copy, verify, swap.
/// `on_step` is told where it stands. The store must not be in use.
pub fn compact_store(
    path: &Path,
    key: &SecretBox<[u8; 32]>,
    on_step: &mut dyn FnMut(CompactStep),
) -> Result<CompactReport> {
    let started = Instant::now();
    let sides = Sides::of(path);
    let recovered = recover(&sides.store)?;
    if !sides.store.join("db").is_file() {
        return Err(CompactError::NoStore { path: sides.store }.into());
    }
    let bytes_before = bytes_on_disk(&sides.store)?;
    let core = Core::open(&sides.store, key)?;
    let copied = match copy_and_verify(&core, &sides, on_step) {
        Ok(c) => c,
        Err(e) => {
            discard(&sides);
            return Err(e);
        }
    };
    drop(core);
    // Both locks held from here to the end: the copy's, and the store's
    // once the engine has let go of it, so nothing opens either meanwhile.
    let held_store = match hold(&sides.store, LET_GO) {
        Ok(h) => h,
        Err(e) => {
            drop(copied.1);
            discard(&sides);
            return Err(e);
        }
    };
    swap(&sides, on_step)?;
    drop((held_store, copied.1));
    let report = CompactReport {
        recovered,
        bytes_before,
        bytes_after: bytes_on_disk(&sides.store)?,
        trees: copied
            .0
            .trees
            .iter()
            .map(|t| (t.name.clone(), t.records))
            .collect(),
        records: copied.0.records(),
        elapsed: started.elapsed(),
    };
    tracing::info!(
        store = %sides.store.display(),
        records = report.records,
        bytes_before = report.bytes_before,
        bytes_after = report.bytes_after,
        "store compacted"
    );
    Ok(report)
}

/// Copy the open store into `.compact-new`, read the copy back and verify
/// it; the copy's lock is held when this returns.
fn copy_and_verify(
    core: &Core,
    sides: &Sides,
    on_step: &mut dyn FnMut(CompactStep),
) -> Result<(Copied, super::engine::compact_swap::Held)> {
    let copied = copy(&core.db, &sides.new, on_step)?;
    verify(&sides.new, &copied)?;
    let held = hold(&sides.new, LET_GO)?;
    on_step(CompactStep::Verified);
    Ok((copied, held))
}

/// Remove the copy after a failure before the swap (best effort: the next
/// open removes what is left).
fn discard(sides: &Sides) {
    if !sides.new.exists() {
        return;
    }
    let removed =
        hold(&sides.new, LET_GO).and_then(|_held| remove_store_dir(sides, &sides.new, &mut |_| {}));
    if let Err(e) = removed {
        tracing::warn!(
            copy = %sides.new.display(),
            error = %e,
            "the unfinished compacted copy was not removed; the next open of the store removes it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Invitee, Kind};
    use crate::store::{InsertOutcome, NewInvitation, StoreError};

    fn key(b: u8) -> SecretBox<[u8; 32]> {
        SecretBox::new(Box::new([b; 32]))
    }

    fn invitations(from: u32, to: u32) -> Vec<NewInvitation> {
        (from..to)
            .map(|i| NewInvitation {
                campaign: "c".into(),
                kind: Kind::Connect,
                version: 1,
                invitee: serde_json::from_value::<Invitee>(serde_json::json!({
                    "email": format!("p{i}@example.com"), "name": null,
                    "external_ref": null, "mydexid": null, "campaign": null
                }))
                .unwrap(),
            })
            .collect()
    }

    fn inserted(s: &Core, from: u32, to: u32) -> Vec<u64> {
        let out = s.insert_invitations(&invitations(from, to), None).unwrap();
        s.flush_blocking().unwrap();
        out.iter()
            .map(|o| match o {
                InsertOutcome::Inserted(id) => *id,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// `compact_store`, waiting while a just-dropped store still holds
    /// its lock.
    fn compact(path: &Path, k: u8) -> Result<CompactReport> {
        let until = Instant::now() + LET_GO;
        loop {
            match compact_store(path, &key(k), &mut |_| {}) {
                Err(StoreError::InUse { .. }) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                r => return r,
            }
        }
    }

    fn open(path: &Path) -> Core {
        let until = Instant::now() + LET_GO;
        loop {
            match Core::open(path, &key(1)) {
                Err(StoreError::InUse { .. }) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                r => return r.unwrap(),
            }
        }
    }

    #[test]
    fn compaction_keeps_every_record_and_ids_go_on_past_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let e = compact(&path, 1).unwrap_err();
        assert!(e.to_string().contains("no store at"), "{e}");
        assert!(!path.exists(), "no store is created");
        let before = inserted(&open(&path), 0, 300);
        assert!(compact(&path, 2).unwrap_err().is_key_problem());
        let r = compact(&path, 1).unwrap();
        assert!(r.records >= 300, "{r:?}");
        assert_eq!(r.recovered, Recovery::Clean);
        let sides = Sides::of(&path);
        assert!(!sides.new.exists() && !sides.old.exists());
        let s = open(&path);
        for (i, id) in before.iter().enumerate() {
            let inv = s.invitation(*id).unwrap();
            assert_eq!(inv.invitee.email.to_string(), format!("p{i}@example.com"));
        }
        let max = before.iter().max().unwrap();
        assert!(inserted(&s, 300, 310).iter().all(|id| id > max));
    }

    #[test]
    fn a_store_with_an_unfinished_rotation_is_refused_untouched() {
        use crate::store::codec::encode;
        use crate::store::rotation_journal::{JOURNAL, Journal};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        inserted(&open(&path), 0, 10);
        {
            let until = Instant::now() + LET_GO;
            let db = loop {
                match super::super::db::open_db(&path) {
                    Err(StoreError::InUse { .. }) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    r => break r.unwrap(),
                }
            };
            let j = Journal {
                new_key_fingerprint: "00".repeat(8),
                old_key_fingerprint: "11".repeat(8),
                started_ms: 1,
            };
            db.table(crate::store::schema::tables::META)
                .unwrap()
                .insert(JOURNAL, encode(&j))
                .unwrap();
            db.flush().unwrap();
        }
        let e = compact(&path, 1).unwrap_err();
        assert!(matches!(e, StoreError::RotationUnfinished { .. }), "{e}");
        let sides = Sides::of(&path);
        assert!(!sides.new.exists() && !sides.old.exists());
    }
}
