//! The expiry sweep (docs/mydex-contract.md §10 step 3): a mailed link unused past
//! `invitations.link_ttl` is dead at Mydex, so its invitation becomes
//! `expired`; `reminder_after` later it goes back to `queued` as a reminder
//! (the dispatcher asks for a fresh link and mails it with the reminder
//! templates), until the campaign's `max_reminders` are spent. Each step is a
//! compare-and-swap decided by times in the record, so a run is idempotent;
//! it still keeps a cursor, so an interrupted run picks up where it stopped.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Settings;
use crate::pipeline::campaign_control::{CampaignControl, Hold};
use crate::store::{Invitation, State, Store, StoreError, SweepRun, now_ms};

pub const JOB: &str = "expiry";

pub struct ExpirySweep {
    settings: Arc<Settings>,
    store: Store,
    control: Arc<CampaignControl>,
    wake: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Counts {
    seen: u64,
    expired: u64,
    reminded: u64,
    exhausted: u64,
    held: u64,
}

impl ExpirySweep {
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        control: Arc<CampaignControl>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            settings,
            store,
            control,
            wake,
        }
    }

    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let started = Instant::now();
        match self.sweep(&shutdown).await {
            Ok((run, c, done)) => {
                if c.reminded > 0 {
                    self.wake.notify_one();
                }
                tracing::info!(
                    job = JOB,
                    run = run.run,
                    seen = c.seen,
                    expired = c.expired,
                    reminded = c.reminded,
                    reminders_spent = c.exhausted,
                    held = c.held,
                    duration_ms = started.elapsed().as_millis() as u64,
                    finished = done,
                    "expiry sweep {}",
                    if done {
                        "finished"
                    } else {
                        "stopped by shutdown; it resumes at the next start"
                    }
                );
            }
            Err(e) => {
                tracing::error!(job = JOB, error = %e, "expiry sweep stopped on a store error")
            }
        }
    }

    async fn sweep(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<(SweepRun, Counts, bool), StoreError> {
        let backfilled = self.store.expiry_backfill().await?;
        if backfilled > 0 {
            tracing::info!(job = JOB, invitations = backfilled, "expiry index built");
        }
        let mut run = match self.store.sweep_run(JOB).await? {
            Some(mut r) if r.running() => {
                r.resumes += 1;
                r
            }
            prev => SweepRun {
                run: prev.map(|r| r.run + 1).unwrap_or(1),
                started_ms: now_ms(),
                ..SweepRun::default()
            },
        };
        let mut c = Counts::default();
        let mut cursor: Option<u64> = run.cursor.as_deref().and_then(|s| s.parse().ok());
        loop {
            if shutdown.is_cancelled() {
                self.store.save_sweep_run(JOB, &run).await?;
                return Ok((run, c, false));
            }
            let batch = self.store.expiry_batch(cursor, 512).await?;
            let Some(last) = batch.last().map(|i| i.id) else {
                break;
            };
            for inv in batch {
                let span = tracing::info_span!("invitation", id = inv.id, campaign = %inv.campaign, external_ref = inv.invitee.external_ref.as_deref().unwrap_or(""));
                c.seen += 1;
                match self.step(&inv).instrument(span).await {
                    Ok(Step::Expired) => c.expired += 1,
                    Ok(Step::Reminded) => c.reminded += 1,
                    Ok(Step::Exhausted) => c.exhausted += 1,
                    Ok(Step::Held) => c.held += 1,
                    Ok(Step::Nothing) => {}
                    // Someone else moved it (a callback): nothing to do.
                    Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            cursor = Some(last);
            run.cursor = Some(last.to_string());
            run.checked = c.seen;
            run.outdated = c.expired;
            run.invited = c.reminded;
            self.store.save_sweep_run(JOB, &run).await?;
        }
        run.finished_ms = Some(now_ms());
        run.checked = c.seen;
        run.outdated = c.expired;
        run.invited = c.reminded;
        self.store.save_sweep_run(JOB, &run).await?;
        self.store.flush().await?;
        Ok((run, c, true))
    }

    async fn step(&self, inv: &Invitation) -> Result<Step, StoreError> {
        let now = now_ms();
        let campaign = self.control.campaign(&inv.campaign);
        let (after, max) = campaign
            .map(|c| (c.reminder_after, c.max_reminders))
            .unwrap_or((
                self.settings.invitations.reminder_after,
                self.settings.invitations.max_reminders,
            ));
        let ttl = self.settings.invitations.link_ttl.as_millis() as u64;
        match inv.state {
            State::Sent => {
                let issued = inv.link_issued_ms.unwrap_or(inv.updated_ms);
                if now >= issued.saturating_add(ttl) {
                    let note = format!(
                        "link unused after {}",
                        humantime::format_duration(self.settings.invitations.link_ttl)
                    );
                    self.store.expire(inv.id, note).await?;
                    tracing::info!(
                        state = "expired",
                        reminders = inv.reminders,
                        "link expired unused"
                    );
                    return Ok(Step::Expired);
                }
                Ok(Step::Nothing)
            }
            State::Expired => {
                if inv.reminders >= max {
                    self.store.retire_from_expiry(inv.id).await?;
                    tracing::info!(
                        reminders = inv.reminders,
                        "no reminders left; the invitation stays expired"
                    );
                    return Ok(Step::Exhausted);
                }
                let since = inv.expired_ms.unwrap_or(inv.updated_ms);
                if now < since.saturating_add(after.as_millis() as u64) {
                    return Ok(Step::Nothing);
                }
                if let Some(Hold::Paused(_)) = self.control.hold(&inv.campaign) {
                    return Ok(Step::Held);
                }
                self.store.remind(inv.id, inv.reminders + 1).await?;
                tracing::info!(
                    state = "queued",
                    reminder = inv.reminders + 1,
                    "reminder queued with a fresh link to come"
                );
                Ok(Step::Reminded)
            }
            _ => {
                self.store.retire_from_expiry(inv.id).await?;
                Ok(Step::Nothing)
            }
        }
    }
}

enum Step {
    Expired,
    Reminded,
    Exhausted,
    Held,
    Nothing,
}
