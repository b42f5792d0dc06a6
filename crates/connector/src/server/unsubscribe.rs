//! One-click unsubscribe (RFC 8058) on the callback listener: every mail's
//! `List-Unsubscribe` names `{callback.public_url}/unsubscribe/{token}`.
//! `POST` (a mailbox provider's one click, or our page's button) puts the
//! person on the suppression list and fails their open invitations: 200,
//! no login, no confirmation. `GET` shows a page with that button and
//! changes nothing (mail scanners fetch links). Any token not ours, of any
//! bytes, is 404 with one fixed body and writes nothing. The token is never
//! logged; the invitation id is. Every page names the organisation
//! (`[organisation]`, as the last reload left it) and is framed by
//! `member_page.rs`. On an edge (`edge_router`), which cannot tell our
//! tokens from others, a POST is sealed and published to
//! `{prefix}.unsubscribes` and the daemon judges it as above.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::member_page::{page as framed, plain};
use crate::config::Swap;
use crate::domain::TokenKind;
use crate::notify::email::{Templates, escape_html};
use crate::store::{Store, StoreError, Suppression, SuppressionSource, now_ms};

/// The largest body a one-click POST may carry.
const BODY_LIMIT: usize = 1024;

pub struct UnsubscribeState {
    pub store: Store,
    /// Who the pages name (`[organisation]`, reloaded with the templates).
    pub templates: Arc<Swap<Templates>>,
}

pub fn router(store: Store, templates: Arc<Swap<Templates>>) -> Router {
    Router::new()
        .route("/unsubscribe/{token}", axum::routing::get(page).post(click))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(Arc::new(UnsubscribeState { store, templates }))
}

impl UnsubscribeState {
    /// A framed page naming the organisation.
    fn page(&self, title: &str, body: &str) -> String {
        framed(&self.templates.get(), title, body)
    }

    /// The organisation's name, escaped.
    fn name(&self) -> String {
        escape_html(&self.templates.get().organisation().name)
    }
}

/// The longest token an edge publishes; ours are far shorter.
const EDGE_TOKEN_MAX: usize = 256;

/// One-click unsubscribe on an edge: the page as on the daemon; a POST
/// sealed and published for the daemon to judge (2xx once JetStream has
/// it, else 503 with `Retry-After`).
pub fn edge_router(publisher: Arc<crate::broker::EdgePublisher>) -> Router {
    Router::new()
        .route(
            "/unsubscribe/{token}",
            axum::routing::get(edge_page).post(edge_click),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(publisher)
}

/// A token an edge may pass on: printable ASCII, not too long.
fn edge_token(token: Result<Path<String>, PathRejection>) -> Option<String> {
    let Path(token) = token.ok()?;
    let ok = !token.is_empty()
        && token.len() <= EDGE_TOKEN_MAX
        && token.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(token)
}

async fn edge_page(token: Result<Path<String>, PathRejection>) -> Response {
    if edge_token(token).is_none() {
        return edge_not_found();
    }
    respond(StatusCode::OK, plain("Stop these emails", EDGE_PAGE))
}

/// An edge's one fixed page for a token it will not pass on.
fn edge_not_found() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        plain(
            "Link not known",
            "<p class=\"lead\">This unsubscribe link is not known. Please check that you \
             copied the whole link from the email.</p>",
        ),
    )
}

async fn edge_click(
    State(publisher): State<Arc<crate::broker::EdgePublisher>>,
    token: Result<Path<String>, PathRejection>,
    _body: axum::body::Bytes,
) -> Response {
    let Some(token) = edge_token(token) else {
        return edge_not_found();
    };
    let u = crate::broker::ReceivedUnsubscribe {
        token,
        arrived_ms: now_ms(),
    };
    match publisher.publish_unsubscribe(&u).await {
        Ok(_) => respond(
            StatusCode::OK,
            plain(
                "Unsubscribed",
                "<p class=\"lead\">Your request is recorded: you will get no more email \
                 about connecting your Personal Data Store.</p>",
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe not taken by JetStream; answering 503");
            let mut r = respond(
                StatusCode::SERVICE_UNAVAILABLE,
                plain(
                    "Please try again",
                    "<p class=\"lead\">We could not record this just now. Please try \
                     again in a few minutes.</p>",
                ),
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(super::edge_callback::RETRY_AFTER_SECONDS),
            );
            r
        }
    }
}

/// What an edge's GET shows: a button that POSTs to the same URL (a
/// relative form action).
const EDGE_PAGE: &str = "<p class=\"lead\">Press the button to get no more email about \
connecting your Personal Data Store: no invitations and no reminders.</p>\n\
<div class=\"panel\"><form method=\"post\"><input type=\"hidden\" \
name=\"List-Unsubscribe\" value=\"One-Click\">\n\
<button type=\"submit\">Unsubscribe</button></form></div>";

fn respond(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

/// One fixed page for every token not ours.
fn not_found(st: &UnsubscribeState) -> Response {
    respond(
        StatusCode::NOT_FOUND,
        st.page(
            "Link not known",
            "<p class=\"lead\">This unsubscribe link is not known. Please check that you \
             copied the whole link from the email.</p>",
        ),
    )
}

/// The invitation a path's token names, if it is one of ours.
fn invitation_of(st: &UnsubscribeState, token: Result<Path<String>, PathRejection>) -> Option<u64> {
    let Path(token) = token.ok()?;
    let parsed = st.store.mail_keys().parse_token(token.as_bytes())?;
    (parsed.kind == TokenKind::Unsubscribe).then_some(parsed.invitation)
}

async fn page(
    State(st): State<Arc<UnsubscribeState>>,
    token: Result<Path<String>, PathRejection>,
) -> Response {
    if invitation_of(&st, token).is_none() {
        return not_found(&st);
    }
    let name = st.name();
    // A relative form action: the same URL the page was fetched at.
    let body = format!(
        "<p class=\"lead\">Press the button to get no more email from {name} about \
         connecting your Personal Data Store: no invitations and no reminders.</p>\n\
         <div class=\"panel\"><form method=\"post\"><input type=\"hidden\" \
         name=\"List-Unsubscribe\" value=\"One-Click\">\n\
         <button type=\"submit\">Unsubscribe</button></form></div>\n\
         <p>This only stops these emails. A connection you have already made stays \
         as it is: you can end it in your Personal Data Store at any time.</p>"
    );
    respond(StatusCode::OK, st.page("Stop these emails", &body))
}

async fn click(
    State(st): State<Arc<UnsubscribeState>>,
    token: Result<Path<String>, PathRejection>,
    // Read (up to `BODY_LIMIT`, else 413) and not needed: the token is
    // what counts, whatever the form says.
    _body: axum::body::Bytes,
) -> Response {
    let Some(id) = invitation_of(&st, token) else {
        return not_found(&st);
    };
    let done = unsubscribe(&st.store, id, "one-click unsubscribe").await;
    let flushed = st.store.flush().await;
    match (done, flushed) {
        (Ok(()), Ok(())) => {
            let body = format!(
                "<p class=\"done\">You are unsubscribed: {} will send you no more email \
                 about this.</p>",
                st.name()
            );
            respond(StatusCode::OK, st.page("You are unsubscribed", &body))
        }
        (Err(e), _) => {
            st.store.note_error(&e);
            tracing::error!(invitation = id, error = %e, "cannot record an unsubscribe");
            unavailable(&st)
        }
        (_, Err(e)) => {
            tracing::error!(invitation = id, error = %e, "cannot make an unsubscribe durable");
            unavailable(&st)
        }
    }
}

fn unavailable(st: &UnsubscribeState) -> Response {
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        st.page(
            "Please try again",
            "<p class=\"lead\">We could not record this just now. Please try again in a \
             few minutes.</p>",
        ),
    )
}

/// Suppress the person of invitation `id` (`how`: the log line's words).
/// An invitation forgotten since (`people forget`) has nothing left to
/// change: its person is suppressed.
pub(crate) async fn unsubscribe(store: &Store, id: u64, how: &str) -> Result<(), StoreError> {
    let inv = match store.invitation(id).await {
        Ok(inv) => inv,
        Err(StoreError::NotFound(_)) => {
            tracing::info!(
                invitation = id,
                "unsubscribe for a forgotten invitation: nothing to change"
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let person = store.mail_keys().person(&inv.invitee.email);
    let entry = Suppression {
        reason: "unsubscribed".into(),
        source: SuppressionSource::Unsubscribe,
        at_ms: now_ms(),
    };
    let done = store.suppress(&person, entry).await?;
    tracing::info!(invitation = id, campaign = %inv.campaign, person = person.short(), new = done.new, failed = done.failed.len(), how, "unsubscribed");
    Ok(())
}
