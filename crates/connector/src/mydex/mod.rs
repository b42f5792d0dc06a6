//! Everything that speaks Mydex's language: the PDX API client (with its
//! OAuth2 token cache and retries), its error types, and the callback
//! payloads Mydex sends us.

mod api_health;
pub mod callback_body;
mod client;
mod error;
mod http;
mod pds;
pub mod php_form;
mod status_answer;
mod token;

pub use api_health::{ApiFailing, ApiHealth};
pub use client::{FtcLink, FtcRequest, MydexClient};
pub use error::{MydexError, TokenUnavailable};
pub use pds::{CreateOutcome, PdsClient, PdsMember, ReadError};
pub use status_answer::ConnectionStatus;

use sha2::{Digest, Sha512};

/// Lowercase hex SHA-512: how the Connection Token travels (`connection_token_hash`,
/// and the callbacks' `Authentication` header).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha512::digest(token.as_bytes()))
}
