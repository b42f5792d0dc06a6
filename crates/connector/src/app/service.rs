//! The daemon's main loop as a systemd service: `READY=1` once the store is
//! open and the listeners are bound, `STATUS=` lines with live counts,
//! `WATCHDOG=1` at half of `WATCHDOG_USEC` from this loop (so a stalled loop
//! stops the pings and systemd restarts us), SIGHUP reloads, SIGTERM/SIGINT
//! drain (`STOPPING=1`, then the daemon's bounded shutdown). Without
//! `NOTIFY_SOCKET` the notifications are no-ops.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::app::daemon::Daemon;
use crate::app::logging::LogControl;
use crate::app::reload::Reloader;
use crate::app::{ShutdownError, StartError};
use crate::config::Settings;

/// How often STATUS= is refreshed when no watchdog asks for more.
const STATUS_EVERY: Duration = Duration::from_secs(5);

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// The daemon stopped because its store could not write (see
/// `store/write_health.rs`); the exit code is `EX_TEMPFAIL` so the service
/// manager restarts it.
#[derive(Debug, thiserror::Error)]
#[error("the store could not write ({0}); exiting for a restart on a reopened store")]
pub struct StoreFailed(pub String);

/// Why `mydex-connector run` ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The signal handlers could not be installed.
    #[error(transparent)]
    Signals(std::io::Error),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Shutdown(#[from] ShutdownError),
    #[error(transparent)]
    StoreFailed(#[from] StoreFailed),
}

impl ServiceError {
    /// The configuration or the system is at fault and a restart will not
    /// fix it (the CLI exits `EX_CONFIG`, which the unit does not restart).
    pub fn is_config_problem(&self) -> bool {
        match self {
            ServiceError::Start(e) => e.is_config_problem(),
            _ => false,
        }
    }

    /// The store could not write (the CLI exits `EX_TEMPFAIL`).
    pub fn is_store_failed(&self) -> bool {
        matches!(self, ServiceError::StoreFailed(_))
    }
}

/// The signals the loop answers.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// `mydex-connector run`: until SIGTERM or SIGINT.
pub async fn run(settings: Settings, log: Option<LogControl>) -> Result<(), ServiceError> {
    // Signal handlers first, so a signal during start is not lost.
    let mut signals = Signals::install().map_err(ServiceError::Signals)?;
    let mut daemon = crate::app::daemon::start(settings).await?;
    let reloader = daemon.reloader(log);
    let store_failed = serve(&mut daemon, &reloader, &mut signals).await;
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("draining work in flight"),
    ]);
    stop(daemon, store_failed).await
}

/// The main loop, until a signal stops it or the store failed and its disk
/// takes writes again. Returns why the store failed, if it did.
async fn serve(daemon: &mut Daemon, reloader: &Reloader, signals: &mut Signals) -> Option<String> {
    let mut stall = daemon.stall_requests.take();
    let watchdog = sd_notify::watchdog_enabled();
    let tick_every = watchdog.map(|w| w / 2).unwrap_or(STATUS_EVERY);
    if let Some(w) = watchdog {
        tracing::info!(
            watchdog_ms = w.as_millis() as u64,
            ping_ms = tick_every.as_millis() as u64,
            "systemd watchdog enabled"
        );
    }
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&status_line(daemon).await),
    ]);

    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = std::time::Instant::now();
    // Set once the store cannot write; then the disk is probed until it
    // takes writes again, and the daemon exits for a restart.
    let mut store_failed: Option<String> = None;
    let mut disk_check = tokio::time::interval(Duration::from_secs(5));
    disk_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = daemon.store.wait_failed(), if store_failed.is_none() => {
                let why = daemon.store.failure().unwrap_or_default();
                notify(&[NotifyState::Status(&format!("store cannot write: {why}; waiting for the disk"))]);
                store_failed = Some(why);
            }
            _ = disk_check.tick(), if store_failed.is_some() => {
                if disk_takes_writes(daemon).await {
                    tracing::warn!("the store's disk takes writes again; exiting for a restart on a reopened store");
                    break;
                }
            }
            _ = signals.term.recv() => { tracing::info!("SIGTERM received"); break; }
            _ = signals.int.recv() => { tracing::info!("SIGINT received"); break; }
            _ = signals.hup.recv() => reload(daemon, reloader).await,
            Some(d) = recv(&mut stall) => {
                // Test hook: this loop stops iterating, as if stuck.
                tracing::warn!(seconds = d.as_secs_f64(), "test hook: stalling the main loop");
                tokio::time::sleep(d).await;
            }
            _ = tick.tick() => {
                if watchdog.is_some() {
                    notify(&[NotifyState::Watchdog]);
                }
                if last_status.elapsed() >= STATUS_EVERY.min(tick_every) {
                    last_status = std::time::Instant::now();
                    notify(&[NotifyState::Status(&status_line(daemon).await)]);
                }
            }
        }
    }
    store_failed
}

/// Whether the failed store's disk takes writes again (logged when not).
async fn disk_takes_writes(daemon: &Daemon) -> bool {
    let dir = daemon.store.path().to_owned();
    // Not the store: a plain file written into its directory and removed.
    let probe =
        tokio::task::spawn_blocking(move || crate::store::disk_takes_writes(&dir, 4 << 20)).await;
    match probe {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, store = %daemon.store.path().display(), "the store's disk still refuses writes; waiting (callbacks are answered 503, Mydex retries them)");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "disk probe task failed");
            false
        }
    }
}

/// SIGHUP: reload what may change, and say so to the service manager.
async fn reload(daemon: &Daemon, reloader: &Reloader) {
    tracing::info!(config = %reloader.path().display(), "SIGHUP received: reloading");
    notify(&[NotifyState::Reloading]);
    match reloader.reload() {
        Ok(applied) => {
            tracing::info!(
                log_level = applied.log_level.as_deref().unwrap_or("(unchanged)"),
                templates = applied.templates_reloaded,
                "configuration reloaded"
            );
            match &applied.tls {
                crate::app::reload::TlsApplied::Replaced {
                    old_serial,
                    new_serial,
                    not_after,
                } => tracing::info!(
                    old_serial,
                    new_serial,
                    not_after,
                    "callback certificate reloaded: new connections get it"
                ),
                crate::app::reload::TlsApplied::NeedsRestart(why) => tracing::warn!("{why}"),
                crate::app::reload::TlsApplied::None => {}
            }
            if !applied.ignored_campaigns.is_empty() {
                tracing::warn!(campaigns = ?applied.ignored_campaigns, "new campaigns take effect at the next restart");
            }
        }
        Err(e) => match &reloader.tls {
            Some(tls) => tracing::error!(
                error = %e,
                cert_serial = %tls.current().serial,
                "reload refused; the running configuration and certificate stay in force"
            ),
            None => tracing::error!(
                error = %e,
                "reload refused; the running configuration stays in force"
            ),
        },
    }
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&status_line(daemon).await),
    ]);
}

/// The daemon's bounded shutdown; a failed store makes it a stop for a
/// restart (`StoreFailed`).
async fn stop(daemon: Daemon, store_failed: Option<String>) -> Result<(), ServiceError> {
    let store = daemon.store.clone();
    match store_failed {
        // The store may fail during the drain (its final flush): that stop,
        // too, is one for a restart on a reopened store.
        None => match daemon.shutdown().await {
            Err(e) => match store.failure() {
                Some(why) => {
                    tracing::debug!(error = %e, "shutdown with a failed store");
                    Err(StoreFailed(why).into())
                }
                None => Err(e.into()),
            },
            Ok(()) => Ok(()),
        },
        Some(why) => {
            // The final flush cannot succeed on this open store.
            if let Err(e) = daemon.shutdown().await {
                tracing::debug!(error = %e, "shutdown after the store failed");
            }
            Err(StoreFailed(why).into())
        }
    }
}

async fn recv(rx: &mut Option<tokio::sync::mpsc::Receiver<Duration>>) -> Option<Duration> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One line of live counts for `systemctl status`.
async fn status_line(daemon: &Daemon) -> String {
    match daemon
        .store
        .counts(daemon.settings.mydex.connection_version)
        .await
    {
        Ok(c) => {
            let parts: Vec<String> = c
                .invitations
                .iter()
                .map(|(s, n)| format!("{} {n}", s.as_str()))
                .collect();
            format!("{}; members {}", parts.join(", "), c.members_total)
        }
        Err(e) => format!("store unreadable: {e}"),
    }
}
