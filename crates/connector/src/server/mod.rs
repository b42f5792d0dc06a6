//! The HTTP listeners: the callback Mydex calls, and the admin API for
//! operators (loopback by default); `tls.rs` serves the callback over HTTPS;
//! `unsubscribe.rs` serves one-click unsubscribe on the callback listener.

pub mod admin;
pub mod callback_auth;
pub mod callback_endpoint;
pub mod callback_judge;
pub mod callback_redact;
pub mod callback_state;
pub mod serve;
pub mod tls;
pub mod unsubscribe;
