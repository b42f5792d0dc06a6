//! A local stand-in for the Mydex sandbox, strict to `docs/mydex-contract.md`:
//! OAuth2 tokens, `/ftc/setup` (and the older `/access-token` +
//! `/api/connection` flow), `/identify`, `/connection/status`, the
//! member's one-time pages (and `/my`, a `return_to` page), the callbacks, faults on demand, and the
//! `/_sandbox/` endpoints tests drive. Everything lives in memory.

mod api;
mod args;
mod callbacks;
mod confirmation;
mod control;
mod datasets;
mod denial;
mod errors;
mod faults;
mod html;
mod journey;
mod oauth;
mod pages;
mod pds;
mod pds_pages;
mod qr;
mod registration;
mod server;
mod shapes;
mod state;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use args::{ArgsError, FaultKind, SandboxArgs, ValueError};
pub use callbacks::connection_body;
pub use qr::{qr_data_uri, qr_modules, qr_png};
pub use shapes::CallbackShape;
pub use wire::CallbackFormat;

use state::AppState;

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// The bound address (the real port when asked for port 0).
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Sandbox {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop serving and wait for the server task to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/oauth2/token", post(oauth::token))
        .route("/ftc/setup", post(api::ftc_setup))
        .route("/identify", post(api::identify))
        .route("/access-token/{nid}", get(api::access_token))
        .route("/api/connection", post(api::api_connection))
        .route("/api/connection/update", post(api::api_connection_update))
        .route("/connection/status/{nid}", get(api::connection_status))
        .route("/ftc/begin/{nid}/{id}/{version}", get(pages::begin_ftc))
        .route("/identify/{id}", get(pages::begin_identify))
        .route("/session/{sid}/register", post(pages::register))
        .route("/session/{sid}/login", post(pages::login))
        .route("/session/{sid}/consent", post(pages::consent))
        .route("/my", get(confirmation::my_page))
        .route("/api/pds/transaction", post(pds::create))
        .route("/api/pds/transaction/{file}", get(pds::read))
        .route("/pds", get(pds_pages::login_page).post(pds_pages::show))
        .route("/_sandbox/pds/{mydexid}", get(pds::dump))
        .route("/_sandbox/journeys", post(control::journeys))
        .route("/_sandbox/state", get(control::state_dump))
        .route("/_sandbox/members/{mydexid}/revoke", post(control::revoke))
        .route(
            "/_sandbox/members/{mydexid}/restore",
            post(control::restore),
        )
        .route("/_sandbox/members/seed", post(control::seed))
        .route("/_sandbox/notify", post(control::notify))
        .route(
            "/_sandbox/settings",
            get(control::get_settings).put(control::put_settings),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            faults::inject,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            faults::log_requests,
        ))
        .with_state(state)
}

/// Why the sandbox did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The flags, the config file or a secret file.
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The bound socket has no address to tell.
    #[error(transparent)]
    LocalAddr(std::io::Error),
    /// The HTTP client that sends callbacks could not be built.
    #[error(transparent)]
    HttpClient(#[from] reqwest::Error),
}

/// Bind, spawn the server task, and return at once.
pub async fn start(args: SandboxArgs) -> Result<Sandbox, StartError> {
    let resolved = args.resolve()?;
    let listener = TcpListener::bind(resolved.args.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: resolved.args.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(StartError::LocalAddr)?;
    let public_url = resolved
        .args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let state = Arc::new(AppState::new(resolved, public_url)?);
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(server::serve(listener, router(state), rx));
    Ok(Sandbox {
        addr,
        shutdown: tx,
        task,
    })
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serve until SIGINT/SIGTERM.
pub async fn run(args: SandboxArgs) -> Result<(), StartError> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let sandbox = start(args).await?;
    eprintln!("sandbox listening on {}", sandbox.url());
    terminated().await;
    sandbox.shutdown().await;
    Ok(())
}
