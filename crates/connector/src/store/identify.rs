//! The identify callback (`type: identify`, docs/mydex-contract.md §3, §10 step 5)
//! applied to its invitation in one transaction: a MydexID that belongs to a
//! member we already hold connects the invitee at once, without a new First
//! Time Connection; any other MydexID is learnt and the invitation goes on
//! as a first connection for it (same invitation and linking token, back to
//! `queued`, so the dispatcher asks for an FTC link naming that MydexID).

use super::engine::Transactional;
use super::schema::{Counter, IdxKey, LogKey};
use super::seen::{Arrival, tx_mark_seen, tx_seen_before};

use super::engine::TxTable;
use super::invitations::tx_transition;

use super::sealed::{LOG, MEMBERS, seal, tx_open};
use super::{
    CallbackOutcome, CallbackRecord, Core, Invitation, Kind, Member, MemberStatus, Result, State,
    TxResult, bump, now_ms,
};
use crate::domain::MydexId;

impl Core {
    /// Apply an identify callback; `arrival` names it for replays.
    pub fn apply_identify(
        &self,
        mydexid: &MydexId,
        linking_token: Option<&str>,
        body: &serde_json::Value,
        arrival: &Arrival,
    ) -> Result<CallbackOutcome> {
        let event_id = self.db.next_id()?;
        (&self.invitations, &self.idx, &self.members, &self.log).transaction(
            |(inv_t, idx, mem_t, log_t)| {
                if let Some(before) = tx_seen_before(log_t, arrival)? {
                    return Ok(before);
                }
                let rec = event_record(mydexid, linking_token, body);
                tx_record(&self.sealer, idx, log_t, event_id, &rec)?;
                let outcome = tx_identify(&self.sealer, inv_t, idx, mem_t, mydexid, linking_token)?;
                tx_mark_seen(log_t, arrival, &outcome)?;
                Ok(outcome)
            },
        )
    }
}

/// What an identify does to the invitation its linking token names, if it
/// is an identify invitation still open: connected to the member we hold
/// with this MydexID, or back to `queued` as a first connection for it.
fn tx_identify(
    s: &super::Sealer,
    inv_t: &TxTable<'_>,
    idx: &TxTable<'_>,
    mem_t: &TxTable<'_>,
    mydexid: &MydexId,
    linking_token: Option<&str>,
) -> TxResult<CallbackOutcome> {
    let Some(token) = linking_token else {
        return Ok(CallbackOutcome::Recorded);
    };
    let Some(inv) = super::invitations::tx_by_token(s, inv_t, idx, token)? else {
        return Ok(CallbackOutcome::Recorded);
    };
    if inv.kind != Kind::Identify || matches!(inv.state, State::Connected | State::Failed) {
        return Ok(CallbackOutcome::Recorded);
    }
    match tx_held_member(s, idx, mem_t, mydexid)? {
        Some(m) => tx_connect_held(s, inv_t, idx, inv, &m, mydexid),
        None => tx_requeue_as_connect(s, inv_t, idx, inv.id, mydexid),
    }
}

/// The states an identify invitation leaves when its identify arrives.
const FROM: [State; 4] = [
    State::Queued,
    State::LinkIssued,
    State::Sent,
    State::Expired,
];

/// The identify event as the log keeps it.
fn event_record(
    mydexid: &MydexId,
    linking_token: Option<&str>,
    body: &serde_json::Value,
) -> CallbackRecord {
    CallbackRecord {
        received_ms: now_ms(),
        kind: "identify".into(),
        method: "POST".into(),
        linking_token: linking_token.map(str::to_string),
        connection_id: None,
        mydexid: Some(mydexid.to_string()),
        body: body.clone(),
        sealed_key: None,
        note: String::new(),
    }
}

/// Count the identify event and keep it in the log, sealed.
fn tx_record(
    sealer: &super::Sealer,
    idx: &TxTable<'_>,
    log_t: &TxTable<'_>,
    event_id: u64,
    rec: &CallbackRecord,
) -> TxResult<()> {
    bump(idx, &Counter::IdentifyEvents, 1)?;
    let key = LogKey::Event(event_id).encode();
    log_t.insert(key.as_slice(), seal(sealer, LOG, &key, rec))?;
    Ok(())
}

/// The active member we hold with this MydexID, if any.
fn tx_held_member(
    sealer: &super::Sealer,
    idx: &TxTable<'_>,
    mem_t: &TxTable<'_>,
    mydexid: &MydexId,
) -> TxResult<Option<Member>> {
    Ok(
        match idx.get(IdxKey::MydexId(mydexid.as_str().to_string()).encode())? {
            Some(conn) => mem_t
                .get(&conn)?
                .map(|b| tx_open::<Member>(sealer, MEMBERS, &conn, &b, "member"))
                .transpose()?
                .filter(|m| m.status == MemberStatus::Active),
            None => None,
        },
    )
}

/// The MydexID is a member's we hold: the invitation is connected to it.
fn tx_connect_held(
    sealer: &super::Sealer,
    inv_t: &TxTable<'_>,
    idx: &TxTable<'_>,
    inv: Invitation,
    member: &Member,
    mydexid: &MydexId,
) -> TxResult<CallbackOutcome> {
    let learnt = mydexid.clone();
    let conn = member.connection_id.clone();
    tx_transition(
        sealer,
        inv_t,
        idx,
        inv.id,
        &FROM,
        State::Connected,
        Some(format!("identified as {learnt}, already a member ({conn})")),
        &|i| {
            i.connection_id = Some(conn.clone());
            i.invitee.mydexid = Some(learnt.clone());
            i.reason = None;
        },
    )?;
    Ok(CallbackOutcome::Connected {
        invitation_id: inv.id,
        campaign: inv.campaign,
        external_ref: inv.invitee.external_ref,
    })
}

/// A MydexID we do not hold: the invitation goes back to `queued` as a
/// first connection for it.
fn tx_requeue_as_connect(
    sealer: &super::Sealer,
    inv_t: &TxTable<'_>,
    idx: &TxTable<'_>,
    id: u64,
    mydexid: &MydexId,
) -> TxResult<CallbackOutcome> {
    let learnt = mydexid.clone();
    tx_transition(
        sealer,
        inv_t,
        idx,
        id,
        &FROM,
        State::Queued,
        Some(format!(
            "identified as {learnt}; a first connection follows"
        )),
        &|i| {
            i.kind = Kind::Connect;
            i.invitee.mydexid = Some(learnt.clone());
            i.link = None;
            i.link_issued_ms = None;
            i.attempts = 0;
            i.next_attempt_ms = 0;
            i.reminders = 0;
            i.expired_ms = None;
            i.reason = None;
        },
    )?;
    Ok(CallbackOutcome::Recorded)
}
