//! The HTTP listeners: the callback Mydex calls, and the admin API for
//! operators (loopback by default).

pub mod admin;
pub mod auth;
pub mod callback;
pub mod callback_judge;
pub mod callbacks_admin;
pub mod invitees;
pub mod lifecycle;
pub mod operator;
pub mod readyz;
pub mod redact;
pub mod serve;
