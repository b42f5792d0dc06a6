//! Readings as `records list` pages through them, in any state: the kept
//! rows read from their slots (queued by group, held, failed), and the
//! delivered ones from what is kept of them, their `u/` key (a delivered
//! row is removed when Mydex takes it: no fields, no time). Pages go by
//! key: a cursor is the last key a page returned.

use std::collections::HashSet;
use std::ops::Bound;

use super::Core;
use super::codec::decode_u64;
use super::error::Result;
use super::readings::ReadingRow;
use super::schema::readings::{QUEUE_START, Slot, group_name_key, state_prefix};
use super::sealed::{READINGS, open};
use crate::domain::RowState;

/// A delivered reading, as its `u/` key keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredReading {
    pub id: u64,
    /// `c:{connection_id}`, `x:{mydexid}` or `r:{keyed hash of the external ref}`.
    pub subject: String,
    pub dataset: String,
    pub external_id: String,
}

/// The `u/` keys' prefix.
const UNIQUE: &[u8] = b"u/";

fn after(cursor: Option<Vec<u8>>, start: Vec<u8>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    match cursor {
        Some(c) if c > start => (Bound::Excluded(c), Bound::Unbounded),
        _ => (Bound::Included(start), Bound::Unbounded),
    }
}

impl Core {
    /// Kept rows in `state` (queued, which counts in flight and unknown,
    /// held or failed) after `cursor`, at most `limit`; the cursor of the
    /// next page when the page is full.
    pub fn list_kept_readings(
        &self,
        state: RowState,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<ReadingRow>, Option<Vec<u8>>)> {
        let prefix = match state {
            RowState::Queued | RowState::InFlight | RowState::Unknown => QUEUE_START,
            other => match state_prefix(other) {
                Some(p) => p,
                None => return Ok((Vec::new(), None)),
            },
        };
        let mut out = Vec::new();
        let mut last = None;
        for item in self.readings.range(after(cursor, vec![prefix])) {
            let (k, v) = item?;
            if k.first() != Some(&prefix) || out.len() >= limit {
                break;
            }
            out.push(open(&self.sealer, READINGS, &k, &v, "reading")?);
            last = Some(k.to_vec());
        }
        let next = if out.len() >= limit { last } else { None };
        Ok((out, next))
    }

    /// Delivered readings after `cursor`, at most `limit`, in the order of
    /// their `u/` keys; the cursor of the next page while more may follow.
    pub fn list_delivered_readings(
        &self,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<DeliveredReading>, Option<Vec<u8>>)> {
        let counts = self.record_counts()?;
        let unsettled = counts.queued + counts.in_flight + counts.unknown;
        let mut queued: Option<HashSet<u64>> = None;
        let mut out = Vec::new();
        let mut last = None;
        for item in self.rdx.range(after(cursor, UNIQUE.to_vec())) {
            let (k, v) = item?;
            if !k.starts_with(UNIQUE) || out.len() >= limit {
                break;
            }
            last = Some(k.to_vec());
            let Some(r) = parse_unique(&k, decode_u64(&v)) else {
                continue;
            };
            if self.is_kept(&r, unsettled, &mut queued)? {
                continue;
            }
            out.push(r);
        }
        let next = if out.len() >= limit { last } else { None };
        Ok((out, next))
    }

    /// Whether reading `r` still has its row (held, failed, or queued).
    fn is_kept(
        &self,
        r: &DeliveredReading,
        unsettled: u64,
        queued: &mut Option<HashSet<u64>>,
    ) -> Result<bool> {
        for slot in [Slot::Held(r.id), Slot::Failed(r.id)] {
            if self.readings.get(slot.key())?.is_some() {
                return Ok(true);
            }
        }
        if unsettled == 0 {
            return Ok(false);
        }
        if let Some(conn) = r.subject.strip_prefix("c:") {
            if let Some(g) = self.rdx.get(group_name_key(conn, &r.dataset))? {
                let slot = Slot::Queue {
                    group: decode_u64(&g),
                    id: r.id,
                };
                return Ok(self.readings.get(slot.key())?.is_some());
            }
            return Ok(false);
        }
        if queued.is_none() {
            let mut ids = HashSet::new();
            for k in self.readings.range(vec![QUEUE_START]..).keys() {
                match Slot::parse(&k?) {
                    Some(Slot::Queue { id, .. }) => ids.insert(id),
                    _ => break,
                };
            }
            *queued = Some(ids);
        }
        Ok(queued.as_ref().is_some_and(|ids| ids.contains(&r.id)))
    }
}

/// `u/{subject}\x1f{dataset}\x1f{external_id}` and its row id.
fn parse_unique(key: &[u8], id: u64) -> Option<DeliveredReading> {
    let text = std::str::from_utf8(key.strip_prefix(UNIQUE)?).ok()?;
    let mut parts = text.splitn(3, '\x1f');
    Some(DeliveredReading {
        id,
        subject: parts.next()?.to_string(),
        dataset: parts.next()?.to_string(),
        external_id: parts.next()?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keys_read_back() {
        let r = parse_unique(b"u/c:conn-1\x1fds_energy\x1fm-1\x1fwith-sep", 7).unwrap();
        assert_eq!(r.id, 7);
        assert_eq!(r.subject, "c:conn-1");
        assert_eq!(r.dataset, "ds_energy");
        assert_eq!(r.external_id, "m-1\x1fwith-sep");
        assert!(parse_unique(b"x/nothing", 1).is_none());
    }
}
