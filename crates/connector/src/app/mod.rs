//! The running daemon as a whole: starting and stopping its parts, the
//! service loop around it (systemd notify, signals, reload), and logging.

pub mod daemon;
mod daemon_error;
pub mod edge;
pub mod listeners;
pub mod logging;
pub mod memory;
mod nats_intake;
mod nats_rows;
pub mod reload;
pub mod service;
mod store_open;

pub use daemon_error::{ShutdownError, StartError};
