//! The open-invitation index: every invitation has a tag, 40 bits of the
//! person hash then 24 bits of a keyed hash of campaign, kind and identity
//! (address and external ref), never the identity itself. On disk the tags
//! sit in blocks of 64 consecutive ids (`open_blocks.rs`), so they are
//! written at increasing keys; lookups by person or by tag go through the
//! copy in memory (`open_tags.rs`), loaded from the blocks at open. A
//! retried invitation also has an `oo/{id}` key: the number it was
//! reopened at, so it blocks again (see [`Core::tx_blocking`]).
//!
//! It is both the duplicate check of an insert (one person once per
//! campaign while the earlier invitation is open) and the person index that
//! suppressing or forgetting someone walks.
//!
//! Stores written before kept the index led by the person (`op/`, a
//! random-keyed read and write per invitation), and before that two keys
//! per invitation (`o/` and `pi/`): [`fold_person_index`] and
//! `open_tag_fold.rs` rewrite them, once, resumably.

use super::engine::{Table, Transactional, WriteBatch};
use super::schema::{self, IdxKey, tables};

use super::engine::TxTable;
use super::sealed::{INVITATIONS, open, tx_open};
use super::{Core, Invitation, Kind, Result, StoreError, TxResult, id_key};
use crate::domain::{Invitee, PersonHash};

/// Set in `meta` once the index has the person-led form ([`fold_person_index`]).
pub(super) const DONE: &str = "open_index_v2";

/// In `meta` while [`fold_person_index`] runs: the last invitation id folded.
const CURSOR: &str = "open_index_v2_cursor";

/// Invitations folded per atomic step of the migration.
const CHUNK: usize = 1_000;

/// The person hash as raw bytes (it is 64 hex characters by construction).
fn person_bytes(person: &PersonHash) -> [u8; 32] {
    let mut out = [0u8; 32];
    // A PersonHash is only ever made of 64 lowercase hex characters.
    let _ = hex::decode_to_slice(person.as_str(), &mut out);
    out
}

/// The campaign and kind part of an open key, as earlier stores wrote it.
pub(super) fn head(campaign: &str, kind: &Kind) -> String {
    let tag = match kind {
        Kind::Connect | Kind::Identify => "c".to_string(),
        Kind::Update { version } => format!("u{version}"),
    };
    format!("{campaign}\u{1f}{tag}")
}

/// 16 bytes of the keyed hash of campaign, kind and identity: what tells
/// one person's open invitations apart.
pub(super) fn what(
    keys: &super::MailKeys,
    campaign: &str,
    kind: &Kind,
    invitee: &Invitee,
) -> [u8; 16] {
    let text = format!("{}\u{1f}{}", head(campaign, kind), invitee.identity());
    let mut out = [0u8; 16];
    // The first 16 bytes are plenty to tell one person's campaigns and
    // identities apart.
    out.copy_from_slice(&keys.keyed_bytes("open", &text)[..16]);
    out
}

/// The first 40 bits of the person hash (a tag's high bits), read from its
/// first ten hex characters alone.
pub(super) fn person_bits(person: &PersonHash) -> u64 {
    let mut head = [0u8; 5];
    // A PersonHash is only ever made of 64 lowercase hex characters.
    let _ = hex::decode_to_slice(&person.as_str()[..10], &mut head);
    head.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

fn person_bits_of(person: &[u8; 32]) -> u64 {
    person[..5]
        .iter()
        .fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// An invitation's tag: the person's 40 bits, then 24 bits of `what`.
pub(super) fn tag(person: &PersonHash, what: &[u8; 16]) -> u64 {
    (person_bits(person) << 24) | low_bits(what)
}

fn tag_of(person: &[u8; 32], what: &[u8; 16]) -> u64 {
    (person_bits_of(person) << 24) | low_bits(what)
}

/// A tag's low 24 bits: the first three bytes of `what`.
fn low_bits(what: &[u8; 16]) -> u64 {
    what[..3]
        .iter()
        .fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// The person-led key earlier stores wrote (`op/`), for the folds.
pub(super) fn key(
    keys: &super::MailKeys,
    person: &PersonHash,
    campaign: &str,
    kind: &Kind,
    invitee: &Invitee,
) -> Vec<u8> {
    IdxKey::Open {
        person: person_bytes(person),
        what: what(keys, campaign, kind, invitee),
    }
    .encode()
}

/// The tag an `op/` key of an earlier store stands for.
pub(super) fn tag_of_person_led(key: &[u8]) -> Option<u64> {
    match IdxKey::decode(key)? {
        IdxKey::Open { person, what } => Some(tag_of(&person, &what)),
        _ => None,
    }
}

/// The ids a person-led value holds, in order.
pub(super) fn ids(value: &[u8]) -> impl Iterator<Item = u64> + '_ {
    value
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
}

/// `value` with `id` as the blocking (last) one (person-led form).
pub(super) fn with_current(value: Option<&[u8]>, id: u64) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(value.map_or(0, <[u8]>::len) + 8);
    for other in value.into_iter().flat_map(ids).filter(|&o| o != id) {
        out.extend_from_slice(&other.to_be_bytes());
    }
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// `o/{campaign}\x1f{tag}\x1f{hash of identity}`: the open key earlier
/// stores wrote (also used to move the keys of stores from before those,
/// which held the identity in clear), read when folding them.
pub(super) fn open_key_of(keys: &super::MailKeys, head: &str, identity: &str) -> String {
    schema::legacy_open_key(head, &keys.keyed("open", identity))
}

/// Who an invitation is, for the index: its person and `what`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenIdentity {
    pub person: PersonHash,
    pub what: [u8; 16],
}

impl OpenIdentity {
    pub(super) fn tag(&self) -> u64 {
        tag(&self.person, &self.what)
    }
}

impl Core {
    /// The index identity of an invitation.
    pub(super) fn open_identity(&self, inv: &Invitation) -> OpenIdentity {
        OpenIdentity {
            person: self.mail_keys.person(&inv.invitee.email),
            what: what(&self.mail_keys, &inv.campaign, &inv.kind, &inv.invitee),
        }
    }

    /// Once per store written before the open index was led by the person:
    /// fold its `o/` and `pi/` keys ([`fold_person_index`]), logged as it goes.
    pub(super) fn fold_person_index_once(&self) -> Result<()> {
        if self.db.table(tables::META)?.get(DONE)?.is_some() {
            return Ok(());
        }
        let total = self.invitations.len() as u64;
        if total > 0 {
            tracing::info!(
                invitations = total,
                "store: folding the person index into the open-invitation index (once)"
            );
        }
        let mut next_log = 100_000;
        let folded = fold_person_index(self, &mut |n| {
            if n >= next_log {
                tracing::info!(folded = n, of = total, "store: folding the person index");
                next_log += 100_000;
            }
        })?;
        if total > 0 {
            tracing::info!(folded, "store: the open-invitation index is folded");
        }
        Ok(())
    }

    /// The ids of every invitation of `person`, ascending: the index's
    /// candidates, each confirmed by its record.
    pub fn person_invitations(&self, person: &PersonHash) -> Result<Vec<u64>> {
        let candidates = self.open.lock()?.of_person(person_bits(person));
        let mut out = Vec::with_capacity(candidates.len());
        for id in candidates {
            match self.invitation(id) {
                Ok(inv) if self.mail_keys.person(&inv.invitee.email) == *person => out.push(id),
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Of `candidates` (ids whose tag is `who`'s), the invitation that blocks
    /// a new one of `who`, read inside a transaction, with its record: the
    /// one of that identity with the highest `(opened, id)`, where `opened`
    /// is the id itself unless a retry reopened it at a fresh number of the
    /// id sequence (`oo/{id}`). An invitation inserted later gets an id at
    /// least as high as any such number, and wins a tie.
    pub(super) fn tx_blocking(
        &self,
        inv_t: &TxTable<'_>,
        idx: &TxTable<'_>,
        candidates: &[u64],
        who: &OpenIdentity,
    ) -> TxResult<Option<Invitation>> {
        let mut best: Option<((u64, u64), Invitation)> = None;
        for &id in candidates {
            let Some(bytes) = inv_t.get(id_key(id))? else {
                continue;
            };
            let inv: Invitation =
                tx_open(&self.sealer, INVITATIONS, &id_key(id), &bytes, "invitation")?;
            if self.open_identity(&inv) != *who {
                continue;
            }
            let opened = idx
                .get(IdxKey::OpenReopened(id).encode())?
                .map_or(id, |v| super::decode_u64(&v));
            if best.as_ref().is_none_or(|(rank, _)| (opened, id) > *rank) {
                best = Some(((opened, id), inv));
            }
        }
        Ok(best.map(|(_, inv)| inv))
    }
}

/// Fold the index of a store written before (`o/` and `pi/` keys) into
/// `op/` keys, then remove the old keys. Resumable: each step of [`CHUNK`]
/// invitations records how far it got in `meta` in the same transaction, so
/// a kill at any point resumes without folding an id twice (and folding one
/// twice would change nothing). `progress` is told the invitations folded so
/// far. The number folded by this run.
pub(super) fn fold_person_index(core: &Core, progress: &mut dyn FnMut(u64)) -> Result<u64> {
    let meta = core.db.table(tables::META)?;
    let mut after = meta.get(CURSOR)?.map(|v| super::decode_u64(&v));
    let mut folded = 0;
    loop {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut chunk = Vec::with_capacity(CHUNK);
        for item in core.invitations.range(id_key(start)..).take(CHUNK) {
            let (k, v) = item?;
            let inv: super::Invitation = open(&core.sealer, INVITATIONS, &k, &v, "invitation")?;
            chunk.push(inv);
        }
        let Some(last) = chunk.last().map(|i| i.id) else {
            break;
        };
        fold_chunk(core, &meta, &chunk, last)?;
        folded += chunk.len() as u64;
        progress(folded);
        after = Some(last);
    }
    for prefix in [schema::LEGACY_OPEN_PREFIX, schema::LEGACY_PERSON_PREFIX] {
        remove_prefix(&core.idx, prefix)?;
    }
    meta.insert(DONE, [1u8])?;
    meta.remove(CURSOR)?;
    core.db.flush()?;
    Ok(folded)
}

/// One atomic step: the chunk's `op/` keys written (the id the old `o/` key
/// named kept last), their `pi/` keys removed, the cursor moved.
fn fold_chunk(core: &Core, meta: &Table, chunk: &[super::Invitation], last: u64) -> Result<()> {
    (&core.idx, meta).transaction(|(idx, meta)| {
        for inv in chunk {
            let person = core.mail_keys.person(&inv.invitee.email);
            let new = key(
                &core.mail_keys,
                &person,
                &inv.campaign,
                &inv.kind,
                &inv.invitee,
            );
            let old = open_key_of(
                &core.mail_keys,
                &head(&inv.campaign, &inv.kind),
                &inv.invitee.identity(),
            );
            let have = idx.get(&new)?;
            let mut value = match have.as_deref() {
                Some(v) if ids(v).any(|o| o == inv.id) => v.to_vec(),
                v => {
                    let mut v = v.map(<[u8]>::to_vec).unwrap_or_default();
                    v.extend_from_slice(&inv.id.to_be_bytes());
                    v
                }
            };
            // The one the old key named blocks, as it did.
            if let Some(ptr) = idx.get(old.as_bytes())?.map(|p| super::decode_u64(&p))
                && ids(&value).any(|o| o == ptr)
            {
                value = with_current(Some(&value), ptr);
            }
            idx.insert(new, value)?;
            idx.remove(schema::legacy_person_key(person.as_str(), inv.id))?;
        }
        meta.insert(CURSOR, last.to_be_bytes())?;
        Ok::<_, super::engine::TxError<StoreError>>(())
    })
}

/// Remove every key under `prefix`, a thousand at a time.
fn remove_prefix(tree: &Table, prefix: &[u8]) -> Result<()> {
    loop {
        let keys: Vec<_> = tree
            .scan_prefix(prefix)
            .keys()
            .take(1_000)
            .collect::<std::result::Result<_, _>>()?;
        if keys.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for k in keys {
            batch.remove(k);
        }
        tree.apply_batch(batch)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{InsertOutcome, NewInvitation, State};
    use secrecy::SecretBox;

    fn new(email: &str, campaign: &str) -> NewInvitation {
        NewInvitation {
            campaign: campaign.into(),
            kind: Kind::Connect,
            version: 1,
            invitee: serde_json::from_value::<Invitee>(serde_json::json!({
                "email": email, "name": null, "external_ref": null,
                "mydexid": null, "campaign": null
            }))
            .unwrap(),
        }
    }

    /// Ann invited in campaign `a`, failed; invited again, failed; the
    /// first retried (so the older one blocks). Both ids.
    fn ann_failed_twice_first_retried(s: &Core) -> (u64, u64) {
        let ann1 = inserted(
            &s.insert_invitations(&[new("ann@example.com", "a")], None)
                .unwrap(),
        )[0];
        (ann1, fail_invite_again_and_retry(s, ann1))
    }

    /// Ann's queued invitation `ann1` (campaign `a`) fails, a second is
    /// queued and fails too, then `ann1` is retried. The second's id.
    fn fail_invite_again_and_retry(s: &Core, ann1: u64) -> u64 {
        s.transition(ann1, &[State::Queued], State::Failed, None, |_| {})
            .unwrap();
        let ann2 = inserted(
            &s.insert_invitations(&[new("ann@example.com", "a")], None)
                .unwrap(),
        )[0];
        s.transition(ann2, &[State::Queued], State::Failed, None, |_| {})
            .unwrap();
        s.retry_failed(ann1).unwrap();
        ann2
    }

    fn inserted(out: &[InsertOutcome]) -> Vec<u64> {
        out.iter()
            .map(|o| match o {
                InsertOutcome::Inserted(id) => *id,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Rewrite the index as an early release wrote it: `o/` → the
    /// blocking id, `pi/{hex}/{id}` per invitation; no `op/` or `ot/`, not
    /// folded (a reopen folds it twice: to `op/`, then to `ot/`).
    fn as_before(core: &Core, blocking: &[(u64, u64)]) {
        let op: Vec<_> = [
            schema::OPEN_PREFIX,
            schema::OPEN_TAGS_PREFIX,
            schema::OPEN_REOPENED_PREFIX,
        ]
        .into_iter()
        .flat_map(|p| core.idx.scan_prefix(p).keys())
        .map(|k| k.unwrap())
        .collect();
        for k in op {
            core.idx.remove(k).unwrap();
        }
        for inv in core.all_invitations() {
            let inv = inv.unwrap();
            let person = core.mail_keys.person(&inv.invitee.email);
            let pi = schema::legacy_person_key(person.as_str(), inv.id);
            core.idx.insert(pi, []).unwrap();
            let old = open_key_of(
                &core.mail_keys,
                &head(&inv.campaign, &inv.kind),
                &inv.invitee.identity(),
            );
            let ptr = blocking
                .iter()
                .find(|(of, _)| *of == inv.id)
                .map_or(inv.id, |b| b.1);
            if core.idx.get(old.as_bytes()).unwrap().is_none() || ptr == inv.id {
                core.idx.insert(old.as_bytes(), ptr.to_be_bytes()).unwrap();
            }
        }
        let meta = core.db.table(tables::META).unwrap();
        meta.remove(DONE).unwrap();
        core.db.flush().unwrap();
    }

    #[test]
    fn an_index_written_before_is_folded_resumably_and_blocks_as_it_did() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::new(Box::new([2; 32]));
        let (ann1, ann2, bob, other) = {
            let s = Core::open(dir.path(), &key).unwrap();
            let ids = inserted(
                &s.insert_invitations(
                    &[
                        new("ann@example.com", "a"),
                        new("bob@example.com", "a"),
                        new("ann@example.com", "b"),
                    ],
                    None,
                )
                .unwrap(),
            );
            // Ann's first fails, a second is queued; then the first is
            // retried after the second failed too: the old key names the
            // retried (older) one.
            let ann2 = fail_invite_again_and_retry(&s, ids[0]);
            as_before(&s, &[(ann2, ids[0])]);
            // A kill after the first step (Ann's first folded, its `pi/`
            // key gone, the cursor after it).
            let meta = s.db.table(tables::META).unwrap();
            let first = s.invitation(ids[0]).unwrap();
            fold_chunk(&s, &meta, &[first], ids[0]).unwrap();
            s.flush_blocking().unwrap();
            (ids[0], ann2, ids[1], ids[2])
        };
        let s = Core::open(dir.path(), &key).unwrap();
        assert_eq!(s.idx.scan_prefix(schema::LEGACY_OPEN_PREFIX).count(), 0);
        assert_eq!(s.idx.scan_prefix(schema::LEGACY_PERSON_PREFIX).count(), 0);
        assert!(
            s.db.table(tables::META)
                .unwrap()
                .get(DONE)
                .unwrap()
                .is_some()
        );
        let ann = s
            .mail_keys
            .person(&crate::domain::Email::parse("ann@example.com").unwrap());
        let mut all = vec![ann1, ann2, other];
        all.sort();
        assert_eq!(s.person_invitations(&ann).unwrap(), all);
        assert_eq!(
            s.insert_invitations(&[new("ann@example.com", "a")], None)
                .unwrap()[0],
            InsertOutcome::Duplicate(ann1),
            "the retried one blocks, as the old key said"
        );
        let bobs = s
            .person_invitations(
                &s.mail_keys
                    .person(&crate::domain::Email::parse("bob@example.com").unwrap()),
            )
            .unwrap();
        assert_eq!(bobs, vec![bob]);
        assert_eq!(
            s.insert_invitations(&[new("bob@example.com", "a")], None)
                .unwrap()[0],
            InsertOutcome::Duplicate(bob)
        );
    }

    #[test]
    fn a_whole_fold_keeps_every_invitation_and_the_blocking_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::new(Box::new([3; 32]));
        let (ann1, ann2) = {
            let s = Core::open(dir.path(), &key).unwrap();
            let (ann1, ann2) = ann_failed_twice_first_retried(&s);
            as_before(&s, &[(ann2, ann1)]);
            (ann1, ann2)
        };
        let s = Core::open(dir.path(), &key).unwrap();
        let ann = s
            .mail_keys
            .person(&crate::domain::Email::parse("ann@example.com").unwrap());
        assert_eq!(s.person_invitations(&ann).unwrap(), vec![ann1, ann2]);
        // The retried (older) one still blocks a new one.
        assert_eq!(
            s.insert_invitations(&[new("ann@example.com", "a")], None)
                .unwrap()[0],
            InsertOutcome::Duplicate(ann1)
        );
        // Suppressing Ann fails the open one through the folded index.
        let entry = crate::store::Suppression {
            reason: "unsubscribed".into(),
            source: crate::store::SuppressionSource::Unsubscribe,
            at_ms: 1,
        };
        assert_eq!(s.suppress(&ann, &entry).unwrap().failed, vec![ann1]);
    }

    #[test]
    fn a_retried_invitation_blocks_again_after_a_restart_and_forgetting_empties_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::new(Box::new([4; 32]));
        let ann1 = {
            let s = Core::open(dir.path(), &key).unwrap();
            let (ann1, ann2) = ann_failed_twice_first_retried(&s);
            assert!(matches!(s.retry_failed(ann2), Err(StoreError::Refused(_))));
            s.flush_blocking().unwrap();
            ann1
        };
        let s = Core::open(dir.path(), &key).unwrap();
        assert_eq!(
            s.insert_invitations(
                &[new("ann@example.com", "a"), new("ann@example.com", "b")],
                None
            )
            .unwrap()[0],
            InsertOutcome::Duplicate(ann1)
        );
        let ann = s
            .mail_keys
            .person(&crate::domain::Email::parse("ann@example.com").unwrap());
        assert_eq!(s.person_invitations(&ann).unwrap().len(), 3);
        s.forget_person(
            &crate::store::ForgetTarget::Email(
                crate::domain::Email::parse("ann@example.com").unwrap(),
            ),
            false,
        )
        .unwrap();
        assert_eq!(s.person_invitations(&ann).unwrap(), Vec::<u64>::new());
        assert_eq!(s.idx.scan_prefix(schema::OPEN_TAGS_PREFIX).count(), 0);
        assert_eq!(s.idx.scan_prefix(schema::OPEN_REOPENED_PREFIX).count(), 0);
        assert_eq!(
            s.open.lock().unwrap().of_person(person_bits(&ann)),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn tags_are_the_persons_bits_then_the_identitys() {
        let person = [0xAB; 32];
        let what = [0x01, 0x02, 0x03, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(tag_of(&person, &what), 0xABAB_ABAB_AB01_0203);
        let led = IdxKey::Open { person, what }.encode();
        assert_eq!(tag_of_person_led(&led), Some(0xABAB_ABAB_AB01_0203));
        assert_eq!(
            with_current(Some(&with_current(None, 5)), 9),
            [5u64.to_be_bytes(), 9u64.to_be_bytes()].concat()
        );
    }
}
