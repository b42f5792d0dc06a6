//! What a callback from Mydex changes, each in one transaction: credentials
//! matched to their invitation (→ connected, member stored with the key
//! sealed), updates of version and permissions, unmatched ones kept, events
//! recorded; and the same callback twice changes nothing. Whether a
//! credentials callback may change anything is the domain's rule
//! (`domain/callback_rule.rs`); this file gathers its facts and acts on it.

use super::engine::Transactional;
use super::engine::TxTable;
use super::schema::{self, Counter, IdxKey, LogKey};
use secrecy::ExposeSecret;

use super::invitations::tx_transition;
use super::sealed::{INVITATIONS, LOG, MEMBERS, seal, tx_open};
use super::seen::{Arrival, FirstOutcome, tx_mark_seen, tx_seen_before};
use super::{
    CallbackRecord, Core, Invitation, Member, MemberStatus, Result, State, TxResult, bump, now_ms,
};
use crate::domain::{
    Admission, Answering, CallbackAnswer, CallbackFingerprint, Credentials, Event, Facts, Refusal,
    admit,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// Matched to an invitation, which is now connected.
    Connected {
        invitation_id: u64,
        campaign: String,
        external_ref: Option<String>,
    },
    /// A member's version and permissions were updated.
    Updated { invitation_id: Option<u64> },
    /// Nothing matched; kept in the unmatched log.
    Unmatched,
    /// This exact callback was already applied (by another arrival of it).
    Replay,
    /// This same arrival was applied before: judged again because the
    /// daemon stopped after its effects were on disk but before its record
    /// said so, or replayed by an operator (`seen.rs`). What it did then;
    /// nothing changed now.
    AppliedBefore(FirstOutcome),
    /// An identify or notification event was recorded.
    Recorded,
    /// Not applied: it would change what we hold outside a journey of
    /// ours (the caller quarantines it; nothing was written).
    Refused(Refusal),
}

impl Core {
    /// Apply a first-time-connection (POST) or update (PUT) callback.
    /// `arrival` names the raw callback and its digest for replay detection.
    pub fn apply_credentials(
        &self,
        creds: &Credentials,
        is_update: bool,
        arrival: &Arrival,
        current_version: u32,
    ) -> Result<CallbackOutcome> {
        let sealer = self.sealer.clone();
        let fingerprint = CallbackFingerprint::of(creds, is_update);
        (&self.invitations, &self.idx, &self.members, &self.log).transaction(
            |(inv_t, idx, mem_t, log_t)| {
                if let Some(before) = tx_seen_before(log_t, arrival)? {
                    return Ok(before);
                }
                let invitation = tx_matching_invitation(&sealer, inv_t, idx, creds, is_update)?;
                let conn = creds.connection_id.as_bytes();
                let existing: Option<Member> = mem_t
                    .get(conn)?
                    .map(|b| tx_open(&sealer, MEMBERS, conn, &b, "member"))
                    .transpose()?;
                let facts = Facts {
                    is_update,
                    carries_key: creds.key.is_some(),
                    fingerprint,
                    invitation: invitation.as_ref().map(|i| Answering {
                        id: i.id,
                        kind: i.kind,
                        state: i.state,
                        fingerprint: i.callback_fingerprint,
                    }),
                    member_held: existing.is_some(),
                };
                let outcome = match admit(&facts) {
                    // Refused: nothing written, not even the digest, so each
                    // copy is judged (and kept) again.
                    Admission::Refuse(why) => return Ok(CallbackOutcome::Refused(why)),
                    Admission::Replay => CallbackOutcome::Replay,
                    // Credentials we cannot act on are kept, never dropped.
                    Admission::Unmatched(note) => {
                        keep_unmatched(log_t, idx, creds, is_update, &sealer, note)?;
                        CallbackOutcome::Unmatched
                    }
                    Admission::Apply => {
                        let member = new_member(
                            creds,
                            invitation.as_ref(),
                            existing.as_ref(),
                            is_update,
                            current_version,
                            &sealer,
                        );
                        tx_put_member(&sealer, idx, mem_t, existing.as_ref(), &member)?;
                        tx_connect(
                            &sealer,
                            inv_t,
                            idx,
                            creds,
                            invitation,
                            is_update,
                            fingerprint,
                        )?
                    }
                };
                tx_mark_seen(log_t, arrival, &outcome)?;
                Ok(outcome)
            },
        )
    }

    /// Record an identify or notification callback.
    pub fn record_event(
        &self,
        event: &Event,
        body: &serde_json::Value,
        arrival: &Arrival,
    ) -> Result<CallbackOutcome> {
        let id = self.db.next_id()?;
        let sealer = self.sealer.clone();
        (&self.idx, &self.log).transaction(|(idx, log_t)| {
            if let Some(before) = tx_seen_before(log_t, arrival)? {
                return Ok(before);
            }
            tx_mark_seen(log_t, arrival, &CallbackOutcome::Recorded)?;
            let (kind, note, linking_token, connection_id, mydexid) = match event {
                Event::Identify {
                    mydexid,
                    linking_token,
                } => {
                    bump(idx, &Counter::IdentifyEvents, 1)?;
                    (
                        "identify",
                        String::new(),
                        linking_token.clone(),
                        None,
                        Some(mydexid.clone()),
                    )
                }
                Event::Notification {
                    dataset,
                    action,
                    connection_id,
                    ..
                } => {
                    bump(idx, &Counter::NotificationEvents, 1)?;
                    bump(
                        idx,
                        &Counter::Notifications {
                            dataset: dataset.to_string(),
                            action: action.to_string(),
                        },
                        1,
                    )?;
                    (
                        "notification",
                        format!("{dataset}/{action}"),
                        None,
                        connection_id.clone(),
                        None,
                    )
                }
            };
            let rec = CallbackRecord {
                received_ms: now_ms(),
                kind: kind.into(),
                method: "POST".into(),
                linking_token,
                connection_id,
                mydexid,
                body: body.clone(),
                sealed_key: None,
                note,
            };
            let key = LogKey::Event(id).encode();
            log_t.insert(key.as_slice(), seal(&sealer, LOG, &key, &rec))?;
            Ok(CallbackOutcome::Recorded)
        })
    }

    /// Notification counts by `dataset/action`.
    pub fn notification_counts(&self) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for item in self.idx.scan_prefix(schema::NOTIFICATIONS_PREFIX) {
            let (k, v) = item?;
            if let Some(Counter::Notifications { dataset, action }) = Counter::decode(&k) {
                out.push((format!("{dataset}/{action}"), super::decode_u64(&v)));
            }
        }
        Ok(out)
    }
}

fn keep_unmatched(
    log_t: &TxTable<'_>,
    idx: &TxTable<'_>,
    creds: &Credentials,
    is_update: bool,
    sealer: &super::Sealer,
    note: &str,
) -> TxResult<()> {
    let id = log_t.next_id()?;
    let rec = CallbackRecord {
        received_ms: now_ms(),
        kind: if is_update { "update" } else { "ftc" }.into(),
        method: if is_update { "PUT" } else { "POST" }.into(),
        linking_token: creds.linking_token.clone(),
        connection_id: Some(creds.connection_id.clone()),
        mydexid: creds.mydexid.as_ref().map(|m| m.to_string()),
        body: serde_json::json!({ "uid": creds.uid, "uid_sent": creds.uid_sent, "fields": creds.fields }),
        sealed_key: creds
            .key
            .as_ref()
            .map(|k| sealer.seal(k.expose_secret().as_bytes(), creds.connection_id.as_bytes())),
        note: note.into(),
    };
    let key = LogKey::Unmatched(id).encode();
    log_t.insert(key.as_slice(), seal(sealer, LOG, &key, &rec))?;
    bump(idx, &Counter::Unmatched, 1)?;
    Ok(())
}

/// The invitation a credentials callback answers: the one its linking_token
/// names, or, for an update without a linking_token we know, the update
/// invitation queued for this member if one is open.
fn tx_matching_invitation(
    sealer: &super::Sealer,
    inv_t: &TxTable<'_>,
    idx: &TxTable<'_>,
    creds: &Credentials,
    is_update: bool,
) -> TxResult<Option<Invitation>> {
    let invitation = match &creds.linking_token {
        Some(t) => super::invitations::tx_by_token(sealer, inv_t, idx, t)?,
        None => None,
    };
    // An update without a linking_token we know completes the
    // update invitation queued for this member, if one is open.
    Ok(match invitation {
        None if is_update => {
            match idx.get(IdxKey::MemberInvitation(creds.connection_id.to_string()).encode())? {
                Some(id) => inv_t
                    .get(super::id_key(super::decode_u64(&id)))?
                    .map(|b| tx_open::<Invitation>(sealer, INVITATIONS, &id, &b, "invitation"))
                    .transpose()?
                    .filter(Invitation::awaits_update_callback),
                None => None,
            }
        }
        other => other,
    })
}

/// The member record after these credentials (`Member::after_callback`),
/// with the key they carry sealed, or the one held kept.
fn new_member(
    creds: &Credentials,
    invitation: Option<&Invitation>,
    existing: Option<&Member>,
    is_update: bool,
    current_version: u32,
    sealer: &super::Sealer,
) -> Member {
    let sealed_key = creds
        .key
        .as_ref()
        .map(|k| sealer.seal(k.expose_secret().as_bytes(), creds.connection_id.as_bytes()));
    let answered = CallbackAnswer {
        creds,
        invitation,
        existing,
        is_update,
        current_version,
    };
    Member::after_callback(&answered, sealed_key, now_ms())
}

/// Keep the member, moving the version counters (and the disconnected
/// count, for a member who comes back) and the MydexID index with it.
fn tx_put_member(
    sealer: &super::Sealer,
    idx: &TxTable<'_>,
    mem_t: &TxTable<'_>,
    existing: Option<&Member>,
    member: &Member,
) -> TxResult<()> {
    if let Some(old) = existing {
        if old.status == MemberStatus::Active {
            bump(idx, &Counter::MembersAtVersion(old.version), -1)?;
        } else {
            bump(idx, &Counter::MembersDisconnected, -1)?;
        }
    }
    bump(idx, &Counter::MembersAtVersion(member.version), 1)?;
    let conn = member.connection_id.as_bytes();
    mem_t.insert(conn, seal(sealer, MEMBERS, conn, member))?;
    if let Some(id) = &member.mydexid {
        idx.insert(
            IdxKey::MydexId(id.as_str().to_string()).encode(),
            member.connection_id.as_bytes(),
        )?;
    }
    Ok(())
}

/// Move the invitation answered (if any; the rule let through only one not
/// answered before) to connected with what the callback said, and say what
/// the callback did.
fn tx_connect(
    sealer: &super::Sealer,
    inv_t: &TxTable<'_>,
    idx: &TxTable<'_>,
    creds: &Credentials,
    invitation: Option<Invitation>,
    is_update: bool,
    fingerprint: CallbackFingerprint,
) -> TxResult<CallbackOutcome> {
    let Some(inv) = invitation else {
        return Ok(CallbackOutcome::Updated {
            invitation_id: None,
        });
    };
    let from = State::CONNECTABLE;
    let conn = creds.connection_id.clone();
    tx_transition(
        sealer,
        inv_t,
        idx,
        inv.id,
        &from,
        State::Connected,
        None,
        &|i| {
            i.connection_id = Some(conn.clone());
            i.reason = None;
            i.callback_fingerprint = Some(fingerprint);
        },
    )?;
    Ok(if is_update {
        CallbackOutcome::Updated {
            invitation_id: Some(inv.id),
        }
    } else {
        CallbackOutcome::Connected {
            invitation_id: inv.id,
            campaign: inv.campaign,
            external_ref: inv.invitee.external_ref,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Invitee, Kind, MydexId};
    use crate::store::{InsertOutcome, NewInvitation};
    use secrecy::{SecretBox, SecretString};

    fn invited(s: &Core) -> (u64, String) {
        let invitee: Invitee = serde_json::from_value(serde_json::json!({
            "email": "ann@example.com", "name": null, "external_ref": "M-1",
            "mydexid": null, "campaign": null
        }))
        .unwrap();
        let new = NewInvitation {
            campaign: "c".into(),
            kind: Kind::Connect,
            version: 1,
            invitee,
        };
        let InsertOutcome::Inserted(id) = s.insert_invitations(&[new], None).unwrap()[0] else {
            panic!("inserted")
        };
        (
            id,
            s.invitation(id).unwrap().linking_token.as_str().to_string(),
        )
    }

    fn ftc(token: &str, conn: &str, key: &str) -> Credentials {
        Credentials {
            uid: conn.split('-').next().unwrap().parse().unwrap(),
            uid_sent: None,
            mydexid: MydexId::from_mydex("AnnSmith1").ok(),
            key: Some(SecretString::from(key.to_string())),
            connection_id: conn.into(),
            fields: serde_json::json!({"field_ds_x": {"access": {"r": {"a": 1}}}}),
            linking_token: Some(token.into()),
        }
    }

    /// Arrival `raw` of a callback with digest `[d; 32]`.
    fn at(raw: u64, d: u8) -> Arrival {
        Arrival {
            raw_id: raw,
            digest: [d; 32],
        }
    }

    fn key_of(s: &Core, conn: &str) -> String {
        let m = s.member(conn).unwrap().unwrap();
        let k = s
            .sealer()
            .open_secret(&m.sealed_key, conn.as_bytes())
            .unwrap();
        k.expose_secret().to_string()
    }

    #[test]
    fn a_used_linking_token_never_applies_other_content() {
        let dir = tempfile::tempdir().unwrap();
        let s = Core::open(dir.path(), &SecretBox::new(Box::new([3u8; 32]))).unwrap();
        let (id, token) = invited(&s);
        let first = ftc(&token, "1001-45678", "key-one");
        let out = s.apply_credentials(&first, false, &at(1, 1), 1).unwrap();
        assert!(matches!(out, CallbackOutcome::Connected { .. }), "{out:?}");
        assert!(s.invitation(id).unwrap().callback_fingerprint.is_some());
        // Byte-identical (same digest), and the same content written
        // otherwise (another digest): replays.
        for (raw, d) in [(2, 1), (3, 2)] {
            let out = s.apply_credentials(&first, false, &at(raw, d), 1).unwrap();
            assert_eq!(out, CallbackOutcome::Replay);
        }
        // Another key, another member: refused, nothing written.
        for (conn, key, d) in [("1001-45678", "key-two", 3), ("2002-45678", "key-three", 4)] {
            let out = s
                .apply_credentials(&ftc(&token, conn, key), false, &at(10 + d as u64, d), 1)
                .unwrap();
            assert_eq!(
                out,
                CallbackOutcome::Refused(Refusal::TokenUsed { invitation: id })
            );
            // Still refused when sent again: no digest was kept for it.
            let again = s
                .apply_credentials(&ftc(&token, conn, key), false, &at(10 + d as u64, d), 1)
                .unwrap();
            assert!(matches!(again, CallbackOutcome::Refused(_)));
        }
        assert_eq!(key_of(&s, "1001-45678"), "key-one");
        assert!(s.member("2002-45678").unwrap().is_none());
        let c = s.counts(1).unwrap();
        assert_eq!((c.members_total, c.unmatched_callbacks), (1, 0));

        // An update with a key and no journey of ours: refused; without a
        // key, the permissions it brings are applied.
        let mut update = ftc("", "1001-45678", "key-four");
        update.linking_token = None;
        let out = s.apply_credentials(&update, true, &at(5, 5), 1).unwrap();
        assert_eq!(out, CallbackOutcome::Refused(Refusal::KeyOutsideJourney));
        update.key = None;
        let out = s.apply_credentials(&update, true, &at(6, 6), 1).unwrap();
        assert_eq!(
            out,
            CallbackOutcome::Updated {
                invitation_id: None
            }
        );
        assert_eq!(key_of(&s, "1001-45678"), "key-one");
    }

    /// The daemon stopped after a group commit held these callbacks'
    /// effects but not their records' outcomes: judged again from the
    /// store on disk, each arrival is its own first keeping; another
    /// arrival of the same callback is a replay.
    #[test]
    fn an_arrival_judged_again_keeps_its_first_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::new(Box::new([3u8; 32]));
        let s = Core::open(dir.path(), &key).unwrap();
        let (_, token) = invited(&s);
        let first = ftc(&token, "1001-45678", "key-one");
        let stray = ftc("lt_strayToken", "3003-45678", "stray-key");
        let ev = Event::Notification {
            uid: None,
            connection_id: Some("1001-45678".into()),
            dataset: "ds_x".into(),
            action: "update".into(),
            updated_id: None,
            message: None,
        };
        let body = serde_json::json!({"type": "notification"});
        let out = s.apply_credentials(&first, false, &at(1, 1), 1).unwrap();
        assert!(matches!(out, CallbackOutcome::Connected { .. }), "{out:?}");
        let out = s.apply_credentials(&stray, false, &at(2, 2), 1).unwrap();
        assert_eq!(out, CallbackOutcome::Unmatched);
        let out = s.record_event(&ev, &body, &at(3, 3)).unwrap();
        assert_eq!(out, CallbackOutcome::Recorded);
        let out = s.apply_credentials(&first, false, &at(4, 1), 1).unwrap();
        assert_eq!(out, CallbackOutcome::Replay);
        s.flush_blocking().unwrap();
        drop(s);

        let s = Core::open(dir.path(), &key).unwrap();
        let again =
            |creds: &Credentials, a: Arrival| s.apply_credentials(creds, false, &a, 1).unwrap();
        use FirstOutcome as F;
        assert_eq!(
            again(&first, at(1, 1)),
            CallbackOutcome::AppliedBefore(F::Connected)
        );
        assert_eq!(
            again(&stray, at(2, 2)),
            CallbackOutcome::AppliedBefore(F::Unmatched)
        );
        let out = s.record_event(&ev, &body, &at(3, 3)).unwrap();
        assert_eq!(out, CallbackOutcome::AppliedBefore(F::Recorded));
        // Other arrivals of the same callbacks: replays, and still so when
        // judged again (the digest names the first arrival; a callback
        // written otherwise has a digest of its own, naming its arrival).
        assert_eq!(again(&first, at(4, 1)), CallbackOutcome::Replay);
        assert_eq!(again(&stray, at(5, 2)), CallbackOutcome::Replay);
        assert_eq!(again(&stray, at(5, 2)), CallbackOutcome::Replay);
        assert_eq!(again(&first, at(8, 9)), CallbackOutcome::Replay);
        assert_eq!(
            again(&first, at(8, 9)),
            CallbackOutcome::AppliedBefore(F::Replay)
        );
        let out = s.record_event(&ev, &body, &at(6, 3)).unwrap();
        assert_eq!(out, CallbackOutcome::Replay);
        let c = s.counts(1).unwrap();
        let counted = (
            c.members_total,
            c.unmatched_callbacks,
            c.events_notification,
        );
        assert_eq!(counted, (1, 1, 1));
        assert_eq!(s.unmatched().count(), 1);
        assert_eq!(key_of(&s, "1001-45678"), "key-one");

        // A digest kept before raw ids were (its milliseconds alone) names
        // no arrival: whatever carries it is a replay, as it was then.
        let old = LogKey::Seen([7; 32]).encode();
        s.log
            .insert(old.as_slice(), &now_ms().to_be_bytes()[..])
            .unwrap();
        let other = ftc("lt_otherToken", "4004-45678", "other-key");
        assert_eq!(again(&other, at(7, 7)), CallbackOutcome::Replay);
        assert_eq!(s.counts(1).unwrap().unmatched_callbacks, 1);
    }

    #[test]
    fn unmatched_callbacks_and_events_are_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Core::open(dir.path(), &SecretBox::new(Box::new([3u8; 32]))).unwrap();
        let stray = ftc("lt_strayToken", "3003-45678", "stray-key");
        let out = s.apply_credentials(&stray, false, &at(7, 7), 1).unwrap();
        assert_eq!(out, CallbackOutcome::Unmatched);
        let ev = Event::Identify {
            mydexid: "IdentMydex9".into(),
            linking_token: Some("lt_identToken".into()),
        };
        s.record_event(
            &ev,
            &serde_json::json!({"mydexid": "IdentMydex9"}),
            &at(8, 8),
        )
        .unwrap();
        for item in s.log.iter() {
            let (k, v) = item.unwrap();
            if matches!(LogKey::decode(&k), Some(LogKey::Seen(_))) {
                continue;
            }
            let text = String::from_utf8_lossy(&v);
            for clear in [
                "AnnSmith1",
                "strayToken",
                "3003-45678",
                "IdentMydex9",
                "identToken",
            ] {
                assert!(!text.contains(clear), "{clear} in {text}");
            }
        }
        let kept: Vec<CallbackRecord> = s.unmatched().collect::<Result<_>>().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].connection_id.as_deref(), Some("3003-45678"));
        assert_eq!(kept[0].linking_token.as_deref(), Some("lt_strayToken"));

        // A new store key: both kinds of record re-sealed, the key inside too.
        drop(s);
        let new_key = SecretBox::new(Box::new([4u8; 32]));
        let report = crate::store::rotate_key(
            dir.path(),
            &SecretBox::new(Box::new([3u8; 32])),
            &new_key,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(report.unmatched_resealed, 1);
        let s = Core::open(dir.path(), &new_key).unwrap();
        let kept: Vec<CallbackRecord> = s.unmatched().collect::<Result<_>>().unwrap();
        let sealed_key = kept[0].sealed_key.as_deref().unwrap();
        assert_eq!(
            s.sealer().open(sealed_key, b"3003-45678").unwrap(),
            b"stray-key"
        );
        assert_eq!(s.log.scan_prefix(schema::EVENT_PREFIX).count(), 1);
        for item in s.log.scan_prefix(schema::EVENT_PREFIX) {
            let (k, v) = item.unwrap();
            let ev: CallbackRecord =
                super::super::sealed::open(s.sealer(), LOG, &k, &v, "event").unwrap();
            assert_eq!(ev.mydexid.as_deref(), Some("IdentMydex9"));
        }
    }
}
