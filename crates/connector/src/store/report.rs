//! Read-only views for operators: invitations counted by campaign and state
//! (`/metrics`, the `status` table), from counters kept in the same
//! transactions as the states, and filtered listings (`invitations list`),
//! which scan the invitations tree at command rates.

use super::engine::WriteBatch;
use std::collections::HashMap;

use super::invitations::{CAMPAIGN_COUNTERS, campaign_counter_key};
use super::{Core, Invitation, Result, State, StoreError};

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

impl Core {
    /// Invitations by (campaign, state), from the per-campaign counters.
    pub fn counts_by_campaign(&self) -> Result<HashMap<(String, State), u64>> {
        let mut out = HashMap::new();
        for item in self.idx.scan_prefix(CAMPAIGN_COUNTERS) {
            let (k, v) = item?;
            let key = std::str::from_utf8(&k[CAMPAIGN_COUNTERS.len()..])
                .map_err(|_| StoreError::Corrupt("a campaign counter key".into()))?;
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

    /// Stores written before the per-campaign counters existed get them
    /// once, at open, by one scan; setting (not adding) makes a crash
    /// midway harmless, as the next open scans again.
    pub(super) fn ensure_campaign_counters(&self) -> Result<()> {
        const DONE: &str = "campaign_counters_v1";
        let meta = self.db.table("meta")?;
        if meta.get(DONE)?.is_some() {
            return Ok(());
        }
        let mut counts: HashMap<(String, State), u64> = HashMap::new();
        for inv in self.all_invitations() {
            let inv = inv?;
            *counts.entry((inv.campaign, inv.state)).or_default() += 1;
        }
        let mut batch = WriteBatch::default();
        for ((campaign, state), n) in counts {
            batch.insert(
                campaign_counter_key(&campaign, state).as_bytes(),
                n.to_be_bytes(),
            );
        }
        self.idx.apply_batch(batch)?;
        self.idx.flush()?;
        meta.insert(DONE, [1u8])?;
        meta.flush()?;
        Ok(())
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

    fn invitee(i: usize) -> crate::domain::Invitee {
        serde_json::from_value(serde_json::json!({
            "email": format!("p{i}@example.com"), "name": null, "external_ref": null,
            "mydexid": null, "campaign": null
        }))
        .unwrap()
    }

    fn scanned(s: &Core) -> HashMap<(String, State), u64> {
        let mut out = HashMap::new();
        for inv in s.all_invitations() {
            let inv = inv.unwrap();
            *out.entry((inv.campaign, inv.state)).or_default() += 1;
        }
        out
    }

    #[test]
    fn campaign_counts_follow_inserts_and_transitions_and_are_rebuilt_for_old_stores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let key = || secrecy::SecretBox::new(Box::new([5u8; 32]));
        let s = Core::open(&path, &key()).unwrap();
        let batch: Vec<NewInvitation> = (0..30)
            .map(|i| NewInvitation {
                campaign: if i % 3 == 0 { "spring" } else { "meters" }.into(),
                kind: Kind::Connect,
                version: 1,
                invitee: invitee(i),
            })
            .collect();
        s.insert_invitations(&batch, None).unwrap();
        // A duplicate counts nothing.
        s.insert_invitations(&batch[..1], None).unwrap();
        for id in s.all_invitations().take(7).map(|i| i.unwrap().id) {
            s.transition(id, &[State::Queued], State::Failed, None, |_| {})
                .unwrap();
        }
        let counts = s.counts_by_campaign().unwrap();
        assert_eq!(counts, scanned(&s));
        assert_eq!(counts.values().sum::<u64>(), 30);

        // A store from before the counters: none kept, no marker.
        let stale: Vec<_> = s
            .idx
            .scan_prefix(CAMPAIGN_COUNTERS)
            .keys()
            .map(|k| k.unwrap())
            .collect();
        assert!(!stale.is_empty());
        for k in stale {
            s.idx.remove(k).unwrap();
        }
        s.db.table("meta")
            .unwrap()
            .remove("campaign_counters_v1")
            .unwrap();
        assert!(s.counts_by_campaign().unwrap().is_empty());
        s.ensure_campaign_counters().unwrap();
        assert_eq!(s.counts_by_campaign().unwrap(), scanned(&s));
    }
}
