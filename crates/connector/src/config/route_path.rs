//! `callback.path` is handed to the HTTP router at start, and the router
//! panics on a path it cannot take (`/mydex/{`, a segment starting with `:`
//! or `*`): the daemon would exit 101 and systemd restart it in a loop, after
//! `check-config` had said yes. So the path is checked here, once, with the
//! router axum itself uses (matchit, the one version in the lock) beside the
//! listener's other route, and must be a literal path: a capture such as
//! `{id}` would make every path under it a callback endpoint.

use super::error::ConfigError;
use super::validate::Validator;

/// The other route served on the callback listener.
const UNSUBSCRIBE_ROUTE: &str = "/unsubscribe/{token}";

/// Characters a literal path may hold: RFC 3986 `pchar` without
/// percent-encoding, and `/`.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/-._~!$&'()+,;=:@*".contains(c)
}

/// Why `path` cannot be the callback path, if it cannot.
fn refusal(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some("must start with `/`".into());
    }
    if path.len() > 200 {
        return Some("is longer than 200 characters".into());
    }
    if path.starts_with("/unsubscribe/") {
        return Some(
            "may not start with /unsubscribe/ (the one-click unsubscribe links live there)".into(),
        );
    }
    if let Some(c) = path.chars().find(|c| !allowed(*c)) {
        return Some(format!(
            "holds {c:?}: only letters, digits, `/` and -._~!$&'()+,;=:@* may appear \
             (no captures such as {{id}}, no query, fragment, space or %-escape)"
        ));
    }
    if let Some(seg) = path.split('/').find(|s| s.starts_with([':', '*'])) {
        return Some(format!(
            "has a segment {seg:?} starting with `:` or `*`, which the router refuses"
        ));
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Some("has a `.` or `..` segment, which clients remove before calling".into());
    }
    let mut router = matchit::Router::new();
    let inserted = router
        .insert(UNSUBSCRIBE_ROUTE, ())
        .and_then(|()| router.insert(path, ()));
    inserted
        .err()
        .map(|e| format!("is refused by the HTTP router: {e}"))
}

impl Validator {
    /// `callback.path`: a literal path the router takes (default `/mydex/callback`).
    pub(super) fn callback_path(&self, raw: Option<String>) -> Result<String, ConfigError> {
        let path = raw.unwrap_or_else(|| "/mydex/callback".into());
        match refusal(&path) {
            None => Ok(path),
            Some(why) => Err(self.err("callback.path", format!("{path:?} {why}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::refusal;

    #[test]
    fn literal_paths_pass_and_the_routers_refusals_are_caught() {
        for ok in [
            "/mydex/callback",
            "/",
            "/a-b/c_d.e~f",
            "/cb/v1:x",
            "/unsubscribe",
        ] {
            assert_eq!(refusal(ok), None, "{ok}");
        }
        for bad in [
            "/mydex/{",
            "/mydex/{id}",
            "/mydex/}",
            "mydex",
            "",
            "/a?b",
            "/a b",
            "/a%20b",
            "/:id",
            "/x/*rest",
            "/x/../y",
            "/unsubscribe/x",
            "/é",
        ] {
            assert!(refusal(bad).is_some(), "{bad:?} accepted");
        }
    }

    /// What axum would do with the paths `refusal` lets through: none panics.
    #[test]
    fn axum_takes_every_path_that_passes() {
        for ok in ["/mydex/callback", "/", "/cb/v1:x", "/a*b", "/unsubscribe"] {
            assert_eq!(refusal(ok), None, "{ok}");
            let _router: axum::Router = axum::Router::new()
                .route(ok, axum::routing::post(|| async {}))
                .merge(
                    axum::Router::new()
                        .route(super::UNSUBSCRIBE_ROUTE, axum::routing::get(|| async {})),
                );
        }
    }
}
