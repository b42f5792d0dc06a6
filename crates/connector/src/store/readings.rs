//! Readings to deliver: tree `readings` holds each row, sealed,
//! under a key that says where it stands (queued by member and dataset,
//! held, failed; `schema.rs` has the whole schema), and tree `rdx`
//! its unique keys, groups, batches, refused tries, file progress and
//! counters. A reading costs three writes from intake to delivery: its row
//! and its `u/` key when stored, and the row's removal when delivered; a
//! claim writes only its batch records. Every other move goes through
//! [`tx_move`], guarded by `RowState::allowed`.

use std::collections::{BTreeMap, HashMap};

use super::engine::Transactional;
use super::engine::TxTable;
use serde::{Deserialize, Serialize};

use super::engine::abort;

use super::codec::decode_u64;
use super::error::{Result, StoreError, TxResult};
use super::reading_groups::GroupIds;
use super::schema::readings::{Slot, counter_key, progress_key, state_prefix, unique_key};
use super::sealed::{MEMBERS, READINGS, open, seal, tx_open};
use super::{Core, bump, now_ms};
use crate::domain::{DatasetName, Grants, MemberRef, MemberStatus, Reading, RowState};

/// A reading as the store keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadingRow {
    pub id: u64,
    /// Who it is for, as the row named them.
    pub member: MemberRef,
    /// `c:{connection_id}`, `x:{mydexid}` or `r:{sha256(external_ref)}`.
    pub subject: String,
    pub connection_id: Option<String>,
    pub dataset: DatasetName,
    pub external_id: String,
    pub fields: BTreeMap<String, String>,
    pub state: RowState,
    /// Why it is held or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The batch a row was claimed into, as the layout before this one
    /// kept it on the row (read by the migration; a batch now names its
    /// rows, `b/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
    /// `FILE:LINE` or `api`.
    pub source: String,
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_ms: Option<u64>,
    /// The row's id in the PDS, as the layout before this one kept it for
    /// a delivered row (a delivered row is no longer kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pds_id: Option<String>,
}

/// Where a new reading goes, decided by [`Resolver::place`].
#[derive(Debug, Clone)]
pub struct Placement {
    pub subject: String,
    pub connection_id: Option<String>,
    pub state: RowState,
    pub reason: Option<String>,
}

/// A reading ready to store.
#[derive(Debug, Clone)]
pub struct NewReading {
    pub reading: Reading,
    pub dataset: DatasetName,
    pub placement: Placement,
    pub source: String,
}

/// What became of one reading offered to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadingOutcome {
    Stored {
        id: u64,
        state: RowState,
    },
    /// A reading with this `external_id` is already stored for the member
    /// and dataset.
    Duplicate(u64),
}

/// The `status.records` counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecordCounts {
    pub queued: u64,
    pub in_flight: u64,
    pub unknown: u64,
    pub delivered: u64,
    pub held: u64,
    pub failed: u64,
}

/// The subject of a member reference: no external_ref in plain text, but
/// its keyed hash (`MailKeys::keyed`), which cannot be tested against
/// guesses without the store's key. Rows stored before keep their unkeyed
/// `r:{sha256}` subject; it is read back from the row, never recomputed.
pub fn subject_of(keys: &super::MailKeys, member: &MemberRef) -> String {
    match member {
        MemberRef::ConnectionId(c) => format!("c:{c}"),
        MemberRef::MydexId(x) => format!("x:{}", x.to_lowercase()),
        MemberRef::ExternalRef(r) => format!("r:{}", keys.keyed("external_ref", r)),
    }
}

/// Counter changes gathered over a transaction's rows and written once at
/// its end ([`Tally::apply`]): a 50-row batch moves two counters once,
/// not a hundred times. Made inside the transaction's closure, so a retry
/// starts from nothing.
#[derive(Default)]
pub(super) struct Tally([i64; 6]);

fn tally_slot(s: RowState) -> usize {
    match s {
        RowState::Queued => 0,
        RowState::InFlight => 1,
        RowState::Unknown => 2,
        RowState::Delivered => 3,
        RowState::Held => 4,
        RowState::Failed => 5,
    }
}

impl Tally {
    pub(super) fn moved(&mut self, from: RowState, to: RowState, n: usize) {
        self.0[tally_slot(from)] -= n as i64;
        self.0[tally_slot(to)] += n as i64;
    }

    pub(super) fn add(&mut self, s: RowState) {
        self.0[tally_slot(s)] += 1;
    }

    pub(super) fn remove(&mut self, s: RowState) {
        self.0[tally_slot(s)] -= 1;
    }

    pub(super) fn apply(&self, x: &TxTable<'_>) -> TxResult<()> {
        for s in RowState::ALL {
            let d = self.0[tally_slot(s)];
            if d != 0 {
                bump(x, &counter_key(s), d)?;
            }
        }
        Ok(())
    }
}

/// Where a row goes in a [`tx_move`]: its new state, and for `Queued` the
/// group it is queued in.
#[derive(Clone, Copy)]
pub(super) struct MoveTo {
    pub state: RowState,
    pub group: Option<u64>,
}

impl MoveTo {
    pub(super) fn state(state: RowState) -> Self {
        Self { state, group: None }
    }
}

/// Move a row kept at `from` (queued and in no batch, held, or failed) to
/// `to` inside a transaction: state guard, the row rewritten at the key of
/// its new state, its count added to `tally` (the caller applies it);
/// `change` edits it on the way. The trees are `(readings, rdx)`.
pub(super) fn tx_move(
    sealer: &super::Sealer,
    r: &TxTable<'_>,
    from: Slot,
    expected: &[RowState],
    to: MoveTo,
    change: impl FnOnce(&mut ReadingRow),
    tally: &mut Tally,
) -> TxResult<Option<ReadingRow>> {
    let key = from.key();
    let Some(bytes) = r.get(&key)? else {
        return Ok(None);
    };
    let mut row: ReadingRow = tx_open(sealer, READINGS, &key, &bytes, "reading")?;
    if !expected.contains(&row.state) || !row.state.allowed(to.state) {
        return Ok(None);
    }
    let next = match Slot::for_state(to.state, to.group, row.id) {
        Some(s) => Some(s),
        None if to.state == RowState::Delivered => None,
        None => {
            return Err(abort(StoreError::Corrupt(format!(
                "reading {} cannot be queued without a group",
                row.id
            ))));
        }
    };
    let from_state = row.state;
    change(&mut row);
    row.state = to.state;
    row.batch = None;
    if next != Some(from) {
        r.remove(key)?;
    }
    if let Some(slot) = next {
        let k = slot.key();
        r.insert(k.as_slice(), seal(sealer, READINGS, &k, &row))?;
    }
    tally.moved(from_state, to.state, 1);
    Ok(Some(row))
}

impl Core {
    /// Store new readings (and the file's progress) in one transaction;
    /// a reading already stored for the member and dataset is a duplicate.
    /// Two writes a reading: its row, under its group, and its `u/` key.
    pub fn insert_readings(
        &self,
        batch: &[NewReading],
        progress: Option<(&str, u64)>,
    ) -> Result<Vec<ReadingOutcome>> {
        let ids = batch
            .iter()
            .map(|_| self.db.next_id())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let now = now_ms();
        let rows: Vec<ReadingRow> = batch
            .iter()
            .zip(&ids)
            .map(|(new, id)| new_row(new, *id, now))
            .collect();
        let queued = || {
            rows.iter()
                .filter_map(|r| match (r.state, &r.connection_id) {
                    (RowState::Queued, Some(c)) => Some((c.as_str(), &r.dataset)),
                    _ => None,
                })
        };
        // A group made before and erased since (`people forget`) between
        // the reservation and the transaction: reserve again.
        for _ in 0..3 {
            let groups = self.reserve_groups(queued())?;
            let sealed = self.seal_ahead(&rows, &groups);
            let stored = (&self.readings, &self.rdx).transaction(|(r, x)| {
                let mut of = HashMap::new();
                for (conn, ds) in queued() {
                    match groups.tx_group(x, conn, ds)? {
                        Some(g) => of.insert((conn, ds), g),
                        None => return Ok(None),
                    };
                }
                let mut out = Vec::with_capacity(rows.len());
                let mut tally = Tally::default();
                for ((row, new), sealed) in rows.iter().zip(batch).zip(&sealed) {
                    let ukey = unique_key(&row.subject, &row.dataset, &new.reading.external_id);
                    if let Some(existing) = x.get(&ukey)? {
                        out.push(ReadingOutcome::Duplicate(decode_u64(&existing)));
                        continue;
                    }
                    let group = row
                        .connection_id
                        .as_deref()
                        .and_then(|c| of.get(&(c, &row.dataset)).copied());
                    let Some(slot) = Slot::for_state(row.state, group, row.id) else {
                        continue;
                    };
                    let k = slot.key();
                    let v = match sealed {
                        Some((sk, v)) if *sk == k => v.clone(),
                        _ => seal(&self.sealer, READINGS, &k, row),
                    };
                    r.insert(k, v)?;
                    x.insert(ukey, row.id.to_be_bytes())?;
                    tally.add(row.state);
                    out.push(ReadingOutcome::Stored {
                        id: row.id,
                        state: row.state,
                    });
                }
                tally.apply(x)?;
                if let Some((file, line)) = progress {
                    x.insert(progress_key(file), line.to_be_bytes())?;
                }
                Ok(Some(out))
            })?;
            if let Some(out) = stored {
                return Ok(out);
            }
        }
        Err(StoreError::Refused(
            "a reading's member and dataset were erased while it was stored; try again".into(),
        ))
    }

    /// New rows sealed before their transaction, which holds the engine's lock,
    /// under the key each will most likely have (and its key).
    fn seal_ahead(
        &self,
        rows: &[ReadingRow],
        groups: &GroupIds,
    ) -> Vec<Option<(Vec<u8>, Vec<u8>)>> {
        rows.iter()
            .map(|row| {
                let group = row
                    .connection_id
                    .as_deref()
                    .and_then(|c| groups.likely(c, &row.dataset));
                let k = Slot::for_state(row.state, group, row.id)?.key();
                let v = seal(&self.sealer, READINGS, &k, row);
                Some((k, v))
            })
            .collect()
    }

    /// The last line of `file` whose readings are stored.
    pub fn readings_progress(&self, file: &str) -> Result<Option<u64>> {
        Ok(self.rdx.get(progress_key(file))?.map(|v| decode_u64(&v)))
    }

    /// Whether a readings file is being taken in now (its `q/` progress
    /// mark is there from its first stored rows until it is done).
    pub fn readings_intake_running(&self) -> Result<bool> {
        Ok(self
            .rdx
            .scan_prefix(super::schema::readings::PROGRESS_PREFIX)
            .next()
            .transpose()?
            .is_some())
    }

    pub fn clear_readings_progress(&self, file: &str) -> Result<()> {
        self.rdx.remove(progress_key(file))?;
        Ok(())
    }

    pub fn record_counts(&self) -> Result<RecordCounts> {
        let n = |s| -> Result<u64> {
            Ok(self
                .rdx
                .get(counter_key(s).encode())?
                .map(|v| decode_u64(&v))
                .unwrap_or(0))
        };
        Ok(RecordCounts {
            queued: n(RowState::Queued)?,
            in_flight: n(RowState::InFlight)?,
            unknown: n(RowState::Unknown)?,
            delivered: n(RowState::Delivered)?,
            held: n(RowState::Held)?,
            failed: n(RowState::Failed)?,
        })
    }

    /// Held or failed rows in id order after `after`.
    pub fn list_readings(
        &self,
        state: RowState,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReadingRow>> {
        let Some(prefix) = state_prefix(state) else {
            return Ok(Vec::new());
        };
        let from = after.map_or(0, |a| a.saturating_add(1));
        let start = match state {
            RowState::Held => Slot::Held(from),
            _ => Slot::Failed(from),
        };
        let mut out = Vec::new();
        for item in self.readings.range(start.key()..) {
            let (k, v) = item?;
            if k.first() != Some(&prefix) || out.len() >= limit {
                break;
            }
            out.push(open(&self.sealer, READINGS, &k, &v, "reading")?);
        }
        Ok(out)
    }

    /// Set a member's `permissions` (the `fields` of their callback), for
    /// members imported with `import_members` (tests, benchmarks, seeding).
    pub fn set_member_permissions(
        &self,
        connection_id: &str,
        fields: serde_json::Value,
    ) -> Result<bool> {
        let Some(mut m) = self.member(connection_id)? else {
            return Ok(false);
        };
        m.permissions = fields;
        let conn = connection_id.as_bytes();
        self.members
            .insert(conn, super::sealed::seal(&self.sealer, MEMBERS, conn, &m))?;
        Ok(true)
    }
}

fn new_row(new: &NewReading, id: u64, now: u64) -> ReadingRow {
    let p = &new.placement;
    ReadingRow {
        id,
        member: new.reading.member.clone(),
        subject: p.subject.clone(),
        connection_id: p.connection_id.clone(),
        dataset: new.dataset.clone(),
        external_id: new.reading.external_id.clone(),
        fields: new.reading.fields.clone(),
        state: p.state,
        reason: p.reason.clone(),
        batch: None,
        source: new.source.clone(),
        created_ms: now,
        held_since_ms: (p.state == RowState::Held).then_some(now),
        delivered_ms: None,
        pds_id: None,
    }
}

/// Where readings go: members by connection id, MydexID and external
/// ref, and invitees not connected yet. Built once per file (or request)
/// from the store.
pub struct Resolver {
    store: Core,
    by_ref: Option<HashMap<String, String>>,
    invited_refs: Option<std::collections::HashSet<String>>,
    invited_ids: Option<std::collections::HashSet<String>>,
    /// Placements of members already looked up (connection id, dataset),
    /// so a file naming each member many times reads each once; bounded.
    placed: HashMap<(String, DatasetName), Option<Placement>>,
}

/// The most placements a resolver remembers before it starts afresh.
const PLACED_MAX: usize = 10_000;

impl Resolver {
    pub fn new(store: &Core) -> Self {
        Self {
            store: store.clone(),
            by_ref: None,
            invited_refs: None,
            invited_ids: None,
            placed: HashMap::new(),
        }
    }

    /// The connection id a reference names, if the member is known.
    pub fn connection_of(&mut self, member: &MemberRef) -> Result<Option<String>> {
        match member {
            MemberRef::ConnectionId(c) => Ok(self.store.member(c)?.map(|m| m.connection_id)),
            MemberRef::MydexId(x) => Ok(self
                .store
                .idx
                .get(super::schema::IdxKey::MydexId(x.to_string()).encode())?
                .map(|v| String::from_utf8_lossy(&v).into_owned())),
            MemberRef::ExternalRef(r) => {
                if self.by_ref.is_none() {
                    let mut map = HashMap::new();
                    for m in self.store.all_members() {
                        let m = m?;
                        if let Some(r) = m.external_ref {
                            map.insert(r, m.connection_id);
                        }
                    }
                    self.by_ref = Some(map);
                }
                Ok(self.by_ref.as_ref().and_then(|m| m.get(r).cloned()))
            }
        }
    }

    fn invited(&mut self, member: &MemberRef) -> Result<bool> {
        if self.invited_refs.is_none() {
            let (mut refs, mut ids) = (Default::default(), Default::default());
            for inv in self.store.all_invitations() {
                let inv = inv?;
                if let Some(r) = &inv.invitee.external_ref {
                    std::collections::HashSet::insert(&mut refs, r.clone());
                }
                if let Some(m) = &inv.invitee.mydexid {
                    std::collections::HashSet::insert(&mut ids, m.as_str().to_lowercase());
                }
            }
            (self.invited_refs, self.invited_ids) = (Some(refs), Some(ids));
        }
        Ok(match member {
            MemberRef::ExternalRef(r) => self.invited_refs.as_ref().is_some_and(|s| s.contains(r)),
            MemberRef::MydexId(x) => self
                .invited_ids
                .as_ref()
                .is_some_and(|s| s.contains(&x.to_lowercase())),
            MemberRef::ConnectionId(_) => false,
        })
    }

    /// Where a reading for `member` into `dataset` goes now; `None`: no such
    /// member or invitee (rejected).
    pub fn place(
        &mut self,
        member: &MemberRef,
        dataset: &DatasetName,
    ) -> Result<Option<Placement>> {
        if let MemberRef::ConnectionId(c) = member
            && let Some(p) = self.placed.get(&(c.clone(), dataset.clone()))
        {
            return Ok(p.clone());
        }
        if let Some(conn) = self.connection_of(member)? {
            let key = (conn.clone(), dataset.clone());
            if let Some(p) = self.placed.get(&key) {
                return Ok(p.clone());
            }
            let placement = self.store.member(&conn)?.map(|m| {
                let (state, reason) = member_gate(&m, dataset);
                Placement {
                    subject: format!("c:{conn}"),
                    connection_id: Some(conn),
                    state,
                    reason,
                }
            });
            if self.placed.len() >= PLACED_MAX {
                self.placed.clear();
            }
            self.placed.insert(key, placement.clone());
            return Ok(placement);
        }
        if self.invited(member)? {
            return Ok(Some(Placement {
                subject: subject_of(&self.store.mail_keys, member),
                connection_id: None,
                state: RowState::Held,
                reason: Some("not connected yet".into()),
            }));
        }
        Ok(None)
    }
}

/// Whether a member can take rows of `dataset` now: queued, or held with why.
pub fn member_gate(m: &crate::domain::Member, dataset: &DatasetName) -> (RowState, Option<String>) {
    if m.status == MemberStatus::Disconnected {
        return (RowState::Held, Some("disconnected".into()));
    }
    if !Grants::from_fields(&m.permissions).can_write(dataset.as_str()) {
        return (
            RowState::Held,
            Some(format!("no write access to {dataset}")),
        );
    }
    (RowState::Queued, None)
}
