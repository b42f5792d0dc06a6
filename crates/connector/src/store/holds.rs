//! Held readings and when they go again. A row is held for a cause the store
//! can see (not connected yet, disconnected, no write grant: released as
//! soon as the member resolves to a queue) or because a try was refused
//! (Mydex's 403 about the member, no key to send with). The second kind
//! leaves a `r/{connection}\x1f{dataset}` record in tree `rdx`
//! (`domain::HeldGroup`): the group's rows wait, without a write, until the
//! member's record changes or the backoff is over, and then only one batch
//! of them goes, as a probe; its delivery clears the record and the rest
//! follow. Rows held longer than `hold_for` fail. A look at the held rows
//! writes only rows whose state (or shown reason) changes.

use std::collections::{HashMap, HashSet};

use super::engine::TxTable;

use super::codec::{decode, decode_u64, encode, tx_decode};
use super::engine::Transactional;
use super::error::{Result, TxResult};
use super::readings::{MoveTo, Placement, ReadingRow, Resolver, Tally, member_gate, tx_move};
use super::schema::readings::{Slot, queue_prefix, state_prefix, unique_key};
use super::sealed::{READINGS, open, seal, tx_open};
use super::{Core, now_ms};
use crate::domain::{DatasetName, HeldGroup, RowState};

/// The key of a member and dataset's refused-try record.
pub(super) fn held_group_key(conn: &str, dataset: &DatasetName) -> Vec<u8> {
    super::schema::readings::held_group_key(conn, dataset.as_str())
}

/// Record a refused try of the group claimed at `tried_ms` (the batch's
/// claim): one more try counted, the next one after the backoff.
pub(super) fn tx_refuse_group(
    x: &TxTable<'_>,
    (conn, dataset): (&str, &DatasetName),
    tried_ms: u64,
    why: &str,
) -> TxResult<()> {
    let key = held_group_key(conn, dataset);
    let prev: Option<HeldGroup> = x
        .get(&key)?
        .map(|v| tx_decode(&v, "held group"))
        .transpose()?;
    let group = HeldGroup::refused(prev.as_ref(), tried_ms, now_ms(), why);
    x.insert(key, encode(&group))?;
    Ok(())
}

/// The group took a batch: its record goes (written only if there is one).
pub(super) fn tx_clear_group(
    x: &TxTable<'_>,
    (conn, dataset): (&str, &DatasetName),
) -> TxResult<()> {
    let key = held_group_key(conn, dataset);
    if x.get(&key)?.is_some() {
        x.remove(key)?;
    }
    Ok(())
}

/// How many rows of one group a look at the held rows may release.
#[derive(Clone, Copy)]
enum Budget {
    /// No refused try on record: all of them.
    All,
    /// A refused try on record: this many more (a probe), or none yet.
    Left(usize),
}

/// One look at the held rows: per group, what may go, and which groups
/// lost their last held row to `hold_for`.
struct Pass<'a> {
    store: &'a Core,
    now: u64,
    probe: usize,
    budgets: HashMap<(String, DatasetName), Budget>,
    failed: HashSet<(String, DatasetName)>,
    still_held: HashSet<(String, DatasetName)>,
}

impl Pass<'_> {
    /// Whether one more row of `(conn, dataset)` may go back to the queue.
    fn may_release(&mut self, conn: &str, dataset: &DatasetName) -> Result<bool> {
        let key = (conn.to_string(), dataset.clone());
        let budget = match self.budgets.get(&key) {
            Some(b) => *b,
            None => {
                let b = match self.store.held_group(conn, dataset)? {
                    None => Budget::All,
                    Some(g) => {
                        let updated = self.store.member(conn)?.map_or(0, |m| m.updated_ms);
                        match g.due(self.now, updated) {
                            Some(_) => Budget::Left(self.probe.max(1)),
                            None => Budget::Left(0),
                        }
                    }
                };
                self.budgets.insert(key.clone(), b);
                b
            }
        };
        Ok(match budget {
            Budget::All => true,
            Budget::Left(0) => {
                self.still_held.insert(key);
                false
            }
            Budget::Left(n) => {
                self.budgets.insert(key, Budget::Left(n - 1));
                true
            }
        })
    }

    fn kept(&mut self, row: &ReadingRow) {
        if let Some(c) = &row.connection_id {
            self.still_held.insert((c.clone(), row.dataset.clone()));
        }
    }

    /// Records of groups whose rows all failed this pass, with nothing
    /// queued either: removed, so no record outlives its rows.
    fn clear_orphans(&self) -> Result<()> {
        for (conn, ds) in self.failed.difference(&self.still_held) {
            let key = held_group_key(conn, ds);
            let queued = match self.store.group_of(conn, ds.as_str())? {
                Some(g) => self
                    .store
                    .readings
                    .scan_prefix(queue_prefix(g))
                    .next()
                    .is_some(),
                None => false,
            };
            if !queued && self.store.rdx.get(&key)?.is_some() {
                self.store.rdx.remove(key)?;
            }
        }
        Ok(())
    }
}

impl Core {
    /// The refused-try record of a member and dataset, if any.
    pub fn held_group(&self, conn: &str, dataset: &DatasetName) -> Result<Option<HeldGroup>> {
        self.rdx
            .get(held_group_key(conn, dataset))?
            .map(|v| decode(&v, "held group"))
            .transpose()
    }

    /// Whether a member can take rows of `dataset` now (queued), or why
    /// not (held): [`member_gate`], then a refused try still waiting.
    pub(super) fn claim_gate(
        &self,
        conn: &str,
        dataset: &DatasetName,
    ) -> Result<(RowState, Option<String>)> {
        let Some(m) = self.member(conn)? else {
            return Ok((RowState::Held, Some("not connected".into())));
        };
        let gate = member_gate(&m, dataset);
        if gate.0 == RowState::Queued
            && let Some(g) = self.held_group(conn, dataset)?
            && g.due(now_ms(), m.updated_ms).is_none()
        {
            return Ok((RowState::Held, Some(g.why)));
        }
        Ok(gate)
    }

    /// Held rows whose cause may have cleared go back to the queue (at most
    /// `probe` of a group whose last try was refused); rows held longer than
    /// `hold_for_ms` fail. Returns (released, failed).
    pub fn release_holds(&self, hold_for_ms: u64, probe: usize) -> Result<(usize, usize)> {
        let mut pass = Pass {
            store: self,
            now: now_ms(),
            probe,
            budgets: HashMap::new(),
            failed: HashSet::new(),
            still_held: HashSet::new(),
        };
        let mut resolver = Resolver::new(self);
        let (mut released, mut failed) = (0, 0);
        let held = [state_prefix(RowState::Held).unwrap_or(b'h')];
        for item in self.readings.scan_prefix(held) {
            let (k, v) = item?;
            let Some(Slot::Held(id)) = Slot::parse(&k) else {
                continue;
            };
            let row: ReadingRow = open(&self.sealer, READINGS, &k, &v, "reading")?;
            if row.held_since_ms.unwrap_or(row.created_ms) + hold_for_ms <= pass.now {
                failed += self.fail_held(&row)?;
                if let Some(c) = &row.connection_id {
                    pass.failed.insert((c.clone(), row.dataset.clone()));
                }
                continue;
            }
            match resolver.place(&row.member, &row.dataset)? {
                Some(p) if p.state == RowState::Queued => {
                    let conn = p.connection_id.as_deref().unwrap_or_default();
                    if pass.may_release(conn, &row.dataset)? {
                        released += self.release_one(&row, &p)? as usize;
                    }
                }
                // Still held, maybe for another reason now (connected,
                // but without write access): the reason shown follows.
                Some(p) if p.reason.is_some() && p.reason != row.reason => {
                    self.set_held_reason(id, p.reason.clone())?;
                    pass.kept(&row);
                }
                _ => pass.kept(&row),
            }
        }
        pass.clear_orphans()?;
        Ok((released, failed))
    }

    /// A held row past `hold_for`: failed, with the reason it was held.
    fn fail_held(&self, row: &ReadingRow) -> Result<usize> {
        let why = format!(
            "held for longer than hold_for: {}",
            row.reason.as_deref().unwrap_or("held")
        );
        let to = MoveTo::state(RowState::Failed);
        self.move_rows(&[Slot::Held(row.id)], &[RowState::Held], to, |r| {
            r.reason = Some(why.clone())
        })
    }

    /// A held row's reason, changed in place (its state and indexes stay).
    fn set_held_reason(&self, id: u64, reason: Option<String>) -> Result<()> {
        self.readings.transaction(|r| {
            let key = Slot::Held(id).key();
            if let Some(bytes) = r.get(&key)? {
                let mut row: ReadingRow = tx_open(&self.sealer, READINGS, &key, &bytes, "reading")?;
                if row.state == RowState::Held {
                    row.reason = reason.clone();
                    r.insert(key.as_slice(), seal(&self.sealer, READINGS, &key, &row))?;
                }
            }
            Ok(())
        })
    }

    /// One held row to the queue for the member it now resolves to; a row
    /// whose reading the member already has (by `external_id`) fails as a
    /// duplicate. `held_since_ms` stays: `hold_for` counts from the first
    /// hold, however many tries were refused since.
    fn release_one(&self, row: &ReadingRow, p: &Placement) -> Result<bool> {
        let Some(conn) = p.connection_id.as_deref() else {
            return Ok(false);
        };
        let new_key = unique_key(&p.subject, &row.dataset, &row.external_id);
        let old_key = unique_key(&row.subject, &row.dataset, &row.external_id);
        let groups = self.reserve_groups([(conn, &row.dataset)])?;
        let from = Slot::Held(row.id);
        (&self.readings, &self.rdx).transaction(|(r, x)| {
            let mut tally = Tally::default();
            if new_key != old_key
                && let Some(other) = x.get(&new_key)?
                && decode_u64(&other) != row.id
            {
                let why = format!("duplicate of reading {}", decode_u64(&other));
                let to = MoveTo::state(RowState::Failed);
                let dup = |row: &mut ReadingRow| row.reason = Some(why);
                tx_move(
                    &self.sealer,
                    r,
                    from,
                    &[RowState::Held],
                    to,
                    dup,
                    &mut tally,
                )?;
                tally.apply(x)?;
                return Ok(false);
            }
            // The group erased since the reservation: the next pass.
            let Some(group) = groups.tx_group(x, conn, &row.dataset)? else {
                return Ok(false);
            };
            let to = MoveTo {
                state: RowState::Queued,
                group: Some(group),
            };
            let queue = |row: &mut ReadingRow| {
                row.subject = p.subject.clone();
                row.connection_id = p.connection_id.clone();
                row.reason = None;
            };
            let moved = tx_move(
                &self.sealer,
                r,
                from,
                &[RowState::Held],
                to,
                queue,
                &mut tally,
            )?;
            if moved.is_some() && new_key != old_key {
                x.remove(old_key.as_slice())?;
                x.insert(new_key.as_slice(), row.id.to_be_bytes())?;
            }
            tally.apply(x)?;
            Ok(moved.is_some())
        })
    }

    /// Erase the refused-try records of a member (`people forget`).
    pub(super) fn forget_held_groups(&self, conn: &str) -> Result<()> {
        let prefix = super::schema::readings::held_groups_of_connection(conn);
        for k in self.rdx.scan_prefix(&prefix).keys() {
            self.rdx.remove(k?)?;
        }
        Ok(())
    }
}
