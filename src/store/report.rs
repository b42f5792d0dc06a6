//! Read-only views for operators: invitations counted by campaign and state
//! (`/metrics`, the `status` table) and filtered listings (`invitations
//! list`). The counts come from counters kept in the same transactions as
//! the invitations (a scan of 50,000 invitations made `status` time out
//! during a large ingest); a store from before them is counted once at open.

use std::collections::HashMap;

use super::invitations::{CAMPAIGN_COUNTERS, campaign_counter_key};
use super::{Invitation, Result, State, Store, StoreError};

/// Set once the per-campaign counters exist.
const COUNTERS_READY: &str = "c/cs-ready";

/// Which invitations `list` returns; `None` matches everything.
#[derive(Debug, Default, Clone)]
pub struct InvitationFilter {
    pub state: Option<State>,
    pub campaign: Option<String>,
    pub external_ref: Option<String>,
}

impl InvitationFilter {
    pub fn matches(&self, inv: &Invitation) -> bool {
        self.state.is_none_or(|s| s == inv.state)
            && self.campaign.as_ref().is_none_or(|c| *c == inv.campaign)
            && self
                .external_ref
                .as_ref()
                .is_none_or(|r| inv.invitee.external_ref.as_ref() == Some(r))
    }
}

impl Store {
    /// Invitations by (campaign, state), from their counters.
    pub fn counts_by_campaign(&self) -> Result<HashMap<(String, State), u64>> {
        let mut out = HashMap::new();
        for item in self.idx.scan_prefix(CAMPAIGN_COUNTERS) {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k[CAMPAIGN_COUNTERS.len()..]).into_owned();
            let Some((campaign, state)) = key.rsplit_once('\u{1f}') else {
                return Err(StoreError::Corrupt(format!("campaign counter {key:?}")));
            };
            let Some(state) = State::ALL.into_iter().find(|s| s.as_str() == state) else {
                return Err(StoreError::Corrupt(format!("campaign counter {key:?}")));
            };
            let n = super::decode_u64(&v);
            if n > 0 {
                out.insert((campaign.to_string(), state), n);
            }
        }
        Ok(out)
    }

    /// Invitations by (campaign, state), counted one by one.
    fn scan_counts_by_campaign(&self) -> Result<HashMap<(String, State), u64>> {
        let mut out = HashMap::new();
        for inv in self.all_invitations() {
            let inv = inv?;
            *out.entry((inv.campaign, inv.state)).or_default() += 1;
        }
        Ok(out)
    }

    /// A store from before the per-campaign counters gets them, once (at
    /// open, before anything else writes), in one atomic batch.
    pub(super) fn ensure_campaign_counters(&self) -> Result<()> {
        if self.idx.get(COUNTERS_READY)?.is_some() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for ((campaign, state), n) in self.scan_counts_by_campaign()? {
            batch.insert(
                campaign_counter_key(&campaign, state).as_bytes(),
                &n.to_be_bytes(),
            );
        }
        batch.insert(COUNTERS_READY, &[1u8]);
        self.idx.apply_batch(batch)?;
        self.flush_blocking()
    }

    /// Members counted by their connection version.
    pub fn members_by_version(&self) -> Result<Vec<(u32, u64)>> {
        let mut out = Vec::new();
        for item in self.idx.scan_prefix("c/mv/") {
            let (k, v) = item?;
            let version = std::str::from_utf8(&k[5..])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            out.push((version, super::decode_u64(&v)));
        }
        out.sort();
        Ok(out)
    }

    /// Up to `limit` invitations matching `filter`, in id order, after `after`.
    pub fn list_invitations(
        &self,
        filter: &InvitationFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Invitation>> {
        let mut out = Vec::new();
        for inv in self.all_invitations() {
            let inv = inv?;
            if after.is_some_and(|a| inv.id <= a) || !filter.matches(&inv) {
                continue;
            }
            out.push(inv);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Kind, NewInvitation};

    fn open(dir: &std::path::Path) -> Store {
        Store::open(
            &dir.join("db"),
            &secrecy::SecretBox::new(Box::new([5u8; 32])),
        )
        .unwrap()
    }

    fn new(campaign: &str, email: &str) -> NewInvitation {
        NewInvitation {
            campaign: campaign.into(),
            kind: Kind::Connect,
            version: 1,
            invitee: serde_json::from_value(serde_json::json!({
                "email": email, "name": null, "external_ref": null,
                "mydexid": null, "campaign": null, "vars": {}
            }))
            .unwrap(),
        }
    }

    #[test]
    fn campaign_counts_follow_inserts_and_transitions_and_are_rebuilt_for_old_stores() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let batch: Vec<NewInvitation> = (0..5)
            .map(|i| new(if i < 3 { "a" } else { "b" }, &format!("p{i}@example.com")))
            .collect();
        let ids: Vec<u64> = s
            .insert_invitations(&batch, None)
            .unwrap()
            .into_iter()
            .map(|o| match o {
                crate::store::InsertOutcome::Inserted(id) => id,
                other => panic!("{other:?}"),
            })
            .collect();
        s.transition(ids[0], &[State::Queued], State::LinkIssued, None, |_| {})
            .unwrap();
        s.transition(ids[0], &[State::LinkIssued], State::Sent, None, |_| {})
            .unwrap();
        s.transition(ids[4], &[State::Queued], State::Failed, None, |_| {})
            .unwrap();
        let counted = s.counts_by_campaign().unwrap();
        assert_eq!(counted, s.scan_counts_by_campaign().unwrap());
        assert_eq!(counted[&("a".to_string(), State::Queued)], 2);
        assert_eq!(counted[&("a".to_string(), State::Sent)], 1);
        assert_eq!(counted[&("b".to_string(), State::Failed)], 1);

        // A store from before the counters: they are rebuilt at open.
        for k in s.idx.scan_prefix(CAMPAIGN_COUNTERS).keys() {
            s.idx.remove(k.unwrap()).unwrap();
        }
        s.idx.remove(COUNTERS_READY).unwrap();
        assert!(s.counts_by_campaign().unwrap().is_empty());
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.counts_by_campaign().unwrap(), counted);
    }
}
