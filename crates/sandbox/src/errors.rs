//! The error answers of the sandbox, each in the exact shape Mydex uses for
//! it (see `docs/mydex-contract.md` §2), so the daemon's parser meets all three.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API error and how it goes on the wire.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `{"error":{"message":"..."}}` (the documented 4xx shape).
    #[error("{status}: {message}")]
    Mydex { status: StatusCode, message: String },
    /// 401 `{"error":{"message":"Access Denied","reason":"..."}}`.
    #[error("401: {reason}")]
    Unauthorized { reason: String },
    /// 400 `{"success":0,"message":"..."}` (the OpenAPI 400 shape).
    #[error("400: {0}")]
    BadPayload(String),
    /// RFC 6749 token endpoint errors: `{"error":"...","error_description":"..."}`.
    #[error("{status}: {error}: {description}")]
    OAuth {
        status: StatusCode,
        error: &'static str,
        description: String,
    },
    /// Test-control errors: `{"errors":["..."]}`.
    #[error("{status}: {errors:?}")]
    Control {
        status: StatusCode,
        errors: Vec<String>,
    },
}

impl ApiError {
    pub fn mydex(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError::Mydex {
            status,
            message: message.into(),
        }
    }

    pub fn unauthorized(reason: impl Into<String>) -> Self {
        ApiError::Unauthorized {
            reason: reason.into(),
        }
    }

    pub fn control(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError::Control {
            status,
            errors: vec![message.into()],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Mydex { status, message } => {
                (status, Json(json!({"error": {"message": message}}))).into_response()
            }
            ApiError::Unauthorized { reason } => {
                let mut resp = (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": {"message": "Access Denied", "reason": reason}})),
                )
                    .into_response();
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"mydex:pdx\""),
                );
                resp
            }
            ApiError::BadPayload(message) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"success": 0, "message": message})),
            )
                .into_response(),
            ApiError::OAuth {
                status,
                error,
                description,
            } => {
                let mut resp = (
                    status,
                    Json(json!({"error": error, "error_description": description})),
                )
                    .into_response();
                if status == StatusCode::UNAUTHORIZED {
                    resp.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"mydex\""),
                    );
                }
                resp
            }
            ApiError::Control { status, errors } => {
                (status, Json(json!({"errors": errors}))).into_response()
            }
        }
    }
}
