//! Wiring: open the store, take the listeners (from systemd's socket units,
//! or bound here: `listeners.rs`), start intake, dispatcher,
//! the lifecycle (sweeps on cron, campaign control) and servers, and stop them all on SIGTERM/SIGINT (stop taking work, let steps
//! in flight finish within a bound, flush the store).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::listeners::{Listener, Passed};
use crate::app::reload::Reloader;
use crate::app::{ShutdownError, StartError};
use crate::broker::connect::FirstConnect;
use crate::broker::{Broker, Held, SealKey, SealKeys, Topic};
use crate::config::Settings;
use crate::config::Swap;
use crate::metrics::Metrics;
use crate::mydex::MydexClient;
use crate::notify::email::{Mailer, Templates};
use crate::pipeline::campaign_control::CampaignControl;
use crate::pipeline::dispatcher::Dispatcher;
use crate::pipeline::lifecycle::Lifecycle;
use crate::server::tls::CallbackTls;
use crate::server::{admin, callback_endpoint};
use crate::store::Store;

/// Environment variable that enables the test hooks (`POST /debug/stall`).
pub const TEST_HOOKS_ENV: &str = "MYDEX_CONNECTOR_TEST_HOOKS";

/// How long in-flight work may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(20);

pub struct Daemon {
    pub store: Store,
    pub callback_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub settings: Arc<Settings>,
    pub templates: Arc<Swap<Templates>>,
    /// Campaign settings, pauses and windows; SIGHUP replaces the settings.
    pub control: Arc<CampaignControl>,
    /// The callback listener's certificate (HTTPS), swapped on SIGHUP.
    pub tls: Option<Arc<CallbackTls>>,
    /// Test hook requests to stall the main loop (only with
    /// `MYDEX_CONNECTOR_TEST_HOOKS=1`).
    pub stall_requests: Option<tokio::sync::mpsc::Receiver<Duration>>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

/// What `start` opens before anything runs.
struct Parts {
    settings: Arc<Settings>,
    templates: Arc<Swap<Templates>>,
    store: Store,
    metrics: Arc<Metrics>,
    mydex: Arc<MydexClient>,
    mailer: Arc<Mailer>,
    tls: Option<Arc<CallbackTls>>,
    /// `[nats]`: the broker and the keys that open what edges sealed.
    nats: Option<NatsParts>,
}

/// With `[nats]`: the broker, the keys, and what is held in the streams.
struct NatsParts {
    broker: Broker,
    keys: SealKeys,
    held: Arc<Held>,
}

/// Start everything; returns once the store is open and listeners are bound.
pub async fn start(settings: Settings) -> Result<Daemon, StartError> {
    let parts = open(settings).await?;
    let settings = parts.settings.clone();
    let mut passed = Passed::from_env()?;
    let cb_listener = passed
        .listener(Listener::Callback, settings.callback.listen)
        .await?;
    let admin_listener = passed
        .listener(Listener::Admin, settings.admin.listen)
        .await?;
    passed.finish();
    let callback_addr = cb_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let shutdown = CancellationToken::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut tasks = JoinSet::new();

    let (control, lifecycle) = start_lifecycle(&parts, &wake, &shutdown, &mut tasks).await?;
    judge_kept_callbacks(&parts).await?;
    tasks.spawn(callback_server(&parts, cb_listener, shutdown.clone())?);
    if let Some(n) = &parts.nats {
        let given = super::nats_intake::NatsIntake {
            broker: n.broker.clone(),
            keeper: store_keeper(&parts),
            keys: n.keys.copy(),
            connection_token: settings.mydex.connection_token.clone(),
            metrics: parts.metrics.clone(),
            held: n.held.clone(),
        };
        super::nats_intake::start(given, &shutdown, &mut tasks);
    }
    let (stall_tx, stall_requests) = stall_hook();
    tasks.spawn(admin_server(
        &parts,
        lifecycle,
        admin_listener,
        admin_addr,
        wake.clone(),
        stall_tx,
        shutdown.clone(),
    ));
    start_invitee_intake(&parts, &wake, &shutdown, &mut tasks);
    start_delivery(&parts, &shutdown, &mut tasks)?;
    let dispatcher = Arc::new(Dispatcher::new(
        settings.clone(),
        parts.store.clone(),
        parts.mydex,
        parts.mailer,
        parts.templates.clone(),
        parts.metrics,
        wake,
        control.clone(),
    ));
    tasks.spawn(dispatcher.run(shutdown.clone()));

    if let Some(tls) = &parts.tls {
        let pair = tls.current();
        tracing::info!(cert = %pair.cert_path.display(), serial = %pair.serial, subject = %pair.subject, not_after = pair.not_after, "callback listener serves HTTPS");
    }
    tracing::info!(callback = %callback_addr, admin = %admin_addr, store = %settings.store.path.display(), queue = %settings.queue.dir.display(), "mydex-connector running");
    Ok(Daemon {
        store: parts.store,
        callback_addr,
        admin_addr,
        settings,
        templates: parts.templates,
        control,
        tls: parts.tls,
        stall_requests,
        shutdown,
        tasks,
    })
}

/// Invitee rows from `queue.dir`, or from `{prefix}.invitees` with
/// `[queue] source = "nats"`.
fn start_invitee_intake(
    parts: &Parts,
    wake: &Arc<tokio::sync::Notify>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let (store, settings) = (parts.store.clone(), parts.settings.clone());
    match (&parts.nats, settings.queue.source) {
        (Some(NatsParts { broker, .. }), crate::config::IntakeSource::Nats) => {
            let (broker, metrics) = (broker.clone(), parts.metrics.clone());
            super::nats_rows::start(
                crate::broker::Topic::Invitees,
                broker,
                store,
                settings,
                wake.clone(),
                metrics,
                shutdown,
                tasks,
            );
        }
        _ => {
            tasks.spawn(crate::intake::run(
                store,
                settings,
                wake.clone(),
                shutdown.clone(),
            ));
        }
    }
}

/// Readings delivery (`[delivery]`): the readings directory watched and
/// the delivery worker, when configured.
fn start_delivery(
    parts: &Parts,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<(), StartError> {
    let Some(d) = parts.settings.delivery.clone() else {
        return Ok(());
    };
    crate::intake::ensure_dirs(&d.dir).map_err(|e| StartError::QueueDir(d.dir.clone(), e))?;
    let pds = crate::mydex::PdsClient::new(&parts.settings.mydex, parts.mydex.clone())
        .map_err(StartError::MydexClient)?;
    let wake = Arc::new(tokio::sync::Notify::new());
    let (store, settings) = (parts.store.clone(), parts.settings.clone());
    match (&parts.nats, d.source) {
        (Some(NatsParts { broker, .. }), crate::config::IntakeSource::Nats) => {
            let (broker, metrics) = (broker.clone(), parts.metrics.clone());
            let (topic, w) = (crate::broker::Topic::Readings, wake.clone());
            super::nats_rows::start(topic, broker, store, settings, w, metrics, shutdown, tasks);
        }
        _ => {
            let readings = crate::intake::readings::run_readings(
                store,
                settings,
                wake.clone(),
                shutdown.clone(),
            );
            tasks.spawn(readings);
        }
    }
    let worker = Arc::new(crate::pipeline::delivery::Delivery::new(
        d,
        parts.store.clone(),
        Arc::new(pds),
        parts.metrics.clone(),
        wake,
    ));
    tasks.spawn(worker.run(shutdown.clone()));
    Ok(())
}

/// Templates, the queue directory, the store, the Mydex client and the
/// mailer.
async fn open(settings: Settings) -> Result<Parts, StartError> {
    let settings = Arc::new(settings);
    let templates = Arc::new(Swap::new(
        Templates::load(
            &settings.campaigns,
            &settings.organisation,
            settings.invitations.link_ttl,
        )
        .map_err(|e| e.in_config(&settings.source))?,
    ));
    for warning in settings.organisation.warnings() {
        tracing::warn!("{warning}");
    }
    crate::intake::ensure_dirs(&settings.queue.dir)
        .map_err(|e| StartError::QueueDir(settings.queue.dir.clone(), e))?;
    let (path, key) = (
        settings.store.path.clone(),
        settings.store.key.expose_secret().to_owned(),
    );
    let store = super::store_open::open_store(path, key)
        .await
        .map_err(|e| StartError::OpenStore(settings.store.path.clone(), e))?;
    let metrics = Arc::new(Metrics::default());
    let mydex = Arc::new(
        MydexClient::new(&settings.mydex, metrics.clone()).map_err(StartError::MydexClient)?,
    );
    let mailer = Arc::new(Mailer::new(
        &settings.smtp,
        settings.invitations.concurrency,
    )?);
    let tls = settings.callback.tls.clone().map(CallbackTls::new);
    let nats = open_nats(&settings).await?;
    Ok(Parts {
        settings,
        templates,
        store,
        metrics,
        mydex,
        mailer,
        tls,
        nats,
    })
}

/// With `[nats]`: its private key (required here; the previous one if
/// kept) and a connection that keeps trying in the background (the daemon
/// starts while NATS is down).
async fn open_nats(settings: &Settings) -> Result<Option<NatsParts>, StartError> {
    let Some(n) = &settings.nats else {
        return Ok(None);
    };
    let Some(key) = &n.seal_key else {
        return Err(StartError::Config(crate::config::ConfigError {
            file: settings.source.display().to_string(),
            key: "nats.seal_key_file".into(),
            message: "is required to run the daemon with [nats] (or the credential `nats_seal_key`): it opens the callbacks edges sealed; `mydex-connector nats keygen` makes one".into(),
        }));
    };
    let broker = Broker::connect(n, "mydex-connector run", FirstConnect::InBackground)
        .await
        .map_err(StartError::Nats)?;
    let previous = n.previous_seal_key.as_ref().map(SealKey::from_secret);
    let keys = SealKeys::new(SealKey::from_secret(key), previous);
    let ours = std::iter::once(keys.current())
        .chain(keys.previous())
        .map(str::to_string)
        .collect();
    let streams = [Topic::Callbacks, Topic::Unsubscribes].map(|t| broker.stream(t));
    let held = Arc::new(Held::new(streams.to_vec(), ours));
    Ok(Some(NatsParts { broker, keys, held }))
}

/// The lifecycle: campaign control, version and expiry sweeps on cron
/// (stopped when `shutdown` fires).
async fn start_lifecycle(
    parts: &Parts,
    wake: &Arc<tokio::sync::Notify>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<(Arc<CampaignControl>, Arc<Lifecycle>), StartError> {
    let control = {
        let (store, campaigns) = (parts.store.clone(), &parts.settings.campaigns);
        Arc::new(
            CampaignControl::new(store, campaigns)
                .await
                .map_err(StartError::CampaignPauses)?,
        )
    };
    let lifecycle = Lifecycle::start(
        parts.settings.clone(),
        parts.store.clone(),
        parts.mydex.clone(),
        control.clone(),
        wake.clone(),
        shutdown.clone(),
    )
    .await
    .map_err(StartError::Lifecycle)?;
    let stop = shutdown.clone();
    let lc = lifecycle.clone();
    tasks.spawn(async move {
        stop.cancelled().await;
        lc.stop().await;
    });
    Ok((control, lifecycle))
}

/// Callbacks kept but never judged (the daemon stopped in between):
/// judged now, before new ones arrive.
async fn judge_kept_callbacks(parts: &Parts) -> Result<(), StartError> {
    let (nid, version) = (
        &parts.settings.mydex.connection_nid,
        parts.settings.mydex.connection_version,
    );
    let judged = crate::server::callback_judge::judge_pending(&parts.store, nid, version)
        .await
        .map_err(StartError::JudgePending)?;
    if judged > 0 {
        tracing::warn!(
            callbacks = judged,
            "callbacks kept but not answered before the last stop were judged now"
        );
    }
    Ok(())
}

/// The callback endpoint (HTTPS with `callback.tls_*`), served until
/// `shutdown`.
fn callback_server(
    parts: &Parts,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, StartError> {
    let settings = &parts.settings;
    let cb_state = Arc::new(callback_endpoint::CallbackState {
        keeper: callback_endpoint::Keeper::Store(store_keeper(parts)),
        expected_auth: crate::mydex::token_hash(settings.mydex.connection_token.expose_secret()),
        metrics: parts.metrics.clone(),
        body_limit: settings.callback.body_limit,
        read_timeout: settings.callback.read_timeout,
        refusals: Default::default(),
    });
    let cb_app = callback_endpoint::router(&settings.callback.path, cb_state).merge(
        crate::server::unsubscribe::router(parts.store.clone(), parts.templates.clone()),
    );
    let tls = match &parts.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(
            t.server_config().map_err(StartError::Tls)?,
        )),
        None => None,
    };
    Ok(crate::server::serve::serve(
        listener,
        cb_app,
        crate::server::serve::Limits {
            read_timeout: settings.callback.read_timeout,
            max_connections: settings.callback.max_connections,
            trusted_proxies: settings.callback.trusted_proxies.clone(),
            tls,
            metrics: parts.metrics.clone(),
        },
        shutdown,
    ))
}

/// What the daemon keeps and judges callbacks with (its listener's and
/// those taken from NATS).
fn store_keeper(parts: &Parts) -> callback_endpoint::StoreKeeper {
    let settings = &parts.settings;
    callback_endpoint::StoreKeeper {
        store: parts.store.clone(),
        nid: settings.mydex.connection_nid.clone(),
        current_version: settings.mydex.connection_version,
        notify: crate::notify::notification_hook::NotificationHook::new(&settings.notifications),
    }
}

/// The test hook's channel, with `MYDEX_CONNECTOR_TEST_HOOKS=1` only.
#[allow(clippy::type_complexity)]
fn stall_hook() -> (
    Option<tokio::sync::mpsc::Sender<Duration>>,
    Option<tokio::sync::mpsc::Receiver<Duration>>,
) {
    if std::env::var(TEST_HOOKS_ENV).as_deref() == Ok("1") {
        tracing::warn!("test hooks enabled ({}=1)", TEST_HOOKS_ENV);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    }
}

/// The admin API (with the lifecycle's routes), served until `shutdown`.
fn admin_server(
    parts: &Parts,
    lifecycle: Arc<Lifecycle>,
    listener: tokio::net::TcpListener,
    admin_addr: SocketAddr,
    wake: Arc<tokio::sync::Notify>,
    stall: Option<tokio::sync::mpsc::Sender<Duration>>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let settings = &parts.settings;
    // The address served (its real port; the socket unit's when it differs
    // from `admin.listen`), which a token-less request's Host must name.
    let gate = Arc::new(crate::server::admin::bearer::AdminGate::new(
        settings.admin.token.clone(),
        admin_addr,
        parts.metrics.clone(),
    ));
    let admin_state = Arc::new(admin::AdminState {
        store: parts.store.clone(),
        current_version: settings.mydex.connection_version,
        campaigns: settings.campaigns.iter().map(|c| c.name.clone()).collect(),
        metrics: parts.metrics.clone(),
        started: std::time::Instant::now(),
        lifecycle: Some(lifecycle.clone()),
        settings: settings.clone(),
        gate: gate.clone(),
        mydex: parts.mydex.clone(),
        mailer: parts.mailer.clone(),
        wake,
        stall,
        tls: parts.tls.clone(),
        nats: parts.nats.as_ref().map(|n| n.broker.clone()),
        nats_held: parts.nats.as_ref().map(|n| n.held.clone()),
        last_status: Default::default(),
        last_snapshot: Default::default(),
    });
    let admin_app =
        admin::router(admin_state).merge(crate::server::admin::lifecycle_routes::router(
            Arc::new(crate::server::admin::lifecycle_routes::LifecycleApi { lifecycle }),
            gate,
        ));
    async move {
        if let Err(e) = axum::serve(listener, admin_app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "admin server stopped");
        }
    }
}

impl Daemon {
    /// What SIGHUP may change (see `reload.rs`).
    pub fn reloader(&self, log: Option<crate::app::logging::LogControl>) -> Reloader {
        Reloader {
            config_path: self.settings.source.clone(),
            campaigns: self.settings.campaigns.clone(),
            templates: self.templates.clone(),
            link_ttl: self.settings.invitations.link_ttl,
            control: self.control.clone(),
            tls: self.tls.clone(),
            log,
        }
    }

    /// Stop taking work, let what is in flight finish (bounded), flush.
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
        tracing::info!("shutting down: finishing work in flight");
        self.shutdown.cancel();
        let drained = tokio::time::timeout(DRAIN, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "work still in flight after {}s; it resumes at the next start",
                DRAIN.as_secs()
            );
            self.tasks.abort_all();
        }
        self.store.flush().await.map_err(ShutdownError)?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
