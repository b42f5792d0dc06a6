//! The subcommands that are more than a call into the library: one file each
//! (`main.rs` parses the command line and dispatches here).

pub mod admin_client;
pub mod callbacks;
#[cfg(feature = "sandbox")]
pub mod demo;
pub mod operator;
pub mod progress;
pub mod rotate_key;
pub mod status;
