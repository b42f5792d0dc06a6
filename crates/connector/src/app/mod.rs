//! The running daemon as a whole: starting and stopping its parts, the
//! service loop around it (systemd notify, signals, reload), and logging.

pub mod daemon;
pub mod logging;
pub mod reload;
pub mod service;
