//! mydex-connector: turns a list of people into connected Mydex Personal Data
//! Stores. The binary (`main.rs`) is only the command line; everything it runs
//! lives here so tests and benchmarks can start the real parts.

pub mod config;
pub mod domain;
pub mod metrics;
pub mod mydex;
pub mod sandbox;
pub mod store;
