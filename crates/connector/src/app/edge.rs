//! `mydex-connector edge`: the public listeners without a store. The same
//! listener code as the daemon (`server/serve.rs`: limits, deadlines, TLS,
//! each client's fair share) and the same callback endpoint and
//! authentication (`server/callback_endpoint.rs`), whose last step seals
//! and publishes to NATS JetStream instead of storing (`Keeper::Publish`);
//! one-click unsubscribes are published too; `/healthz`, `/readyz` and
//! `/metrics` on `[admin] listen`. Any number of edges may run behind a
//! load balancer; each holds the Connection Token (to authenticate) and the
//! daemon's public key, nothing that opens what it published. It starts
//! while NATS is down (answering 503 until it is up) and creates the
//! streams it publishes to if they are missing.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::app::StartError;
use crate::app::listeners::{Listener, Passed};
use crate::broker::connect::FirstConnect;
use crate::broker::{Broker, EdgePublisher, SealPublicKey};
use crate::config::EdgeSettings;
use crate::metrics::Metrics;
use crate::server::callback_endpoint::{self, CallbackState, Keeper};
use crate::server::tls::CallbackTls;

/// Why the edge did not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
}

impl EdgeError {
    /// The configuration or the system is at fault (a listen address that
    /// cannot be bound, a credentials file that does not parse): the CLI
    /// exits `EX_CONFIG`, as `run` does.
    pub fn is_config_problem(&self) -> bool {
        match self {
            EdgeError::Start(e) => e.is_config_problem(),
            EdgeError::Broker(e) => e.is_config_problem(),
        }
    }
}

/// A running edge: its addresses, and how to stop it.
pub struct Edge {
    pub callback_addr: std::net::SocketAddr,
    pub admin_addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

/// Start the edge: listeners bound (or taken from systemd), NATS connecting
/// in the background, the streams set up once it answers.
pub async fn start(settings: EdgeSettings) -> Result<Edge, EdgeError> {
    let metrics = Arc::new(Metrics::default());
    let broker = Broker::connect(
        &settings.nats,
        "mydex-connector edge",
        FirstConnect::InBackground,
    )
    .await?;
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(broker.clone().setup_when_reachable(shutdown.clone()));
    let publisher = Arc::new(EdgePublisher::new(
        broker.clone(),
        SealPublicKey::from_bytes(settings.seal_public_key),
        settings.connection_token.clone(),
        metrics.clone(),
    ));
    let seal_key = publisher.fingerprint().to_string();
    let mut passed = Passed::from_env().map_err(StartError::from)?;
    let cb_listener = passed
        .listener(Listener::Callback, settings.callback.listen)
        .await
        .map_err(StartError::from)?;
    let admin_listener = passed
        .listener(Listener::Admin, settings.admin.listen)
        .await
        .map_err(StartError::from)?;
    passed.finish();
    let callback_addr = cb_listener.local_addr().map_err(StartError::from)?;
    let admin_addr = admin_listener.local_addr().map_err(StartError::from)?;
    let state = Arc::new(CallbackState {
        keeper: Keeper::Publish(publisher.clone()),
        expected_auth: crate::mydex::token_hash(settings.connection_token.expose_secret()),
        metrics: metrics.clone(),
        body_limit: settings.callback.body_limit,
        read_timeout: settings.callback.read_timeout,
        refusals: Default::default(),
    });
    let app = callback_endpoint::router(&settings.callback.path, state)
        .merge(crate::server::unsubscribe::edge_router(publisher));
    let tls = match settings.callback.tls.clone().map(CallbackTls::new) {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(
            t.server_config().map_err(StartError::Tls)?,
        )),
        None => None,
    };
    let limits = crate::server::serve::Limits {
        read_timeout: settings.callback.read_timeout,
        max_connections: settings.callback.max_connections,
        trusted_proxies: settings.callback.trusted_proxies.clone(),
        tls,
        metrics: metrics.clone(),
    };
    tasks.spawn(crate::server::serve::serve(
        cb_listener,
        app,
        limits,
        shutdown.clone(),
    ));
    let admin = crate::server::edge_admin::router(Arc::new(crate::server::edge_admin::EdgeAdmin {
        broker: broker.clone(),
        metrics,
    }));
    let stop = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = axum::serve(admin_listener, admin)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "edge admin listener stopped");
        }
    });
    tracing::info!(callback = %callback_addr, admin = %admin_addr, nats = %broker.servers(), subject = %broker.subject(crate::broker::Topic::Callbacks), seal_key = %seal_key, "mydex-connector edge running");
    Ok(Edge {
        callback_addr,
        admin_addr,
        shutdown,
        tasks,
    })
}

impl Edge {
    /// Stop taking requests and let those in flight finish (bounded).
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
        }
        tracing::info!("edge stopped");
    }
}

/// `mydex-connector edge`: until SIGTERM or SIGINT; READY=1 once listening.
pub async fn run(settings: EdgeSettings) -> Result<(), EdgeError> {
    let edge = start(settings).await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    crate::app::daemon::wait_for_signal().await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    edge.shutdown().await;
    Ok(())
}
