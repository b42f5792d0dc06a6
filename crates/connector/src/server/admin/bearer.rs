//! Who is calling the admin API, as axum middlewares: the bearer token check
//! for every route that changes state or reveals member data, and the Host
//! check (`local_host.rs`) for every request without the token.
//!
//! The token is compared in constant time; with no `admin.token_file`
//! configured, guarded routes are refused, except reads (`GET`/`HEAD`) on a
//! loopback `admin.listen`: only local users reach them, as they reach the
//! store's files. A read of member keys (`with_keys`) still needs a token.
//! A request without the token must name the listener in its `Host` (421
//! otherwise: a DNS-rebinding web page cannot), and its answer never carries
//! a one-time link or a linking token (`disclosure.rs`). Refusals are
//! counted in `/metrics` and warned about at most once a second.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::disclosure;
use super::local_host::ListenerNames;
use crate::metrics::Metrics;
use crate::server::refusal_log::RefusalLog;

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

impl AuthError {
    /// Its `reason` label in `/metrics`.
    fn reason(&self) -> &'static str {
        match self {
            AuthError::NotConfigured => "no_token_configured",
            AuthError::Missing => "missing_token",
            AuthError::Wrong => "wrong_token",
        }
    }
}

impl AdminToken {
    /// The token of `admin.token_file` for a listener bound at `listen`.
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

/// Proof that a request presented the configured admin token. Only this
/// file makes one; what an answer shows only to such a caller (one-time
/// links, linking tokens) is built from it.
#[derive(Debug, Clone, Copy)]
pub struct Bearer {
    _proof: (),
}

/// Who passed the gate; every guarded handler finds it in the request's
/// extensions (`Extension<Caller>`).
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    /// With the admin token.
    Bearer(Bearer),
    /// Without a token, a read on a loopback listener naming itself.
    LocalRead,
}

impl Caller {
    /// The proof, when the admin token was presented.
    pub fn bearer(&self) -> Option<&Bearer> {
        match self {
            Caller::Bearer(b) => Some(b),
            Caller::LocalRead => None,
        }
    }
}

/// Why a request was turned away.
enum Refusal {
    Token(AuthError),
    /// Its `Host` does not name this listener (421).
    Misdirected,
}

/// The token, the names of the listener actually bound, and the counts and
/// rate-limited warnings of refusals: the state of both middlewares.
pub struct AdminGate {
    pub token: AdminToken,
    names: ListenerNames,
    metrics: Arc<Metrics>,
    token_refusals: RefusalLog,
    host_refusals: RefusalLog,
}

impl AdminGate {
    /// For the admin listener bound at `bound` (its real port).
    pub fn new(
        token: Option<SecretString>,
        bound: std::net::SocketAddr,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            token: AdminToken::new(token, bound),
            names: ListenerNames::new(bound),
            metrics,
            token_refusals: RefusalLog::default(),
            host_refusals: RefusalLog::default(),
        }
    }

    fn authorization(headers: &HeaderMap) -> Option<&[u8]> {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.as_bytes())
    }

    /// A guarded route: who may pass, or why not. With a token configured
    /// and sent, only it decides; without, the Host must name us, then only
    /// open reads pass.
    fn admit(&self, request: &Request) -> Result<Caller, Refusal> {
        let header = Self::authorization(request.headers());
        if header.is_some() && self.token.token.is_some() {
            return match self.token.check(header) {
                Ok(()) => Ok(Caller::Bearer(Bearer { _proof: () })),
                Err(e) => Err(Refusal::Token(e)),
            };
        }
        if !self.names.named_by(request.uri(), request.headers()) {
            return Err(Refusal::Misdirected);
        }
        if self
            .token
            .open_read(request.method(), request.uri().query())
        {
            return Ok(Caller::LocalRead);
        }
        Err(Refusal::Token(match self.token.token {
            None => AuthError::NotConfigured,
            Some(_) => AuthError::Missing,
        }))
    }

    /// The answer to a refused request: counted, warned about at most once
    /// a second (with how many since the last line), and nothing else.
    fn refuse(&self, refusal: Refusal, path: &str) -> Response {
        match refusal {
            Refusal::Token(e) => {
                self.metrics.admin_refused(e.reason());
                if let Some(refused) = self.token_refusals.note() {
                    tracing::warn!(path, error = %e, refused, suppressed = refused - 1, "admin call refused (refused: how many since the last such line)");
                }
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
            Refusal::Misdirected => {
                self.metrics.admin_refused("misdirected");
                if let Some(refused) = self.host_refusals.note() {
                    tracing::warn!(
                        path,
                        refused,
                        suppressed = refused - 1,
                        "admin call without the token refused: its Host does not name this listener (a DNS-rebinding web page, or a client naming the machine; refused: how many since the last such line)"
                    );
                }
                misdirected()
            }
        }
    }
}

/// 421, with no word of what the request asked for.
fn misdirected() -> Response {
    (
        StatusCode::MISDIRECTED_REQUEST,
        axum::Json(serde_json::json!({
            "error": "without the admin token, the Host header must name this listener: 127.0.0.1, localhost or [::1] with its port"
        })),
    )
        .into_response()
}

/// `route_layer(middleware::from_fn_with_state(gate, require_bearer))`:
/// the guarded routes. A token-less answer is scrubbed of linking tokens.
pub async fn require_bearer(
    State(gate): State<Arc<AdminGate>>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match gate.admit(&request) {
        Ok(c) => c,
        Err(r) => return gate.refuse(r, request.uri().path()),
    };
    request.extensions_mut().insert(caller);
    let response = next.run(request).await;
    match caller {
        Caller::Bearer(_) => response,
        Caller::LocalRead => disclosure::scrub(response).await,
    }
}

/// `route_layer(middleware::from_fn_with_state(gate, require_local_host))`:
/// routes open to anyone who reaches the listener (`/status`, counts only),
/// but still not to a page that reached it by DNS rebinding: the Host must
/// name the listener, unless the admin token comes along.
pub async fn require_local_host(
    State(gate): State<Arc<AdminGate>>,
    request: Request,
    next: Next,
) -> Response {
    let header = AdminGate::authorization(request.headers());
    let bearer = header.is_some() && gate.token.check(header).is_ok();
    if bearer || gate.names.named_by(request.uri(), request.headers()) {
        return next.run(request).await;
    }
    gate.refuse(Refusal::Misdirected, request.uri().path())
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

    fn request(method: Method, host: &str, auth: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder()
            .method(method)
            .uri("/invitations/0")
            .header("host", host);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn the_gate_admits_by_token_then_by_host() {
        let local: std::net::SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let open = AdminGate::new(None, local, Arc::default());
        let here = "127.0.0.1:8081";
        assert!(matches!(
            open.admit(&request(Method::GET, here, None)),
            Ok(Caller::LocalRead)
        ));
        for evil in ["evil.example", "evil.example:8081", "127.0.0.1:9"] {
            assert!(matches!(
                open.admit(&request(Method::GET, evil, None)),
                Err(Refusal::Misdirected)
            ));
        }
        assert!(matches!(
            open.admit(&request(Method::POST, here, None)),
            Err(Refusal::Token(AuthError::NotConfigured))
        ));
        let token = "0123456789abcdef";
        let closed = AdminGate::new(
            Some(SecretString::from(token.to_string())),
            local,
            Arc::default(),
        );
        let bearer = format!("Bearer {token}");
        // A valid token passes whatever the Host; a wrong one never does.
        assert!(matches!(
            closed.admit(&request(Method::POST, "evil.example", Some(&bearer))),
            Ok(Caller::Bearer(_))
        ));
        assert!(matches!(
            closed.admit(&request(Method::GET, here, Some("Bearer 0123456789abcdeX"))),
            Err(Refusal::Token(AuthError::Wrong))
        ));
        assert!(matches!(
            closed.admit(&request(Method::GET, here, None)),
            Err(Refusal::Token(AuthError::Missing))
        ));
    }
}
