//! Groups of readings: one member (connection id) and dataset, numbered
//! once, at the group's first row (`gn/`, `gi/` in tree `rdx`), so that
//! every queued row's key starts with a short big-endian group id and a
//! claim is one range scan (`schema.rs`, its `readings` part). The worker finds work by
//! hopping from group to group over the queued rows.

use std::collections::HashMap;

use super::engine::TxTable;

use super::Core;
use super::codec::decode_u64;
use super::error::{Result, TxResult};
use super::schema::readings::{
    QUEUE_START, Slot, group_id_key, group_name_key, group_name_value, parse_group_name,
    queue_prefix,
};
use crate::domain::DatasetName;

/// Group ids for one transaction: those reserved (generated before it, as
/// the engine cannot hand out ids inside one) for groups that did not exist.
#[derive(Default)]
pub(super) struct GroupIds {
    reserved: HashMap<(String, DatasetName), u64>,
    /// Groups found when reserving (they may be erased before the
    /// transaction, which reads them again).
    found: HashMap<(String, DatasetName), u64>,
}

impl GroupIds {
    /// Inside a transaction: the group of `conn` and `dataset`, made now
    /// (`gn/`, `gi/`) from a reserved id if it does not exist; `None` when
    /// it vanished since the reservation (the caller tries again).
    pub(super) fn tx_group(
        &self,
        x: &TxTable<'_>,
        conn: &str,
        dataset: &DatasetName,
    ) -> TxResult<Option<u64>> {
        let name = group_name_key(conn, dataset.as_str());
        if let Some(v) = x.get(&name)? {
            return Ok(Some(decode_u64(&v)));
        }
        let Some(id) = self.reserved.get(&(conn.to_string(), dataset.clone())) else {
            return Ok(None);
        };
        x.insert(name, id.to_be_bytes())?;
        x.insert(group_id_key(*id), group_name_value(conn, dataset))?;
        Ok(Some(*id))
    }

    /// The group `conn` and `dataset` will most likely have in the
    /// transaction: the one found, or the id reserved.
    pub(super) fn likely(&self, conn: &str, dataset: &DatasetName) -> Option<u64> {
        let key = (conn.to_string(), dataset.clone());
        self.found
            .get(&key)
            .or_else(|| self.reserved.get(&key))
            .copied()
    }
}

impl Core {
    /// The group of a member and dataset, if it has one.
    pub(super) fn group_of(&self, conn: &str, dataset: &str) -> Result<Option<u64>> {
        Ok(self
            .rdx
            .get(group_name_key(conn, dataset))?
            .map(|v| decode_u64(&v)))
    }

    /// The member and dataset of a group.
    pub(super) fn group_name(&self, group: u64) -> Result<Option<(String, DatasetName)>> {
        Ok(self
            .rdx
            .get(group_id_key(group))?
            .and_then(|v| parse_group_name(&v)))
    }

    /// Ids for the groups of `wanted` that do not exist yet.
    pub(super) fn reserve_groups<'a>(
        &self,
        wanted: impl IntoIterator<Item = (&'a str, &'a DatasetName)>,
    ) -> Result<GroupIds> {
        let mut ids = GroupIds::default();
        for (conn, ds) in wanted {
            let key = (conn.to_string(), ds.clone());
            if ids.reserved.contains_key(&key) || ids.found.contains_key(&key) {
                continue;
            }
            match self.group_of(conn, ds.as_str())? {
                Some(g) => ids.found.insert(key, g),
                None => ids.reserved.insert(key, self.db.next_id()?),
            };
        }
        Ok(ids)
    }

    /// Groups with queued rows (connection id, dataset), at most `limit`.
    pub fn work_groups(&self, limit: usize) -> Result<Vec<(String, DatasetName)>> {
        self.groups_from(0, None, limit)
    }

    /// [`Core::work_groups`], starting after group `after` and wrapping
    /// round to the first: every group gets its turn.
    pub fn work_groups_after(
        &self,
        after: Option<&(String, DatasetName)>,
        limit: usize,
    ) -> Result<Vec<(String, DatasetName)>> {
        let Some((conn, ds)) = after else {
            return self.work_groups(limit);
        };
        let Some(group) = self.group_of(conn, ds.as_str())? else {
            return self.work_groups(limit);
        };
        let next = group.saturating_add(1);
        let mut out = self.groups_from(next, None, limit)?;
        if out.len() < limit {
            let more = self.groups_from(0, Some(next), limit - out.len())?;
            out.extend(
                more.into_iter()
                    .filter(|g| !out.contains(g))
                    .collect::<Vec<_>>(),
            );
        }
        Ok(out)
    }

    /// Groups with rows in the queue from group `start` (before group
    /// `end`, if given), at most `limit`: one seek per group.
    fn groups_from(
        &self,
        start: u64,
        end: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(String, DatasetName)>> {
        let mut out = Vec::new();
        let mut from = queue_prefix(start);
        while out.len() < limit {
            let Some((k, _)) = self.readings.range(from..).next().transpose()? else {
                break;
            };
            if k.first() != Some(&QUEUE_START) {
                break;
            }
            let Some(Slot::Queue { group, .. }) = Slot::parse(&k) else {
                break;
            };
            if end.is_some_and(|e| group >= e) {
                break;
            }
            if let Some(name) = self.group_name(group)? {
                out.push(name);
            }
            let Some(next) = group.checked_add(1) else {
                break;
            };
            from = queue_prefix(next);
        }
        Ok(out)
    }
}
