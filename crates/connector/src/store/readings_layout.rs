//! A migration step: readings kept in the layout before this one (each row
//! under its bare id in `readings`, whatever its state, with index keys
//! `g/`, `h/`, `f/` in `rdx` and batches under `b/` batch) moved to this
//! one (`schema.rs`: the row's key says where it stands; batches
//! under `b/` group batch). Delivered rows are dropped: their `u/` keys
//! stay, and so does the delivered count.
//!
//! Resumable: each batch, and each chunk of rows, moves in one transaction
//! that writes the new keys and removes the old, so what is left in the old
//! layout is exactly what remains to do, and a store killed midway is taken
//! up where it stood. The mark in `meta` goes last.

use super::engine::Transactional;

use super::Core;
use super::batches::Batch;
use super::codec::{decode, encode};
use super::error::Result;
use super::readings::{ReadingRow, Tally};
use super::schema::readings::{
    BATCHES, LEGACY_FAILED_PREFIX, LEGACY_HELD_PREFIX, LEGACY_QUEUED_PREFIX, Slot, batch_key,
};
use super::sealed::{READINGS, open, seal};
use crate::domain::RowState;

/// Set in `meta` once the readings are in this layout.
pub(super) const LAYOUT_MARK: &str = "readings_layout_v2";

/// Rows moved in one transaction.
const CHUNK: usize = 500;

/// What the step moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadingsMigrated {
    /// Rows moved to their new keys.
    pub rows: u64,
    /// Delivered rows dropped (their `u/` keys kept).
    pub delivered: u64,
    /// Batches not settled, moved under their group.
    pub batches: u64,
}

/// A key of the layout before: a row's bare id.
fn legacy_row(k: &[u8]) -> bool {
    k.len() == 8
}

impl Core {
    /// Move readings of the layout before this one to this one; nothing
    /// to do once `meta` has [`LAYOUT_MARK`].
    pub(super) fn migrate_readings_layout(
        &self,
        meta: &super::engine::Table,
    ) -> Result<ReadingsMigrated> {
        let mut done = ReadingsMigrated::default();
        if meta.get(LAYOUT_MARK)?.is_some() {
            return Ok(done);
        }
        self.migrate_batches(&mut done)?;
        loop {
            let mut chunk: Vec<(Vec<u8>, ReadingRow)> = Vec::with_capacity(CHUNK);
            for item in self.readings.range(..[b'f'].as_slice()) {
                let (k, v) = item?;
                if legacy_row(&k) {
                    chunk.push((k.to_vec(), open(&self.sealer, READINGS, &k, &v, "reading")?));
                }
                if chunk.len() >= CHUNK {
                    break;
                }
            }
            if chunk.is_empty() {
                break;
            }
            self.migrate_rows(&chunk, &mut done)?;
            if done.rows % 50_000 < CHUNK as u64 {
                tracing::info!(rows = done.rows, "readings: moving to the new store layout");
            }
        }
        for prefix in [
            LEGACY_QUEUED_PREFIX,
            LEGACY_HELD_PREFIX,
            LEGACY_FAILED_PREFIX,
        ] {
            for k in self.rdx.scan_prefix(prefix).keys() {
                self.rdx.remove(k?)?;
            }
        }
        meta.insert(LAYOUT_MARK, [1u8])?;
        self.db.flush()?;
        if done != ReadingsMigrated::default() {
            tracing::info!(
                rows = done.rows,
                delivered_dropped = done.delivered,
                batches = done.batches,
                "readings moved to the new store layout"
            );
        }
        Ok(done)
    }

    /// Batches not settled, each moved under its group in one transaction.
    fn migrate_batches(&self, done: &mut ReadingsMigrated) -> Result<()> {
        let legacy: Vec<(Vec<u8>, Batch)> = self
            .rdx
            .scan_prefix(BATCHES)
            .filter_map(|item| match item {
                Ok((k, v)) if k.len() == BATCHES.len() + 8 => {
                    Some(decode(&v, "batch").map(|b| (k.to_vec(), b)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e.into())),
            })
            .collect::<Result<_>>()?;
        for (old, batch) in legacy {
            let groups = self.reserve_groups([(batch.connection_id.as_str(), &batch.dataset)])?;
            self.rdx.transaction(|x| {
                let Some(group) = groups.tx_group(x, &batch.connection_id, &batch.dataset)? else {
                    return Ok(());
                };
                let mut batch = batch.clone();
                batch.group = group;
                x.insert(batch_key(group, batch.id), encode(&batch))?;
                x.remove(old.as_slice())?;
                Ok(())
            })?;
            done.batches += 1;
        }
        Ok(())
    }

    /// One chunk of rows moved to the keys of their states.
    fn migrate_rows(
        &self,
        chunk: &[(Vec<u8>, ReadingRow)],
        done: &mut ReadingsMigrated,
    ) -> Result<()> {
        let conns = chunk
            .iter()
            .filter_map(|(_, r)| r.connection_id.as_deref().map(|c| (c, &r.dataset)));
        let groups = self.reserve_groups(conns)?;
        let (moved, delivered) = (&self.readings, &self.rdx).transaction(|(r, x)| {
            let (mut moved, mut delivered, mut tally) = (0, 0, Tally::default());
            for (old, row) in chunk {
                if r.remove(old.as_slice())?.is_none() {
                    continue;
                }
                let id = row.id;
                x.remove([LEGACY_HELD_PREFIX, &id.to_be_bytes()].concat())?;
                x.remove([LEGACY_FAILED_PREFIX, &id.to_be_bytes()].concat())?;
                let group = match &row.connection_id {
                    Some(c) => groups.tx_group(x, c, &row.dataset)?,
                    None => None,
                };
                let mut row = row.clone();
                row.batch = None;
                if matches!(
                    row.state,
                    RowState::Queued | RowState::InFlight | RowState::Unknown
                ) {
                    if group.is_none() {
                        // Queued without a member to send to: held.
                        tally.moved(row.state, RowState::Held, 1);
                        row.state = RowState::Held;
                        row.reason = Some("not connected".into());
                    } else {
                        // In a batch or not, the row is kept queued;
                        // its batch (moved first) says it is in flight.
                        row.state = RowState::Queued;
                    }
                }
                let Some(slot) = Slot::for_state(row.state, group, id) else {
                    delivered += 1;
                    continue;
                };
                let k = slot.key();
                r.insert(k.as_slice(), seal(&self.sealer, READINGS, &k, &row))?;
                moved += 1;
            }
            tally.apply(x)?;
            Ok((moved, delivered))
        })?;
        done.rows += moved;
        done.delivered += delivered;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{DatasetName, MemberRef};
    use crate::store::batches::{BatchState, Claim, Settle};
    use crate::store::readings::Resolver;
    use crate::store::schema::readings::unique_key;
    use crate::store::{ImportMember, ReadingOutcome};

    const CONN: &str = "1001-9";

    fn open_store(dir: &std::path::Path) -> Core {
        Core::open(dir, &secrecy::SecretBox::new(Box::new([7u8; 32]))).unwrap()
    }

    fn legacy_row(id: u64, state: RowState, batch: Option<u64>) -> ReadingRow {
        ReadingRow {
            id,
            member: MemberRef::ConnectionId(CONN.into()),
            subject: format!("c:{CONN}"),
            connection_id: Some(CONN.into()),
            dataset: DatasetName::parse("ds_energy_readings").unwrap(),
            external_id: format!("r{id}"),
            fields: BTreeMap::from([("kwh".to_string(), format!("{id}.5"))]),
            state,
            reason: matches!(state, RowState::Held | RowState::Failed).then(|| "why".into()),
            batch,
            source: "old.jsonl:1".into(),
            created_ms: 1,
            held_since_ms: None,
            delivered_ms: None,
            pds_id: None,
        }
    }

    /// Readings as the release before wrote them: each row under its bare
    /// id, index keys `g/`, `h/`, `f/`, a batch under `b/` batch, counters.
    fn write_legacy(s: &Core) {
        let ds = "ds_energy_readings";
        let rows = [
            legacy_row(10, RowState::Queued, None),
            legacy_row(11, RowState::Queued, None),
            legacy_row(12, RowState::Queued, None),
            legacy_row(13, RowState::InFlight, Some(90)),
            legacy_row(14, RowState::InFlight, Some(90)),
            legacy_row(15, RowState::Held, None),
            legacy_row(16, RowState::Failed, None),
            legacy_row(17, RowState::Delivered, None),
        ];
        for row in &rows {
            let k = row.id.to_be_bytes();
            s.readings
                .insert(k, seal(&s.sealer, READINGS, &k, row))
                .unwrap();
            s.rdx
                .insert(unique_key(&row.subject, &row.dataset, &row.external_id), k)
                .unwrap();
            let index = match row.state {
                RowState::Queued => Some(format!("g/{CONN}\x1f{ds}\x1f").into_bytes()),
                RowState::Held => Some(b"h/".to_vec()),
                RowState::Failed => Some(b"f/".to_vec()),
                _ => None,
            };
            if let Some(mut i) = index {
                i.extend_from_slice(&k);
                s.rdx.insert(i, []).unwrap();
            }
        }
        let batch = serde_json::json!({"id": 90, "connection_id": CONN, "dataset": ds,
            "rows": [13, 14], "state": "in_flight", "posted_ms": 5, "attempts": 0, "next_attempt_ms": 5});
        let mut bk = b"b/".to_vec();
        bk.extend_from_slice(&90u64.to_be_bytes());
        s.rdx.insert(bk, encode(&batch)).unwrap();
        for (state, n) in [
            ("queued", 3u64),
            ("in_flight", 2),
            ("held", 1),
            ("failed", 1),
            ("delivered", 1),
        ] {
            s.rdx.insert(format!("c/{state}"), n.to_be_bytes()).unwrap();
        }
        let meta = s.db.table("meta").unwrap();
        meta.remove(LAYOUT_MARK).unwrap();
        s.db.flush().unwrap();
    }

    #[test]
    fn readings_of_the_layout_before_move_once_and_resume_after_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open_store(dir.path());
            s.import_members(&[ImportMember {
                uid: 1001,
                connection_id: CONN,
                mydexid: None,
                email: None,
                key: "k",
                version: 1,
                campaign: None,
            }])
            .unwrap();
            let fields =
                serde_json::json!({"field_ds_energy_readings": {"access": {"r": 1, "w": 1}}});
            s.set_member_permissions(CONN, fields).unwrap();
            write_legacy(&s);
            // Stopped after its first chunk: batches and two rows moved.
            let mut done = ReadingsMigrated::default();
            s.migrate_batches(&mut done).unwrap();
            let first: Vec<(Vec<u8>, ReadingRow)> = s
                .readings
                .iter()
                .take(2)
                .map(|i| {
                    let (k, v) = i.unwrap();
                    (
                        k.to_vec(),
                        open(&s.sealer, READINGS, &k, &v, "reading").unwrap(),
                    )
                })
                .collect();
            s.migrate_rows(&first, &mut done).unwrap();
            assert_eq!((done.batches, done.rows), (1, 2));
            s.db.flush().unwrap();
        }
        let s = open_store(dir.path());
        // Nothing of the old layout is left.
        for item in s.readings.iter() {
            let (k, _) = item.unwrap();
            assert!(Slot::parse(&k).is_some(), "{k:?}");
        }
        for prefix in [b"g/", b"h/", b"f/"] {
            assert_eq!(s.rdx.scan_prefix(prefix).count(), 0);
        }
        let c = s.record_counts().unwrap();
        assert_eq!(
            (c.queued, c.in_flight, c.held, c.failed, c.delivered),
            (3, 2, 1, 1, 1)
        );
        assert_eq!(s.readings.len(), 7, "the delivered row is dropped");
        let held = s.list_readings(RowState::Held, None, 10).unwrap();
        assert_eq!(held.iter().map(|r| r.id).collect::<Vec<_>>(), [15]);
        let failed = s.list_readings(RowState::Failed, None, 10).unwrap();
        assert_eq!(failed.iter().map(|r| r.id).collect::<Vec<_>>(), [16]);
        // The batch in flight is read back first; its rows are not claimed.
        let open_batches = s.unfinished_batches(true, 0).unwrap();
        assert_eq!(open_batches.len(), 1);
        assert_eq!(open_batches[0].state, BatchState::Unknown);
        let rows = s.batch_rows(&open_batches[0]).unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [13, 14]);
        let ds = DatasetName::parse("ds_energy_readings").unwrap();
        let Claim::Batch(b, rows) = s.claim_batch(CONN, &ds, 50).unwrap() else {
            panic!("nothing claimed")
        };
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [10, 11, 12]);
        assert_eq!(rows[0].fields["kwh"], "10.5");
        s.settle_batch(&b, &Settle::Delivered).unwrap();
        let found = std::collections::HashMap::from([("r13".to_string(), "1".to_string())]);
        s.settle_read_back(&open_batches[0], &found).unwrap();
        let c = s.record_counts().unwrap();
        assert_eq!((c.queued, c.unknown, c.delivered), (1, 0, 5));
        // A reading delivered before the move is still a duplicate.
        let member = MemberRef::ConnectionId(CONN.into());
        let placement = Resolver::new(&s).place(&member, &ds).unwrap().unwrap();
        let again = crate::store::NewReading {
            reading: crate::domain::Reading::from_json(
                &serde_json::json!({"connection_id": CONN, "external_id": "r17"}),
            )
            .unwrap(),
            dataset: ds,
            placement,
            source: "t".into(),
        };
        let out = s.insert_readings(&[again], None).unwrap();
        assert_eq!(out, [ReadingOutcome::Duplicate(17)]);
        // Opened again: nothing more to do.
        let meta = s.db.table("meta").unwrap();
        assert_eq!(
            s.migrate_readings_layout(&meta).unwrap(),
            ReadingsMigrated::default()
        );
    }
}
