//! mydex-connector: turns a list of people into connected Mydex Personal Data
//! Stores. The binary (`main.rs`) is only the command line; everything it runs
//! lives here so tests and benchmarks can start the real parts.

pub mod admin_client;
pub mod callbacks_cli;
pub mod campaigns;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod dispatch;
pub mod domain;
pub mod expiry;
pub mod intake;
pub mod lifecycle;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod mydex;
pub mod notify_hook;
pub mod operator_cli;
pub mod progress;
pub mod rate;
pub mod reload;
pub mod rotate_key;
pub mod sandbox;
pub mod schedule;
pub mod send_window;
pub mod server;
pub mod service;
pub mod status;
pub mod store;
pub mod sweep_brake;
pub mod version_sweep;
