//! The keys of the readings queue, in one place, typed and tested both ways.
//! They are chosen so a reading costs few writes: a row's key says where it
//! stands (queued under its member and dataset, held, failed), so its state
//! needs no index key of its own, and queued rows lie big-endian by group,
//! then by id, so a claim is one range scan.
//!
//! Tree `readings` (values: the row, sealed):
//!
//! | key | row |
//! |---|---|
//! | `q` group id | queued, or in a batch not settled (`b/`) |
//! | `h` id | held |
//! | `f` id | failed |
//!
//! A delivered row is removed: its `u/` key is what is kept of it.
//!
//! Tree `rdx`:
//!
//! | key | value |
//! |---|---|
//! | `u/{subject}\x1f{dataset}\x1f{external_id}` | row id: one reading per member, dataset and `external_id` |
//! | `gn/{connection}\x1f{dataset}` | group id, made at the group's first row |
//! | `gi/` group | `{connection}\x1f{dataset}` |
//! | `gv/` group | claims made of the group (guards a claim against a stale scan) |
//! | `b/` group batch | a batch not settled (`batches.rs`) |
//! | `r/{connection}\x1f{dataset}` | a refused try (`holds.rs`) |
//! | `q/{file}` | the last line of a readings file stored |
//! | `c/{state}` | counters |
//!
//! Ids and groups are `u64`, big-endian.

use crate::domain::{DatasetName, RowState};

/// Where a row is kept: its key in tree `readings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Slot {
    /// Queued (or in a batch not settled) in `group`.
    Queue {
        group: u64,
        id: u64,
    },
    Held(u64),
    Failed(u64),
}

const QUEUE: u8 = b'q';
const HELD: u8 = b'h';
const FAILED: u8 = b'f';

impl Slot {
    /// Where a row in `state` is kept; `None`: delivered, not kept.
    pub(super) fn for_state(state: RowState, group: Option<u64>, id: u64) -> Option<Slot> {
        match state {
            RowState::Queued | RowState::InFlight | RowState::Unknown => {
                group.map(|group| Slot::Queue { group, id })
            }
            RowState::Held => Some(Slot::Held(id)),
            RowState::Failed => Some(Slot::Failed(id)),
            RowState::Delivered => None,
        }
    }

    pub(super) fn key(self) -> Vec<u8> {
        let mut k = Vec::with_capacity(17);
        match self {
            Slot::Queue { group, id } => {
                k.push(QUEUE);
                k.extend_from_slice(&group.to_be_bytes());
                k.extend_from_slice(&id.to_be_bytes());
            }
            Slot::Held(id) => {
                k.push(HELD);
                k.extend_from_slice(&id.to_be_bytes());
            }
            Slot::Failed(id) => {
                k.push(FAILED);
                k.extend_from_slice(&id.to_be_bytes());
            }
        }
        k
    }

    /// The slot a key names; `None` for anything else (a key of the
    /// layout before this one is 8 bytes, the bare id).
    pub(super) fn parse(k: &[u8]) -> Option<Slot> {
        let n = |b: &[u8]| b.try_into().ok().map(u64::from_be_bytes);
        match (k.first()?, k.len()) {
            (&QUEUE, 17) => Some(Slot::Queue {
                group: n(&k[1..9])?,
                id: n(&k[9..])?,
            }),
            (&HELD, 9) => Some(Slot::Held(n(&k[1..])?)),
            (&FAILED, 9) => Some(Slot::Failed(n(&k[1..])?)),
            _ => None,
        }
    }
}

/// The first key of a group's queued rows (a prefix of each).
pub(super) fn queue_prefix(group: u64) -> Vec<u8> {
    let mut k = vec![QUEUE];
    k.extend_from_slice(&group.to_be_bytes());
    k
}

/// The prefix of every held (`h`) or failed (`f`) row.
pub(super) fn state_prefix(state: RowState) -> Option<u8> {
    match state {
        RowState::Held => Some(HELD),
        RowState::Failed => Some(FAILED),
        _ => None,
    }
}

pub(super) const QUEUE_START: u8 = QUEUE;

pub(super) fn unique_key(subject: &str, dataset: &DatasetName, external_id: &str) -> Vec<u8> {
    format!("u/{subject}\x1f{dataset}\x1f{external_id}").into_bytes()
}

/// The prefix of every `u/` key of a connected member's readings.
pub(super) fn unique_prefix_of_connection(conn: &str) -> Vec<u8> {
    format!("u/c:{conn}\x1f").into_bytes()
}

pub(super) fn counter_key(s: RowState) -> super::schema::Counter {
    super::schema::Counter::Rows(s)
}

pub(super) fn progress_key(file: &str) -> Vec<u8> {
    format!("q/{file}").into_bytes()
}

/// `gn/{connection}\x1f{dataset}`: the group's id.
pub(super) fn group_name_key(conn: &str, dataset: &str) -> Vec<u8> {
    format!("gn/{conn}\x1f{dataset}").into_bytes()
}

/// The prefix of every group of a connection.
pub(super) fn group_names_of_connection(conn: &str) -> Vec<u8> {
    format!("gn/{conn}\x1f").into_bytes()
}

fn group_keyed(prefix: &[u8], group: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&group.to_be_bytes());
    k
}

/// `gi/` group: the group's connection and dataset.
pub(super) fn group_id_key(group: u64) -> Vec<u8> {
    group_keyed(b"gi/", group)
}

/// `gv/` group: how many claims the group has had.
pub(super) fn group_version_key(group: u64) -> Vec<u8> {
    group_keyed(b"gv/", group)
}

/// The value of `gi/`: `{connection}\x1f{dataset}`.
pub(super) fn group_name_value(conn: &str, dataset: &DatasetName) -> Vec<u8> {
    format!("{conn}\x1f{dataset}").into_bytes()
}

/// A `gi/` value read back; `None` if it is not one.
pub(super) fn parse_group_name(v: &[u8]) -> Option<(String, DatasetName)> {
    let text = std::str::from_utf8(v).ok()?;
    let (conn, ds) = text.split_once('\x1f')?;
    Some((conn.to_string(), DatasetName::parse(ds).ok()?))
}

/// `b/` group batch: a batch not settled.
pub(super) fn batch_key(group: u64, batch: u64) -> Vec<u8> {
    let mut k = group_keyed(b"b/", group);
    k.extend_from_slice(&batch.to_be_bytes());
    k
}

/// The prefix of a group's batches not settled.
pub(super) fn batch_prefix(group: u64) -> Vec<u8> {
    group_keyed(b"b/", group)
}

/// Every batch not settled.
pub(super) const BATCHES: &[u8] = b"b/";

/// The group and batch a `b/` key names; `None` for a key of the layout
/// before this one (`b/` batch).
pub(super) fn parse_batch_key(k: &[u8]) -> Option<(u64, u64)> {
    let rest = k.strip_prefix(BATCHES)?;
    if rest.len() != 16 {
        return None;
    }
    let group = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let batch = u64::from_be_bytes(rest[8..].try_into().ok()?);
    Some((group, batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_read_back_as_written_and_sort_by_group_then_id() {
        let slots = [
            Slot::Queue { group: 1, id: 7 },
            Slot::Queue {
                group: 1,
                id: 1 << 40,
            },
            Slot::Queue { group: 2, id: 3 },
            Slot::Held(u64::MAX),
            Slot::Failed(0),
        ];
        for s in slots {
            assert_eq!(Slot::parse(&s.key()), Some(s), "{s:?}");
        }
        let mut keys: Vec<Vec<u8>> = slots[..3].iter().map(|s| s.key()).collect();
        keys.sort();
        let back: Vec<Slot> = keys.iter().filter_map(|k| Slot::parse(k)).collect();
        assert_eq!(back, slots[..3].to_vec());
        assert!(
            Slot::Queue { group: 9, id: 9 }
                .key()
                .starts_with(&queue_prefix(9))
        );
        // The layout before: the bare id, 8 bytes, is none of these.
        assert_eq!(Slot::parse(&5u64.to_be_bytes()), None);
        assert_eq!(Slot::parse(b"q"), None);
        assert_eq!(
            Slot::for_state(RowState::InFlight, Some(4), 5),
            Some(Slot::Queue { group: 4, id: 5 })
        );
        assert_eq!(Slot::for_state(RowState::Delivered, Some(4), 5), None);
        assert_eq!(Slot::for_state(RowState::Queued, None, 5), None);
    }

    #[test]
    fn batch_and_group_keys_read_back() {
        assert_eq!(parse_batch_key(&batch_key(3, 99)), Some((3, 99)));
        let mut legacy = b"b/".to_vec();
        legacy.extend_from_slice(&99u64.to_be_bytes());
        assert_eq!(parse_batch_key(&legacy), None);
        assert!(batch_key(3, 99).starts_with(&batch_prefix(3)));
        let ds = DatasetName::parse("ds_energy_readings").unwrap();
        let v = group_name_value("1001-9", &ds);
        assert_eq!(parse_group_name(&v), Some(("1001-9".to_string(), ds)));
        assert_eq!(parse_group_name(b"no separator"), None);
        assert!(group_name_key("1001-9", "ds_x").starts_with(&group_names_of_connection("1001-9")));
        assert!(
            unique_key("c:1001-9", &DatasetName::parse("ds_x").unwrap(), "r1")
                .starts_with(&unique_prefix_of_connection("1001-9"))
        );
    }
}
