//! How starting or stopping the daemon can fail. Each error names what was
//! being done (the key, the path), with the underlying error as its source,
//! so the CLI's `error: …` line reads as before and can still find a store
//! key problem or a configuration error in the chain.

use std::path::PathBuf;

use crate::app::listeners::ListenError;
use crate::config::ConfigError;
use crate::notify::email::MailerSetupError;
use crate::pipeline::lifecycle::LifecycleError;
use crate::store::StoreError;

/// Why the daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A template of the configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("queue.dir {}", .0.display())]
    QueueDir(PathBuf, #[source] std::io::Error),
    #[error("cannot open the store at {}", .0.display())]
    OpenStore(PathBuf, #[source] StoreError),
    /// No HTTPS client: on a minimal system, no CA certificates to trust
    /// (a restart will not bring them, so the CLI exits `EX_CONFIG`).
    #[error(
        "cannot set up HTTPS for the Mydex API: are the system's CA certificates installed? (Debian: ca-certificates)"
    )]
    MydexClient(#[source] reqwest::Error),
    #[error(transparent)]
    Mailer(#[from] MailerSetupError),
    /// A listener: bound here (its key and address), or passed by the
    /// service manager and not usable.
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot read campaign pauses from the store")]
    CampaignPauses(#[source] StoreError),
    #[error("cannot start the sweep scheduler")]
    Lifecycle(#[source] LifecycleError),
    #[error("cannot set up TLS on the callback listener")]
    Tls(#[source] rustls::Error),
    #[error("NATS")]
    Nats(#[source] crate::broker::BrokerError),
    #[error("cannot judge the callbacks kept before the last stop")]
    JudgePending(#[source] StoreError),
}

impl StartError {
    /// The configuration or the system is at fault and a restart will not
    /// fix it (the CLI exits `EX_CONFIG`): `run` and `edge` alike.
    pub fn is_config_problem(&self) -> bool {
        match self {
            StartError::Config(_) | StartError::MydexClient(_) => true,
            StartError::Listen(e) => e.is_config_problem(),
            StartError::Nats(e) => e.is_config_problem(),
            _ => false,
        }
    }
}

/// Why the daemon did not stop cleanly: its store's last flush failed.
#[derive(Debug, thiserror::Error)]
#[error("flushing the store")]
pub struct ShutdownError(#[source] pub StoreError);
