//! What the version sweep keeps in the store so that an interrupted run
//! resumes where it stopped and never checks a member twice: the run record
//! (`k/{job}` in `idx`: counts and a cursor over the members tree), claims
//! of members chunk by chunk (the cursor moves past a chunk, durably, before
//! any of its members is asked about), and each member's last check.

use super::schema::{Counter, IdxKey};
use std::ops::Bound;

use super::engine::{Transactional, abort};
use serde::{Deserialize, Serialize};

use super::sealed::{MEMBERS, open, seal, tx_open};
use super::{
    Core, LastCheck, Member, MemberStatus, Result, StoreError, bump, decode, encode, now_ms,
};

/// One run of a sweep: where it stands and what it found so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SweepRun {
    pub run: u64,
    pub started_ms: u64,
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// Every member up to this key (in key order) has been claimed by the run.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Where the chunk being worked on began (exclusive).
    #[serde(default)]
    pub chunk_start: Option<String>,
    pub checked: u64,
    pub outdated: u64,
    pub disconnected: u64,
    pub invited: u64,
    pub errors: u64,
    /// Claimed members whose check was cut short by a crash or shutdown;
    /// they are checked by the next run, never twice in this one.
    #[serde(default)]
    pub interrupted: u64,
    /// Members found revoked in this run and held, not disconnected (the
    /// brake, or waiting for enough checks to judge the share).
    #[serde(default)]
    pub held: u64,
    /// Why the run stopped before the end (Mydex refused our connection).
    #[serde(default)]
    pub stopped: Option<String>,
    #[serde(default)]
    pub resumes: u32,
    #[serde(default)]
    pub duration_ms: u64,
}

impl SweepRun {
    pub fn running(&self) -> bool {
        self.finished_ms.is_none()
    }
}

/// What a connection-status check reported for one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckResult {
    pub active: bool,
    pub version: Option<u32>,
}

/// How recording a check changed the member.
#[derive(Debug, Clone)]
pub struct Checked {
    pub member: Member,
    /// The member was active and is now disconnected.
    pub newly_disconnected: bool,
}

fn run_key(job: &str) -> Vec<u8> {
    IdxKey::SweepRun(job.to_string()).encode()
}

impl Core {
    /// The current (or last finished) run of `job`.
    pub fn sweep_run(&self, job: &str) -> Result<Option<SweepRun>> {
        self.idx
            .get(run_key(job))?
            .map(|v| decode(&v, "sweep run"))
            .transpose()
    }

    pub fn save_sweep_run(&self, job: &str, run: &SweepRun) -> Result<()> {
        self.idx.insert(run_key(job), encode(run))?;
        Ok(())
    }

    /// Claim the next `limit` members after the run's cursor: move the
    /// cursor past them and save the run (the caller flushes before asking
    /// Mydex about any of them). Returns the active ones among them; `None`
    /// once the run has seen every member.
    pub fn claim_members(
        &self,
        job: &str,
        run: &mut SweepRun,
        limit: usize,
    ) -> Result<Option<Vec<Member>>> {
        let start = match &run.cursor {
            Some(c) => Bound::Excluded(c.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut last = None;
        for item in self
            .members
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take(limit)
        {
            let (k, v) = item?;
            last = Some(String::from_utf8_lossy(&k).into_owned());
            let m: Member = open(&self.sealer, MEMBERS, &k, &v, "member")?;
            if m.status == MemberStatus::Active {
                out.push(m);
            }
        }
        let Some(last) = last else {
            return Ok(None);
        };
        run.chunk_start = run.cursor.take();
        run.cursor = Some(last);
        self.save_sweep_run(job, run)?;
        Ok(Some(out))
    }

    /// After a crash: account for the chunk that was being worked on.
    /// Members in it that carry this run's check were checked; the others
    /// are counted as interrupted (not asked again in this run).
    pub fn settle_interrupted_chunk(
        &self,
        job: &str,
        run: &mut SweepRun,
        current_version: u32,
    ) -> Result<()> {
        let Some(end) = run.cursor.clone() else {
            return Ok(());
        };
        if run.chunk_start.as_deref() == Some(end.as_str()) {
            return Ok(());
        }
        let start = match &run.chunk_start {
            Some(c) => Bound::Excluded(c.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        for item in self
            .members
            .range::<Vec<u8>, _>((start, Bound::Included(end.as_bytes().to_vec())))
        {
            let (k, v) = item?;
            let m: Member = open(&self.sealer, MEMBERS, &k, &v, "member")?;
            match m.last_check {
                Some(c) if c.run == run.run => {
                    run.checked += 1;
                    if !c.active {
                        run.disconnected += 1;
                    } else if c.version.is_some_and(|v| v < current_version) {
                        run.outdated += 1;
                    }
                }
                _ if m.status == MemberStatus::Active => run.interrupted += 1,
                _ => {}
            }
        }
        run.chunk_start = run.cursor.clone();
        self.save_sweep_run(job, run)
    }

    /// Record what Mydex reported for a member: the version it reports (the
    /// outdated count follows), or the connection gone (→ disconnected).
    pub fn record_check(
        &self,
        connection_id: &str,
        run: u64,
        result: CheckResult,
    ) -> Result<Checked> {
        // The common case, nothing but the check to note (active, same
        // version): a compare-and-swap on the member alone, no transaction.
        // If anything else changed the member meanwhile, the transaction
        // below does it properly.
        if let Some(old) = self.members.get(connection_id.as_bytes())? {
            let conn = connection_id.as_bytes();
            let mut m: Member = open(&self.sealer, MEMBERS, conn, &old, "member")?;
            if m.status == MemberStatus::Active
                && result.active
                && result.version.is_none_or(|v| v == m.version)
            {
                let now = now_ms();
                m.last_check = Some(LastCheck {
                    run,
                    at_ms: now,
                    active: true,
                    version: result.version,
                });
                m.updated_ms = now;
                if self.members.compare_and_swap(
                    conn,
                    Some(old),
                    Some(seal(&self.sealer, MEMBERS, conn, &m)),
                )? {
                    return Ok(Checked {
                        member: m,
                        newly_disconnected: false,
                    });
                }
            }
        }
        (&self.members, &self.idx).transaction(|(mem_t, idx)| {
            let bytes = mem_t
                .get(connection_id.as_bytes())?
                .ok_or(abort(StoreError::Corrupt(format!(
                    "member {connection_id} vanished during the sweep"
                ))))?;
            let conn = connection_id.as_bytes();
            let mut m: Member = tx_open(&self.sealer, MEMBERS, conn, &bytes, "member")?;
            let was_active = m.status == MemberStatus::Active;
            let mut newly_disconnected = false;
            if was_active {
                if result.active {
                    if let Some(v) = result.version
                        && v != m.version
                    {
                        bump(idx, &Counter::MembersAtVersion(m.version), -1)?;
                        bump(idx, &Counter::MembersAtVersion(v), 1)?;
                        m.version = v;
                    }
                } else {
                    bump(idx, &Counter::MembersAtVersion(m.version), -1)?;
                    bump(idx, &Counter::MembersDisconnected, 1)?;
                    m.status = MemberStatus::Disconnected;
                    newly_disconnected = true;
                }
            }
            let now = now_ms();
            m.last_check = Some(LastCheck {
                run,
                at_ms: now,
                active: result.active,
                version: result.version,
            });
            m.updated_ms = now;
            mem_t.insert(conn, seal(&self.sealer, MEMBERS, conn, &m))?;
            Ok(Checked {
                member: m,
                newly_disconnected,
            })
        })
    }

    /// Number of members (any status), for progress.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }
}

/// A member to import as already connected (tests, benchmarks, and moving
/// members over from another system): the key is sealed like any other.
pub struct ImportMember<'a> {
    pub uid: u64,
    pub connection_id: &'a str,
    pub mydexid: Option<crate::domain::MydexId>,
    pub email: Option<String>,
    pub key: &'a str,
    pub version: u32,
    pub campaign: Option<String>,
}

impl Core {
    /// Core members as connected, in one transaction per call; a member
    /// already held is left as it is. Returns how many were added.
    pub fn import_members(&self, batch: &[ImportMember<'_>]) -> Result<u64> {
        let now = now_ms();
        let sealed: Vec<String> = batch
            .iter()
            .map(|m| {
                self.sealer
                    .seal(m.key.as_bytes(), m.connection_id.as_bytes())
            })
            .collect();
        (&self.members, &self.idx).transaction(|(mem_t, idx)| {
            let mut added = 0u64;
            for (m, sealed_key) in batch.iter().zip(&sealed) {
                if mem_t.get(m.connection_id.as_bytes())?.is_some() {
                    continue;
                }
                let member = Member {
                    connection_id: m.connection_id.to_string(),
                    uid: m.uid,
                    uid_sent: None,
                    mydexid: m.mydexid.clone(),
                    version: m.version,
                    permissions: serde_json::Value::Null,
                    status: MemberStatus::Active,
                    sealed_key: sealed_key.clone(),
                    invitation_id: None,
                    campaign: m.campaign.clone(),
                    email: m.email.clone(),
                    external_ref: None,
                    created_ms: now,
                    updated_ms: now,
                    last_check: None,
                };
                let conn = m.connection_id.as_bytes();
                mem_t.insert(conn, seal(&self.sealer, MEMBERS, conn, &member))?;
                bump(idx, &Counter::MembersAtVersion(m.version), 1)?;
                if let Some(id) = &m.mydexid {
                    idx.insert(
                        IdxKey::MydexId(id.as_str().to_string()).encode(),
                        m.connection_id.as_bytes(),
                    )?;
                }
                added += 1;
            }
            Ok(added)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CallbackOutcome, Credentials, InsertOutcome, Kind, NewInvitation, State};

    fn store() -> (tempfile::TempDir, Core) {
        let dir = tempfile::tempdir().unwrap();
        let s = Core::open(
            &dir.path().join("db"),
            &secrecy::SecretBox::new(Box::new([3u8; 32])),
        )
        .unwrap();
        (dir, s)
    }

    #[test]
    fn an_update_without_linking_token_completes_the_members_update_invitation() {
        let (_d, s) = store();
        let mydexid = crate::domain::MydexId::parse("alice123").unwrap();
        s.import_members(&[ImportMember {
            uid: 1001,
            connection_id: "1001-45678",
            mydexid: Some(mydexid.clone()),
            email: Some("alice@example.com".into()),
            key: "member-key",
            version: 1,
            campaign: Some("c".into()),
        }])
        .unwrap();
        assert_eq!(s.counts(2).unwrap().members_outdated, 1);
        let invitee: crate::domain::Invitee = serde_json::from_value(serde_json::json!({
            "email": "alice@example.com", "name": null, "external_ref": null,
            "mydexid": "alice123", "campaign": null
        }))
        .unwrap();
        let new = || NewInvitation {
            campaign: "c".into(),
            kind: Kind::Update { version: 2 },
            version: 2,
            invitee: invitee.clone(),
        };
        let InsertOutcome::Inserted(id) = s.insert_for_member(new(), "1001-45678", &[]).unwrap()
        else {
            panic!("inserted")
        };
        // The same update again while it is open: not twice.
        assert_eq!(
            s.insert_for_member(new(), "1001-45678", &[]).unwrap(),
            InsertOutcome::Duplicate(id)
        );
        let creds = Credentials {
            uid: 1001,
            uid_sent: None,
            mydexid: Some(mydexid),
            key: None,
            connection_id: "1001-45678".into(),
            fields: serde_json::json!({"ds": 1}),
            linking_token: None,
        };
        let arrival = crate::store::Arrival {
            raw_id: 1,
            digest: [9u8; 32],
        };
        let out = s.apply_credentials(&creds, true, &arrival, 2).unwrap();
        assert_eq!(
            out,
            CallbackOutcome::Updated {
                invitation_id: Some(id)
            }
        );
        assert_eq!(s.invitation(id).unwrap().state, State::Connected);
        let m = s.member("1001-45678").unwrap().unwrap();
        assert_eq!(m.version, 2);
        assert_eq!(s.counts(2).unwrap().members_outdated, 0);
        assert_eq!(s.counts(2).unwrap().members_total, 1);
    }

    #[test]
    fn claims_move_past_each_chunk_and_a_crash_is_settled() {
        let (_d, s) = store();
        let keys: Vec<String> = (0..10).map(|i| format!("{}-45678", 1000 + i)).collect();
        let batch: Vec<ImportMember> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| ImportMember {
                uid: 1000 + i as u64,
                connection_id: k,
                mydexid: None,
                email: None,
                key: "k",
                version: 1,
                campaign: None,
            })
            .collect();
        s.import_members(&batch).unwrap();
        let mut run = SweepRun {
            run: 1,
            ..SweepRun::default()
        };
        let first = s.claim_members("t", &mut run, 4).unwrap().unwrap();
        assert_eq!(first.len(), 4);
        // Two of the four were checked before the "crash".
        for m in &first[..2] {
            s.record_check(
                &m.connection_id,
                1,
                CheckResult {
                    active: true,
                    version: Some(1),
                },
            )
            .unwrap();
        }
        let mut resumed = s.sweep_run("t").unwrap().unwrap();
        s.settle_interrupted_chunk("t", &mut resumed, 1).unwrap();
        assert_eq!(resumed.checked, 2);
        assert_eq!(resumed.interrupted, 2);
        let rest = s.claim_members("t", &mut resumed, 100).unwrap().unwrap();
        assert_eq!(
            rest.len(),
            6,
            "the resumed run starts after the claimed chunk"
        );
        assert!(s.claim_members("t", &mut resumed, 100).unwrap().is_none());
    }
}
