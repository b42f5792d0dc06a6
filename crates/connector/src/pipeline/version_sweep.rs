//! The version sweep (docs/mydex-contract.md §4, §10 step 4): ask Mydex about each
//! member's connection with their own key, record the version it reports,
//! invite members on an older version to re-consent (`update { version }`),
//! and mark revoked connections `disconnected` (with a new first-time
//! invitation where the campaign says `reconnect_on_revoke`). It has its own
//! concurrency and rate, apart from the dispatcher's, so invitations keep
//! flowing while it runs; and it claims members chunk by chunk in the store,
//! so a run cut short resumes after the last claimed chunk and never asks
//! about a member twice.
//!
//! Two guards (docs/mydex-contract.md §6): an answer about *our* connection
//! (a wrong NID, a rotated Connection Token) stops the run at once and
//! touches no member; and members found revoked are held first and only
//! disconnected once the run has judged their share (`sweep_brake`): too
//! many, and the brake holds them until `sweep confirm`, or until a later
//! sweep finds them active again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Settings;
use crate::mydex::{ConnectionStatus, MydexClient, MydexError};
use crate::pipeline::rate_limit::SlidingWindow;
use crate::pipeline::sweep_brake::{Verdict, judge};
use crate::store::{
    Brake, CheckResult, ConnectionDenied, InsertOutcome, Kind, Member, NewInvitation, State, Store,
    StoreError, SweepRun, now_ms,
};

pub const JOB: &str = "version";

pub struct VersionSweep {
    settings: Arc<Settings>,
    store: Store,
    mydex: Arc<MydexClient>,
    wake: Arc<Notify>,
    limit: Option<SlidingWindow>,
    /// The campaigns' settings as they stand now (`reconnect_on_revoke`).
    control: Arc<crate::pipeline::campaign_control::CampaignControl>,
    /// Held by a run, and by `confirm`: never both at once.
    busy: tokio::sync::Mutex<()>,
}

/// What checking one member came to.
#[derive(Debug)]
enum Outcome {
    Current,
    Outdated {
        invited: bool,
    },
    /// Found not active: held, to be judged at the end of the chunk.
    Revoked,
    /// Mydex refused our connection: the member is left as it was.
    Denied,
    Error,
    Interrupted,
}

/// How a run's chunks ended.
enum End {
    Done,
    Shutdown,
    /// Mydex refused our connection; the reason.
    Denied(String),
}

/// What the checks of one run share.
struct RunCtx {
    /// Cancelled on shutdown, or at once when Mydex refuses our connection.
    stop: CancellationToken,
    /// The first refusal of our connection in this run.
    denied: OnceLock<String>,
    /// A refusal is on record (from an earlier run) and not yet cleared.
    denial_on_record: AtomicBool,
    /// Some member is held: an active answer must let it go.
    any_held: bool,
}

/// What `sweep confirm` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Confirmed {
    pub released: u64,
    pub disconnected: u64,
    pub invited: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("a version sweep is running; confirm once it has finished")]
    Running,
    #[error("the brake is not engaged; there is nothing to confirm")]
    NotEngaged,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VersionSweep {
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        mydex: Arc<MydexClient>,
        wake: Arc<Notify>,
        control: Arc<crate::pipeline::campaign_control::CampaignControl>,
    ) -> Self {
        let limit = settings.schedule.sweep_rate.map(SlidingWindow::new);
        Self {
            settings,
            store,
            mydex,
            wake,
            limit,
            control,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// One run, from the start or from where an interrupted one stopped.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let _busy = self.busy.lock().await;
        let started = Instant::now();
        let current = self.settings.mydex.connection_version;
        let run = self.start_run(current).await;
        let (mut run, denied, any_held) = match run {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(job = JOB, error = %e, "version sweep cannot start");
                return;
            }
        };
        let ctx = RunCtx {
            stop: shutdown.child_token(),
            denied: OnceLock::new(),
            denial_on_record: AtomicBool::new(denied),
            any_held,
        };
        let span = tracing::info_span!("sweep", job = JOB, run = run.run);
        async {
            if run.resumes > 0 {
                tracing::info!(resumes = run.resumes, after = run.cursor.as_deref().unwrap_or(""), checked = run.checked, interrupted = run.interrupted, "version sweep resumed where it stopped");
            } else {
                let members = self.store.member_count().await.unwrap_or(0);
                tracing::info!(members, connection_version = current, "version sweep started");
            }
            match self.chunks(&mut run, &ctx).await {
                Ok(End::Done) => self.finish(&mut run, started).await,
                Ok(End::Shutdown) => self.stop_shutdown(&mut run, started).await,
                Ok(End::Denied(reason)) => self.stop_denied(&mut run, started, reason).await,
                Err(e) => {
                    tracing::error!(error = %e, checked = run.checked, "version sweep stopped on a store error; it resumes at the next trigger");
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The run to go on with: an interrupted one (its unfinished chunk
    /// settled) or a new one, recorded; with whether a connection denial is
    /// on record and whether any member is held.
    async fn start_run(&self, current: u32) -> Result<(SweepRun, bool, bool), StoreError> {
        let store = &self.store;
        let run = match store.sweep_run(JOB).await? {
            Some(mut r) if r.running() => {
                r.resumes += 1;
                store.settle_interrupted_chunk(JOB, &mut r, current).await?;
                r
            }
            prev => SweepRun {
                run: prev.map(|r| r.run + 1).unwrap_or(1),
                started_ms: now_ms(),
                ..SweepRun::default()
            },
        };
        store.save_sweep_run(JOB, &run).await?;
        store.flush().await?;
        let denied = store.connection_denied(JOB).await?.is_some();
        let any_held = store.held_count(JOB).await? > 0;
        Ok((run, denied, any_held))
    }

    /// Every member checked: record the end of the run and say what it did.
    async fn finish(&self, run: &mut SweepRun, started: Instant) {
        run.finished_ms = Some(now_ms());
        run.duration_ms += started.elapsed().as_millis() as u64;
        if let Err(e) = self.save_durably(run).await {
            tracing::error!(error = %e, "cannot record the end of the sweep");
        }
        tracing::info!(
            checked = run.checked,
            outdated = run.outdated,
            disconnected = run.disconnected,
            held = run.held,
            invited = run.invited,
            errors = run.errors,
            interrupted = run.interrupted,
            resumes = run.resumes,
            duration_ms = run.duration_ms,
            "version sweep finished"
        );
    }

    /// Shutdown: record where the run stopped, to resume there at the next
    /// start.
    async fn stop_shutdown(&self, run: &mut SweepRun, started: Instant) {
        run.duration_ms += started.elapsed().as_millis() as u64;
        let _ = self.save_durably(run).await;
        tracing::info!(
            checked = run.checked,
            after = run.cursor.as_deref().unwrap_or(""),
            duration_ms = run.duration_ms,
            "version sweep stopped by shutdown; it resumes at the next start"
        );
    }

    /// Mydex refused our connection: end the run where it is (the next run
    /// starts from the first member, so every member is checked again),
    /// keep the refusal for `/readyz` and `status`, and say so once.
    async fn stop_denied(&self, run: &mut SweepRun, started: Instant, reason: String) {
        run.finished_ms = Some(now_ms());
        run.duration_ms += started.elapsed().as_millis() as u64;
        run.stopped = Some(reason.clone());
        let before = self.record_denial(run, reason.clone()).await;
        match before {
            Ok(None) => tracing::error!(
                reason,
                checked = run.checked,
                "Mydex refuses our connection on status checks (check mydex.connection_nid and the Connection Token): the version sweep stopped and touched no member; /readyz fails until a status check succeeds"
            ),
            Ok(Some(_)) => tracing::warn!(
                reason,
                "Mydex still refuses our connection: the version sweep stopped again and touched no member"
            ),
            Err(e) => {
                tracing::error!(reason, error = %e, "Mydex refuses our connection, and the refusal cannot be recorded")
            }
        }
    }

    /// Claim and check chunk after chunk, until every member is done.
    async fn chunks(self: &Arc<Self>, run: &mut SweepRun, ctx: &RunCtx) -> Result<End, StoreError> {
        let concurrency = self.settings.schedule.sweep_concurrency;
        // Each chunk ends in a barrier and costs one fsync; bigger chunks
        // cost more re-checks deferred to the next run after a crash.
        let chunk = (concurrency * 8).max(8);
        loop {
            if ctx.stop.is_cancelled() {
                return Ok(match ctx.denied.get() {
                    Some(r) => End::Denied(r.clone()),
                    None => End::Shutdown,
                });
            }
            let claimed = self.store.claim_members(JOB, run, chunk).await?;
            // Durable before any of them is asked about.
            self.store.flush().await?;
            let Some(members) = claimed else {
                self.judge_held(run, true).await?;
                return Ok(End::Done);
            };
            let number = run.run;
            let outcomes: Vec<Outcome> = futures_util::stream::iter(members)
                .map(|m| {
                    let me = self.clone();
                    async move { me.check(m, number, ctx).await }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            for o in outcomes {
                match o {
                    Outcome::Current => run.checked += 1,
                    Outcome::Outdated { invited } => {
                        run.checked += 1;
                        run.outdated += 1;
                        run.invited += invited as u64;
                    }
                    Outcome::Revoked => {
                        run.checked += 1;
                        run.held += 1;
                    }
                    Outcome::Error => run.errors += 1,
                    Outcome::Denied | Outcome::Interrupted => run.interrupted += 1,
                }
            }
            if let Some(reason) = ctx.denied.get() {
                return Ok(End::Denied(reason.clone()));
            }
            // This chunk is settled.
            run.chunk_start = run.cursor.clone();
            self.judge_held(run, false).await?;
            self.store.save_sweep_run(JOB, run).await?;
        }
    }

    /// After a chunk (and at the end): disconnect the members this run
    /// holds, keep holding them while too few are checked to judge, or
    /// engage the brake. An engaged brake holds until `confirm`, or until
    /// no member is held any more (found active again).
    async fn judge_held(&self, run: &mut SweepRun, finished: bool) -> Result<(), StoreError> {
        let brake = self.store.brake(JOB).await?;
        let held = self.store.held_count(JOB).await?;
        if let Some(b) = brake {
            if finished && held == 0 {
                self.store.set_brake(JOB, None).await?;
                self.store.flush().await?;
                tracing::info!(
                    since_run = b.run,
                    "the brake is released: every member it held was found active again"
                );
            }
            return Ok(());
        }
        if run.held == 0 {
            return Ok(());
        }
        let revoked = run.disconnected + run.held;
        match judge(
            self.settings.schedule.max_disconnect_share,
            run.checked,
            revoked,
            finished,
        ) {
            Verdict::Wait => Ok(()),
            Verdict::Disconnect => {
                let this = run.run;
                let held = self.store.held_members(JOB).await?;
                for h in held.into_iter().filter(|h| h.run == this) {
                    run.held = run.held.saturating_sub(1);
                    if let Some(invited) = self.disconnect(&h.connection_id, this).await {
                        run.disconnected += 1;
                        run.invited += invited as u64;
                    }
                }
                Ok(())
            }
            Verdict::Brake(reason) => {
                let b = Brake {
                    run: run.run,
                    since_ms: now_ms(),
                    checked: run.checked,
                    revoked,
                    reason: reason.clone(),
                };
                self.store.set_brake(JOB, Some(b)).await?;
                self.store.flush().await?;
                tracing::warn!(
                    reason,
                    held = run.held,
                    checked = run.checked,
                    "the brake is engaged: members found revoked are held, not disconnected and not mailed, until `mydex-connector sweep confirm` (or a later sweep finds them active again)"
                );
                Ok(())
            }
        }
    }

    /// Disconnect one held member as an unbraked sweep would have (with a
    /// new invitation where its campaign says `reconnect_on_revoke`).
    /// `Some(invited)` if it was disconnected; `None` if it no longer was
    /// active (or on a store error, logged).
    async fn disconnect(&self, connection_id: &str, run: u64) -> Option<bool> {
        let span = tracing::info_span!("member", connection_id = %connection_id);
        async {
            let checked = self.record_revoked(connection_id, run).await;
            let checked = match checked {
                Ok(Some(c)) => c,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(error = %e, "cannot disconnect the held member");
                    return None;
                }
            };
            if !checked.newly_disconnected {
                return None;
            }
            let member = checked.member;
            let campaign = self.campaign_of(&member);
            let reconnect = self
                .control
                .campaign(&campaign)
                .is_some_and(|c| c.reconnect_on_revoke);
            tracing::warn!(
                campaign,
                external_ref = member.external_ref.as_deref().unwrap_or(""),
                reconnect,
                "connection revoked or inactive at Mydex: member disconnected"
            );
            let current = self.settings.mydex.connection_version;
            let invited = reconnect
                && self
                    .invite(
                        &member,
                        Kind::Connect,
                        current,
                        &[State::Connected, State::Expired],
                    )
                    .await;
            Some(invited)
        }
        .instrument(span)
        .await
    }

    /// `sweep confirm`: the operator says the held members really revoked.
    /// Disconnect them all (and re-invite as configured) and release the brake.
    pub async fn confirm(&self) -> Result<Confirmed, ConfirmError> {
        let _busy = self.busy.try_lock().map_err(|_| ConfirmError::Running)?;
        let brake = self.store.brake(JOB).await?;
        let held = self.store.held_members(JOB).await?;
        let Some(brake) = brake else {
            return Err(ConfirmError::NotEngaged);
        };
        let mut done = Confirmed {
            released: held.len() as u64,
            disconnected: 0,
            invited: 0,
        };
        let mut in_last_run = 0u64;
        let last = self.store.sweep_run(JOB).await?;
        for h in &held {
            if let Some(invited) = self.disconnect(&h.connection_id, h.run).await {
                done.disconnected += 1;
                done.invited += invited as u64;
                if last.as_ref().is_some_and(|r| r.run == h.run) {
                    in_last_run += 1;
                }
            }
        }
        // The last run's figures now say what became of what it held.
        if let Some(mut r) = self.store.sweep_run(JOB).await?
            && last.as_ref().is_some_and(|l| l.run == r.run)
        {
            r.held = r.held.saturating_sub(in_last_run);
            r.disconnected += in_last_run;
            r.invited += done.invited;
            self.store.save_sweep_run(JOB, &r).await?;
        }
        self.store.set_brake(JOB, None).await?;
        self.store.flush().await?;
        tracing::warn!(
            released = done.released,
            disconnected = done.disconnected,
            invited = done.invited,
            reason = brake.reason,
            "sweep confirm: the held members are disconnected and the brake is released"
        );
        Ok(done)
    }

    /// Save the run and make it durable.
    async fn save_durably(&self, run: &SweepRun) -> Result<(), StoreError> {
        self.store.save_sweep_run(JOB, run).await?;
        self.store.flush().await
    }

    /// Save the run stopped by a refusal of our connection, and the
    /// refusal (kept since its first run); the refusal on record before.
    async fn record_denial(
        &self,
        run: &SweepRun,
        reason: String,
    ) -> Result<Option<ConnectionDenied>, StoreError> {
        let before = self.store.connection_denied(JOB).await?;
        self.store.save_sweep_run(JOB, run).await?;
        let denied = ConnectionDenied {
            run: run.run,
            since_ms: before.as_ref().map_or_else(now_ms, |b| b.since_ms),
            reason,
        };
        self.store.set_connection_denied(JOB, Some(denied)).await?;
        self.store.flush().await?;
        Ok(before)
    }

    /// Record a held member as found revoked and let it go; `None` if it
    /// is gone from the store meanwhile (nothing to disconnect).
    async fn record_revoked(
        &self,
        conn: &str,
        run: u64,
    ) -> Result<Option<crate::store::Checked>, StoreError> {
        if self.store.member(conn).await?.is_none() {
            self.store.unhold_member(JOB, conn).await?;
            return Ok(None);
        }
        let inactive = CheckResult {
            active: false,
            version: None,
        };
        let c = self.store.record_check(conn, run, inactive).await?;
        self.store.unhold_member(JOB, conn).await?;
        Ok(Some(c))
    }

    /// Check one member's connection at Mydex and act on what it says.
    async fn check(&self, m: Member, run: u64, ctx: &RunCtx) -> Outcome {
        let span = tracing::info_span!("member", connection_id = %m.connection_id, campaign = m.campaign.as_deref().unwrap_or(""), external_ref = m.external_ref.as_deref().unwrap_or(""));
        async {
            let status = match self.ask_status(&m, ctx).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
            if ctx.denial_on_record.swap(false, Ordering::SeqCst) {
                match self.store.set_connection_denied(JOB, None).await {
                    Ok(()) => tracing::info!("Mydex accepts our connection again: /readyz no longer fails on it"),
                    Err(e) => tracing::error!(error = %e, "cannot clear the recorded refusal of our connection"),
                }
            }
            if !(status.exists && status.active) {
                return self.hold(&m, run).await;
            }
            let member = match self.record_active(&m, run, ctx, status.version).await {
                Ok(member) => member,
                Err(outcome) => return outcome,
            };
            let current = self.settings.mydex.connection_version;
            if member.version < current {
                let invited = self
                    .invite(&member, Kind::Update { version: current }, current, &[])
                    .await;
                return Outcome::Outdated { invited };
            }
            Outcome::Current
        }
        .instrument(span)
        .await
    }

    /// The member's connection status at Mydex (within the sweep's rate);
    /// or the outcome when it cannot be had. A refusal of our own
    /// connection stops every other check of this run at once.
    async fn ask_status(&self, m: &Member, ctx: &RunCtx) -> Result<ConnectionStatus, Outcome> {
        if ctx.stop.is_cancelled() {
            return Err(Outcome::Interrupted);
        }
        let key = match self
            .store
            .sealer()
            .open_secret(&m.sealed_key, m.connection_id.as_bytes())
        {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the member's connection key");
                return Err(Outcome::Error);
            }
        };
        let status = {
            let _slot = match &self.limit {
                Some(l) => Some(l.acquire().await),
                None => None,
            };
            if ctx.stop.is_cancelled() {
                return Err(Outcome::Interrupted);
            }
            self.mydex
                .connection_status(m.uid, &m.connection_id, &key)
                .await
        };
        match status {
            Ok(s) => Ok(s),
            Err(e @ MydexError::OurConnection { .. }) => {
                // Stop every other check of this run at once.
                let _ = ctx.denied.set(e.to_string());
                ctx.stop.cancel();
                Err(Outcome::Denied)
            }
            Err(e) => {
                tracing::warn!(error = %e, "connection status check failed; the next sweep tries again");
                Err(Outcome::Error)
            }
        }
    }

    /// Not active at Mydex: hold the member until the sweep has judged how
    /// many are.
    async fn hold(&self, m: &Member, run: u64) -> Outcome {
        match self.store.hold_member(JOB, &m.connection_id, run).await {
            Ok(_) => {
                tracing::info!(
                    "connection revoked or inactive at Mydex: held until the sweep has judged how many are"
                );
                Outcome::Revoked
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot hold the member");
                Outcome::Error
            }
        }
    }

    /// Active at Mydex: record the check (and release the member if held);
    /// the member as now recorded.
    async fn record_active(
        &self,
        m: &Member,
        run: u64,
        ctx: &RunCtx,
        version: Option<u32>,
    ) -> Result<Member, Outcome> {
        let result = CheckResult {
            active: true,
            version,
        };
        let (store, conn) = (&self.store, &m.connection_id);
        let recorded = async {
            let c = store.record_check(conn, run, result).await?;
            let unheld = ctx.any_held && store.unhold_member(JOB, conn).await?;
            Ok::<_, StoreError>((c, unheld))
        };
        match recorded.await {
            Ok((c, unheld)) => {
                if unheld {
                    tracing::info!("a held member is active at Mydex again: no longer held");
                }
                Ok(c.member)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record the check");
                Err(Outcome::Error)
            }
        }
    }

    fn campaign_of(&self, m: &Member) -> String {
        m.campaign
            .clone()
            .filter(|c| self.settings.campaign(c).is_some())
            .unwrap_or_else(|| self.settings.default_campaign().name.clone())
    }

    /// Queue an invitation for a member we hold; true if a new one was queued.
    async fn invite(&self, m: &Member, kind: Kind, version: u32, closed: &'static [State]) -> bool {
        let campaign = self.campaign_of(m);
        let member = m;
        let result = async {
            // The invitee as they came (name, reference, template columns).
            let stored = match member.invitation_id {
                Some(id) => Some(self.store.invitation(id).await),
                None => None,
            };
            let mut invitee = match stored {
                Some(Ok(inv)) => inv.invitee,
                _ => {
                    let email = member
                        .email
                        .as_deref()
                        .and_then(|e| crate::domain::Email::parse(e).ok())
                        .ok_or_else(|| {
                            StoreError::Corrupt("the member has no email address".into())
                        })?;
                    crate::domain::Invitee {
                        email,
                        name: None,
                        external_ref: member.external_ref.clone(),
                        mydexid: None,
                        campaign: None,
                        vars: Default::default(),
                    }
                }
            };
            if member.mydexid.is_some() {
                invitee.mydexid = member.mydexid.clone();
            }
            if matches!(kind, Kind::Update { .. }) && invitee.mydexid.is_none() {
                return Err(StoreError::Corrupt(
                    "an update needs the member's MydexID, which we do not hold".into(),
                ));
            }
            self.store
                .insert_for_member(
                    NewInvitation {
                        campaign,
                        kind,
                        version,
                        invitee,
                    },
                    &member.connection_id,
                    closed,
                )
                .await
        }
        .await;
        match result {
            Ok(InsertOutcome::Inserted(id)) => {
                tracing::info!(invitation = id, kind = ?kind, "invitation queued for the member");
                self.wake.notify_one();
                true
            }
            Ok(InsertOutcome::Suppressed(source)) => {
                tracing::info!(
                    suppressed = source.as_str(),
                    "the member is on the suppression list: not invited"
                );
                false
            }
            Ok(InsertOutcome::Duplicate(id)) => {
                tracing::debug!(
                    invitation = id,
                    "the member already has this invitation open"
                );
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot invite the member");
                false
            }
        }
    }
}
