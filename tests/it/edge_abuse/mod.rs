//! The public edge tried as an attacker on the same machine would (loopback
//! only), through the real binary: each module reproduces one way in or one
//! way to starve the daemon, and shows that it is closed.

mod bounce_forgery;
mod config_errors;
mod held_rows;
mod rebinding;
mod replay;
mod settle;
mod starve;
