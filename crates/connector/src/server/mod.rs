//! The HTTP listeners: the callback Mydex calls, and the admin API for
//! operators (loopback by default); `tls.rs` serves the callback over HTTPS;
//! `unsubscribe.rs` serves one-click unsubscribe on the callback listener,
//! its pages framed by `member_page.rs`;
//! `refusal_log.rs` keeps floods of refused requests out of the log;
//! `edge_callback.rs` and `edge_admin.rs` are the same listener on an edge
//! (sealed and published to NATS instead of stored);
//! `serve.rs` holds that public listener's connections within its limits
//! (`conn_slots.rs`, `peer_share.rs`, `request_deadline.rs`, `shed_log.rs`).

pub mod admin;
pub mod callback_auth;
pub mod callback_endpoint;
pub mod callback_judge;
pub mod callback_redact;
pub mod callback_state;
pub mod conn_slots;
pub mod edge_admin;
pub mod edge_callback;
pub mod member_page;
pub mod peer_share;
pub mod refusal_log;
pub mod request_deadline;
pub mod serve;
pub mod shed_log;
pub mod tls;
pub mod unsubscribe;
