//! mydex-connector: turns a list of people into connected Mydex Personal Data
//! Stores. The binary (`main.rs`) is only the command line; everything it runs
//! lives here so tests and benchmarks can start the real parts.

pub mod admin_client;
pub mod app;
pub mod callbacks_cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod intake;
pub mod metrics;
pub mod mydex;
pub mod notify;
pub mod operator_cli;
pub mod pipeline;
pub mod progress;
pub mod rotate_key;
pub mod sandbox;
pub mod server;
pub mod status;
pub mod store;
