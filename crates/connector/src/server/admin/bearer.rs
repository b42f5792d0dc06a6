//! The admin API's bearer token check, as an axum middleware for every route
//! that changes state (or reveals member data). The comparison is constant
//! time; with no `admin.token_file` configured, such routes are refused.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The expected token, or none (then every guarded call is refused).
#[derive(Clone)]
pub struct AdminToken(pub Option<Arc<SecretString>>);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no admin.token_file is configured: state-changing calls are disabled")]
    NotConfigured,
    #[error("missing `Authorization: Bearer` header")]
    Missing,
    #[error("wrong bearer token")]
    Wrong,
}

impl AdminToken {
    /// Check an `Authorization` header value.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), AuthError> {
        let Some(expected) = &self.0 else {
            return Err(AuthError::NotConfigured);
        };
        let given = header
            .and_then(|h| {
                h.strip_prefix(b"Bearer ")
                    .or_else(|| h.strip_prefix(b"bearer "))
            })
            .ok_or(AuthError::Missing)?;
        let ok: bool = given.ct_eq(expected.expose_secret().as_bytes()).into();
        if ok { Ok(()) } else { Err(AuthError::Wrong) }
    }
}

/// `route_layer(middleware::from_fn_with_state(token, require_bearer))`.
pub async fn require_bearer(
    State(token): State<AdminToken>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match token.check(header) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            tracing::warn!(path = %request.uri().path(), error = %e, "admin call refused");
            let status = match e {
                AuthError::NotConfigured => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            (
                status,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({ "error": e.to_string() })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        let t = AdminToken(Some(Arc::new(SecretString::from(
            "0123456789abcdef".to_string(),
        ))));
        assert_eq!(t.check(Some(b"Bearer 0123456789abcdef")), Ok(()));
        assert_eq!(
            t.check(Some(b"Bearer 0123456789abcdeX")),
            Err(AuthError::Wrong)
        );
        assert_eq!(t.check(Some(b"Bearer ")), Err(AuthError::Wrong));
        assert_eq!(t.check(Some(b"Basic abc")), Err(AuthError::Missing));
        assert_eq!(t.check(None), Err(AuthError::Missing));
        assert_eq!(
            AdminToken(None).check(Some(b"Bearer x")),
            Err(AuthError::NotConfigured)
        );
    }
}
