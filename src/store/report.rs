//! Read-only views for operators: invitations counted by campaign and state
//! (`/metrics`, the `status` table) and filtered listings (`invitations
//! list`). They scan the invitations tree, which is fine at scrape and
//! command rates for the sizes a campaign has.

use std::collections::HashMap;

use super::{Invitation, Result, State, Store};

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
    /// Invitations by (campaign, state).
    pub fn counts_by_campaign(&self) -> Result<HashMap<(String, State), u64>> {
        let mut out = HashMap::new();
        for inv in self.all_invitations() {
            let inv = inv?;
            *out.entry((inv.campaign, inv.state)).or_default() += 1;
        }
        Ok(out)
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
