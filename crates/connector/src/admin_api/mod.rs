//! The admin API's answers as types, one set for both sides: the daemon
//! (`server/admin/`) builds them and serializes them, the CLI
//! (`src/commands/`) reads them back, so neither reads JSON by field name
//! and a field renamed on one side fails to build on the other.

pub mod bounces;
pub mod callbacks;
pub mod invitations;
pub mod lifecycle;
pub mod people;
pub mod records;
pub mod status;
pub mod suppressions;
