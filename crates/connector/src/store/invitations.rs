//! Invitations: inserting new ones (one person once per campaign while the
//! earlier invitation is open), compare-and-swap transitions, and the work
//! index the dispatcher walks.

use super::engine::{Transactional, TxTable, abort};

use super::crypto::Sealer;
use super::open_index;
use super::schema::{self, Counter, IdxKey};
use super::sealed::{INVITATIONS, open, seal, tx_open};
use super::work_index;
use super::{Core, Invitation, Kind, Result, State, StoreError, TxResult, bump, id_key, now_ms};
use crate::domain::{Invitee, LinkingToken};

pub struct NewInvitation {
    pub campaign: String,
    pub kind: Kind,
    pub version: u32,
    pub invitee: Invitee,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted(u64),
    /// The same person already has an open invitation in this campaign.
    Duplicate(u64),
    /// The person is on the suppression list: not invited.
    Suppressed(super::suppression_record::SuppressionSource),
}

fn counter_key(state: State) -> Counter {
    Counter::Invitations(state)
}

/// Invitations of one campaign in one state (`/status`, `/metrics`), kept
/// beside the totals so a scrape never walks the invitations.
pub(super) fn campaign_counter_key(campaign: &str, state: State) -> Counter {
    Counter::CampaignState {
        campaign: campaign.to_string(),
        state,
    }
}

/// Invitations of a campaign mailed so far (the bounce rate's base).
pub(super) fn mailed_counter(campaign: &str) -> Counter {
    Counter::Mailed(campaign.to_string())
}

/// Bumped whenever an invitation may have become work for the dispatcher
/// (inserted, or moved or touched into a state it dispatches), so an idle
/// dispatcher waits for a change instead of re-reading every queued
/// invitation (`pipeline/dispatcher.rs`). Bumped inside transactions (a
/// closure that re-runs bumps twice: harmless) and again after the commit
/// where the method is here.
static WORK_CHANGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn work_changed() {
    WORK_CHANGES.fetch_add(1, std::sync::atomic::Ordering::Release);
}

impl Core {
    /// Changes to the dispatcher's work so far (see [`WORK_CHANGES`]): a
    /// number that moves when there may be new work, for one process.
    pub fn work_generation(&self) -> u64 {
        WORK_CHANGES.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stores from before hashed open keys held the identity (address and
    /// external ref) in the `o/` key itself: move each to its hashed form.
    pub(super) fn hash_legacy_open_keys(&self) -> Result<u64> {
        let mut n = 0;
        for item in self.idx.scan_prefix(schema::LEGACY_OPEN_PREFIX) {
            let (k, v) = item?;
            let Ok(text) = std::str::from_utf8(&k[2..]) else {
                continue;
            };
            let mut parts = text.splitn(3, '\u{1f}');
            let (Some(campaign), Some(tag), Some(identity)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            // A hashed key's last part is hex; a legacy identity holds a separator.
            if !identity.contains('\u{1f}') {
                continue;
            }
            let new = open_index::open_key_of(
                &self.mail_keys,
                &format!("{campaign}\u{1f}{tag}"),
                identity,
            );
            self.idx.transaction(|idx| {
                idx.insert(new.as_bytes(), &v)?;
                idx.remove(&k)?;
                Ok::<_, super::engine::TxError<StoreError>>(())
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// Insert a batch in one transaction; with `progress`, record in the
    /// same step that an intake file has been stored up to that line, so a
    /// crash never stores a row twice or loses one.
    pub fn insert_invitations(
        &self,
        batch: &[NewInvitation],
        progress: Option<(&str, u64)>,
    ) -> Result<Vec<InsertOutcome>> {
        self.insert_inner(batch, progress, &[], None)
    }

    /// Insert one invitation for a member we hold (an update, or a new first
    /// connection after a revoke): an earlier invitation of the same kind in
    /// one of `closed` states does not stand in its way, and the member's
    /// `connection_id` then leads to it (`m/` index), so an update callback
    /// without a `linking_token` still completes it.
    pub fn insert_for_member(
        &self,
        new: NewInvitation,
        connection_id: &str,
        closed: &[State],
    ) -> Result<InsertOutcome> {
        let out = self.insert_inner(&[new], None, closed, Some(connection_id))?;
        out.into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("insert returned nothing".into()))
    }

    /// The invitation last queued for a member (see `insert_for_member`).
    pub fn member_invitation(&self, connection_id: &str) -> Result<Option<Invitation>> {
        match self
            .idx
            .get(IdxKey::MemberInvitation(connection_id.to_string()).encode())?
        {
            Some(id) => match self.invitation(super::decode_u64(&id)) {
                Ok(inv) => Ok(Some(inv)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    fn insert_inner(
        &self,
        batch: &[NewInvitation],
        progress: Option<(&str, u64)>,
        closed: &[State],
        member: Option<&str>,
    ) -> Result<Vec<InsertOutcome>> {
        let mut ids = Vec::with_capacity(batch.len());
        for _ in batch {
            ids.push(self.db.next_id()?);
        }
        let prepared = self.prepare(batch, &ids);
        // Held from the duplicate check to the commit (`open_tags.rs`).
        let mut tags = self.open.lock()?;
        let outcomes = (&self.invitations, &self.idx).transaction(|(inv_t, idx)| {
            let mut outcomes = Vec::with_capacity(batch.len());
            let mut by_campaign: Vec<(&str, i64)> = Vec::new();
            // Rows of this batch already inserted, by tag.
            let mut fresh: std::collections::HashMap<u64, Vec<u64>> = Default::default();
            for ((new, id), p) in batch.iter().zip(&ids).zip(&prepared) {
                if let Some(s) = self.tx_listed(idx, &p.who.person)? {
                    outcomes.push(InsertOutcome::Suppressed(s.source));
                    continue;
                }
                let tag = p.who.tag();
                let mut candidates = tags.candidates(tag);
                candidates.extend(fresh.get(&tag).into_iter().flatten());
                if let Some(existing) = self.tx_blocking(inv_t, idx, &candidates, &p.who)?
                    && existing.state.is_open()
                    && !closed.contains(&existing.state)
                {
                    outcomes.push(InsertOutcome::Duplicate(existing.id));
                    continue;
                }
                // One write, at an increasing key: the record; its tag and
                // its work bit are set with the batch's (one write per 64
                // ids each, `tx_count_inserted`).
                inv_t.insert(id_key(*id), p.sealed.as_slice())?;
                if let Some(conn) = member {
                    idx.insert(
                        IdxKey::MemberInvitation(conn.to_string()).encode(),
                        id_key(*id),
                    )?;
                }
                fresh.entry(tag).or_default().push(*id);
                match by_campaign.iter_mut().find(|(c, _)| *c == new.campaign) {
                    Some((_, n)) => *n += 1,
                    None => by_campaign.push((&new.campaign, 1)),
                }
                outcomes.push(InsertOutcome::Inserted(*id));
            }
            let tagged: Vec<(u64, u64)> = outcomes
                .iter()
                .zip(&prepared)
                .filter_map(|(o, p)| match o {
                    InsertOutcome::Inserted(id) => Some((*id, p.who.tag())),
                    _ => None,
                })
                .collect();
            super::open_blocks::tx_set(idx, &tagged)?;
            self.tx_count_inserted(idx, &outcomes, &by_campaign, progress)?;
            Ok(outcomes)
        })?;
        for (o, p) in outcomes.iter().zip(&prepared) {
            if let InsertOutcome::Inserted(id) = o {
                tags.add(p.who.tag(), *id);
            }
        }
        drop(tags);
        work_changed();
        Ok(outcomes)
    }

    /// A batch's inserted rows in the work index and the counters, and how
    /// far its intake file is stored, in the batch's transaction.
    fn tx_count_inserted(
        &self,
        idx: &TxTable<'_>,
        outcomes: &[InsertOutcome],
        by_campaign: &[(&str, i64)],
        progress: Option<(&str, u64)>,
    ) -> TxResult<()> {
        let inserted: Vec<u64> = outcomes
            .iter()
            .filter_map(|o| match o {
                InsertOutcome::Inserted(id) => Some(*id),
                _ => None,
            })
            .collect();
        work_index::tx_set(idx, &inserted)?;
        bump(idx, &counter_key(State::Queued), inserted.len() as i64)?;
        for (campaign, n) in by_campaign {
            bump(idx, &campaign_counter_key(campaign, State::Queued), *n)?;
        }
        if let Some((file, line)) = progress {
            idx.insert(
                IdxKey::IntakeProgress(file.to_string()).encode(),
                line.to_be_bytes(),
            )?;
        }
        if !inserted.is_empty() {
            work_changed();
        }
        Ok(())
    }

    /// The person's suppression inside a transaction, read only when the
    /// in-memory filter says they may be listed (`suppressed_filter.rs`).
    fn tx_listed(
        &self,
        idx: &TxTable<'_>,
        person: &crate::domain::PersonHash,
    ) -> TxResult<Option<super::suppression_record::Suppression>> {
        if !self.suppressed.may_list(person) {
            return Ok(None);
        }
        super::suppression_record::tx_suppression(&self.sealer, idx, person)
    }

    /// Each row hashed and sealed before the transaction: its closure may
    /// run again on a conflict, and holds the engine's lock while it runs.
    fn prepare(&self, batch: &[NewInvitation], ids: &[u64]) -> Vec<Prepared> {
        let now = now_ms();
        batch
            .iter()
            .zip(ids)
            .map(|(new, id)| {
                let who = open_index::OpenIdentity {
                    person: self.mail_keys.person(&new.invitee.email),
                    what: open_index::what(&self.mail_keys, &new.campaign, &new.kind, &new.invitee),
                };
                let inv = queued(new, *id, LinkingToken::for_invitation(*id), now);
                let sealed = seal(&self.sealer, INVITATIONS, &id_key(*id), &inv);
                Prepared { who, sealed }
            })
            .collect()
    }

    pub fn invitation(&self, id: u64) -> Result<Invitation> {
        let bytes = self
            .invitations
            .get(id_key(id))?
            .ok_or(StoreError::NotFound(id))?;
        open(&self.sealer, INVITATIONS, &id_key(id), &bytes, "invitation")
    }

    pub fn invitation_by_token(&self, token: &str) -> Result<Option<Invitation>> {
        let Some(token) = LinkingToken::from_callback(token) else {
            return Ok(None);
        };
        let id = match token.invitation_id() {
            Some(id) => id,
            None => match self
                .idx
                .get(IdxKey::LegacyToken(token.to_string()).encode())?
            {
                Some(id) => super::decode_u64(&id),
                None => return Ok(None),
            },
        };
        match self.invitation(id) {
            Ok(inv) => Ok(inv.linking_token.matches(&token).then_some(inv)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Move invitation `id` from one of `from` to `to`, applying `change`,
    /// or fail with `Conflict` if someone else moved it first (or the move
    /// is not in `State::allowed`'s table).
    pub fn transition(
        &self,
        id: u64,
        from: &[State],
        to: State,
        note: Option<String>,
        change: impl Fn(&mut Invitation),
    ) -> Result<Invitation> {
        (&self.invitations, &self.idx)
            .transaction(|(inv_t, idx)| {
                tx_transition(
                    &self.sealer,
                    inv_t,
                    idx,
                    id,
                    from,
                    to,
                    note.clone(),
                    &change,
                )
            })
            .inspect(|_| work_changed())
    }

    /// Change an invitation without changing its state (attempt counters,
    /// retry times), still guarded by its state.
    pub fn touch(
        &self,
        id: u64,
        expected: State,
        change: impl Fn(&mut Invitation),
    ) -> Result<Invitation> {
        (&self.invitations, &self.idx)
            .transaction(|(inv_t, idx)| {
                tx_transition(
                    &self.sealer,
                    inv_t,
                    idx,
                    id,
                    &[expected],
                    expected,
                    None,
                    &change,
                )
            })
            .inspect(|_| work_changed())
    }

    /// Invitations the dispatcher has to work on, in id order after `after`
    /// (from the start with `None`).
    pub fn work_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<Invitation>> {
        let mut out = Vec::new();
        for id in work_index::ids_after(&self.idx, after, limit)? {
            match self.invitation(id) {
                Ok(inv) => out.push(inv),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Where an intake file's rows stand (the last line stored).
    pub fn intake_progress(&self, file_key: &str) -> Result<Option<u64>> {
        Ok(self
            .idx
            .get(IdxKey::IntakeProgress(file_key.to_string()).encode())?
            .map(|v| super::decode_u64(&v)))
    }

    pub fn clear_intake_progress(&self, file_key: &str) -> Result<()> {
        self.idx
            .remove(IdxKey::IntakeProgress(file_key.to_string()).encode())?;
        Ok(())
    }

    /// Up to `limit` invitations after id `after`, in id order.
    pub fn invitations_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<Invitation>> {
        let start = match after {
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(id) => id_key(id + 1),
            None => id_key(0),
        };
        self.invitations
            .range(start..)
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                open(&self.sealer, INVITATIONS, &k, &v, "invitation")
            })
            .collect()
    }

    /// Every invitation, for listing and export.
    pub fn all_invitations(&self) -> impl Iterator<Item = Result<Invitation>> + '_ {
        self.invitations.iter().map(|item| {
            let (k, v) = item?;
            open(&self.sealer, INVITATIONS, &k, &v, "invitation")
        })
    }
}

impl Core {
    /// Send a failed invitation round again (`invitations retry`): back to
    /// queued with no link and a clean attempt count, unless the same person
    /// got another open invitation in the campaign meanwhile.
    pub fn retry_failed(&self, id: u64) -> Result<Invitation> {
        // The retried one blocks again: it is reopened at a fresh number
        // of the id sequence (`open_index::value`).
        let reopened = self.db.next_id()?;
        let tags = self.open.lock()?;
        let retried = (&self.invitations, &self.idx)
            .transaction(|(inv_t, idx)| {
                let bytes = inv_t
                    .get(id_key(id))?
                    .ok_or(abort(StoreError::NotFound(id)))?;
                let inv: Invitation = tx_open(&self.sealer, INVITATIONS, &id_key(id), &bytes, "invitation")?;
                let who = self.open_identity(&inv);
                if let Some(s) = super::suppression_record::tx_suppression(&self.sealer, idx, &who.person)? {
                    return Err(abort(StoreError::Refused(
                        format!("invitation {id} cannot be retried: the person is suppressed ({})", s.source.as_str()),
                    )));
                }
                let candidates = tags.candidates(who.tag());
                if let Some(other) = self.tx_blocking(inv_t, idx, &candidates, &who)?
                    && other.id != id
                    && other.state.is_open()
                {
                    return Err(abort(StoreError::Refused(format!(
                        "invitation {id} cannot be retried: invitation {} for the same person in campaign {:?} is open",
                        other.id, inv.campaign
                    ))));
                }
                idx.insert(IdxKey::OpenReopened(id).encode(), reopened.to_be_bytes())?;
                tx_transition(
                    &self.sealer,
                    inv_t,
                    idx,
                    id,
                    &[State::Failed],
                    State::Queued,
                    Some("retried by an operator".into()),
                    &|i| {
                        i.link = None;
                        i.link_issued_ms = None;
                        i.attempts = 0;
                        i.next_attempt_ms = 0;
                        i.reason = None;
                    },
                )
            })
            .inspect(|_| work_changed());
        drop(tags);
        retried
    }
}

/// Move invitation `id` from one of `from` to `to` in this transaction, its
/// history and counters with it; `Conflict` if it stands elsewhere, or if
/// `State::allowed` (the one transition table) refuses the move.
#[allow(clippy::too_many_arguments)]
pub(super) fn tx_transition(
    sealer: &Sealer,
    inv_t: &TxTable<'_>,
    idx: &TxTable<'_>,
    id: u64,
    from: &[State],
    to: State,
    note: Option<String>,
    change: &dyn Fn(&mut Invitation),
) -> TxResult<Invitation> {
    debug_assert!(
        from.iter().all(|&f| State::allowed(f, to)),
        "a caller asks for a move the table refuses: {from:?} -> {to:?}"
    );
    let bytes = inv_t
        .get(id_key(id))?
        .ok_or(abort(StoreError::NotFound(id)))?;
    let mut inv: Invitation = tx_open(sealer, INVITATIONS, &id_key(id), &bytes, "invitation")?;
    if !from.contains(&inv.state) || !State::allowed(inv.state, to) {
        return Err(abort(StoreError::Conflict {
            id,
            actual: inv.state.as_str(),
            expected: from
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("|"),
        }));
    }
    let before = inv.state;
    change(&mut inv);
    inv.state = to;
    let now = now_ms();
    inv.updated_ms = now;
    if before != to || note.is_some() {
        inv.history.push(super::HistoryEntry {
            at_ms: now,
            state: to,
            note,
        });
        // Keep history bounded even for an invitation retried for weeks.
        if inv.history.len() > 50 {
            inv.history.drain(1..inv.history.len() - 49);
        }
    }
    inv_t.insert(id_key(id), seal(sealer, INVITATIONS, &id_key(id), &inv))?;
    if before != to {
        bump(idx, &counter_key(before), -1)?;
        bump(idx, &counter_key(to), 1)?;
        bump(idx, &campaign_counter_key(&inv.campaign, before), -1)?;
        bump(idx, &campaign_counter_key(&inv.campaign, to), 1)?;
        if to == State::Sent {
            bump(idx, &mailed_counter(&inv.campaign), 1)?;
        }
        if to.needs_dispatch() {
            work_changed();
            work_index::tx_set(idx, &[id])?;
        } else {
            work_index::tx_clear(idx, id)?;
        }
        // The expiry sweep's index: mailed links it may expire, expired
        // invitations it may remind.
        if matches!(to, State::Sent | State::Expired) {
            idx.insert(super::expiry_index::expiry_key(id), [])?;
        } else {
            idx.remove(super::expiry_index::expiry_key(id))?;
        }
    }
    Ok(inv)
}

/// The invitation a callback's linking token belongs to, inside a
/// transaction: found by the id the token carries (or, for tokens issued
/// before ids were part of them, by their `t/` index entry), and only if the
/// whole token matches the one stored.
pub(super) fn tx_by_token(
    sealer: &Sealer,
    inv_t: &TxTable<'_>,
    idx: &TxTable<'_>,
    token: &str,
) -> TxResult<Option<Invitation>> {
    let Some(token) = LinkingToken::from_callback(token) else {
        return Ok(None);
    };
    let id = match token.invitation_id() {
        Some(id) => id,
        None => match idx.get(IdxKey::LegacyToken(token.to_string()).encode())? {
            Some(id) => super::decode_u64(&id),
            None => return Ok(None),
        },
    };
    let Some(bytes) = inv_t.get(id_key(id))? else {
        return Ok(None);
    };
    let inv: Invitation = tx_open(sealer, INVITATIONS, &id_key(id), &bytes, "invitation")?;
    Ok(inv.linking_token.matches(&token).then_some(inv))
}

/// A row of a batch, hashed and sealed ahead of the transaction.
struct Prepared {
    who: open_index::OpenIdentity,
    sealed: Vec<u8>,
}

/// A new invitation, queued.
fn queued(new: &NewInvitation, id: u64, token: LinkingToken, now: u64) -> Invitation {
    Invitation {
        id,
        campaign: new.campaign.clone(),
        kind: new.kind,
        version: new.version,
        invitee: new.invitee.clone(),
        state: State::Queued,
        linking_token: token,
        link: None,
        link_issued_ms: None,
        attempts: 0,
        next_attempt_ms: 0,
        reason: None,
        reminders: 0,
        connection_id: None,
        expired_ms: None,
        callback_fingerprint: None,
        created_ms: now,
        updated_ms: now,
        history: vec![super::HistoryEntry {
            at_ms: now,
            state: State::Queued,
            note: None,
        }],
    }
}
