//! The cron side of the connection lifecycle (tokio-cron-scheduler): the
//! `schedule.version_check` and `schedule.expiry_check` expressions start
//! their sweeps. A job never runs twice at once: a trigger while it runs (from
//! cron or from the admin API) is skipped and logged. Runs are tracked so that
//! shutdown waits for them to save their cursor.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_cron_scheduler::{Job as CronJob, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
#[error("scheduler: {0}")]
pub struct ScheduleError(String);

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Started,
    AlreadyRunning,
    ShuttingDown,
}

pub type RunFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type RunFn = Box<dyn Fn(CancellationToken) -> RunFuture + Send + Sync>;

/// A job that never runs twice at once.
pub struct Job {
    pub name: &'static str,
    run: RunFn,
    guard: Arc<tokio::sync::Mutex<()>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Job {
    pub fn new(
        name: &'static str,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        run: impl Fn(CancellationToken) -> RunFuture + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            run: Box::new(run),
            guard: Arc::default(),
            tracker,
            shutdown,
        })
    }

    /// Start a run unless one is going.
    pub fn trigger(&self, why: &'static str) -> Trigger {
        if self.shutdown.is_cancelled() {
            return Trigger::ShuttingDown;
        }
        let Ok(guard) = self.guard.clone().try_lock_owned() else {
            tracing::info!(
                job = self.name,
                why,
                "sweep still running; this trigger is skipped"
            );
            return Trigger::AlreadyRunning;
        };
        tracing::debug!(job = self.name, why, "sweep triggered");
        let run = (self.run)(self.shutdown.clone());
        self.tracker.spawn(async move {
            let _guard = guard;
            run.await;
        });
        Trigger::Started
    }

    pub fn running(&self) -> bool {
        self.guard.try_lock().is_err()
    }
}

/// The running cron scheduler.
pub struct Scheduler {
    inner: JobScheduler,
}

impl Scheduler {
    /// Schedule each job at its cron expression and start.
    pub async fn start(entries: Vec<(String, Arc<Job>)>) -> Result<Self, ScheduleError> {
        let err = |e: tokio_cron_scheduler::JobSchedulerError| ScheduleError(format!("{e:?}"));
        let inner = JobScheduler::new().await.map_err(err)?;
        for (expr, job) in entries {
            // Weak: the scheduler's own tasks outlive its shutdown, and a
            // job holds the store; the daemon's last handle on the job must
            // let the store go (a restart in the same process reopens it).
            let j = Arc::downgrade(&job);
            let cron = CronJob::new_async(expr.as_str(), move |_id, _sched| {
                let j = j.clone();
                Box::pin(async move {
                    if let Some(j) = j.upgrade() {
                        j.trigger("schedule");
                    }
                })
            })
            .map_err(|e| ScheduleError(format!("{} {expr:?}: {e:?}", job.name)))?;
            inner.add(cron).await.map_err(err)?;
        }
        inner.start().await.map_err(err)?;
        Ok(Self { inner })
    }

    pub async fn shutdown(mut self) {
        if let Err(e) = self.inner.shutdown().await {
            tracing::warn!(error = ?e, "cron scheduler did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_never_runs_twice_at_once() {
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let gate = Arc::new(tokio::sync::Notify::new());
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (g, r) = (gate.clone(), runs.clone());
        let job = Job::new("t", tracker.clone(), stop.clone(), move |_| {
            let (g, r) = (g.clone(), r.clone());
            Box::pin(async move {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                g.notified().await;
            })
        });
        assert_eq!(job.trigger("test"), Trigger::Started);
        assert_eq!(job.trigger("test"), Trigger::AlreadyRunning);
        while runs.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        tracker.close();
        tracker.wait().await;
        assert_eq!(job.trigger("test"), Trigger::Started);
        gate.notify_one();
        stop.cancel();
        assert_eq!(job.trigger("test"), Trigger::ShuttingDown);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_schedule_triggers_and_a_stopped_scheduler_lets_its_jobs_go() {
        let held = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let h = held.clone();
        let tracker = TaskTracker::new();
        let job = Job::new("t", tracker.clone(), CancellationToken::new(), move |_| {
            let h = h.clone();
            Box::pin(async move {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        });
        let scheduler = Scheduler::start(vec![("* * * * * *".into(), job.clone())])
            .await
            .unwrap();
        // Every second: it fires while the daemon holds the job.
        let start = std::time::Instant::now();
        while held.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < std::time::Duration::from_secs(60));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        scheduler.shutdown().await;
        tracker.close();
        tracker.wait().await;
        drop(job);
        // What the job held is gone with the last handle on the job.
        assert_eq!(Arc::strong_count(&held), 1);
    }
}
