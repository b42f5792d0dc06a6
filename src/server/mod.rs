//! The HTTP listeners: the callback Mydex calls, and the admin API for
//! operators (loopback by default).

pub mod admin;
pub mod bearer;
pub mod callback;
pub mod lifecycle;
