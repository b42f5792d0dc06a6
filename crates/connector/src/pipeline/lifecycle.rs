//! The connection lifecycle as one running part of the daemon: campaign
//! control, the version and expiry sweeps as jobs, and the cron scheduler
//! that starts them. A sweep found unfinished in the store at start (a crash
//! or shutdown cut it short) is resumed at once.

use std::sync::Arc;

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin_api::status::{BrakeStatus, Campaigns, SweepStatus};
use crate::config::Settings;
use crate::mydex::MydexClient;
use crate::pipeline::campaign_control::CampaignControl;
use crate::pipeline::expiry_sweep::{self, ExpirySweep};
use crate::pipeline::schedule::{Job, ScheduleError, Scheduler};
use crate::pipeline::version_sweep::{self, VersionSweep};
use crate::store::{Store, StoreError};

/// Why the lifecycle could not start: the cron scheduler, or reading the
/// sweeps' state from the store.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Lifecycle {
    pub control: Arc<CampaignControl>,
    pub version: Arc<Job>,
    pub expiry: Arc<Job>,
    /// The version sweep itself, for `sweep confirm`.
    pub sweep: Arc<VersionSweep>,
    store: Store,
    scheduler: tokio::sync::Mutex<Option<Scheduler>>,
    tracker: TaskTracker,
}

impl Lifecycle {
    pub async fn start(
        settings: Arc<Settings>,
        store: Store,
        mydex: Arc<MydexClient>,
        control: Arc<CampaignControl>,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, LifecycleError> {
        let tracker = TaskTracker::new();
        let vs = Arc::new(VersionSweep::new(
            settings.clone(),
            store.clone(),
            mydex,
            wake.clone(),
            control.clone(),
        ));
        let sweep = vs.clone();
        let version = Job::new(
            version_sweep::JOB,
            tracker.clone(),
            shutdown.clone(),
            move |stop| Box::pin(vs.clone().run(stop)),
        );
        let es = Arc::new(ExpirySweep::new(
            settings.clone(),
            store.clone(),
            control.clone(),
            wake,
        ));
        let expiry = Job::new(expiry_sweep::JOB, tracker.clone(), shutdown, move |stop| {
            Box::pin(es.clone().run(stop))
        });
        let scheduler = Scheduler::start(vec![
            (settings.schedule.version_check.clone(), version.clone()),
            (settings.schedule.expiry_check.clone(), expiry.clone()),
        ])
        .await?;
        for job in [&version, &expiry] {
            if store
                .sweep_run(job.name)
                .await?
                .is_some_and(|r| r.running())
            {
                tracing::info!(
                    job = job.name,
                    "an unfinished sweep is in the store; resuming it"
                );
                job.trigger("resume");
            }
        }
        Ok(Arc::new(Self {
            control,
            version,
            expiry,
            sweep,
            store,
            scheduler: tokio::sync::Mutex::new(Some(scheduler)),
            tracker,
        }))
    }

    pub fn job(&self, name: &str) -> Option<&Arc<Job>> {
        match name {
            version_sweep::JOB => Some(&self.version),
            expiry_sweep::JOB => Some(&self.expiry),
            _ => None,
        }
    }

    /// Stop the scheduler and wait for running sweeps to save their place.
    pub async fn stop(&self) {
        if let Some(s) = self.scheduler.lock().await.take() {
            s.shutdown().await;
        }
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// For `/metrics`: each sweep job, whether it runs, and its last run.
    pub async fn sweep_progress(
        &self,
    ) -> Vec<(&'static str, bool, Option<crate::store::SweepRun>)> {
        let mut out = Vec::new();
        for job in [&self.version, &self.expiry] {
            let last = self.store.sweep_run(job.name).await.ok().flatten();
            out.push((job.name, job.running(), last));
        }
        out
    }

    /// The version sweep's brake: none when it holds nobody, else whether
    /// it is engaged, how many members it holds, and why.
    async fn brake_status(&self) -> Option<BrakeStatus> {
        let held = self.store.held_count(version_sweep::JOB).await.unwrap_or(0) as u64;
        let brake = self.store.brake(version_sweep::JOB).await.ok().flatten();
        match brake {
            None if held == 0 => None,
            brake => Some(BrakeStatus {
                engaged: brake.is_some(),
                held,
                brake,
            }),
        }
    }

    /// The `sweeps` and `campaigns` parts of the status document.
    pub async fn status_parts(&self) -> Vec<(&'static str, Value)> {
        let mut sweeps = BTreeMap::new();
        for job in [&self.version, &self.expiry] {
            let last = self.store.sweep_run(job.name).await.ok().flatten();
            let mut doc = SweepStatus {
                running: job.running(),
                run: last.as_ref().map(|r| r.run).unwrap_or(0),
                finished: last.as_ref().is_some_and(|r| !r.running()),
                last,
                brake: None,
                connection_denied: None,
            };
            if job.name == version_sweep::JOB {
                doc.brake = Some(self.brake_status().await);
                let denied = self.store.connection_denied(job.name).await.ok().flatten();
                doc.connection_denied = Some(denied);
            }
            sweeps.insert(job.name.to_string(), doc);
        }
        let campaigns = Campaigns::States(self.control.status().await);
        vec![
            ("sweeps", serde_json::to_value(sweeps).unwrap_or_default()),
            (
                "campaigns",
                serde_json::to_value(campaigns).unwrap_or_default(),
            ),
        ]
    }
}
