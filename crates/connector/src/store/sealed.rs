//! Records that hold personal data (the `invitations`, `members` and
//! `readings` trees' values: addresses, names, extra columns, external
//! refs, SMTP replies in history notes; the suppression list's entries,
//! whose bounce diagnostics may echo an address; and the `log` tree's
//! unmatched callbacks and identify/notification events, which name a
//! MydexID, a connection id, a linking token and the permissions granted)
//! are never written to the engine in clear:
//! each value is its JSON sealed with the store key (`crypto.rs`) and the
//! tree and key as associated data, so a value cannot be moved to another
//! record. The engine is log-structured: a value removed or overwritten stays in
//! old segment files, so erasing a person (`forget.rs`) can only be sound if
//! what stays there is ciphertext. Values written before sealing (plain
//! JSON) still read; `seal_legacy` seals them once at open (the `log`
//! records in a pass of their own, for stores sealed before they were).
//! Values are sealed as raw bytes (`Sealer::seal_bytes`); those sealed as
//! base64 text by earlier releases (`xc1:`) still open. An invitation's JSON
//! leaves out the fields that read back as their default (`compact`) and
//! is packed before it is sealed (`packing.rs`), so a million queued ones
//! take under two hundred bytes each.

use super::engine::{Engine, abort};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{decode, encode};
use super::crypto::Sealer;
use super::error::{Result, StoreError, TxResult};
use super::schema;

pub(super) use super::schema::tables::{IDX, INVITATIONS, LOG, MEMBERS, READINGS};

/// The sealed values, as (tree, key prefix), for the pass at open and for
/// key rotation.
pub(super) const SEALED: [(&str, &[u8]); 6] = [
    (INVITATIONS, b""),
    (MEMBERS, b""),
    (READINGS, b""),
    (IDX, schema::SUPPRESSION_PREFIX),
    (LOG, schema::UNMATCHED_PREFIX),
    (LOG, schema::EVENT_PREFIX),
];

/// The `log` records, sealed since [`LOG_CONVERGED`].
pub(super) const LOG_SEALED: [(&str, &[u8]); 2] =
    [(LOG, schema::UNMATCHED_PREFIX), (LOG, schema::EVENT_PREFIX)];

const PREFIX: &[u8] = b"xc1:";

/// Set in `meta` once a store's clear records are sealed and its open keys
/// hashed (`Core::open`), so later opens skip the pass.
pub(super) const CONVERGED: &str = "sealed_v1";

/// Set in `meta` once a store's `log` records are sealed: a store
/// converged under [`CONVERGED`] before they were sealed gets this pass once.
pub(super) const LOG_CONVERGED: &str = "sealed_log_v1";

/// The associated data binding a value to its tree and key.
pub(super) fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut a = format!("record/{tree}/").into_bytes();
    a.extend_from_slice(key);
    a
}

pub(super) fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(PREFIX) || bytes.starts_with(super::crypto::RAW_PREFIX)
}

/// A record's value as it is written: its JSON, sealed.
pub(super) fn seal<T: Serialize>(sealer: &Sealer, tree: &str, key: &[u8], value: &T) -> Vec<u8> {
    let plain = if tree == INVITATIONS {
        super::packing::pack(&compact(value))
    } else {
        encode(value)
    };
    sealer.seal_bytes(&plain, &aad(tree, key))
}

/// Fields of an invitation that read back as their default when absent
/// (`#[serde(default)]` on `Invitation`), left out while they are zero.
const ZERO_DEFAULTS: [&str; 3] = ["attempts", "next_attempt_ms", "reminders"];

/// An invitation's JSON without what reads back the same when absent: its
/// `null` fields (and its invitee's: an absent `Option` reads as `None`)
/// and the counters in [`ZERO_DEFAULTS`] while zero. Nothing nested deeper
/// is touched.
fn compact<T: Serialize>(value: &T) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut top)) = serde_json::to_value(value) else {
        return encode(value);
    };
    let defaulted =
        |k: &str, v: &serde_json::Value| v.is_null() || (ZERO_DEFAULTS.contains(&k) && *v == 0);
    top.retain(|k, v| !defaulted(k, v));
    if let Some(serde_json::Value::Object(invitee)) = top.get_mut("invitee") {
        invitee.retain(|_, v| !v.is_null());
    }
    encode(&top)
}

/// A record's JSON: opened and unpacked when sealed, as it is when
/// written before sealing.
pub(super) fn plain(sealer: &Sealer, tree: &str, key: &[u8], bytes: &[u8]) -> Result<Vec<u8>> {
    super::packing::unpack(opened(sealer, tree, key, bytes)?)
}

/// A record's plaintext as it was sealed (packed or not: see
/// `packing.rs`), for re-sealing it under another key as it is.
pub(super) fn opened(sealer: &Sealer, tree: &str, key: &[u8], bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.starts_with(super::crypto::RAW_PREFIX) {
        return sealer
            .open_bytes(bytes, &aad(tree, key))
            .map_err(|e| StoreError::Corrupt(format!("a {tree} record: {e}")));
    }
    if !is_sealed(bytes) {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| StoreError::Corrupt(format!("a sealed {tree} record is not text")))?;
    sealer
        .open(text, &aad(tree, key))
        .map_err(|e| StoreError::Corrupt(format!("a {tree} record: {e}")))
}

/// Read a record written by [`seal`] (or a legacy clear one).
pub(super) fn open<T: DeserializeOwned>(
    sealer: &Sealer,
    tree: &str,
    key: &[u8],
    bytes: &[u8],
    what: &str,
) -> Result<T> {
    decode(&plain(sealer, tree, key, bytes)?, what)
}

/// [`open`] inside a transaction.
pub(super) fn tx_open<T: DeserializeOwned>(
    sealer: &Sealer,
    tree: &str,
    key: &[u8],
    bytes: &[u8],
    what: &str,
) -> TxResult<T> {
    open(sealer, tree, key, bytes, what).map_err(abort)
}

/// Seal every record of `which` (tree, key prefix) still written in clear
/// (stores from before sealing). Each value is swapped only if it is still
/// the one read, so a concurrent writer wins; the number sealed.
pub(super) fn seal_legacy(db: &Engine, sealer: &Sealer, which: &[(&str, &[u8])]) -> Result<u64> {
    let mut n = 0;
    for &(name, prefix) in which {
        let tree = db.table(name)?;
        for item in tree.scan_prefix(prefix) {
            let (k, v) = item?;
            if is_sealed(&v) {
                continue;
            }
            let sealed = sealer.seal_bytes(&v, &aad(name, &k));
            if tree.compare_and_swap(&k, Some(&v), Some(sealed))? {
                n += 1;
            }
        }
    }
    if n > 0 {
        db.flush()?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretBox;

    #[test]
    fn sealed_bytes_hide_the_text_and_bind_the_key() {
        let s = Sealer::new(&SecretBox::new(Box::new([4; 32])));
        let v = serde_json::json!({"email": "ann@example.com", "name": "Ann Smith"});
        let bytes = seal(&s, INVITATIONS, b"k1", &v);
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        assert!(!text.contains("ann"), "{text}");
        let back: serde_json::Value = open(&s, INVITATIONS, b"k1", &bytes, "x").unwrap();
        assert_eq!(back, v);
        assert!(open::<serde_json::Value>(&s, INVITATIONS, b"k2", &bytes, "x").is_err());
        assert!(open::<serde_json::Value>(&s, MEMBERS, b"k1", &bytes, "x").is_err());
        let legacy = encode(&v);
        let read: serde_json::Value = open(&s, INVITATIONS, b"k1", &legacy, "x").unwrap();
        assert_eq!(read, v);
    }

    #[test]
    fn invitations_are_sealed_compact_and_read_back_whole() {
        use crate::domain::{Invitation, LinkingToken};
        let s = Sealer::new(&SecretBox::new(Box::new([4; 32])));
        let fresh: Invitation = serde_json::from_value(serde_json::json!({
            "id": 7, "campaign": "c", "kind": "connect", "version": 1,
            "invitee": {"email": "ann@example.com", "name": null, "external_ref": "R-1",
                        "mydexid": null, "campaign": null, "vars": {"tariff": "green"}},
            "state": "queued", "linking_token": LinkingToken::for_invitation(7),
            "link": null, "attempts": 0, "next_attempt_ms": 0, "reminders": 0,
            "created_ms": 5, "updated_ms": 5, "history": [{"at_ms": 5, "state": "queued"}]
        }))
        .unwrap();
        let mut worked = fresh.clone();
        worked.attempts = 2;
        worked.link = Some("https://link".into());
        worked.invitee.name = Some("Ann".into());
        for inv in [fresh, worked] {
            let json = compact(&inv);
            assert!(json.len() < encode(&inv).len());
            assert!(!String::from_utf8_lossy(&json).contains("null"));
            let bytes = seal(&s, INVITATIONS, b"k", &inv);
            let packed = super::super::packing::pack(&json);
            assert!(packed.len() * 2 < json.len(), "packed: {}", packed.len());
            assert_eq!(bytes.len(), packed.len() + 2 + 24 + 16, "raw, not base64");
            let back: Invitation = open(&s, INVITATIONS, b"k", &bytes, "x").unwrap();
            assert_eq!(encode(&back), encode(&inv));
        }
        // A value sealed as text by an earlier release still opens.
        let old = s.seal(b"{\"a\":1}", &aad(MEMBERS, b"k"));
        let back: serde_json::Value = open(&s, MEMBERS, b"k", old.as_bytes(), "x").unwrap();
        assert_eq!(back["a"], 1);
    }

    #[test]
    fn legacy_clear_records_are_sealed_once() {
        let db = Engine::temporary();
        let s = Sealer::new(&SecretBox::new(Box::new([5; 32])));
        let t = db.table(MEMBERS).unwrap();
        t.insert(
            b"c1",
            encode(&serde_json::json!({"email": "bob@example.com"})),
        )
        .unwrap();
        assert_eq!(seal_legacy(&db, &s, &SEALED).unwrap(), 1);
        let v = t.get(b"c1").unwrap().unwrap();
        assert!(is_sealed(&v));
        assert!(!String::from_utf8_lossy(&v).contains("bob"));
        let back: serde_json::Value = open(&s, MEMBERS, b"c1", &v, "m").unwrap();
        assert_eq!(back["email"], "bob@example.com");
        assert_eq!(seal_legacy(&db, &s, &SEALED).unwrap(), 0);
    }

    #[test]
    fn clear_log_records_are_read_and_sealed_at_the_next_open() {
        use crate::store::{CallbackRecord, Core};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let key = SecretBox::new(Box::new([9; 32]));
        drop(Core::open(&path, &key).unwrap());
        // As the release before sealed `log` records wrote one.
        let rec = CallbackRecord {
            received_ms: 1,
            kind: "ftc".into(),
            method: "POST".into(),
            linking_token: Some("lt_clearOldToken".into()),
            connection_id: Some("4004-45678".into()),
            mydexid: Some("OldClearMydex".into()),
            body: serde_json::json!({"fields": {"field_ds_x": 1}}),
            sealed_key: Some(Sealer::new(&key).seal(b"old-key", b"4004-45678")),
            note: "linking_token matches no invitation".into(),
        };
        {
            let db = super::super::db::open_db(&path).unwrap();
            let k = b"u/\0\0\0\0\0\0\0\x09";
            db.table(LOG).unwrap().insert(k, encode(&rec)).unwrap();
            db.table("meta").unwrap().remove(LOG_CONVERGED).unwrap();
            db.flush().unwrap();
        }
        let s = Core::open(&path, &key).unwrap();
        let kept: Vec<CallbackRecord> = s.unmatched().collect::<Result<_>>().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].mydexid.as_deref(), Some("OldClearMydex"));
        drop(s);
        let db = super::super::db::open_db(&path).unwrap();
        for item in db.table(LOG).unwrap().scan_prefix(schema::UNMATCHED_PREFIX) {
            let (_, v) = item.unwrap();
            assert!(is_sealed(&v));
            assert!(!String::from_utf8_lossy(&v).contains("OldClearMydex"));
        }
    }

    #[test]
    fn rotation_reseals_invitations_and_suppressions() {
        use crate::domain::{Email, Invitee, Kind};
        use crate::store::{Core, NewInvitation, Suppression, SuppressionSource, rotate_key};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let (k1, k2) = (
            SecretBox::new(Box::new([7u8; 32])),
            SecretBox::new(Box::new([8u8; 32])),
        );
        let email = Email::parse("rota.person@example.com").unwrap();
        let id = {
            let s = Core::open(&path, &k1).unwrap();
            let new = NewInvitation {
                campaign: "c".into(),
                kind: Kind::Connect,
                version: 1,
                invitee: serde_json::from_value::<Invitee>(serde_json::json!({
                    "email": email.as_str(), "name": "Rota", "external_ref": "ROT-1",
                    "mydexid": null, "campaign": null
                }))
                .unwrap(),
            };
            let out = s.insert_invitations(&[new], None).unwrap();
            let crate::store::InsertOutcome::Inserted(id) = out[0] else {
                panic!("{out:?}")
            };
            let other = Email::parse("other@example.com").unwrap();
            let entry = Suppression {
                reason: "bounced: 550 <address>".into(),
                source: SuppressionSource::Bounce,
                at_ms: 1,
            };
            s.suppress(&s.mail_keys().person(&other), &entry).unwrap();
            s.flush_blocking().unwrap();
            id
        };
        rotate_key(&path, &k1, &k2, &mut |_, _| {}).unwrap();
        let s = Core::open(&path, &k2).unwrap();
        assert_eq!(s.invitation(id).unwrap().invitee.email, email);
        let listed: Vec<_> = s.suppressions().collect::<Result<_>>().unwrap();
        assert_eq!(listed[0].1.reason, "bounced: 550 <address>");
        let raw = s.invitations.get(id.to_be_bytes()).unwrap().unwrap();
        let old = Sealer::new(&k1);
        assert!(plain(&old, INVITATIONS, &id.to_be_bytes(), &raw).is_err());
    }

    #[test]
    fn a_store_from_before_sealing_converges_at_open() {
        use crate::domain::{Invitee, Kind};
        use crate::store::{Core, InsertOutcome, NewInvitation};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let key = SecretBox::new(Box::new([6; 32]));
        let new = || NewInvitation {
            campaign: "c".into(),
            kind: Kind::Connect,
            version: 1,
            invitee: serde_json::from_value::<Invitee>(serde_json::json!({
                "email": "legacy.person@example.com", "name": "Legacy Person",
                "external_ref": "LEG-1", "mydexid": null, "campaign": null
            }))
            .unwrap(),
        };
        let inv = {
            let s = Core::open(&path, &key).unwrap();
            let out = s.insert_invitations(&[new()], None).unwrap();
            let InsertOutcome::Inserted(id) = out[0] else {
                panic!("{out:?}")
            };
            let inv = s.invitation(id).unwrap();
            s.flush_blocking().unwrap();
            inv
        };
        // Written as the version before sealing wrote it.
        {
            let db = super::super::db::open_db(&path).unwrap();
            let id = inv.id.to_be_bytes();
            db.table(INVITATIONS)
                .unwrap()
                .insert(id, encode(&inv))
                .unwrap();
            let idx = db.table("idx").unwrap();
            for k in idx.scan_prefix(b"o/").keys() {
                idx.remove(k.unwrap()).unwrap();
            }
            let legacy = format!("o/c\u{1f}c\u{1f}{}", inv.invitee.identity());
            idx.insert(legacy, id).unwrap();
            db.table("meta").unwrap().remove(CONVERGED).unwrap();
            db.flush().unwrap();
        }
        let s = Core::open(&path, &key).unwrap();
        let v = s.invitations.get(inv.id.to_be_bytes()).unwrap().unwrap();
        assert!(is_sealed(&v));
        assert!(!String::from_utf8_lossy(&v).contains("legacy"));
        for k in s.idx.iter().keys() {
            let k = k.unwrap();
            assert!(!String::from_utf8_lossy(&k).contains("legacy"), "{k:?}");
        }
        assert_eq!(s.invitation(inv.id).unwrap().invitee, inv.invitee);
        let again = s.insert_invitations(&[new()], None).unwrap();
        assert_eq!(
            again[0],
            InsertOutcome::Duplicate(inv.id),
            "the moved key still finds it"
        );
    }
}
