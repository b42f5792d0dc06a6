//! Forgetting a person (`people forget`, `POST /people/forget`): their
//! invitations, member record (with the sealed connection key, only when
//! the operator says `disconnect`), readings, raw callbacks and index keys
//! erased, and only the suppression hash kept (`forgotten`) so they are not
//! invited again. The engine keeps removed values in old segments until it reuses
//! them; that is sound only because those values were sealed (`sealed.rs`)
//! and the index keys hold keyed hashes, never an address or an external ref.

use super::schema::{self, Counter, IdxKey};
use std::collections::BTreeSet;

use super::engine::{Transactional, TxTable, abort};

use super::invitations::campaign_counter_key;
use super::reading_erasure::{ReadingsToErase, Whose};
use super::sealed::{INVITATIONS, MEMBERS, open};
use super::suppression_record::{Suppression, SuppressionSource, key as suppression_key};
use super::{
    Core, Invitation, Member, MemberStatus, Result, StoreError, TxResult, bump, id_key, now_ms,
};
use crate::domain::{Email, PersonHash};

/// Whom to forget.
#[derive(Debug, Clone)]
pub enum ForgetTarget {
    Email(Email),
    ExternalRef(String),
}

impl ForgetTarget {
    fn word(&self) -> &'static str {
        match self {
            ForgetTarget::Email(_) => "address",
            ForgetTarget::ExternalRef(_) => "external ref",
        }
    }
}

/// What was erased: counts for the log, and (in memory only, never logged)
/// the addresses and refs, so the caller can rewrite the queue files.
#[derive(Debug, Default)]
pub struct Forgotten {
    pub persons: Vec<PersonHash>,
    pub invitations: usize,
    pub members: usize,
    pub readings: usize,
    pub raw_callbacks: usize,
    pub emails: Vec<String>,
    pub external_refs: Vec<String>,
}

/// Everything the store holds about the person, found before the erasing
/// transaction.
#[derive(Default)]
struct Found {
    invitations: Vec<u64>,
    persons: BTreeSet<PersonHash>,
    emails: BTreeSet<String>,
    refs: BTreeSet<String>,
    conns: BTreeSet<String>,
    mydexids: BTreeSet<String>,
    readings: ReadingsToErase,
}

impl Core {
    /// Forget the person `target` names. A connected (active) member is
    /// refused unless `disconnect`; nothing held is `NoSuchPerson`.
    pub fn forget_person(&self, target: &ForgetTarget, disconnect: bool) -> Result<Forgotten> {
        let found = self.find_person(target)?;
        if found.invitations.is_empty() && found.conns.is_empty() && found.readings.is_empty() {
            return Err(StoreError::NoSuchPerson(target.word()));
        }
        for person in &found.persons {
            self.suppressed.add(person);
        }
        let (members, readings) = (&self.members, &self.readings);
        let mut tags = self.open.lock()?;
        let (counts, erased) = (&self.invitations, &self.idx, members, readings, &self.rdx)
            .transaction(|(inv_t, idx, mem_t, r, x)| {
                let members = self.tx_forget_members(idx, mem_t, &found, disconnect)?;
                let mut erased = Vec::with_capacity(found.invitations.len());
                for id in &found.invitations {
                    erased.extend(self.tx_forget_invitation(inv_t, idx, *id)?);
                }
                self.tx_erase_readings(r, x, &found.readings)?;
                for person in &found.persons {
                    tx_suppress_forgotten(&self.sealer, idx, person)?;
                }
                Ok((members, erased))
            })?;
        for (tag, id) in erased {
            tags.remove(tag, id);
        }
        drop(tags);
        let conns: Vec<String> = found.conns.iter().cloned().collect();
        let raw_callbacks = if disconnect {
            self.forget_raw(&conns)?
        } else {
            0
        };
        // Members the version sweep's brake holds (`h/{job}/{connection}`).
        for item in self.idx.scan_prefix(schema::SWEEP_HELD_PREFIX).keys() {
            let k = item?;
            let conn = k.rsplit(|b| *b == b'/').next().unwrap_or_default();
            if found.conns.iter().any(|c| c.as_bytes() == conn) {
                self.idx.remove(&k)?;
            }
        }
        // Their readings' refused-try records (`holds.rs`).
        for conn in &found.conns {
            self.forget_held_groups(conn)?;
        }
        Ok(Forgotten {
            persons: found.persons.into_iter().collect(),
            invitations: found.invitations.len(),
            members: counts,
            readings: found.readings.count(),
            raw_callbacks,
            emails: found.emails.into_iter().collect(),
            external_refs: found.refs.into_iter().collect(),
        })
    }

    /// Long: one pass per tree (invitations, members, readings), each
    /// widening what the next looks for.
    fn find_person(&self, target: &ForgetTarget) -> Result<Found> {
        let mut f = Found::default();
        match target {
            ForgetTarget::Email(e) => {
                f.emails.insert(e.normalized());
                f.persons.insert(self.mail_keys.person(e));
            }
            ForgetTarget::ExternalRef(r) => {
                f.refs.insert(r.clone());
            }
        }
        let mut ids = BTreeSet::new();
        for inv in self.all_invitations() {
            let inv = inv?;
            let by_email = f.emails.contains(&inv.invitee.email.normalized());
            let by_ref = inv
                .invitee
                .external_ref
                .as_ref()
                .is_some_and(|r| f.refs.contains(r));
            if by_email || by_ref {
                ids.insert(inv.id);
            }
        }
        // The person behind each invitation found: all of their invitations.
        for id in ids.clone() {
            let inv = self.invitation(id)?;
            let person = self.mail_keys.person(&inv.invitee.email);
            ids.extend(self.person_invitations(&person)?);
            f.persons.insert(person);
        }
        for id in &ids {
            let inv = self.invitation(*id)?;
            f.emails.insert(inv.invitee.email.normalized());
            f.refs.extend(inv.invitee.external_ref.clone());
            f.conns.extend(inv.connection_id.clone());
            f.mydexids.extend(
                inv.invitee
                    .mydexid
                    .as_ref()
                    .map(|m| m.as_str().to_lowercase()),
            );
        }
        f.invitations = ids.into_iter().collect();
        for m in self.all_members() {
            let m = m?;
            let by_email = m
                .email
                .as_ref()
                .is_some_and(|e| f.emails.contains(&e.to_lowercase()));
            let by_ref = m.external_ref.as_ref().is_some_and(|r| f.refs.contains(r));
            if by_email || by_ref || f.conns.contains(&m.connection_id) {
                f.conns.insert(m.connection_id.clone());
                f.mydexids
                    .extend(m.mydexid.as_ref().map(|x| x.as_str().to_lowercase()));
                if let Some(e) = &m.email {
                    f.emails.insert(e.to_lowercase());
                }
                f.refs.extend(m.external_ref.clone());
            }
        }
        f.readings = self.readings_to_erase(&Whose {
            conns: &f.conns,
            refs: &f.refs,
            mydexids: &f.mydexids,
        })?;
        Ok(f)
    }

    /// Erase the person's member records: an active one only with
    /// `disconnect` (else the whole forget is refused); how many.
    fn tx_forget_members(
        &self,
        idx: &TxTable<'_>,
        mem_t: &TxTable<'_>,
        found: &Found,
        disconnect: bool,
    ) -> TxResult<usize> {
        let mut n = 0;
        for conn in &found.conns {
            let Some(bytes) = mem_t.get(conn.as_bytes())? else {
                continue;
            };
            let m: Member =
                open(&self.sealer, MEMBERS, conn.as_bytes(), &bytes, "member").map_err(abort)?;
            if m.status == MemberStatus::Active {
                if !disconnect {
                    return Err(abort(StoreError::Refused(format!(
                        "this person is a connected member (connection {conn}); forgetting them erases their connection key: rerun with --disconnect to do so; nothing was changed"
                    ))));
                }
                bump(idx, &Counter::MembersAtVersion(m.version), -1)?;
            } else {
                bump(idx, &Counter::MembersDisconnected, -1)?;
            }
            mem_t.remove(conn.as_bytes())?;
            if let Some(x) = &m.mydexid {
                let key = IdxKey::MydexId(x.as_str().to_string()).encode();
                if idx.get(&key)?.is_some_and(|v| v == conn.as_bytes()) {
                    idx.remove(key)?;
                }
            }
            idx.remove(IdxKey::MemberInvitation(conn.to_string()).encode())?;
            n += 1;
        }
        Ok(n)
    }

    /// Erase one invitation and every index key naming it; its open-index
    /// tag and id, for the copy in memory.
    fn tx_forget_invitation(
        &self,
        inv_t: &TxTable<'_>,
        idx: &TxTable<'_>,
        id: u64,
    ) -> TxResult<Option<(u64, u64)>> {
        let Some(bytes) = inv_t.get(id_key(id))? else {
            return Ok(None);
        };
        let inv: Invitation =
            open(&self.sealer, INVITATIONS, &id_key(id), &bytes, "invitation").map_err(abort)?;
        inv_t.remove(id_key(id))?;
        bump(idx, &Counter::Invitations(inv.state), -1)?;
        bump(idx, &campaign_counter_key(&inv.campaign, inv.state), -1)?;
        super::open_blocks::tx_clear(idx, id)?;
        idx.remove(IdxKey::OpenReopened(id).encode())?;
        super::work_index::tx_clear(idx, id)?;
        idx.remove(super::expiry_index::expiry_key(id))?;
        idx.remove(IdxKey::LegacyToken(inv.linking_token.to_string()).encode())?;
        Ok(Some((self.open_identity(&inv).tag(), id)))
    }
}

/// The person's suppression, as `forgotten` (an earlier entry is replaced:
/// its reason may echo the address, as a bounce's diagnostic does).
fn tx_suppress_forgotten(
    sealer: &super::Sealer,
    idx: &TxTable<'_>,
    person: &PersonHash,
) -> TxResult<()> {
    let key = suppression_key(person);
    let entry = Suppression {
        reason: SuppressionSource::Forget.as_str().to_string(),
        source: SuppressionSource::Forget,
        at_ms: now_ms(),
    };
    let value = super::sealed::seal(sealer, super::sealed::IDX, key.as_bytes(), &entry);
    if idx.insert(key.as_bytes(), value)?.is_none() {
        bump(idx, &Counter::Suppressed, 1)?;
    }
    idx.remove(IdxKey::SoftBounce(person.as_str().to_string()).encode())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Invitee, Kind};
    use crate::store::{ImportMember, InsertOutcome, NewInvitation};
    use secrecy::SecretBox;

    fn new(email: &str, name: &str, r: &str) -> NewInvitation {
        NewInvitation {
            campaign: "c".into(),
            kind: Kind::Connect,
            version: 1,
            invitee: serde_json::from_value::<Invitee>(serde_json::json!({
                "email": email, "name": name, "external_ref": r,
                "mydexid": null, "campaign": null, "vars": {"tariff": "Zephyrine"}
            }))
            .unwrap(),
        }
    }

    /// Every file under `dir` holding `needle` (any case form given).
    fn hits(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for forms in [
            needle.to_string(),
            needle.to_lowercase(),
            needle.to_uppercase(),
        ] {
            for e in walk(dir) {
                let bytes = std::fs::read(&e).unwrap();
                if bytes.windows(forms.len()).any(|w| w == forms.as_bytes()) {
                    out.push(e);
                }
            }
        }
        out
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    #[test]
    fn forgotten_people_leave_no_clear_text_and_stay_suppressed() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::new(Box::new([9; 32]));
        {
            let s = Core::open(dir.path(), &key).unwrap();
            let out = s
                .insert_invitations(
                    &[
                        new("Quintessa.Ann@Example.com", "Quintessa Annwyl", "QREF-7781"),
                        new("bob@example.com", "Bob Barker", "BREF-2"),
                    ],
                    None,
                )
                .unwrap();
            assert!(matches!(out[0], InsertOutcome::Inserted(_)));
            s.import_members(&[ImportMember {
                uid: 1,
                connection_id: "1001-45678",
                mydexid: None,
                email: Some("Xanthe.Member@example.com".into()),
                key: "member-key",
                version: 1,
                campaign: None,
            }])
            .unwrap();
            let ann = ForgetTarget::Email(Email::parse("quintessa.ann@example.com").unwrap());
            let f = s.forget_person(&ann, false).unwrap();
            assert_eq!((f.invitations, f.members), (1, 0));
            assert_eq!(f.external_refs, vec!["QREF-7781".to_string()]);
            assert!(matches!(
                s.forget_person(&ann, false),
                Err(StoreError::NoSuchPerson(_))
            ));
            let again = s
                .insert_invitations(&[new("quintessa.ann@example.com", "Q", "Q")], None)
                .unwrap();
            assert_eq!(
                again[0],
                InsertOutcome::Suppressed(SuppressionSource::Forget)
            );
            let member = ForgetTarget::Email(Email::parse("xanthe.member@example.com").unwrap());
            assert!(matches!(
                s.forget_person(&member, false),
                Err(StoreError::Refused(_))
            ));
            assert!(s.member("1001-45678").unwrap().is_some(), "nothing changed");
            assert!(s.hold_member("version", "1001-45678", 1).unwrap());
            assert_eq!(s.forget_person(&member, true).unwrap().members, 1);
            assert!(s.member("1001-45678").unwrap().is_none());
            assert_eq!(s.held_count("version"), 0, "no longer held by the brake");
            assert_eq!(s.counts(1).unwrap().members_total, 0);
            assert_eq!(s.all_invitations().count(), 1, "bob only");
            s.flush_blocking().unwrap();
        }
        for gone in [
            "quintessa.ann@example.com",
            "Quintessa Annwyl",
            "QREF-7781",
            "xanthe.member@example.com",
            "member-key",
        ] {
            assert_eq!(
                hits(dir.path(), gone),
                Vec::<std::path::PathBuf>::new(),
                "{gone}"
            );
        }
        let s = Core::open(dir.path(), &key).unwrap();
        let bob = s.all_invitations().find_map(|i| {
            let i = i.unwrap();
            (i.invitee.email.as_str() == "bob@example.com").then_some(i)
        });
        assert_eq!(bob.unwrap().invitee.name.as_deref(), Some("Bob Barker"));
    }
}
