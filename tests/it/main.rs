//! The integration tests, one binary: each suite is a module; run one with
//! `cargo test --test it SUITE::` (e.g. `cargo test --test it crash:: -- --nocapture`).

mod admin_api;
mod admin_reads;
mod bad_input;
mod bounces;
mod browser;
mod callback_flood;
mod callback_shapes;
mod callback_tls;
mod campaigns;
mod contrib;
mod crash;
mod delivery;
mod delivery_crash;
mod delivery_outcomes;
mod dkim;
mod drain;
mod faults;
mod forget;
mod ftc_flow;
mod hostile_input;
mod hostile_readings;
mod key_rotation;
mod lifecycle;
mod operator;
mod pipeline;
mod quarantine;
mod reload;
mod sandbox_cli;
mod sandbox_contract;
mod sandbox_pages;
mod sandbox_pds;
mod sandbox_shapes;
mod service;
mod sweep_guards;
mod unsubscribe;
