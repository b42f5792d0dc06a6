//! The member's browser pages behind a one-time link: the single visit
//! (Register and Log in forms), the Data Sharing and Services Agreement with
//! the Private Key field, and the error pages. Errors are shown at their
//! field and in a summary; everything interpolated is HTML-escaped. A
//! reload of the first page in the same browser (the visit cookie) shows the
//! same forms again instead of burning the link.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::callbacks::deliver;
use super::confirmation;
use super::datasets;
use super::html::{Input, Problem, checkbox, error_id, esc, page, summary};
use super::journey::{self, Credentials, JourneyError};
use super::registration::{Field, field_of};
use super::state::{AppState, Identity, Link, LinkKind, World};

/// The cookie that lets a browser reload the first page of its link.
const VISIT_COOKIE: &str = "mydex_sandbox_visit";

/// An HTML error page.
pub fn error_page(status: StatusCode, message: &str, advice: &str) -> Response {
    let title = match status {
        StatusCode::GONE => "Link no longer valid",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Access denied",
        _ => "Something went wrong",
    };
    let mut body = format!("<p class=\"lead\">{}</p>\n", esc(message));
    if !advice.is_empty() {
        body.push_str(&format!("<p>{}</p>\n", esc(advice)));
    }
    (status, Html(page(title, &body))).into_response()
}

fn journey_error_page(state: &AppState, e: &JourneyError) -> Response {
    let name = &state.connection.subscriber_name;
    let advice = match e {
        JourneyError::Used => format!(
            "If you finished connecting, there is nothing more to do. If you did not, ask \
             {name} for a new link: they can send you a new invitation."
        ),
        JourneyError::Expired => format!("Ask {name} for a new link."),
        JourneyError::WrongMember => {
            format!("Log in with the MydexID this link was sent for, or ask {name} for a new link.")
        }
        _ => String::new(),
    };
    error_page(e.status(), &e.messages().join(" "), &advice)
}

/// Which form of the first page failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Register,
    Login,
}

/// The id of `field` in `form`'s markup.
fn field_id(form: Which, field: Field) -> Option<&'static str> {
    Some(match (form, field) {
        (Which::Register, Field::MydexId) => "register-mydexid",
        (Which::Register, Field::Email) => "register-email",
        (Which::Register, Field::Password) => "register-password",
        (Which::Login, Field::MydexId) => "login-mydexid",
        (Which::Login, Field::Password) => "login-password",
        _ => return None,
    })
}

/// The summary's problems for `messages` shown on `form`.
fn problems(messages: &[String], id_of: impl Fn(Field) -> Option<&'static str>) -> Vec<Problem> {
    messages
        .iter()
        .map(|m| Problem {
            message: m.clone(),
            target: field_of(m).and_then(&id_of).map(str::to_owned),
        })
        .collect()
}

/// The messages of `messages` that belong to `field`.
fn at(messages: &[String], field: Field) -> Vec<String> {
    messages
        .iter()
        .filter(|m| field_of(m) == Some(field))
        .cloned()
        .collect()
}

/// What the first page shows after a failed post.
struct Failed<'a> {
    form: Which,
    messages: &'a [String],
    values: &'a HashMap<String, String>,
}

/// The page of the single visit: Register and Log in.
fn link_page(
    subscriber: &str,
    link: &Link,
    allow_register: bool,
    sid: &str,
    failed: Option<&Failed>,
) -> String {
    let intro = match link.kind {
        LinkKind::Identify => format!("{subscriber} asks for your MydexID."),
        LinkKind::Ftc if link.is_update() => format!(
            "{subscriber}, which you are connected to, asks you to approve an updated connection."
        ),
        LinkKind::Ftc => format!("{subscriber} asks to connect to your Personal Data Store."),
    };
    let how = if allow_register {
        "Register if you are new to Mydex, or log in."
    } else {
        "Log in to carry on."
    };
    let mut body = format!("<p class=\"lead\">{} {how}</p>\n", esc(&intro));
    if let Some(f) = failed {
        body.push_str(&summary(&problems(f.messages, |fd| field_id(f.form, fd))));
    }
    let two = if allow_register { " two" } else { "" };
    body.push_str(&format!("<div class=\"panels{two}\">\n"));
    let forms = FirstPage {
        link,
        sid: esc(sid),
        failed,
        none: HashMap::new(),
    };
    let mut focus = Focus::default();
    if allow_register {
        body.push_str(&forms.register(&mut focus));
    }
    body.push_str(&forms.login(&mut focus));
    body.push_str("</div>\n");
    page("Connect with Mydex", &body)
}

/// The two forms of the first page.
struct FirstPage<'a> {
    link: &'a Link,
    /// Escaped.
    sid: String,
    failed: Option<&'a Failed<'a>>,
    none: HashMap<String, String>,
}

impl FirstPage<'_> {
    /// What the member typed last (passwords are never kept).
    fn value(&self, k: &str) -> Option<&str> {
        self.failed
            .map_or(&self.none, |f| f.values)
            .get(k)
            .map(String::as_str)
    }

    /// The messages of `form` at `field`.
    fn errors(&self, form: Which, field: Field) -> Vec<String> {
        match self.failed {
            Some(f) if f.form == form => at(f.messages, field),
            _ => Vec::new(),
        }
    }

    fn register(&self, focus: &mut Focus) -> String {
        let fields = [
            Input {
                id: "register-mydexid",
                name: "mydexid",
                label: "MydexID",
                kind: "text",
                autocomplete: "username",
                value: self
                    .value("mydexid")
                    .or(self.link.mydexid.as_deref())
                    .unwrap_or(""),
                hint: Some("3 to 60 letters and numbers, not only numbers."),
                errors: self.errors(Which::Register, Field::MydexId),
                ..Default::default()
            },
            Input {
                id: "register-email",
                name: "email",
                label: "Email address",
                kind: "email",
                autocomplete: "email",
                value: self.value("email").unwrap_or(""),
                errors: self.errors(Which::Register, Field::Email),
                ..Default::default()
            },
            Input {
                id: "register-password",
                name: "password",
                label: "Password",
                kind: "password",
                autocomplete: "new-password",
                hint: Some("At least 8 characters, not your MydexID."),
                errors: self.errors(Which::Register, Field::Password),
                ..Default::default()
            },
        ];
        format!(
            "<section class=\"panel\" aria-label=\"Register\">\n<h2>Register</h2>\n\
<form method=\"post\" action=\"/session/{}/register\" novalidate>\n{}\
<button type=\"submit\">Register</button>\n</form>\n</section>\n",
            self.sid,
            focus.render_all(fields)
        )
    }

    fn login(&self, focus: &mut Focus) -> String {
        let failed = self
            .failed
            .is_some_and(|f| f.form == Which::Login && !f.messages.is_empty());
        let named = self.link.mydexid.as_deref();
        let fields = [
            Input {
                id: "login-mydexid",
                name: "mydexid",
                label: "MydexID",
                kind: "text",
                autocomplete: "username",
                value: named.or(self.value("login_mydexid")).unwrap_or(""),
                hint: named.map(|_| "This link is for this MydexID."),
                errors: self.errors(Which::Login, Field::MydexId),
                invalid_with: failed.then(|| error_id("login-password")),
                readonly: named.is_some(),
                ..Default::default()
            },
            Input {
                id: "login-password",
                name: "password",
                label: "Password",
                kind: "password",
                autocomplete: "current-password",
                errors: self.errors(Which::Login, Field::Password),
                ..Default::default()
            },
        ];
        format!(
            "<section class=\"panel\" aria-label=\"Log in\">\n<h2>Log in</h2>\n\
<form method=\"post\" action=\"/session/{}/login\" novalidate>\n{}\
<button type=\"submit\">Log in</button>\n</form>\n</section>\n",
            self.sid,
            focus.render_all(fields)
        )
    }
}

/// Gives `autofocus` to the first invalid field of a page.
#[derive(Default)]
struct Focus {
    taken: bool,
}

impl Focus {
    fn render_all<const N: usize>(&mut self, fields: [Input; N]) -> String {
        fields
            .into_iter()
            .map(|mut f| {
                if f.invalid() && !self.taken {
                    f.autofocus = true;
                    self.taken = true;
                }
                f.render()
            })
            .collect()
    }

    /// True (once) when a field with `errors` is the first invalid one.
    fn claim(&mut self, errors: &[String]) -> bool {
        let mine = !errors.is_empty() && !self.taken;
        self.taken |= mine;
        mine
    }
}

/// Who is consenting and what they posted last.
struct Consenting<'a> {
    mydexid: &'a str,
    new_member: bool,
    errors: &'a [String],
    accepted: bool,
}

/// What the subscriber asks for, as the agreement shows it.
fn asks_for(subscriber: &str, link: &Link) -> String {
    let s = esc(subscriber);
    match link.kind {
        LinkKind::Identify => format!(
            "<h2>What {s} asks for</h2>\n<p>Your MydexID only, so that they can recognise \
you. Nothing in your Personal Data Store is shared.</p>\n"
        ),
        LinkKind::Ftc => {
            let why = if link.is_update() {
                format!("{s} has updated its connection and asks for access to")
            } else {
                format!("{s} asks for access to")
            };
            format!(
                "<h2>What {s} asks for</h2>\n<p>{why} these datasets in your Personal Data \
Store (connection version {}):</p>\n{}<p>You can withdraw this access at any time in your \
Personal Data Store.</p>\n",
                link.version,
                datasets::render_list(link.version)
            )
        }
    }
}

/// The agreement page with the Private Key field.
fn consent_page(subscriber: &str, link: &Link, sid: &str, who: &Consenting) -> String {
    let id_of = |f: Field| match f {
        Field::PrivateKey => Some("private-key"),
        Field::Accept => Some("accept"),
        _ => None,
    };
    let mut body = format!(
        "<p>Signed in as <strong>{}</strong>.</p>\n{}{}",
        esc(who.mydexid),
        summary(&problems(who.errors, id_of)),
        asks_for(subscriber, link)
    );
    let (label, hint, autocomplete) = if who.new_member {
        (
            "Create your Private Key",
            "8 to 128 characters, not your MydexID or password. Mydex cannot recover it: keep it safe.",
            "new-password",
        )
    } else {
        (
            "Your Private Key",
            "The Private Key you chose when you registered.",
            "current-password",
        )
    };
    let mut focus = Focus::default();
    let key = focus.render_all([Input {
        id: "private-key",
        name: "private_key",
        label,
        kind: "password",
        autocomplete,
        hint: Some(hint),
        errors: at(who.errors, Field::PrivateKey),
        ..Default::default()
    }]);
    let accept_errors = at(who.errors, Field::Accept);
    let accept = checkbox(
        "accept",
        "accept",
        "I accept the Data Sharing and Services Agreement and the terms of service",
        who.accepted,
        &accept_errors,
        focus.claim(&accept_errors),
    );
    body.push_str(&format!(
        "<form method=\"post\" action=\"/session/{}/consent\" novalidate>\n{key}{accept}\
<button type=\"submit\">Agree and connect</button>\n</form>\n",
        esc(sid)
    ));
    page("Data Sharing and Services Agreement", &body)
}

/// Registration is offered unless the link names an existing member (and
/// never for an update).
fn allow_register(world: &World, link: &Link) -> bool {
    !link.is_update()
        && link
            .mydexid
            .as_deref()
            .is_none_or(|m| world.uid_by_mydexid(m).is_none())
}

/// The session this browser opened for link `id` before, if it is still on.
fn earlier_visit(world: &World, headers: &HeaderMap, id: &str) -> Option<String> {
    let sid = confirmation::cookie(headers, VISIT_COOKIE)?;
    world
        .sessions
        .get(&sid)
        .is_some_and(|s| s.link_id == id)
        .then_some(sid)
}

/// `GET /ftc/begin/{nid}/{id}/{version}` and `GET /identify/{id}`: the
/// single visit (or this browser's reload of it).
fn begin(state: &AppState, id: &str, kind: LinkKind, path: &str, headers: &HeaderMap) -> Response {
    let mut world = state.world.lock();
    if world.links.get(id).is_none_or(|l| l.kind != kind) {
        return journey_error_page(state, &JourneyError::UnknownLink);
    }
    let visited = match earlier_visit(&world, headers, id) {
        Some(sid) => match world.links.get(id).cloned() {
            Some(link) if link.expired() => Err(JourneyError::Expired),
            Some(link) => Ok((link, sid)),
            None => Err(JourneyError::UnknownLink),
        },
        None => journey::visit(&mut world, id),
    };
    let (link, sid) = match visited {
        Ok(v) => v,
        Err(e) => return journey_error_page(state, &e),
    };
    let allow = allow_register(&world, &link);
    let html = link_page(&state.connection.subscriber_name, &link, allow, &sid, None);
    let mut resp = Html(html).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&confirmation::set_cookie(VISIT_COOKIE, &sid, path)) {
        headers.insert(header::SET_COOKIE, v);
    }
    resp
}

/// An FTC link is Mydex-shaped: the NID and the version must be the link's own.
pub async fn begin_ftc(
    State(state): State<Arc<AppState>>,
    Path((nid, id, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let matches = nid == state.connection.nid
        && state
            .world
            .lock()
            .links
            .get(&id)
            .is_some_and(|l| l.version.to_string() == version);
    if !matches {
        return journey_error_page(&state, &JourneyError::UnknownLink);
    }
    let path = format!("/ftc/begin/{nid}/{id}/{version}");
    begin(&state, &id, LinkKind::Ftc, &path, &headers)
}

pub async fn begin_identify(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/identify/{id}");
    begin(&state, &id, LinkKind::Identify, &path, &headers)
}

fn field(form: &HashMap<String, String>, k: &str) -> String {
    form.get(k).cloned().unwrap_or_default()
}

/// The MydexID an identity stands for, and whether it is a new member.
fn who(world: &World, identity: &Identity) -> (String, bool) {
    match identity {
        Identity::Existing { uid } => (
            world
                .member(*uid)
                .map(|m| m.mydexid.clone())
                .unwrap_or_default(),
            false,
        ),
        Identity::New { mydexid, .. } => (mydexid.clone(), true),
    }
}

async fn authenticate(
    state: &AppState,
    sid: &str,
    form: HashMap<String, String>,
    register: bool,
) -> Response {
    let mut world = state.world.lock();
    let Some(link) = world
        .sessions
        .get(sid)
        .and_then(|s| world.links.get(&s.link_id))
        .cloned()
    else {
        return journey_error_page(state, &JourneyError::UnknownSession);
    };
    let creds = if register {
        Credentials::Register {
            mydexid: field(&form, "mydexid"),
            email: field(&form, "email"),
            password: field(&form, "password"),
        }
    } else {
        Credentials::Login {
            mydexid: field(&form, "mydexid"),
            password: field(&form, "password"),
        }
    };
    let subscriber = &state.connection.subscriber_name;
    match journey::identify(&world, &link, creds) {
        Ok(identity) => {
            let (mydexid, new_member) = who(&world, &identity);
            if let Some(session) = world.sessions.get_mut(sid) {
                session.identity = Some(identity);
            }
            let who = Consenting {
                mydexid: &mydexid,
                new_member,
                errors: &[],
                accepted: false,
            };
            Html(consent_page(subscriber, &link, sid, &who)).into_response()
        }
        Err(JourneyError::Invalid(errors)) => {
            let mut values = HashMap::new();
            if register {
                values.insert("mydexid".to_owned(), field(&form, "mydexid"));
                values.insert("email".to_owned(), field(&form, "email"));
            } else {
                values.insert("login_mydexid".to_owned(), field(&form, "mydexid"));
            }
            let failed = Failed {
                form: if register {
                    Which::Register
                } else {
                    Which::Login
                },
                messages: &errors,
                values: &values,
            };
            let allow = allow_register(&world, &link);
            let html = link_page(subscriber, &link, allow, sid, Some(&failed));
            (StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response()
        }
        Err(e) => journey_error_page(state, &e),
    }
}

/// `POST /session/{sid}/register`.
pub async fn register(
    State(state): State<Arc<AppState>>,
    Path(sid): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    authenticate(&state, &sid, form, true).await
}

/// `POST /session/{sid}/login`.
pub async fn login(
    State(state): State<Arc<AppState>>,
    Path(sid): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    authenticate(&state, &sid, form, false).await
}

/// `POST /session/{sid}/consent`: consent, send the callback, go back to
/// `return_to` with the confirmation cookie set.
pub async fn consent(
    State(state): State<Arc<AppState>>,
    Path(sid): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (completed, cookie) = {
        let mut world = state.world.lock();
        let Some(session) = world.sessions.get(&sid).cloned() else {
            return journey_error_page(&state, &JourneyError::UnknownSession);
        };
        let Some(link) = world.links.get(&session.link_id).cloned() else {
            return journey_error_page(&state, &JourneyError::UnknownLink);
        };
        let Some(identity) = session.identity else {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Please register or log in first.",
                "",
            );
        };
        let accepted = form
            .get("accept")
            .is_some_and(|v| !v.is_empty() && v != "0");
        let key = field(&form, "private_key");
        match journey::consent(&state, &mut world, &link, &identity, &key, accepted) {
            Ok(done) => {
                world.sessions.remove(&sid);
                let cookie = confirmation::remember(&mut world, &link, &done);
                (done, cookie)
            }
            Err(JourneyError::Invalid(errors)) => {
                let (mydexid, new_member) = who(&world, &identity);
                let who = Consenting {
                    mydexid: &mydexid,
                    new_member,
                    errors: &errors,
                    accepted,
                };
                let html = consent_page(&state.connection.subscriber_name, &link, &sid, &who);
                return (StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response();
            }
            Err(e) => return journey_error_page(&state, &e),
        }
    };
    deliver(&state, completed.callback).await;
    let mut resp = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, completed.return_to)],
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}
