//! mydex-connector: turns a list of people into connected Mydex Personal Data
//! Stores. The binary (`main.rs`) is only the command line; everything it runs
//! lives here so tests and benchmarks can start the real parts.

pub mod admin_client;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod dispatch;
pub mod domain;
pub mod intake;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod mydex;
pub mod operator_cli;
pub mod progress;
pub mod rate;
pub mod reload;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod status;
pub mod store;
