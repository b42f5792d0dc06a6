//! The suppression list: people who must get no more mail (unsubscribed,
//! bounced, complained, or added by an operator). Keyed by the person hash
//! (`mail_keys.rs`), never the address: `s/{hash}` in `idx` → the reason,
//! source and date; counter `c/suppressed`. Each invitation is indexed by its
//! person (`op/` keys, `open_index.rs`), so suppressing someone fails their
//! open invitations in the same transaction.

use super::engine::Transactional;
use super::schema::{self, Counter, IdxKey};

use super::invitations::tx_transition;
use super::sealed::{IDX, INVITATIONS, open, seal, tx_open};
pub use super::suppression_record::{Suppressed, Suppression, SuppressionSource};
use super::suppression_record::{key, tx_suppression};
use super::{Core, Invitation, Result, State, bump, id_key};
use crate::domain::PersonHash;

impl Core {
    /// The person's suppression, if they are on the list.
    pub fn suppression(&self, person: &PersonHash) -> Result<Option<Suppression>> {
        let k = key(person);
        self.idx
            .get(k.as_bytes())?
            .map(|v| open(&self.sealer, IDX, k.as_bytes(), &v, "suppression"))
            .transpose()
    }

    /// How many people are on the list.
    pub fn suppressed_count(&self) -> Result<u64> {
        self.counter(&Counter::Suppressed)
    }

    /// A suppression entry as read: its person hash (from the key) and the
    /// entry, opened.
    fn entry(&self, k: &[u8], v: &[u8]) -> Result<(PersonHash, Suppression)> {
        let hash = match IdxKey::decode(k) {
            Some(IdxKey::Suppression(h)) => PersonHash::parse(&h),
            _ => None,
        }
        .ok_or_else(|| super::StoreError::Corrupt("a suppression key".into()))?;
        Ok((hash, open(&self.sealer, IDX, k, v, "suppression")?))
    }

    /// Every entry, with its person hash.
    #[cfg(test)]
    pub fn suppressions(&self) -> impl Iterator<Item = Result<(PersonHash, Suppression)>> + '_ {
        self.idx
            .scan_prefix(schema::SUPPRESSION_PREFIX)
            .map(|item| {
                let (k, v) = item?;
                self.entry(&k, &v)
            })
    }

    /// Up to `limit` entries after person hash `after`, in hash order.
    pub fn suppressions_after(
        &self,
        after: Option<&PersonHash>,
        limit: usize,
    ) -> Result<Vec<(PersonHash, Suppression)>> {
        let start = match after {
            Some(p) => std::ops::Bound::Excluded(key(p).into_bytes()),
            None => std::ops::Bound::Included(schema::SUPPRESSION_PREFIX.to_vec()),
        };
        self.idx
            .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
            .take_while(|item| {
                item.as_ref()
                    .map_or(true, |(k, _)| k.starts_with(schema::SUPPRESSION_PREFIX))
            })
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                self.entry(&k, &v)
            })
            .collect()
    }

    /// Put `person` on the list (an earlier entry is kept) and fail every
    /// invitation of theirs still waiting (queued, link_issued, sent,
    /// expired) with the entry's reason, in one transaction.
    pub fn suppress(&self, person: &PersonHash, entry: &Suppression) -> Result<Suppressed> {
        let ids = self.person_invitations(person)?;
        self.suppressed.add(person);
        (&self.invitations, &self.idx).transaction(|(inv_t, idx)| {
            let mut out = Suppressed::default();
            let reason = match tx_suppression(&self.sealer, idx, person)? {
                Some(old) => old.reason,
                None => {
                    let k = key(person);
                    idx.insert(k.as_bytes(), seal(&self.sealer, IDX, k.as_bytes(), entry))?;
                    bump(idx, &Counter::Suppressed, 1)?;
                    out.new = true;
                    entry.reason.clone()
                }
            };
            for id in &ids {
                let Some(b) = inv_t.get(id_key(*id))? else {
                    continue;
                };
                let inv: Invitation =
                    tx_open(&self.sealer, INVITATIONS, &id_key(*id), &b, "invitation")?;
                if !inv.state.fails_on_suppression() {
                    continue;
                }
                tx_transition(
                    &self.sealer,
                    inv_t,
                    idx,
                    *id,
                    &[inv.state],
                    State::Failed,
                    Some(reason.clone()),
                    &|i| {
                        i.reason = Some(reason.clone());
                    },
                )?;
                out.failed.push(*id);
            }
            Ok(out)
        })
    }

    /// Take `person` off the list (an operator's decision); `false` when
    /// they were not on it. Failed invitations stay failed.
    pub fn unsuppress(&self, person: &PersonHash) -> Result<bool> {
        self.idx.transaction(|idx| {
            if idx.remove(key(person).as_bytes())?.is_none() {
                return Ok(false);
            }
            idx.remove(IdxKey::SoftBounce(person.as_str().to_string()).encode())?;
            bump(idx, &Counter::Suppressed, -1)?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, Invitee, Kind};
    use crate::store::NewInvitation;
    use secrecy::SecretBox;

    #[test]
    fn suppress_fails_open_invitations_and_refuses_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = Core::open(dir.path(), &SecretBox::new(Box::new([3; 32]))).unwrap();
        let email = Email::parse("ann@example.com").unwrap();
        let new = || NewInvitation {
            campaign: "c".into(),
            kind: Kind::Connect,
            version: 1,
            invitee: serde_json::from_value::<Invitee>(serde_json::json!({
                "email": email.as_str(), "name": null, "external_ref": null,
                "mydexid": null, "campaign": null
            }))
            .unwrap(),
        };
        let out = s.insert_invitations(&[new()], None).unwrap();
        let crate::store::InsertOutcome::Inserted(id) = out[0] else {
            panic!("{out:?}")
        };
        let person = s.mail_keys().person(&email);
        let entry = Suppression {
            reason: "unsubscribed".into(),
            source: SuppressionSource::Unsubscribe,
            at_ms: 1,
        };
        let done = s.suppress(&person, &entry).unwrap();
        assert!(done.new);
        assert_eq!(done.failed, vec![id]);
        assert_eq!(s.invitation(id).unwrap().state, State::Failed);
        assert_eq!(s.suppressed_count().unwrap(), 1);
        assert!(!s.suppress(&person, &entry).unwrap().new);
        assert_eq!(s.suppressed_count().unwrap(), 1);
        let again = s.insert_invitations(&[new()], None).unwrap();
        assert_eq!(
            again[0],
            crate::store::InsertOutcome::Suppressed(SuppressionSource::Unsubscribe)
        );
        // Reopened, the list is read back into the filter that spares
        // unlisted people a read: still refused.
        drop(s);
        let s = Core::open(dir.path(), &SecretBox::new(Box::new([3; 32]))).unwrap();
        let reopened = s.insert_invitations(&[new()], None).unwrap();
        assert_eq!(
            reopened[0],
            crate::store::InsertOutcome::Suppressed(SuppressionSource::Unsubscribe)
        );
        assert!(s.unsuppress(&person).unwrap());
        assert_eq!(s.suppressed_count().unwrap(), 0);
    }
}
