//! mydex-connector's library: everything the daemon runs (domain values,
//! config, store, Mydex client, notification, intake, pipeline, servers, app
//! shell), so the command line (the root package's `main.rs`), the tests and
//! the benchmarks all start the same real parts. See docs/architecture.md.

pub mod admin_api;
pub mod app;
pub mod config;
pub mod domain;
pub mod intake;
pub mod metrics;
pub mod mydex;
pub mod notify;
pub mod pipeline;
pub mod server;
pub mod store;
