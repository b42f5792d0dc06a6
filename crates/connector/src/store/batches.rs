//! Batches of readings on their way to a PDS: the store's half of the
//! exactly-once protocol (`docs/book/src/delivery.md`). A batch is
//! claimed in one transaction that writes only its record (`b/` group
//! batch, naming its rows) and the group's claim count: the rows stay where
//! intake put them, and a row named by a batch not settled is in flight (or
//! unknown), not queued. The claim is made durable before its POST, and the
//! batch settled by what Mydex answered: delivered (its rows removed, one
//! write a row), back to the queue (nothing was sent: only the record
//! goes), held or failed (rows moved), or unknown — then read back, and
//! only the rows Mydex does not hold go back to the queue. Held rows are
//! released when their cause may have cleared and fail after `hold_for`
//! (`holds.rs`).

use std::collections::{HashMap, HashSet};

use super::engine::Transactional;
use super::engine::TxTable;
use serde::{Deserialize, Serialize};

use super::codec::{decode, decode_u64, encode, tx_decode};
use super::error::{Result, TxResult};
use super::holds::{tx_clear_group, tx_refuse_group};
use super::readings::{MoveTo, ReadingRow, Tally, tx_move};
use super::schema::readings::{
    BATCHES, Slot, batch_key, batch_prefix, group_version_key, parse_batch_key, queue_prefix,
};
use super::sealed::{READINGS, open, seal, tx_open};
use super::{Core, now_ms};
use crate::domain::{DatasetName, RowState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Claimed; its POST may be under way.
    InFlight,
    /// Sent with no answer: to be read back.
    Unknown,
}

impl BatchState {
    /// The state of the batch's rows.
    pub(super) fn rows(self) -> RowState {
        match self {
            BatchState::InFlight => RowState::InFlight,
            BatchState::Unknown => RowState::Unknown,
        }
    }
}

/// A batch not settled (`b/` group batch in `rdx`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub id: u64,
    /// The group (member and dataset) its rows are queued in.
    #[serde(default)]
    pub group: u64,
    pub connection_id: String,
    pub dataset: DatasetName,
    pub rows: Vec<u64>,
    pub state: BatchState,
    pub posted_ms: u64,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Batch {
    /// Where row `id` of this batch is kept while the batch is open.
    fn row_key(&self, id: u64) -> Vec<u8> {
        Slot::Queue {
            group: self.group,
            id,
        }
        .key()
    }
}

/// How a batch ended.
#[derive(Debug, Clone)]
pub enum Settle {
    /// Mydex took every row.
    Delivered,
    /// Nothing was sent: rows back to the queue.
    Requeue,
    /// Rows held with why (Mydex refused the member's connection or grant).
    Hold(String),
    /// Rows failed with Mydex's message.
    Fail(String),
    /// Sent, no answer: read back at `next_attempt_ms`.
    Unknown { next_attempt_ms: u64, why: String },
}

/// What a claim found.
pub enum Claim {
    Batch(Batch, Vec<ReadingRow>),
    /// The member can no longer take these rows; they were held.
    Held(usize),
    Empty,
}

/// Inside a transaction: whether the group has had exactly `claims`
/// claims (none since its rows were read outside the transaction).
fn tx_unclaimed_since(x: &TxTable<'_>, group: u64, claims: u64) -> TxResult<bool> {
    let now = x
        .get(group_version_key(group))?
        .map_or(0, |v| decode_u64(&v));
    Ok(now == claims)
}

/// Move the rows of a batch (in flight or unknown) to held or failed:
/// each row rewritten at the key of its new state; how many moved.
fn tx_settle_rows(
    sealer: &super::Sealer,
    r: &TxTable<'_>,
    stored: &Batch,
    to: RowState,
    change: impl Fn(&mut ReadingRow),
) -> TxResult<usize> {
    let mut n = 0;
    for id in &stored.rows {
        let from = stored.row_key(*id);
        let Some(bytes) = r.remove(from.as_slice())? else {
            continue;
        };
        let mut row: ReadingRow = tx_open(sealer, READINGS, &from, &bytes, "reading")?;
        change(&mut row);
        row.state = to;
        if let Some(slot) = Slot::for_state(to, None, *id) {
            let k = slot.key();
            r.insert(k.as_slice(), seal(sealer, READINGS, &k, &row))?;
        }
        n += 1;
    }
    Ok(n)
}

impl Core {
    /// Claim up to `max` queued rows of one group into a new in-flight
    /// batch, after checking the member can still take them.
    pub fn claim_batch(&self, conn: &str, dataset: &DatasetName, max: usize) -> Result<Claim> {
        let mut claims = self.claim_batches(conn, dataset, max, 1, false)?;
        Ok(match claims.pop() {
            Some(c) => c,
            None => Claim::Empty,
        })
    }

    /// Claim up to `count` batches of up to `max` queued rows of one group
    /// in one transaction (so one flush makes them all durable), after
    /// checking the member can still take them. `full_only`: claim only
    /// full batches (while a file is still being taken in, a partial one
    /// would only fill later). Empty: nothing (or nothing full) to claim.
    pub fn claim_batches(
        &self,
        conn: &str,
        dataset: &DatasetName,
        max: usize,
        count: usize,
        full_only: bool,
    ) -> Result<Vec<Claim>> {
        let Some(group) = self.group_of(conn, dataset.as_str())? else {
            return Ok(Vec::new());
        };
        // Another claim of the group between the scan and the transaction
        // makes this one read again (the worker runs one claim a group at
        // a time, so this is rare).
        for _ in 0..8 {
            let wanted = (group, max, count, full_only);
            if let Some(claims) = self.try_claim(conn, dataset, wanted)? {
                return Ok(claims);
            }
        }
        Ok(Vec::new())
    }

    /// One claim: the group's rows read outside the transaction, then taken
    /// inside it if no other claim came between; `None`: one did.
    fn try_claim(
        &self,
        conn: &str,
        dataset: &DatasetName,
        (group, max, count, full_only): (u64, usize, usize, bool),
    ) -> Result<Option<Vec<Claim>>> {
        let claims = self
            .rdx
            .get(group_version_key(group))?
            .map_or(0, |v| decode_u64(&v));
        let mut rows = self.unclaimed_rows(group, max * count)?;
        if full_only {
            rows.truncate(rows.len() / max * max);
        }
        if rows.is_empty() {
            return Ok(Some(Vec::new()));
        }
        if let (RowState::Held, Some(why)) = self.claim_gate(conn, dataset)? {
            return Ok(self
                .hold_unclaimed(group, claims, &rows, &why)?
                .map(|n| vec![Claim::Held(n)]));
        }
        let batch_ids = rows
            .chunks(max)
            .map(|_| self.db.next_id())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let now = now_ms();
        self.rdx.transaction(|x| {
            if !tx_unclaimed_since(x, group, claims)? {
                return Ok(None);
            }
            let (mut out, mut n) = (Vec::new(), 0);
            for (chunk, id) in rows.chunks(max).zip(&batch_ids) {
                // Every change that takes a queued row away from the
                // group (a claim, a hold at the gate, `people forget`)
                // counts as a claim: these rows are still there.
                let taken: Vec<ReadingRow> = chunk
                    .iter()
                    .map(|row| ReadingRow {
                        state: RowState::InFlight,
                        ..row.clone()
                    })
                    .collect();
                let batch = Batch {
                    id: *id,
                    group,
                    connection_id: conn.to_string(),
                    dataset: dataset.clone(),
                    rows: taken.iter().map(|r| r.id).collect(),
                    state: BatchState::InFlight,
                    posted_ms: now,
                    attempts: 0,
                    next_attempt_ms: now,
                    last_error: None,
                };
                x.insert(batch_key(group, *id), encode(&batch))?;
                n += taken.len();
                out.push(Claim::Batch(batch, taken));
            }
            let mut tally = Tally::default();
            tally.moved(RowState::Queued, RowState::InFlight, n);
            tally.apply(x)?;
            x.insert(group_version_key(group), (claims + 1).to_be_bytes())?;
            Ok(Some(out))
        })
    }

    /// Up to `limit` of a group's queued rows that no batch names, in id
    /// order: one range scan.
    fn unclaimed_rows(&self, group: u64, limit: usize) -> Result<Vec<ReadingRow>> {
        let busy = self.batched_rows(group)?;
        let mut rows = Vec::new();
        for item in self.readings.scan_prefix(queue_prefix(group)) {
            if rows.len() >= limit {
                break;
            }
            let (k, v) = item?;
            match Slot::parse(&k) {
                Some(Slot::Queue { id, .. }) if !busy.contains(&id) => {
                    rows.push(open::<ReadingRow>(
                        &self.sealer,
                        READINGS,
                        &k,
                        &v,
                        "reading",
                    )?);
                }
                _ => {}
            }
        }
        Ok(rows)
    }

    /// The claim gate said no: the rows read (queued, in no batch) are
    /// held with why, if no claim came between (`None`: one did). Counted
    /// as a claim, so a claim that read these rows reads again.
    fn hold_unclaimed(
        &self,
        group: u64,
        claims: u64,
        rows: &[ReadingRow],
        why: &str,
    ) -> Result<Option<usize>> {
        let now = now_ms();
        (&self.readings, &self.rdx).transaction(|(r, x)| {
            if !tx_unclaimed_since(x, group, claims)? {
                return Ok(None);
            }
            let mut tally = Tally::default();
            let mut n = 0;
            for row in rows {
                let from = Slot::Queue { group, id: row.id };
                let to = MoveTo::state(RowState::Held);
                let held = |r: &mut ReadingRow| {
                    r.reason = Some(why.to_string());
                    r.held_since_ms = Some(r.held_since_ms.unwrap_or(now));
                };
                let moved = tx_move(
                    &self.sealer,
                    r,
                    from,
                    &[RowState::Queued],
                    to,
                    held,
                    &mut tally,
                )?;
                n += moved.is_some() as usize;
            }
            tally.apply(x)?;
            x.insert(group_version_key(group), (claims + 1).to_be_bytes())?;
            Ok(Some(n))
        })
    }

    /// The ids of the rows in a group's batches not settled.
    fn batched_rows(&self, group: u64) -> Result<HashSet<u64>> {
        let mut ids = HashSet::new();
        for item in self.rdx.scan_prefix(batch_prefix(group)) {
            let (_, v) = item?;
            let b: Batch = decode(&v, "batch")?;
            ids.extend(b.rows);
        }
        Ok(ids)
    }

    /// The rows of a batch not settled, as they were claimed.
    pub fn batch_rows(&self, batch: &Batch) -> Result<Vec<ReadingRow>> {
        let mut out = Vec::with_capacity(batch.rows.len());
        for id in &batch.rows {
            let k = batch.row_key(*id);
            if let Some(v) = self.readings.get(&k)? {
                let mut row: ReadingRow = open(&self.sealer, READINGS, &k, &v, "reading")?;
                row.state = batch.state.rows();
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Move rows kept at `from` (those still in one of `expected`) to `to`,
    /// one transaction; how many moved.
    pub(super) fn move_rows(
        &self,
        from: &[Slot],
        expected: &[RowState],
        to: MoveTo,
        change: impl Fn(&mut ReadingRow),
    ) -> Result<usize> {
        (&self.readings, &self.rdx).transaction(|(r, x)| {
            let (mut n, mut tally) = (0, Tally::default());
            for slot in from {
                n += tx_move(&self.sealer, r, *slot, expected, to, &change, &mut tally)?.is_some()
                    as usize;
            }
            tally.apply(x)?;
            Ok(n)
        })
    }

    /// Settle a batch by its outcome (one transaction). Delivered: each
    /// row removed (its `u/` key stays, so it is never taken again).
    pub fn settle_batch(&self, batch: &Batch, how: &Settle) -> Result<()> {
        let now = now_ms();
        let key = batch_key(batch.group, batch.id);
        (&self.readings, &self.rdx).transaction(|(r, x)| {
            let Some(bytes) = x.get(&key)? else {
                return Ok(());
            };
            let mut stored: Batch = tx_decode(&bytes, "batch")?;
            let from = stored.state.rows();
            let to = match how {
                Settle::Delivered => RowState::Delivered,
                Settle::Requeue => RowState::Queued,
                Settle::Hold(_) => RowState::Held,
                Settle::Fail(_) => RowState::Failed,
                Settle::Unknown { .. } => RowState::Unknown,
            };
            if from != to && !from.allowed(to) {
                return Ok(());
            }
            let group = (stored.connection_id.as_str(), &stored.dataset);
            let n = match how {
                Settle::Delivered => {
                    let mut n = 0;
                    for id in &stored.rows {
                        let k = stored.row_key(*id);
                        n += r.remove(k)?.is_some() as usize;
                    }
                    tx_clear_group(x, group)?;
                    n
                }
                Settle::Requeue => present(r, &stored)?,
                Settle::Hold(why) => {
                    tx_refuse_group(x, group, stored.posted_ms, why)?;
                    tx_settle_rows(&self.sealer, r, &stored, to, |row| {
                        row.reason = Some(why.clone());
                        row.held_since_ms = Some(row.held_since_ms.unwrap_or(now));
                    })?
                }
                Settle::Fail(why) => tx_settle_rows(&self.sealer, r, &stored, to, |row| {
                    row.reason = Some(why.clone());
                })?,
                Settle::Unknown {
                    next_attempt_ms,
                    why,
                } => {
                    stored.state = BatchState::Unknown;
                    stored.attempts += 1;
                    stored.next_attempt_ms = *next_attempt_ms;
                    stored.last_error = Some(why.clone());
                    x.insert(key.as_slice(), encode(&stored))?;
                    present(r, &stored)?
                }
            };
            if !matches!(how, Settle::Unknown { .. }) {
                x.remove(key.as_slice())?;
            }
            let mut tally = Tally::default();
            tally.moved(from, to, n);
            tally.apply(x)?;
            Ok(())
        })
    }

    /// Settle an unknown batch by what a read-back found: rows whose
    /// `external_id` Mydex holds are delivered (removed), the others go
    /// back to the queue.
    pub fn settle_read_back(&self, batch: &Batch, found: &HashMap<String, String>) -> Result<()> {
        let held_by_mydex: HashSet<u64> = self
            .batch_rows(batch)?
            .into_iter()
            .filter(|r| found.contains_key(&r.external_id))
            .map(|r| r.id)
            .collect();
        let key = batch_key(batch.group, batch.id);
        (&self.readings, &self.rdx).transaction(|(r, x)| {
            let Some(bytes) = x.get(&key)? else {
                return Ok(());
            };
            let stored: Batch = tx_decode(&bytes, "batch")?;
            let from = stored.state.rows();
            let (mut delivered, mut back) = (0, 0);
            for id in &stored.rows {
                let k = stored.row_key(*id);
                if held_by_mydex.contains(id) {
                    delivered += r.remove(k)?.is_some() as usize;
                } else {
                    back += r.get(k)?.is_some() as usize;
                }
            }
            let mut tally = Tally::default();
            tally.moved(from, RowState::Delivered, delivered);
            tally.moved(from, RowState::Queued, back);
            tally.apply(x)?;
            if delivered > 0 {
                tx_clear_group(x, (stored.connection_id.as_str(), &stored.dataset))?;
            }
            x.remove(key.as_slice())?;
            Ok(())
        })
    }

    /// Every batch not settled. At start, in-flight ones become unknown
    /// (their POST may have reached Mydex), read back after `settle_ms`.
    pub fn unfinished_batches(&self, at_start: bool, settle_ms: u64) -> Result<Vec<Batch>> {
        let mut out = Vec::new();
        for item in self.rdx.scan_prefix(BATCHES) {
            let (k, v) = item?;
            let Some((group, _)) = parse_batch_key(&k) else {
                continue;
            };
            let mut b: Batch = decode(&v, "batch")?;
            b.group = group;
            if at_start && b.state == BatchState::InFlight {
                let how = Settle::Unknown {
                    next_attempt_ms: b.posted_ms + settle_ms,
                    why: "the daemon stopped while the batch was sent".into(),
                };
                self.settle_batch(&b, &how)?;
                b.state = BatchState::Unknown;
                b.next_attempt_ms = b.posted_ms + settle_ms;
            }
            out.push(b);
        }
        Ok(out)
    }
}

/// How many rows of a batch are still kept (all of them, unless erased).
fn present(r: &TxTable<'_>, stored: &Batch) -> TxResult<usize> {
    let mut n = 0;
    for id in &stored.rows {
        let k = stored.row_key(*id);
        n += r.get(k)?.is_some() as usize;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MemberRef, Reading};
    use crate::store::readings::{NewReading, Resolver};

    fn store(dir: &std::path::Path) -> Core {
        Core::open(dir, &secrecy::SecretBox::new(Box::new([7u8; 32]))).unwrap()
    }

    fn seed(s: &Core, n: usize) -> DatasetName {
        let ds = DatasetName::parse("ds_energy_readings").unwrap();
        s.import_members(&[crate::store::ImportMember {
            uid: 1001,
            connection_id: "1001-9",
            mydexid: None,
            email: None,
            key: "k",
            version: 1,
            campaign: None,
        }])
        .unwrap();
        let fields = serde_json::json!({"field_ds_energy_readings": {"access": {"r": 1, "w": 1}}});
        assert!(s.set_member_permissions("1001-9", fields).unwrap());
        let member = MemberRef::ConnectionId("1001-9".into());
        let mut resolver = Resolver::new(s);
        let p = resolver.place(&member, &ds).unwrap().unwrap();
        assert_eq!(p.state, RowState::Queued);
        let batch: Vec<NewReading> = (0..n)
            .map(|i| NewReading {
                reading: Reading::from_json(
                    &serde_json::json!({"connection_id": "1001-9", "external_id": format!("r{i}")}),
                )
                .unwrap(),
                dataset: ds.clone(),
                placement: p.clone(),
                source: "t".into(),
            })
            .collect();
        s.insert_readings(&batch, None).unwrap();
        // The same readings again are duplicates.
        let again = s.insert_readings(&batch, None).unwrap();
        assert!(
            again
                .iter()
                .all(|o| matches!(o, super::super::readings::ReadingOutcome::Duplicate(_)))
        );
        ds
    }

    /// Every key written to `tree` (an insert or a removal each) until
    /// the returned flag is set and the writes have stopped.
    fn record_writes(
        tree: &crate::store::engine::Table,
    ) -> (
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<Vec<Vec<u8>>>,
    ) {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut sub = tree.watch(&[]);
        let done = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut keys = Vec::new();
            loop {
                match sub.key_within(std::time::Duration::from_millis(300)) {
                    Some(key) => keys.push(key),
                    None if done.load(std::sync::atomic::Ordering::SeqCst) => return keys,
                    None => {}
                }
            }
        });
        (stop, thread)
    }

    #[test]
    fn a_delivered_reading_costs_three_writes_and_a_batch_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (n, size) = (400usize, 50usize);
        let (stop_r, rows_t) = record_writes(&s.readings);
        let (stop_x, rdx_t) = record_writes(&s.rdx);
        let ds = seed(&s, n);
        let mut batches = 0;
        loop {
            let claims = s.claim_batches("1001-9", &ds, size, 4, false).unwrap();
            if claims.is_empty() {
                break;
            }
            for c in claims {
                let Claim::Batch(b, rows) = c else {
                    panic!("not a batch")
                };
                assert_eq!(rows.len(), size);
                s.settle_batch(&b, &Settle::Delivered).unwrap();
                batches += 1;
            }
        }
        stop_r.store(true, std::sync::atomic::Ordering::SeqCst);
        stop_x.store(true, std::sync::atomic::Ordering::SeqCst);
        let (rows, rdx) = (rows_t.join().unwrap(), rdx_t.join().unwrap());
        let c = s.record_counts().unwrap();
        assert_eq!((c.queued, c.in_flight, c.delivered), (0, 0, n as u64));
        assert_eq!(batches, n / size);
        // Per reading: its row put at intake and removed at delivery, and
        // its unique key: three writes; nothing else is written per row.
        assert_eq!(rows.len(), 2 * n, "row writes");
        let unique = rdx.iter().filter(|k| k.starts_with(b"u/")).count();
        assert_eq!(unique, n, "unique keys");
        // Per batch: its record put and removed, the claim count and the
        // counters, shared by the batches of one claim; the group made once.
        let per_batch = rdx.len() - unique;
        assert!(
            per_batch <= 5 * batches + 4,
            "{per_batch} writes for {batches} batches"
        );
        let total = (rows.len() + rdx.len()) as f64 / n as f64;
        eprintln!(
            "writes per delivered reading: {total:.3} ({per_batch} for {batches} batches of {size})"
        );
        assert!(total <= 3.0 + 6.0 / size as f64, "{total}");
        // Delivered: the rows are gone, the unique keys stay.
        assert_eq!(s.readings.len(), 0);
        let again = s
            .insert_readings(
                &[NewReading {
                    reading: Reading::from_json(
                        &serde_json::json!({"connection_id": "1001-9", "external_id": "r7"}),
                    )
                    .unwrap(),
                    dataset: ds.clone(),
                    placement: Resolver::new(&s)
                        .place(&MemberRef::ConnectionId("1001-9".into()), &ds)
                        .unwrap()
                        .unwrap(),
                    source: "t".into(),
                }],
                None,
            )
            .unwrap();
        assert!(matches!(
            again[..],
            [crate::store::ReadingOutcome::Duplicate(_)]
        ));
    }

    #[test]
    fn an_in_flight_batch_is_unknown_after_a_restart_and_read_back_settles_it() {
        let dir = tempfile::tempdir().unwrap();
        let ds = {
            let s = store(dir.path());
            let ds = seed(&s, 5);
            let Claim::Batch(b, rows) = s.claim_batch("1001-9", &ds, 3).unwrap() else {
                panic!("no batch")
            };
            assert_eq!(rows.len(), 3);
            assert_eq!(b.state, BatchState::InFlight);
            s.flush_blocking().unwrap();
            ds
        };
        let s = store(dir.path());
        let open = s.unfinished_batches(true, 1000).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].state, BatchState::Unknown);
        let c = s.record_counts().unwrap();
        assert_eq!((c.queued, c.unknown, c.in_flight), (2, 3, 0));
        // Mydex holds r0 only: r1, r2 go back to the queue.
        let found = HashMap::from([("r0".to_string(), "55".to_string())]);
        s.settle_read_back(&open[0], &found).unwrap();
        let c = s.record_counts().unwrap();
        assert_eq!((c.queued, c.unknown, c.delivered), (4, 0, 1));
        assert!(s.unfinished_batches(false, 0).unwrap().is_empty());
        let Claim::Batch(b, _) = s.claim_batch("1001-9", &ds, 50).unwrap() else {
            panic!("no batch")
        };
        assert_eq!(b.rows.len(), 4);
        s.settle_batch(&b, &Settle::Delivered).unwrap();
        let c = s.record_counts().unwrap();
        assert_eq!((c.queued, c.delivered, c.in_flight), (0, 5, 0));
        assert!(s.work_groups(10).unwrap().is_empty());
    }

    #[test]
    fn several_batches_claimed_at_once_full_only_and_counted_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let ds = seed(&s, 7);
        // Only full batches: 3 of 3, the last row waits.
        let claims = s.claim_batches("1001-9", &ds, 3, 4, true).unwrap();
        assert_eq!(claims.len(), 2);
        let c = s.record_counts().unwrap();
        assert_eq!((c.queued, c.in_flight), (1, 6));
        assert!(
            s.claim_batches("1001-9", &ds, 3, 4, true)
                .unwrap()
                .is_empty()
        );
        for claim in &claims {
            let Claim::Batch(b, rows) = claim else {
                panic!("not a batch")
            };
            assert_eq!((b.rows.len(), rows.len()), (3, 3));
            s.settle_batch(b, &Settle::Delivered).unwrap();
        }
        // Not full only: the last one goes too.
        let last = s.claim_batches("1001-9", &ds, 3, 4, false).unwrap();
        assert_eq!(last.len(), 1);
        let Claim::Batch(b, _) = &last[0] else {
            panic!("not a batch")
        };
        s.settle_batch(b, &Settle::Requeue).unwrap();
        let c = s.record_counts().unwrap();
        assert_eq!((c.queued, c.in_flight, c.delivered), (1, 0, 6));
        assert_eq!(s.unfinished_batches(false, 0).unwrap().len(), 0);
    }

    #[test]
    fn work_groups_after_wraps_round() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let ds = seed(&s, 1);
        let g = s.work_groups(10).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(s.work_groups_after(Some(&g[0]), 10).unwrap(), g);
        assert_eq!(
            s.work_groups_after(Some(&("0".to_string(), ds)), 10)
                .unwrap(),
            g
        );
    }

    #[test]
    fn a_member_without_write_access_holds_rows_until_granted() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let ds = seed(&s, 2);
        s.set_member_permissions("1001-9", serde_json::json!({}))
            .unwrap();
        assert!(matches!(
            s.claim_batch("1001-9", &ds, 50).unwrap(),
            Claim::Held(2)
        ));
        let held = s.list_readings(RowState::Held, None, 10).unwrap();
        assert_eq!(
            held[0].reason.as_deref(),
            Some("no write access to ds_energy_readings")
        );
        assert_eq!(s.release_holds(3_600_000, 50).unwrap(), (0, 0));
        let fields = serde_json::json!({"field_ds_energy_readings": {"access": {"w": 1}}});
        s.set_member_permissions("1001-9", fields).unwrap();
        assert_eq!(s.release_holds(3_600_000, 50).unwrap(), (2, 0));
        assert_eq!(s.work_groups(10).unwrap().len(), 1);
        s.set_member_permissions("1001-9", serde_json::json!({}))
            .unwrap();
        assert!(matches!(
            s.claim_batch("1001-9", &ds, 50).unwrap(),
            Claim::Held(2)
        ));
        assert_eq!(s.release_holds(0, 50).unwrap(), (0, 2));
        assert_eq!(s.record_counts().unwrap().failed, 2);
    }

    /// Claim what is queued in batches of 2 and settle the first as Mydex
    /// refusing it; the others go back to the queue unsent, and the next
    /// claim holds them (how many) without a POST.
    fn refuse_first(s: &Core, ds: &DatasetName) -> usize {
        let claims = s.claim_batches("1001-9", ds, 2, 4, false).unwrap();
        let mut first = true;
        for c in claims {
            let Claim::Batch(b, _) = c else {
                panic!("not a batch")
            };
            let how = if first {
                Settle::Hold("Mydex refused: Permission Denied".into())
            } else {
                Settle::Requeue
            };
            s.settle_batch(&b, &how).unwrap();
            first = false;
        }
        match s.claim_batches("1001-9", ds, 2, 4, false).unwrap()[..] {
            [Claim::Held(n)] => n,
            [] => 0,
            _ => panic!("a refused group was claimed again"),
        }
    }

    /// Whether anything was written to the readings trees since `subs`.
    fn written(subs: &mut [crate::store::engine::Watch]) -> bool {
        subs.iter_mut()
            .any(|sub| sub.wrote_within(std::time::Duration::from_millis(50)))
    }

    #[test]
    fn a_refused_group_waits_without_a_write_and_goes_when_the_member_changes() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let ds = seed(&s, 5);
        // The rows sent back unsent are held by the record, not sent.
        assert_eq!(refuse_first(&s, &ds), 3);
        let g = s.held_group("1001-9", &ds).unwrap().unwrap();
        assert_eq!(g.tries, 1);
        assert_eq!(g.why, "Mydex refused: Permission Denied");
        assert_eq!(s.record_counts().unwrap().held, 5);
        // Looking at them again and again writes nothing.
        let mut subs = vec![s.readings.watch(&[]), s.rdx.watch(&[])];
        for _ in 0..20 {
            assert_eq!(s.release_holds(3_600_000, 2).unwrap(), (0, 0));
        }
        assert!(
            !written(&mut subs),
            "a look at held rows wrote to the store"
        );
        // New readings for the member wait too, without a POST.
        assert!(
            s.claim_batches("1001-9", &ds, 2, 4, false)
                .unwrap()
                .is_empty()
        );

        // A status check finds them connected: one batch goes as a probe.
        s.record_check(
            "1001-9",
            1,
            crate::store::CheckResult {
                active: true,
                version: None,
            },
        )
        .unwrap();
        assert_eq!(s.release_holds(3_600_000, 2).unwrap(), (2, 0));
        assert!(written(&mut subs), "the watch sees a release");
        let claims = s.claim_batches("1001-9", &ds, 2, 4, false).unwrap();
        assert_eq!(claims.len(), 1);
        let Claim::Batch(b, _) = &claims[0] else {
            panic!("not a batch")
        };
        s.settle_batch(b, &Settle::Delivered).unwrap();
        // Delivered: the record is gone and the rest go at once.
        assert!(s.held_group("1001-9", &ds).unwrap().is_none());
        assert_eq!(s.release_holds(3_600_000, 2).unwrap(), (3, 0));
        assert_eq!(s.record_counts().unwrap().queued, 3);
    }

    #[test]
    fn a_refused_group_is_tried_after_its_backoff_and_fails_after_hold_for() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let ds = seed(&s, 3);
        assert_eq!(refuse_first(&s, &ds), 1);
        let since = |s: &Core| {
            s.list_readings(RowState::Held, None, 10)
                .unwrap()
                .iter()
                .map(|r| (r.id, r.held_since_ms))
                .collect::<Vec<_>>()
        };
        let first_held = since(&s);
        assert_eq!(first_held.len(), 3);
        // The backoff is over (written as if a minute had passed).
        let mut g = s.held_group("1001-9", &ds).unwrap().unwrap();
        g.next_ms = 0;
        s.rdx
            .insert(
                super::super::holds::held_group_key("1001-9", &ds),
                encode(&g),
            )
            .unwrap();
        assert_eq!(s.release_holds(3_600_000, 2).unwrap(), (2, 0));
        assert_eq!(refuse_first(&s, &ds), 0);
        let g = s.held_group("1001-9", &ds).unwrap().unwrap();
        assert_eq!(g.tries, 2);
        assert!(g.next_ms >= now_ms() + 110_000, "two minutes: {g:?}");
        assert_eq!(s.release_holds(3_600_000, 2).unwrap(), (0, 0));
        // hold_for counts from the first hold, not from the last try.
        assert_eq!(since(&s), first_held);
        assert_eq!(s.release_holds(0, 2).unwrap(), (0, 3));
        let failed = s.list_readings(RowState::Failed, None, 10).unwrap();
        assert!(failed.iter().all(|r| r.reason.as_deref()
            == Some("held for longer than hold_for: Mydex refused: Permission Denied")));
        // No record outlives its rows.
        assert!(s.held_group("1001-9", &ds).unwrap().is_none());
    }
}
