//! How people and operators hear from us: the invitation email, and the
//! hook that tells an operator's system about notable events.

pub mod bounce;
pub mod email;
pub mod notification_hook;
pub mod unsubscribe_mail;
