//! The end of a journey in the browser. Mydex sends the member to
//! `return_to` (for a headless subscriber, their Personal Data Store at
//! my.mydex.org); the sandbox serves a stand-in of that page at `GET /my`,
//! which `demo` uses as its `return_to`, and shows there what the member
//! just did: consent sets a cookie naming the completed journey. Also the
//! cookie helpers the member pages share.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use cookie::{Cookie, SameSite};

use super::datasets;
use super::html::{esc, page};
use super::journey::Completed;
use super::state::{AppState, Completion, Link, LinkKind, World, random_id};

/// The cookie naming the journey this browser completed last.
const DONE_COOKIE: &str = "mydex_sandbox_done";

/// The value of cookie `name` in the request, if any.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value: for this browser only (HttpOnly, SameSite=Lax),
/// sent back only under `path`, gone when the browser closes.
pub fn set_cookie(name: &str, value: &str, path: &str) -> String {
    Cookie::build((name.to_owned(), value.to_owned()))
        .path(path.to_owned())
        .http_only(true)
        .same_site(SameSite::Lax)
        .build()
        .to_string()
}

/// Keep what the confirmation page needs; the `Set-Cookie` that names it.
pub fn remember(world: &mut World, link: &Link, done: &Completed) -> String {
    let id = random_id(32);
    world.prune();
    world.completions.insert(
        id.clone(),
        Completion {
            mydexid: done.mydexid.clone(),
            kind: link.kind,
            version: link.version.max(1),
            update: link.is_update(),
            created: Instant::now(),
        },
    );
    set_cookie(DONE_COOKIE, &id, "/")
}

/// The page for a completed journey.
fn done_page(subscriber: &str, c: &Completion) -> String {
    let s = esc(subscriber);
    let who = format!("<strong>{}</strong>", esc(&c.mydexid));
    let (title, what) = match c.kind {
        LinkKind::Identify => (
            "Your MydexID was shared",
            format!("<p>{s} now knows your MydexID, {who}. Nothing else was shared.</p>\n"),
        ),
        LinkKind::Ftc => {
            let (title, said) = if c.update {
                (
                    "Your connection is updated",
                    format!(
                        "Your Personal Data Store ({who}) now shares with {s} what version {} \
of the connection asks for.",
                        c.version
                    ),
                )
            } else {
                (
                    "You are connected",
                    format!("Your Personal Data Store ({who}) is now connected to {s}."),
                )
            };
            let list = datasets::render_list(c.version);
            (
                title,
                format!(
                    "<p>{said}</p>\n<h2>What {s} can see</h2>\n{list}<p>You can withdraw this \
access at any time in your Personal Data Store.</p>\n"
                ),
            )
        }
    };
    let body = format!(
        "<div class=\"done\" role=\"status\">\n{what}</div>\n<p>You can close this window.</p>\n\
<p class=\"notice\">In the real Mydex this is your Personal Data Store at my.mydex.org; the \
sandbox shows this confirmation in its place.</p>\n"
    );
    page(title, &body)
}

/// `GET /my`: the stand-in of my.mydex.org, with the confirmation of the
/// journey this browser completed (a `linking_token` in the query is
/// accepted and not needed).
pub async fn my_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let subscriber = &state.connection.subscriber_name;
    let completion = cookie(&headers, DONE_COOKIE)
        .and_then(|id| state.world.lock().completions.get(&id).cloned());
    let html = match completion {
        Some(c) => done_page(subscriber, &c),
        None => page(
            "Your Personal Data Store",
            "<p class=\"lead\">No connection was completed in this browser.</p>\n\
<p>This page stands in for my.mydex.org, where Mydex sends a member after a connection. Open \
the one-time link you were sent to connect.</p>\n",
        ),
    };
    let mut resp = Html(html).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_round_trip_and_are_scoped() {
        let set = set_cookie("mydex_sandbox_visit", "abc", "/identify/x");
        assert!(set.contains("Path=/identify/x") && set.contains("HttpOnly"));
        assert!(set.contains("SameSite=Lax"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; mydex_sandbox_visit=abc; b=2"),
        );
        assert_eq!(cookie(&h, "mydex_sandbox_visit").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "nope"), None);
        h.insert(header::COOKIE, HeaderValue::from_static(";;=;garbage"));
        assert_eq!(cookie(&h, "mydex_sandbox_visit"), None);
    }
}
