//! Batches of readings on their way to a PDS: the store's half of the
//! exactly-once protocol (README "Delivering readings"). A batch is
//! claimed (rows `queued → in_flight`, `b/{id}` written) in one
//! transaction, made durable before its POST, and settled by what Mydex
//! answered: delivered, back to the queue (nothing was sent), held, failed,
//! or unknown — then read back, and only the rows Mydex does not hold go
//! back to the queue. Held rows are released when their cause may have
//! cleared and fail after `hold_for` (`holds.rs`).

use std::collections::HashMap;

use super::engine::Transactional;
use serde::{Deserialize, Serialize};

use super::codec::{decode, decode_u64, encode, tx_decode};
use super::error::Result;
use super::holds::{tx_clear_group, tx_refuse_group};
use super::readings::{ReadingRow, Tally, group_prefix, row_key, tx_move_tallied};
use super::sealed::{READINGS, tx_open};
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

/// A batch not settled yet (`b/{id}` in `rdx`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub id: u64,
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

fn batch_key(id: u64) -> Vec<u8> {
    let mut k = b"b/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// What a claim found.
pub enum Claim {
    Batch(Batch, Vec<ReadingRow>),
    /// The member can no longer take these rows; they were held.
    Held(usize),
    Empty,
}

impl Core {
    /// Groups of queued rows (connection id, dataset), at most `limit`.
    pub fn work_groups(&self, limit: usize) -> Result<Vec<(String, DatasetName)>> {
        self.groups_from(b"g/".to_vec(), None, limit)
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
        let mut from = group_prefix(conn, ds.as_str());
        from.push(0xff);
        let mut out = self.groups_from(from.clone(), None, limit)?;
        if out.len() < limit {
            let more = self.groups_from(b"g/".to_vec(), Some(&from), limit - out.len())?;
            out.extend(
                more.into_iter()
                    .filter(|g| !out.contains(g))
                    .collect::<Vec<_>>(),
            );
        }
        Ok(out)
    }

    /// Groups from key `start` (before key `end`, if given), at most `limit`.
    fn groups_from(
        &self,
        mut start: Vec<u8>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(String, DatasetName)>> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((k, _)) = self.rdx.range(start.clone()..).next().transpose()? else {
                break;
            };
            if !k.starts_with(b"g/") || end.is_some_and(|e| k.as_ref() >= e) {
                break;
            }
            let text = String::from_utf8_lossy(&k[2..]);
            let mut parts = text.splitn(3, '\x1f');
            let (Some(conn), Some(ds)) = (parts.next(), parts.next()) else {
                break;
            };
            let mut next = group_prefix(conn, ds);
            next.push(0xff);
            if let Ok(ds) = DatasetName::parse(ds) {
                out.push((conn.to_string(), ds));
            }
            start = next;
        }
        Ok(out)
    }

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
        let prefix = group_prefix(conn, dataset.as_str());
        let mut ids: Vec<u64> = self
            .rdx
            .scan_prefix(&prefix)
            .keys()
            .take(max * count)
            .map(|k| k.map(|k| decode_u64(&k[prefix.len()..])))
            .collect::<std::result::Result<_, _>>()?;
        if full_only {
            ids.truncate(ids.len() / max * max);
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if let (RowState::Held, Some(why)) = self.claim_gate(conn, dataset)? {
            let now = now_ms();
            let n = self.move_rows(&ids, &[RowState::Queued], RowState::Held, |r| {
                r.reason = Some(why.clone());
                r.held_since_ms = Some(r.held_since_ms.unwrap_or(now));
            })?;
            return Ok(vec![Claim::Held(n)]);
        }
        let batch_ids = ids
            .chunks(max)
            .map(|_| self.db.next_id())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let now = now_ms();
        (&self.readings, &self.rdx).transaction(|(r, x)| {
            let mut tally = Tally::default();
            let mut claims = Vec::new();
            for (chunk, id) in ids.chunks(max).zip(&batch_ids) {
                let mut rows = Vec::new();
                for rid in chunk {
                    let moved = tx_move_tallied(
                        &self.sealer,
                        (r, x),
                        *rid,
                        &[RowState::Queued],
                        RowState::InFlight,
                        |row| row.batch = Some(*id),
                        &mut tally,
                    )?;
                    rows.extend(moved);
                }
                if rows.is_empty() {
                    continue;
                }
                let batch = Batch {
                    id: *id,
                    connection_id: conn.to_string(),
                    dataset: dataset.clone(),
                    rows: rows.iter().map(|r| r.id).collect(),
                    state: BatchState::InFlight,
                    posted_ms: now,
                    attempts: 0,
                    next_attempt_ms: now,
                    last_error: None,
                };
                x.insert(batch_key(*id), encode(&batch))?;
                claims.push(Claim::Batch(batch, rows));
            }
            tally.apply(x)?;
            Ok(claims)
        })
    }

    /// Move rows (those still in one of `from`) to `to`; how many moved.
    pub fn move_rows(
        &self,
        ids: &[u64],
        from: &[RowState],
        to: RowState,
        change: impl Fn(&mut ReadingRow),
    ) -> Result<usize> {
        (&self.readings, &self.rdx).transaction(|(r, x)| {
            let (mut n, mut tally) = (0, Tally::default());
            for id in ids {
                n += tx_move_tallied(&self.sealer, (r, x), *id, from, to, &change, &mut tally)?
                    .is_some() as usize;
            }
            tally.apply(x)?;
            Ok(n)
        })
    }

    /// Settle a batch by its outcome (one transaction).
    pub fn settle_batch(&self, batch: &Batch, how: &Settle) -> Result<()> {
        let now = now_ms();
        let live = [RowState::InFlight, RowState::Unknown];
        (&self.readings, &self.rdx).transaction(|(r, x)| {
            let Some(bytes) = x.get(batch_key(batch.id))? else {
                return Ok(());
            };
            let mut stored: Batch = tx_decode(&bytes, "batch")?;
            let (from, to): (&[RowState], RowState) = match how {
                Settle::Delivered => (&live, RowState::Delivered),
                Settle::Requeue => (&live, RowState::Queued),
                Settle::Hold(_) => (&live, RowState::Held),
                Settle::Fail(_) => (&live, RowState::Failed),
                Settle::Unknown { .. } => (&[RowState::InFlight], RowState::Unknown),
            };
            let mut tally = Tally::default();
            for id in &stored.rows {
                let change = |row: &mut ReadingRow| match how {
                    Settle::Delivered => {
                        row.delivered_ms = Some(now);
                        row.batch = None;
                    }
                    Settle::Requeue => row.batch = None,
                    Settle::Hold(why) => {
                        row.reason = Some(why.clone());
                        row.held_since_ms = Some(row.held_since_ms.unwrap_or(now));
                        row.batch = None;
                    }
                    Settle::Fail(why) => {
                        row.reason = Some(why.clone());
                        row.batch = None;
                    }
                    Settle::Unknown { .. } => {}
                };
                tx_move_tallied(&self.sealer, (r, x), *id, from, to, change, &mut tally)?;
            }
            tally.apply(x)?;
            let group = (stored.connection_id.as_str(), &stored.dataset);
            match how {
                Settle::Hold(why) => tx_refuse_group(x, group, stored.posted_ms, why)?,
                Settle::Delivered => tx_clear_group(x, group)?,
                _ => {}
            }
            match how {
                Settle::Unknown {
                    next_attempt_ms,
                    why,
                } => {
                    stored.state = BatchState::Unknown;
                    stored.attempts += 1;
                    stored.next_attempt_ms = *next_attempt_ms;
                    stored.last_error = Some(why.clone());
                    x.insert(batch_key(batch.id), encode(&stored))?;
                }
                _ => {
                    x.remove(batch_key(batch.id))?;
                }
            }
            Ok(())
        })
    }

    /// Settle an unknown batch by what a read-back found: rows whose
    /// `external_id` Mydex holds are delivered (with its row id), the
    /// others go back to the queue.
    pub fn settle_read_back(&self, batch: &Batch, found: &HashMap<String, String>) -> Result<()> {
        let now = now_ms();
        let live = [RowState::InFlight, RowState::Unknown];
        (&self.readings, &self.rdx).transaction(|(r, x)| {
            if x.get(batch_key(batch.id))?.is_none() {
                return Ok(());
            }
            let mut tally = Tally::default();
            for id in &batch.rows {
                let Some(bytes) = r.get(row_key(*id))? else {
                    continue;
                };
                let row: ReadingRow =
                    tx_open(&self.sealer, READINGS, &row_key(*id), &bytes, "reading")?;
                let found = found.get(&row.external_id);
                let to = match found {
                    Some(_) => RowState::Delivered,
                    None => RowState::Queued,
                };
                let change = |row: &mut ReadingRow| {
                    if let Some(pds_id) = found {
                        row.delivered_ms = Some(now);
                        row.pds_id = Some(pds_id.clone());
                    }
                    row.batch = None;
                };
                tx_move_tallied(&self.sealer, (r, x), *id, &live, to, change, &mut tally)?;
            }
            tally.apply(x)?;
            if !found.is_empty() {
                tx_clear_group(x, (batch.connection_id.as_str(), &batch.dataset))?;
            }
            x.remove(batch_key(batch.id))?;
            Ok(())
        })
    }

    /// Every batch not settled. At start, in-flight ones become unknown
    /// (their POST may have reached Mydex), read back after `settle_ms`.
    pub fn unfinished_batches(&self, at_start: bool, settle_ms: u64) -> Result<Vec<Batch>> {
        let mut out = Vec::new();
        for item in self.rdx.scan_prefix(b"b/") {
            let (_, v) = item?;
            let mut b: Batch = decode(&v, "batch")?;
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
