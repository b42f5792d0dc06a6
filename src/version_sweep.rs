//! The version sweep (MYDEX-CONTRACT.md §4, §7 step 4): ask Mydex about each
//! member's connection with their own key, record the version it reports,
//! invite members on an older version to re-consent (`update { version }`),
//! and mark revoked connections `disconnected` (with a new first-time
//! invitation where the campaign says `reconnect_on_revoke`). It has its own
//! concurrency and rate, apart from the dispatcher's, so invitations keep
//! flowing while it runs; and it claims members chunk by chunk in the store,
//! so a run cut short resumes after the last claimed chunk and never asks
//! about a member twice.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Settings;
use crate::mydex::MydexClient;
use crate::rate::SlidingWindow;
use crate::store::{
    CheckResult, InsertOutcome, Kind, Member, NewInvitation, State, Store, StoreError, SweepRun,
    now_ms,
};

pub const JOB: &str = "version";

pub struct VersionSweep {
    settings: Arc<Settings>,
    store: Store,
    mydex: Arc<MydexClient>,
    wake: Arc<Notify>,
    limit: Option<SlidingWindow>,
    /// The campaigns' settings as they stand now (`reconnect_on_revoke`).
    control: Arc<crate::campaigns::CampaignControl>,
}

/// What checking one member came to.
#[derive(Debug)]
enum Outcome {
    Current,
    Outdated { invited: bool },
    Disconnected { invited: bool },
    Error,
    Interrupted,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))?
}

impl VersionSweep {
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        mydex: Arc<MydexClient>,
        wake: Arc<Notify>,
        control: Arc<crate::campaigns::CampaignControl>,
    ) -> Self {
        let limit = settings.schedule.sweep_rate.map(SlidingWindow::new);
        Self {
            settings,
            store,
            mydex,
            wake,
            limit,
            control,
        }
    }

    /// One run, from the start or from where an interrupted one stopped.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let started = Instant::now();
        let current = self.settings.mydex.connection_version;
        let store = self.store.clone();
        let run = blocking(move || {
            let run = match store.sweep_run(JOB)? {
                Some(mut r) if r.running() => {
                    r.resumes += 1;
                    store.settle_interrupted_chunk(JOB, &mut r, current)?;
                    r
                }
                prev => SweepRun {
                    run: prev.map(|r| r.run + 1).unwrap_or(1),
                    started_ms: now_ms(),
                    ..SweepRun::default()
                },
            };
            store.save_sweep_run(JOB, &run)?;
            store.flush_blocking()?;
            Ok(run)
        })
        .await;
        let mut run = match run {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(job = JOB, error = %e, "version sweep cannot start");
                return;
            }
        };
        let span = tracing::info_span!("sweep", job = JOB, run = run.run);
        async {
            if run.resumes > 0 {
                tracing::info!(resumes = run.resumes, after = run.cursor.as_deref().unwrap_or(""), checked = run.checked, interrupted = run.interrupted, "version sweep resumed where it stopped");
            } else {
                tracing::info!(members = self.store.member_count(), connection_version = current, "version sweep started");
            }
            match self.chunks(&mut run, &shutdown).await {
                Ok(true) => {
                    run.finished_ms = Some(now_ms());
                    run.duration_ms += started.elapsed().as_millis() as u64;
                    let (store, r) = (self.store.clone(), run.clone());
                    if let Err(e) = blocking(move || {
                        store.save_sweep_run(JOB, &r)?;
                        store.flush_blocking()
                    })
                    .await
                    {
                        tracing::error!(error = %e, "cannot record the end of the sweep");
                    }
                    tracing::info!(
                        checked = run.checked,
                        outdated = run.outdated,
                        disconnected = run.disconnected,
                        invited = run.invited,
                        errors = run.errors,
                        interrupted = run.interrupted,
                        resumes = run.resumes,
                        duration_ms = run.duration_ms,
                        "version sweep finished"
                    );
                }
                Ok(false) => {
                    run.duration_ms += started.elapsed().as_millis() as u64;
                    let (store, r) = (self.store.clone(), run.clone());
                    let _ = blocking(move || {
                        store.save_sweep_run(JOB, &r)?;
                        store.flush_blocking()
                    })
                    .await;
                    tracing::info!(checked = run.checked, after = run.cursor.as_deref().unwrap_or(""), duration_ms = run.duration_ms, "version sweep stopped by shutdown; it resumes at the next start");
                }
                Err(e) => {
                    tracing::error!(error = %e, checked = run.checked, "version sweep stopped on a store error; it resumes at the next trigger");
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Claim and check chunk after chunk; true once every member is done.
    async fn chunks(
        self: &Arc<Self>,
        run: &mut SweepRun,
        shutdown: &CancellationToken,
    ) -> Result<bool, StoreError> {
        let concurrency = self.settings.schedule.sweep_concurrency;
        // Each chunk ends in a barrier and costs one fsync; bigger chunks
        // cost more re-checks deferred to the next run after a crash.
        let chunk = (concurrency * 8).max(8);
        loop {
            if shutdown.is_cancelled() {
                return Ok(false);
            }
            let (store, mut r) = (self.store.clone(), run.clone());
            let (claimed, r) = blocking(move || {
                let c = store.claim_members(JOB, &mut r, chunk)?;
                // Durable before any of them is asked about.
                store.flush_blocking()?;
                Ok((c, r))
            })
            .await?;
            *run = r;
            let Some(members) = claimed else {
                return Ok(true);
            };
            let number = run.run;
            let outcomes: Vec<Outcome> = futures_util::stream::iter(members)
                .map(|m| {
                    let me = self.clone();
                    let stop = shutdown.clone();
                    async move { me.check(m, number, &stop).await }
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
                    Outcome::Disconnected { invited } => {
                        run.checked += 1;
                        run.disconnected += 1;
                        run.invited += invited as u64;
                    }
                    Outcome::Error => run.errors += 1,
                    Outcome::Interrupted => run.interrupted += 1,
                }
            }
            // This chunk is settled.
            run.chunk_start = run.cursor.clone();
            let (store, r) = (self.store.clone(), run.clone());
            blocking(move || store.save_sweep_run(JOB, &r)).await?;
        }
    }

    async fn check(&self, m: Member, run: u64, shutdown: &CancellationToken) -> Outcome {
        let span = tracing::info_span!("member", connection_id = %m.connection_id, campaign = m.campaign.as_deref().unwrap_or(""), external_ref = m.external_ref.as_deref().unwrap_or(""));
        async {
            if shutdown.is_cancelled() {
                return Outcome::Interrupted;
            }
            let key = match self
                .store
                .sealer()
                .open_secret(&m.sealed_key, m.connection_id.as_bytes())
            {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the member's connection key");
                    return Outcome::Error;
                }
            };
            let status = {
                let _slot = match &self.limit {
                    Some(l) => Some(l.acquire().await),
                    None => None,
                };
                self.mydex
                    .connection_status(m.uid, &m.connection_id, &key)
                    .await
            };
            let status = match status {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "connection status check failed; the next sweep tries again");
                    return Outcome::Error;
                }
            };
            let result = CheckResult {
                active: status.exists && status.active,
                version: status.version,
            };
            let (store, conn) = (self.store.clone(), m.connection_id.clone());
            let checked = match blocking(move || store.record_check(&conn, run, result)).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot record the check");
                    return Outcome::Error;
                }
            };
            let member = checked.member;
            let current = self.settings.mydex.connection_version;
            if checked.newly_disconnected {
                let campaign = self.campaign_of(&member);
                let reconnect = self
                    .control
                    .campaign(&campaign)
                    .is_some_and(|c| c.reconnect_on_revoke);
                tracing::warn!(reconnect, "connection revoked or inactive at Mydex: member disconnected");
                let invited = reconnect
                    && self
                        .invite(&member, Kind::Connect, current, &[State::Connected, State::Expired])
                        .await;
                return Outcome::Disconnected { invited };
            }
            if !result.active {
                return Outcome::Current;
            }
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

    fn campaign_of(&self, m: &Member) -> String {
        m.campaign
            .clone()
            .filter(|c| self.settings.campaign(c).is_some())
            .unwrap_or_else(|| self.settings.default_campaign().name.clone())
    }

    /// Queue an invitation for a member we hold; true if a new one was queued.
    async fn invite(&self, m: &Member, kind: Kind, version: u32, closed: &'static [State]) -> bool {
        let campaign = self.campaign_of(m);
        let store = self.store.clone();
        let member = m.clone();
        let result = blocking(move || {
            // The invitee as they came (name, reference, template columns).
            let mut invitee = match member.invitation_id.map(|id| store.invitation(id)) {
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
            store.insert_for_member(
                NewInvitation {
                    campaign,
                    kind,
                    version,
                    invitee,
                },
                &member.connection_id,
                closed,
            )
        })
        .await;
        match result {
            Ok(InsertOutcome::Inserted(id)) => {
                tracing::info!(invitation = id, kind = ?kind, "invitation queued for the member");
                self.wake.notify_one();
                true
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
