//! The subcommands, one file each (`main.rs` parses the command line, sets up
//! logging and dispatches here), and what they share: the admin API client
//! and the progress bars.

pub mod admin_client;
pub mod bounce;
pub mod callbacks;
pub mod campaign;
pub mod check_config;
pub mod colour;
pub mod completions;
pub mod config_path;
pub mod config_report;
pub mod deliver;
#[cfg(feature = "sandbox")]
pub mod demo;
#[cfg(feature = "sandbox")]
pub mod demo_journey;
#[cfg(feature = "sandbox")]
pub mod demo_readings;
#[cfg(feature = "sandbox")]
pub mod demo_version;
pub mod edge;
pub mod enqueue;
pub mod human;
pub mod intake_wait;
pub mod mail;
pub mod manpage;
pub mod nats;
pub mod nats_rows;
pub mod operator;
pub mod people;
pub mod progress;
pub mod records;
pub mod rejects;
pub mod rotate_key;
pub mod run;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod status;
pub mod store;
pub mod suppression_check;
pub mod suppressions;
pub mod sweep;
pub mod table;
