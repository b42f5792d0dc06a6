//! The shared state every admin route handler gets: the store, settings,
//! clients and hooks the admin API reads or acts on. Its own file so the
//! handlers and the router in `mod.rs` depend on it, not on each other.

use std::sync::Arc;

use super::bearer::AdminGate;
use crate::metrics::Metrics;
use crate::store::Store;

pub struct AdminState {
    pub store: Store,
    pub current_version: u32,
    pub campaigns: Vec<String>,
    pub metrics: Arc<Metrics>,
    pub started: std::time::Instant,
    /// Sweeps and campaign states for the status document.
    pub lifecycle: Option<Arc<crate::pipeline::lifecycle::Lifecycle>>,
    pub settings: Arc<crate::config::Settings>,
    /// The token and Host checks (`bearer.rs`).
    pub gate: Arc<AdminGate>,
    pub mydex: Arc<crate::mydex::MydexClient>,
    pub mailer: Arc<crate::notify::email::Mailer>,
    /// Wakes the dispatcher when `POST /invitees` stored something.
    pub wake: Arc<tokio::sync::Notify>,
    /// Test hook: stall the main loop (`POST /debug/stall?seconds=N`).
    pub stall: Option<tokio::sync::mpsc::Sender<std::time::Duration>>,
    /// The callback listener's certificate, for `/readyz` and `/metrics`.
    pub tls: Option<Arc<crate::server::tls::CallbackTls>>,
    /// `[nats]`: the broker, for `/status`.
    pub nats: Option<crate::broker::Broker>,
    /// `[nats]`: what the daemon holds in the streams, sealed to a key it
    /// does not hold (`/readyz`, `/metrics`, `/status`).
    pub nats_held: Option<Arc<crate::broker::Held>>,
    /// What `/status` and `/metrics` answer while the store cannot.
    pub last_status: super::last_known::LastKnown<serde_json::Value>,
    pub last_snapshot: super::last_known::LastKnown<crate::metrics::Snapshot>,
}
