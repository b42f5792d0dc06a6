//! The readings part of `people forget` (`forget.rs`): every row kept for
//! the person (queued, in a batch, held, failed), the `u/` keys that are
//! all that is kept of their delivered readings, and their groups and
//! batches not settled. Found before the erasing transaction, erased in it
//! with their counts.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::engine::TxTable;

use super::Core;
use super::batches::Batch;
use super::codec::{decode_u64, tx_decode};
use super::error::{Result, TxResult};
use super::readings::{ReadingRow, Tally};
use super::schema::readings::{
    Slot, batch_prefix, group_id_key, group_names_of_connection, group_version_key, unique_key,
    unique_prefix_of_connection,
};
use super::sealed::{READINGS, open};
use crate::domain::{MemberRef, RowState};

/// Who the readings belong to: connection ids, external refs, MydexIDs
/// (lowercased).
pub(super) struct Whose<'a> {
    pub conns: &'a BTreeSet<String>,
    pub refs: &'a BTreeSet<String>,
    pub mydexids: &'a BTreeSet<String>,
}

/// What `people forget` erases of a person's readings.
#[derive(Default)]
pub(super) struct ReadingsToErase {
    /// Rows kept, with their keys.
    rows: Vec<(Vec<u8>, ReadingRow)>,
    /// `u/` keys of their connections' readings, with the reading's id
    /// (a delivered reading has no row).
    unique: Vec<(Vec<u8>, u64)>,
    /// Their groups (`gn/` key, group).
    groups: Vec<(Vec<u8>, u64)>,
    /// Their groups' batches not settled.
    batches: Vec<Vec<u8>>,
}

impl ReadingsToErase {
    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.unique.is_empty()
    }

    /// How many readings: rows and delivered readings, each once.
    pub(super) fn count(&self) -> usize {
        let mut ids: HashSet<u64> = self.rows.iter().map(|(_, r)| r.id).collect();
        ids.extend(self.unique.iter().map(|(_, id)| *id));
        ids.len()
    }
}

impl Core {
    /// Every reading of the person `whose` names.
    pub(super) fn readings_to_erase(&self, whose: &Whose<'_>) -> Result<ReadingsToErase> {
        let mut e = ReadingsToErase::default();
        for item in self.readings.iter() {
            let (k, v) = item?;
            let row: ReadingRow = open(&self.sealer, READINGS, &k, &v, "reading")?;
            let hit = row
                .connection_id
                .as_ref()
                .is_some_and(|c| whose.conns.contains(c))
                || match &row.member {
                    MemberRef::ExternalRef(r) => whose.refs.contains(r),
                    MemberRef::MydexId(x) => whose.mydexids.contains(&x.to_lowercase()),
                    MemberRef::ConnectionId(c) => whose.conns.contains(c),
                };
            if hit {
                e.rows.push((k.to_vec(), row));
            }
        }
        for conn in whose.conns {
            for item in self.rdx.scan_prefix(unique_prefix_of_connection(conn)) {
                let (k, v) = item?;
                e.unique.push((k.to_vec(), decode_u64(&v)));
            }
            for item in self.rdx.scan_prefix(group_names_of_connection(conn)) {
                let (k, v) = item?;
                let group = decode_u64(&v);
                e.groups.push((k.to_vec(), group));
                for b in self.rdx.scan_prefix(batch_prefix(group)).keys() {
                    e.batches.push(b?.to_vec());
                }
            }
        }
        Ok(e)
    }

    /// Inside `people forget`'s transaction: erase what was found, and
    /// take each reading off its count.
    pub(super) fn tx_erase_readings(
        &self,
        r: &TxTable<'_>,
        x: &TxTable<'_>,
        e: &ReadingsToErase,
    ) -> TxResult<()> {
        let mut tally = Tally::default();
        let mut batched: HashMap<u64, RowState> = HashMap::new();
        for key in &e.batches {
            if let Some(v) = x.remove(key.as_slice())? {
                let b: Batch = tx_decode(&v, "batch")?;
                batched.extend(b.rows.iter().map(|id| (*id, b.state.rows())));
            }
        }
        let mut erased = HashSet::new();
        for (key, row) in &e.rows {
            if r.remove(key.as_slice())?.is_none() {
                continue;
            }
            let state = match Slot::parse(key) {
                Some(Slot::Queue { id, .. }) => {
                    batched.get(&id).copied().unwrap_or(RowState::Queued)
                }
                _ => row.state,
            };
            tally.remove(state);
            erased.insert(row.id);
            let ukey = unique_key(&row.subject, &row.dataset, &row.external_id);
            if x.get(&ukey)?.is_some_and(|v| decode_u64(&v) == row.id) {
                x.remove(ukey)?;
            }
        }
        for (key, id) in &e.unique {
            if x.remove(key.as_slice())?.is_some() && !erased.contains(id) {
                tally.remove(RowState::Delivered);
            }
        }
        for (key, group) in &e.groups {
            x.remove(key.as_slice())?;
            x.remove(group_id_key(*group))?;
            // Counted as a claim: a claim that read the rows reads again.
            let gv = group_version_key(*group);
            let claims = x.get(&gv)?.map_or(0, |v| decode_u64(&v));
            x.insert(gv, (claims + 1).to_be_bytes())?;
        }
        tally.apply(x)
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::{DatasetName, Email, MemberRef, Reading};
    use crate::store::readings::Resolver;
    use crate::store::{Claim, Core, ForgetTarget, ImportMember, NewReading, Settle};

    #[test]
    fn a_forgotten_member_leaves_no_reading_key_group_or_batch() {
        let dir = tempfile::tempdir().unwrap();
        let s = Core::open(dir.path(), &secrecy::SecretBox::new(Box::new([7u8; 32]))).unwrap();
        let ds = DatasetName::parse("ds_energy_readings").unwrap();
        s.import_members(&[ImportMember {
            uid: 1001,
            connection_id: "1001-9",
            mydexid: None,
            email: Some("gone.member@example.com".into()),
            key: "k",
            version: 1,
            campaign: None,
        }])
        .unwrap();
        let fields = serde_json::json!({"field_ds_energy_readings": {"access": {"w": 1}}});
        s.set_member_permissions("1001-9", fields).unwrap();
        let member = MemberRef::ConnectionId("1001-9".into());
        let placement = Resolver::new(&s).place(&member, &ds).unwrap().unwrap();
        let batch: Vec<NewReading> = (0..6)
            .map(|i| NewReading {
                reading: Reading::from_json(
                    &serde_json::json!({"connection_id": "1001-9", "external_id": format!("r{i}")}),
                )
                .unwrap(),
                dataset: ds.clone(),
                placement: placement.clone(),
                source: "t".into(),
            })
            .collect();
        s.insert_readings(&batch, None).unwrap();
        // Two delivered, two in flight, two queued.
        let claims = s.claim_batches("1001-9", &ds, 2, 2, false).unwrap();
        let [Claim::Batch(first, _), Claim::Batch(second, _)] = &claims[..] else {
            panic!("two batches")
        };
        s.settle_batch(first, &Settle::Delivered).unwrap();
        let c = s.record_counts().unwrap();
        assert_eq!((c.queued, c.in_flight, c.delivered), (2, 2, 2));

        let email = Email::parse("gone.member@example.com").unwrap();
        let f = s.forget_person(&ForgetTarget::Email(email), true).unwrap();
        assert_eq!(f.readings, 6);
        let c = s.record_counts().unwrap();
        assert_eq!(
            (c.queued, c.in_flight, c.unknown, c.delivered),
            (0, 0, 0, 0)
        );
        assert_eq!(s.readings.len(), 0);
        for prefix in [&b"u/"[..], b"gn/", b"gi/", b"b/"] {
            assert_eq!(s.rdx.scan_prefix(prefix).count(), 0, "{prefix:?}");
        }
        // The POST of the batch in flight ends: its settle finds nothing.
        s.settle_batch(second, &Settle::Delivered).unwrap();
        assert_eq!(s.record_counts().unwrap().delivered, 0);
        assert!(s.work_groups(10).unwrap().is_empty());
    }
}
