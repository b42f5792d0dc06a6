//! A sandbox setting that makes `/connection/status` refuse *our*
//! connection on every check, answering exactly as Mydex does for a
//! mistyped NID, a rotated Connection Token, or a 401 a fresh token does
//! not cure (docs/mydex-contract.md §2, §4, §6), so tests can show the
//! daemon never reads it as every member having revoked.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::errors::ApiError;

/// What Mydex answers when it finds no connection for the NID.
pub const NO_CONNECTION_RECORD: &str = "Access Denied: No Connection record";
/// What Mydex answers when the Connection Token is not the one it holds.
pub const INVALID_CONNECTION_TOKEN: &str = "Access Denied: Invalid Connection Token";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusDenial {
    /// 403 `{"error":{"message":"Access Denied: No Connection record"}}`
    NoConnectionRecord,
    /// 403 `{"error":{"message":"Access Denied: Invalid Connection Token"}}`
    InvalidConnectionToken,
    /// 401 `{"error":{"message":"Access Denied","reason":...}}`, every time
    /// (a fresh token does not cure it)
    Unauthorized,
}

impl StatusDenial {
    /// The answer Mydex gives.
    pub fn answer(self) -> ApiError {
        match self {
            StatusDenial::NoConnectionRecord => {
                ApiError::mydex(StatusCode::FORBIDDEN, NO_CONNECTION_RECORD)
            }
            StatusDenial::InvalidConnectionToken => {
                ApiError::mydex(StatusCode::FORBIDDEN, INVALID_CONNECTION_TOKEN)
            }
            StatusDenial::Unauthorized => ApiError::unauthorized("connection not authorised"),
        }
    }

    /// From a settings body: a name, or null for none.
    pub fn from_json(v: &serde_json::Value) -> Result<Option<Self>, UnknownDenial> {
        if v.is_null() {
            return Ok(None);
        }
        serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|_| UnknownDenial(v.clone()))
    }
}

/// A `status_denial` in a settings body that names no [`StatusDenial`].
#[derive(Debug, thiserror::Error)]
#[error(
    "status_denial: {0} is not one of \"no_connection_record\", \"invalid_connection_token\", \"unauthorized\" or null"
)]
pub struct UnknownDenial(serde_json::Value);
