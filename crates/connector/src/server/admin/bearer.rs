//! The admin API's bearer token check, as an axum middleware for every route
//! that changes state (or reveals member data). The comparison is constant
//! time; with no `admin.token_file` configured, such routes are refused —
//! except reads (`GET`/`HEAD`) on a loopback `admin.listen`: only local
//! users reach them, as they reach the store's files. A read of member keys
//! (`with_keys`) still needs a token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The expected token, or none (then every guarded call is refused, but
/// reads when `open_reads`).
#[derive(Clone)]
pub struct AdminToken {
    pub token: Option<Arc<SecretString>>,
    /// No token and a loopback listener: reads need no token.
    pub open_reads: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no admin.token_file is configured: state-changing calls (and, off loopback, all guarded calls) are disabled"
    )]
    NotConfigured,
    #[error("missing `Authorization: Bearer` header")]
    Missing,
    #[error("wrong bearer token")]
    Wrong,
}

impl AdminToken {
    /// The token of `admin.token_file` for a listener on `listen`.
    pub fn new(token: Option<SecretString>, listen: std::net::SocketAddr) -> Self {
        let open_reads = token.is_none() && listen.ip().is_loopback();
        Self {
            token: token.map(Arc::new),
            open_reads,
        }
    }

    /// Whether `request` may pass without a token: a read, not of keys,
    /// with reads open.
    pub fn open_read(&self, method: &Method, query: Option<&str>) -> bool {
        let read = method == Method::GET || method == Method::HEAD;
        let keys = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .any(|(k, v)| k == "with_keys" && v != "false");
        self.open_reads && read && !keys
    }

    /// Check an `Authorization` header value.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), AuthError> {
        let Some(expected) = &self.token else {
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
    if token.open_read(request.method(), request.uri().query()) {
        return next.run(request).await;
    }
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
        let local: std::net::SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let t = AdminToken::new(
            Some(SecretString::from("0123456789abcdef".to_string())),
            local,
        );
        assert!(!t.open_read(&Method::GET, None), "a token closes reads");
        assert_eq!(t.check(Some(b"Bearer 0123456789abcdef")), Ok(()));
        assert_eq!(
            t.check(Some(b"Bearer 0123456789abcdeX")),
            Err(AuthError::Wrong)
        );
        assert_eq!(t.check(Some(b"Bearer ")), Err(AuthError::Wrong));
        assert_eq!(t.check(Some(b"Basic abc")), Err(AuthError::Missing));
        assert_eq!(t.check(None), Err(AuthError::Missing));
        let none = AdminToken::new(None, local);
        assert_eq!(none.check(Some(b"Bearer x")), Err(AuthError::NotConfigured));
        // No token, loopback: reads pass, writes and key reads do not.
        assert!(none.open_read(&Method::GET, Some("state=sent&limit=5")));
        assert!(none.open_read(&Method::HEAD, None));
        assert!(!none.open_read(&Method::POST, None));
        assert!(!none.open_read(&Method::GET, Some("with_keys=true")));
        assert!(!none.open_read(&Method::GET, Some("with_keys=1")));
        assert!(none.open_read(&Method::GET, Some("with_keys=false")));
        // Not loopback: nothing passes without a token.
        for listen in ["0.0.0.0:8081", "192.0.2.1:8081", "[::]:8081"] {
            let t = AdminToken::new(None, listen.parse().unwrap());
            assert!(!t.open_read(&Method::GET, None), "{listen}");
        }
        assert!(AdminToken::new(None, "[::1]:8081".parse().unwrap()).open_read(&Method::GET, None));
    }
}
