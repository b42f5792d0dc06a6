//! Core key rotation (`mydex-connector rotate-key`): re-seal every value
//! sealed with the store key under a new key, so that a kill at any moment
//! leaves a store the same command can finish.
//!
//! The steps, each durable before the next:
//! 1. a journal in `meta` (the new key's fingerprint and the old one's, never
//!    a key) — from then on `Core::open` refuses the store with either key;
//! 2. member keys (and the member records, sealed whole: `sealed.rs`), then
//!    unmatched callbacks' keys, then the invitations, readings and
//!    suppression entries sealed whole, then the bodies of raw
//!    callbacks (`raw_callbacks.rs`), re-sealed in batches, each
//!    batch one atomic engine batch. A value is recognised as done when it opens
//!    under the new key (XChaCha20-Poly1305 authenticates, so a value sealed
//!    with the other key fails to open with certainty, not by a guess), so a
//!    rerun skips what an earlier run finished and re-seals the rest;
//! 3. last, in one transaction: the key check sealed under the new key, and
//!    the journal removed.
//!
//! Plaintext keys live only in memory (zeroised after use).

use super::engine::{Engine, Table, Transactional, Value, WriteBatch};
use super::schema::{self, tables};
use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretBox};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::codec::{decode, encode};
use super::crypto::Sealer;
use super::db::{KEY_CHECK, KEY_CHECK_NAME, open_db};
use super::error::{Result, StoreError};
use super::raw_callbacks::{RawBody, raw_aad};
use super::records::now_ms;
use super::rotation_journal::{JOURNAL, Journal, journal};
use super::sealed;

/// Values re-sealed per atomic batch (and per flush).
const BATCH: usize = 1000;

/// A short, non-secret name for a key (the first 8 bytes of a domain-separated
/// SHA-256), to tell key files apart in messages.
pub fn fingerprint(key: &SecretBox<[u8; 32]>) -> String {
    let mut h = Sha256::new();
    h.update(b"mydex-connector store key fingerprint v1\0");
    h.update(key.expose_secret());
    hex::encode(&h.finalize()[..8])
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct RotationReport {
    pub old_key_fingerprint: String,
    pub new_key_fingerprint: String,
    /// An unfinished rotation was found and completed.
    pub resumed: bool,
    pub members_total: u64,
    pub members_resealed: u64,
    /// Members whose key was already under the new key (an earlier run), or
    /// who hold no key.
    pub members_skipped: u64,
    pub unmatched_resealed: u64,
    /// Bodies of stored raw callbacks re-sealed.
    pub raw_resealed: u64,
    pub elapsed: Duration,
}

/// Re-seal the store at `path` from `old` to `new`. The store must not be in
/// use. `progress(done, total)` is called after each batch of members.
pub fn rotate_key(
    path: &Path,
    old: &SecretBox<[u8; 32]>,
    new: &SecretBox<[u8; 32]>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RotationReport> {
    let started = Instant::now();
    let shown = path.display().to_string();
    let (old_fp, new_fp) = (fingerprint(old), fingerprint(new));
    if bool::from(old.expose_secret().ct_eq(new.expose_secret())) {
        return Err(StoreError::RotationRefused(format!(
            "the new key (fingerprint {new_fp}) is the key store.key_file already holds; rotation needs a different key; nothing was changed"
        )));
    }
    if !path.join("db").is_file() {
        return Err(StoreError::RotationRefused(format!(
            "there is no store at {shown} (store.path); nothing to rotate"
        )));
    }
    super::migrate::on_disk(path)?;
    let db = open_db(path)?;
    let meta = db.table(tables::META)?;
    super::migrate::found(&meta, path)?;
    let (old_s, new_s) = (Sealer::new(old), Sealer::new(new));
    let resumed = start_or_resume(&meta, &shown, (&old_s, &new_s), (&old_fp, &new_fp))?;
    let done = reseal_all(&db, &old_s, &new_s, progress)?;
    let mail_keys = super::mail_keys::reseal(&meta, &old_s, &new_s)?;
    switch_key(&db, &meta, &new_s, &mail_keys)?;
    Ok(RotationReport {
        old_key_fingerprint: old_fp,
        new_key_fingerprint: new_fp,
        resumed,
        members_total: done.members_total,
        members_resealed: done.members_resealed,
        members_skipped: done.members_skipped,
        unmatched_resealed: done.unmatched_resealed,
        raw_resealed: done.raw_resealed,
        elapsed: started.elapsed(),
    })
}

/// Check the keys against the store and write the journal (a new
/// rotation), or check them against the journal (an unfinished one, to
/// resume): `true` when resuming.
fn start_or_resume(
    meta: &Table,
    shown: &str,
    (old_s, new_s): (&Sealer, &Sealer),
    (old_fp, new_fp): (&str, &str),
) -> Result<bool> {
    let check = meta
        .get(KEY_CHECK_NAME)?
        .ok_or_else(|| StoreError::Corrupt("meta/key_check is missing".into()))?;
    let check =
        std::str::from_utf8(&check).map_err(|_| StoreError::Corrupt("meta/key_check".into()))?;
    let opens = |s: &Sealer| s.open(check, b"meta").is_ok_and(|v| v == KEY_CHECK);
    let (opens_old, opens_new) = (opens(old_s), opens(new_s));

    Ok(match journal(meta)? {
        None => {
            if opens_new {
                return Err(StoreError::RotationRefused(format!(
                    "the store at {shown} already uses the new key (fingerprint {new_fp}); nothing to do: put that key in store.key_file"
                )));
            }
            if !opens_old {
                return Err(StoreError::WrongKey {
                    path: shown.to_string(),
                });
            }
            let j = Journal {
                new_key_fingerprint: new_fp.to_string(),
                old_key_fingerprint: old_fp.to_string(),
                started_ms: now_ms(),
            };
            meta.insert(JOURNAL, encode(&j))?;
            meta.flush()?;
            false
        }
        Some(j) => {
            if j.new_key_fingerprint != new_fp {
                return Err(StoreError::RotationRefused(format!(
                    "the unfinished key rotation at {shown} is to the key with fingerprint {}, not {new_fp}: rerun with that key file as --new-key-file; nothing was changed",
                    j.new_key_fingerprint
                )));
            }
            if !opens_old && !opens_new {
                return Err(StoreError::RotationRefused(format!(
                    "store.key_file (fingerprint {old_fp}) is not the key the unfinished rotation started from (fingerprint {}): keep the old key in store.key_file until rotate-key has finished; nothing was changed",
                    j.old_key_fingerprint
                )));
            }
            true
        }
    })
}

/// What the re-sealing did, tree by tree.
struct Resealed {
    members_total: u64,
    members_resealed: u64,
    members_skipped: u64,
    unmatched_resealed: u64,
    raw_resealed: u64,
}

/// Re-seal members' keys, then unmatched callbacks' keys, then raw
/// callbacks' bodies; `progress(done, total)` after each batch of members.
fn reseal_all(
    db: &Engine,
    old_s: &Sealer,
    new_s: &Sealer,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Resealed> {
    let members = db.table(tables::MEMBERS)?;
    let members_total = members.len() as u64;
    let (mut resealed, mut skipped) = (0u64, 0u64);
    reseal_tree(
        db,
        &members,
        b"",
        "member",
        old_s,
        new_s,
        &reseal_member,
        &mut |r, s| {
            resealed += r;
            skipped += s;
            progress(resealed + skipped, members_total);
        },
    )?;
    let log = db.table(sealed::LOG)?;
    let mut unmatched = 0u64;
    reseal_tree(
        db,
        &log,
        schema::UNMATCHED_PREFIX,
        "unmatched callback",
        old_s,
        new_s,
        &|k, v, what, o, n| reseal_nested(sealed::LOG, k, v, what, o, n),
        &mut |r, _| unmatched += r,
    )?;
    let whole = [
        (sealed::INVITATIONS, b"".as_slice(), "invitation"),
        (sealed::READINGS, b"".as_slice(), "reading"),
        (sealed::IDX, schema::SUPPRESSION_PREFIX, "suppression"),
        (sealed::LOG, schema::EVENT_PREFIX, "callback event"),
        (sealed::LOG, schema::REJECT_PREFIX, "rejected row"),
    ];
    for (name, prefix, what) in whole {
        let tree = db.table(name)?;
        reseal_tree(
            db,
            &tree,
            prefix,
            what,
            old_s,
            new_s,
            &|k, v, _, o, n| reseal_value(name, k, v, o, n),
            &mut |_, _| {},
        )?;
    }
    let raw = db.table(tables::RAW)?;
    let mut raw_resealed = 0u64;
    reseal_tree(
        db,
        &raw,
        schema::RAW_BODY_PREFIX,
        "raw callback",
        old_s,
        new_s,
        &|_, v, what, o, n| reseal_raw(v, what, o, n),
        &mut |r, _| raw_resealed += r,
    )?;
    Ok(Resealed {
        members_total,
        members_resealed: resealed,
        members_skipped: skipped,
        unmatched_resealed: unmatched,
        raw_resealed,
    })
}

/// The switch: the key check under the new key and the journal gone, in
/// one step, made durable; the mail keys (`mail_keys.rs`) re-sealed in it.
fn switch_key(
    db: &Engine,
    meta: &Table,
    new_s: &Sealer,
    mail_keys: &[(String, String)],
) -> Result<()> {
    let new_check = new_s.seal(KEY_CHECK, b"meta");
    meta.transaction(|m| {
        m.insert(KEY_CHECK_NAME, new_check.as_bytes())?;
        for (name, value) in mail_keys {
            m.insert(name.as_bytes(), value.as_bytes())?;
        }
        m.remove(JOURNAL)?;
        Ok::<_, super::engine::TxError<StoreError>>(())
    })?;
    db.flush()?;
    Ok(())
}

/// How one record is re-sealed: the record re-encoded, or `None` when it
/// holds nothing sealed under the old key.
type Reseal = dyn Fn(&[u8], &[u8], &str, &Sealer, &Sealer) -> Result<Option<Vec<u8>>>;

/// Re-seal every JSON record under `prefix` in `tree` with `reseal`, one
/// atomic batch at a time. `done(resealed, skipped)` after each batch.
#[allow(clippy::too_many_arguments)]
fn reseal_tree(
    db: &Engine,
    tree: &Table,
    prefix: &[u8],
    what: &str,
    old: &Sealer,
    new: &Sealer,
    reseal: &Reseal,
    done: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let mut after: Option<Value> = None;
    loop {
        let lower = match &after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Included(Value::from(prefix)),
        };
        let mut batch = WriteBatch::default();
        let (mut seen, mut resealed) = (0usize, 0u64);
        for item in tree.range::<Value, _>((lower, Bound::Unbounded)) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            if let Some(updated) = reseal(&k, &v, what, old, new)? {
                batch.insert(k.clone(), updated);
                resealed += 1;
            }
            seen += 1;
            after = Some(k);
            if seen == BATCH {
                break;
            }
        }
        if seen == 0 {
            return Ok(());
        }
        if resealed > 0 {
            tree.apply_batch(batch)?;
            db.flush()?;
        }
        done(resealed, seen as u64 - resealed);
        if seen < BATCH {
            return Ok(());
        }
    }
}

/// A record sealed whole (`sealed.rs`) under `new`, or `None` when it
/// already is; a record still in clear is sealed (so old stores converge).
fn reseal_value(
    tree: &str,
    k: &[u8],
    bytes: &[u8],
    old: &Sealer,
    new: &Sealer,
) -> Result<Option<Vec<u8>>> {
    let aad = sealed::aad(tree, k);
    if !sealed::is_sealed(bytes) {
        return Ok(Some(new.seal(bytes, &aad).into_bytes()));
    }
    if sealed::plain(new, tree, k, bytes).is_ok() {
        return Ok(None);
    }
    let plain = Zeroizing::new(sealed::opened(old, tree, k, bytes)?);
    Ok(Some(new.seal(&plain, &aad).into_bytes()))
}

/// A member record under `new`: its connection key re-sealed inside, and
/// the whole record sealed (`sealed.rs`); `None` when it already is.
fn reseal_member(
    k: &[u8],
    bytes: &[u8],
    what: &str,
    old: &Sealer,
    new: &Sealer,
) -> Result<Option<Vec<u8>>> {
    reseal_nested(sealed::MEMBERS, k, bytes, what, old, new)
}

/// A record of `tree` that holds a sealed key (a member, an unmatched
/// callback) under `new`: the key re-sealed inside, the whole record sealed
/// (a clear one is sealed on the way); `None` when it already is.
fn reseal_nested(
    tree: &str,
    k: &[u8],
    bytes: &[u8],
    what: &str,
    old: &Sealer,
    new: &Sealer,
) -> Result<Option<Vec<u8>>> {
    if sealed::is_sealed(bytes) && sealed::plain(new, tree, k, bytes).is_ok() {
        return Ok(None);
    }
    let plain = Zeroizing::new(sealed::plain(old, tree, k, bytes)?);
    let inner = Zeroizing::new(reseal_record(&plain, what, old, new)?.unwrap_or(plain.to_vec()));
    Ok(Some(new.seal(&inner, &sealed::aad(tree, k)).into_bytes()))
}

/// The record with its key re-sealed under `new`, or `None` when it holds no
/// key or its key is already under `new`.
fn reseal_record(bytes: &[u8], what: &str, old: &Sealer, new: &Sealer) -> Result<Option<Vec<u8>>> {
    let mut record: serde_json::Value = decode(bytes, what)?;
    let Some(sealed) = record.get("sealed_key").and_then(|v| v.as_str()) else {
        return Ok(None);
    };
    if sealed.is_empty() {
        return Ok(None);
    }
    let aad = record
        .get("connection_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            StoreError::Corrupt(format!("{what} with a sealed key but no connection_id"))
        })?
        .to_owned();
    if new.open(sealed, aad.as_bytes()).is_ok() {
        return Ok(None);
    }
    let plain = Zeroizing::new(old.open(sealed, aad.as_bytes()).map_err(|e| {
        StoreError::Corrupt(format!(
            "the key of {what} {aad} opens with neither the old nor the new key: {e}"
        ))
    })?);
    record["sealed_key"] = serde_json::Value::String(new.seal(&plain, aad.as_bytes()));
    Ok(Some(encode(&record)))
}

/// A raw callback with its body re-sealed under `new` (bound to its id), or
/// `None` when it already is.
fn reseal_raw(bytes: &[u8], what: &str, old: &Sealer, new: &Sealer) -> Result<Option<Vec<u8>>> {
    let mut rec: RawBody = decode(bytes, what)?;
    let aad = raw_aad(rec.id);
    if new.open(&rec.sealed_body, &aad).is_ok() {
        return Ok(None);
    }
    let plain = Zeroizing::new(old.open(&rec.sealed_body, &aad).map_err(|e| {
        StoreError::Corrupt(format!(
            "the body of {what} {} opens with neither the old nor the new key: {e}",
            rec.id
        ))
    })?);
    rec.sealed_body = new.seal(&plain, &aad);
    Ok(Some(encode(&rec)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Core, ImportMember};

    fn key(b: u8) -> SecretBox<[u8; 32]> {
        SecretBox::new(Box::new([b; 32]))
    }

    #[test]
    fn rotates_resumes_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let ids: Vec<String> = (0..2500).map(|i| format!("{}-45678", 1000 + i)).collect();
        let keys: Vec<String> = (0..2500).map(|i| format!("key-{i}")).collect();
        {
            let s = Core::open(&path, &key(1)).unwrap();
            let batch: Vec<ImportMember> = ids
                .iter()
                .zip(&keys)
                .map(|(c, k)| ImportMember {
                    uid: 1,
                    connection_id: c,
                    mydexid: None,
                    email: None,
                    key: k,
                    version: 1,
                    campaign: None,
                })
                .collect();
            assert_eq!(s.import_members(&batch).unwrap(), 2500);
            s.flush_blocking().unwrap();
        }
        assert!(matches!(
            rotate_key(&path, &key(1), &key(1), &mut |_, _| {}),
            Err(StoreError::RotationRefused(_))
        ));
        let r = rotate_key(&path, &key(3), &key(2), &mut |_, _| {});
        assert!(matches!(r, Err(StoreError::WrongKey { .. })), "{r:?}");
        // Half a rotation: the journal, and the first batch under the new key.
        {
            let db = open_db(&path).unwrap();
            let meta = db.table("meta").unwrap();
            let j = Journal {
                new_key_fingerprint: fingerprint(&key(2)),
                old_key_fingerprint: fingerprint(&key(1)),
                started_ms: 0,
            };
            meta.insert(JOURNAL, super::super::codec::encode(&j))
                .unwrap();
            let members = db.table("members").unwrap();
            let (o, n) = (Sealer::new(&key(1)), Sealer::new(&key(2)));
            for item in members.iter().take(700) {
                let (k, v) = item.unwrap();
                let u = reseal_member(&k, &v, "member", &o, &n).unwrap().unwrap();
                members.insert(k, u).unwrap();
            }
            db.flush().unwrap();
        }
        // An unmatched callback's key, sealed under the old key.
        {
            let db = open_db(&path).unwrap();
            let rec = crate::store::CallbackRecord {
                received_ms: 0,
                kind: "ftc".into(),
                method: "POST".into(),
                linking_token: None,
                connection_id: Some("9999-45678".into()),
                mydexid: None,
                body: serde_json::Value::Null,
                sealed_key: Some(Sealer::new(&key(1)).seal(b"stray-key", b"9999-45678")),
                note: String::new(),
            };
            db.table(tables::LOG)
                .unwrap()
                .insert(b"u/\0\0\0\0\0\0\0\x01", super::super::codec::encode(&rec))
                .unwrap();
            db.flush().unwrap();
        }
        for k in [1, 2] {
            assert!(matches!(
                Core::open(&path, &key(k)),
                Err(StoreError::RotationUnfinished { .. })
            ));
        }
        assert!(matches!(
            rotate_key(&path, &key(1), &key(3), &mut |_, _| {}),
            Err(StoreError::RotationRefused(_))
        ));
        let r = rotate_key(&path, &key(1), &key(2), &mut |_, _| {}).unwrap();
        assert!(r.resumed);
        assert_eq!((r.members_resealed, r.members_skipped), (1800, 700));
        assert_eq!(r.unmatched_resealed, 1);
        assert!(matches!(
            Core::open(&path, &key(1)),
            Err(StoreError::WrongKey { .. })
        ));
        let s = Core::open(&path, &key(2)).unwrap();
        for (c, k) in ids.iter().zip(&keys) {
            let m = s.member(c).unwrap().unwrap();
            assert_eq!(
                s.sealer().open(&m.sealed_key, c.as_bytes()).unwrap(),
                k.as_bytes()
            );
        }
        let stray: Vec<_> = s.unmatched().collect::<Result<_>>().unwrap();
        assert_eq!(
            s.sealer()
                .open(stray[0].sealed_key.as_deref().unwrap(), b"9999-45678")
                .unwrap(),
            b"stray-key"
        );
    }
}

#[cfg(test)]
mod raw_tests {
    use super::*;
    use crate::store::{Core, RawOutcome};

    fn key(b: u8) -> SecretBox<[u8; 32]> {
        SecretBox::new(Box::new([b; 32]))
    }

    /// `rotate_key`, waiting while a just-dropped store still holds the
    /// lock (the engine's own flusher thread lets go of it a moment later).
    fn rotate(path: &Path, old: u8, new: u8) -> RotationReport {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            match rotate_key(path, &key(old), &key(new), &mut |_, _| {}) {
                Err(StoreError::InUse { .. }) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                r => return r.unwrap(),
            }
        }
    }

    #[test]
    fn rotation_reseals_raw_callback_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let bodies: Vec<Vec<u8>> = (0..1500)
            .map(|i| format!("uid={i}&key=KEY-{i}&connection_id={i}-45678").into_bytes())
            .collect();
        let mut ids = Vec::new();
        {
            let s = Core::open(&path, &key(1)).unwrap();
            for b in &bodies {
                ids.push(s.keep_raw("POST", None, b).unwrap());
            }
            s.settle_raw(
                ids[0],
                None,
                &RawOutcome::Quarantined {
                    reason: "test".into(),
                },
            )
            .unwrap();
            s.flush_blocking().unwrap();
        }
        let r = rotate(&path, 1, 2);
        // The old key opens none of them any more.
        {
            let until = Instant::now() + Duration::from_secs(60);
            let db = loop {
                match open_db(&path) {
                    Err(StoreError::InUse { .. }) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    r => break r.unwrap(),
                }
            };
            let raw = db.table("raw").unwrap();
            let mut n = 0;
            for item in raw.scan_prefix(schema::RAW_BODY_PREFIX) {
                let v: crate::store::raw_callbacks::RawBody =
                    crate::store::decode(&item.unwrap().1, "body").unwrap();
                assert!(
                    Sealer::new(&key(1))
                        .open(&v.sealed_body, &crate::store::raw_aad(v.id))
                        .is_err()
                );
                n += 1;
            }
            assert_eq!(n, 1500);
        }
        assert_eq!(r.raw_resealed, 1500);
        let s = Core::open(&path, &key(2)).unwrap();
        for (id, b) in ids.iter().zip(&bodies) {
            let rec = s.raw_callback(*id).unwrap();
            assert_eq!(s.raw_body(&rec).unwrap().as_slice(), b.as_slice());
        }
        assert_eq!(
            s.raw_counts().unwrap(),
            (1, 1),
            "one judged, and quarantined"
        );
        // A second rotation re-seals them all again.
        drop(s);
        assert_eq!(rotate(&path, 2, 3).raw_resealed, 1500);
    }
}
