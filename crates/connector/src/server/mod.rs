//! The HTTP listeners: the callback Mydex calls, and the admin API for
//! operators (loopback by default); `tls.rs` serves the callback over HTTPS;
//! `unsubscribe.rs` serves one-click unsubscribe on the callback listener;
//! `refusal_log.rs` keeps floods of refused requests out of the log.

pub mod admin;
pub mod callback_auth;
pub mod callback_endpoint;
pub mod callback_judge;
pub mod callback_redact;
pub mod callback_state;
pub mod refusal_log;
pub mod serve;
pub mod tls;
pub mod unsubscribe;
