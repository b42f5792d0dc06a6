//! The member's browser pages behind a one-time link: the single visit
//! (Register and Log in forms), the Data Sharing and Services Agreement with
//! the Private Key field, and the error pages. Everything interpolated is
//! HTML-escaped.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::callbacks::{self, deliver};
use super::journey::{self, Credentials, JourneyError};
use super::state::{AppState, Identity, Link, LinkKind, World};

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>{t} - Mydex sandbox</title></head>\n<body>\n<h1>{t}</h1>\n{body}\n</body></html>\n",
        t = esc(title)
    )
}

fn error_list(errors: &[String]) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let items: String = errors
        .iter()
        .map(|e| format!("<li class=\"error\">{}</li>", esc(e)))
        .collect();
    format!("<ul class=\"errors\">{items}</ul>\n")
}

/// An HTML error page.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = match status {
        StatusCode::GONE => "Link no longer valid",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Access denied",
        _ => "Error",
    };
    (
        status,
        Html(layout(
            title,
            &format!("<p class=\"error\">{}</p>", esc(message)),
        )),
    )
        .into_response()
}

fn journey_error_page(e: &JourneyError) -> Response {
    error_page(e.status(), &e.messages().join(" "))
}

/// The page of the single visit: Register and Log in.
fn link_page(
    link: &Link,
    allow_register: bool,
    sid: &str,
    errors: &[String],
    values: &HashMap<String, String>,
) -> String {
    let v = |k: &str| {
        let named = if k == "mydexid" {
            link.mydexid.as_deref()
        } else {
            None
        };
        esc(values.get(k).map(String::as_str).or(named).unwrap_or(""))
    };
    let sid = esc(sid);
    let intro = match link.kind {
        LinkKind::Identify => "A service wants to know your MydexID.",
        LinkKind::Ftc if link.is_update() => {
            "A service you are connected to asks you to approve an updated connection."
        }
        LinkKind::Ftc => "A service asks to connect to your Personal Data Store.",
    };
    let mut body = format!("<p>{}</p>\n{}", esc(intro), error_list(errors));
    if allow_register {
        body.push_str(&format!(
            "<h2>Register</h2>\n<form method=\"post\" action=\"/session/{sid}/register\">\n\
<label>MydexID <input name=\"mydexid\" value=\"{}\"></label>\n\
<label>Email <input name=\"email\" type=\"email\" value=\"{}\"></label>\n\
<label>Password <input name=\"password\" type=\"password\"></label>\n\
<button type=\"submit\">Register</button>\n</form>\n",
            v("mydexid"),
            v("email")
        ));
    }
    let login_id = match &link.mydexid {
        Some(m) => format!(
            "{} <input type=\"hidden\" name=\"mydexid\" value=\"{}\">",
            esc(m),
            esc(m)
        ),
        None => format!("<input name=\"mydexid\" value=\"{}\">", v("login_mydexid")),
    };
    body.push_str(&format!(
        "<h2>Log in</h2>\n<form method=\"post\" action=\"/session/{sid}/login\">\n\
<label>MydexID {login_id}</label>\n\
<label>Password <input name=\"password\" type=\"password\"></label>\n\
<button type=\"submit\">Log in</button>\n</form>\n"
    ));
    layout("Connect with Mydex", &body)
}

/// The agreement page with the Private Key field.
fn consent_page(
    link: &Link,
    sid: &str,
    mydexid: &str,
    new_member: bool,
    errors: &[String],
) -> String {
    let fields = callbacks::fields_for_version(link.version.max(1));
    let mut rows = String::new();
    if let Some(map) = fields.as_object() {
        for name in map.keys() {
            let dataset = name.trim_start_matches("field_");
            rows.push_str(&format!("<li>{}</li>", esc(dataset)));
        }
    }
    let what = match link.kind {
        LinkKind::Identify => "<p>Share your MydexID with the service.</p>".to_owned(),
        LinkKind::Ftc => format!(
            "<h2>Data Sharing and Services Agreement</h2>\n<p>The service asks for access \
(version {}) to:</p>\n<ul>{rows}</ul>\n",
            link.version
        ),
    };
    let key_label = if new_member {
        "Create your Private Key (8 to 128 characters; Mydex cannot recover it)"
    } else {
        "Your Private Key"
    };
    let body = format!(
        "<p>Signed in as <strong>{}</strong>.</p>\n{what}{}\
<form method=\"post\" action=\"/session/{}/consent\">\n\
<label>{} <input name=\"private_key\" type=\"password\"></label>\n\
<label><input name=\"accept\" type=\"checkbox\" value=\"1\"> I accept the Data Sharing and \
Services Agreement and the terms of service</label>\n\
<button type=\"submit\">Consent</button>\n</form>\n",
        esc(mydexid),
        error_list(errors),
        esc(sid),
        esc(key_label)
    );
    layout("Data Sharing and Services Agreement", &body)
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

/// `GET /ftc/begin/{nid}/{id}/{version}` and `GET /identify/{id}`: the single visit.
async fn begin(state: &AppState, id: &str, kind: LinkKind) -> Response {
    let mut world = state.world.lock();
    if world.links.get(id).is_none_or(|l| l.kind != kind) {
        return journey_error_page(&JourneyError::UnknownLink);
    }
    match journey::visit(&mut world, id) {
        Ok((link, sid)) => {
            let allow = allow_register(&world, &link);
            let mut resp =
                Html(link_page(&link, allow, &sid, &[], &HashMap::new())).into_response();
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err(e) => journey_error_page(&e),
    }
}

/// An FTC link is Mydex-shaped: the NID and the version must be the link's own.
pub async fn begin_ftc(
    State(state): State<Arc<AppState>>,
    Path((nid, id, version)): Path<(String, String, String)>,
) -> Response {
    let matches = nid == state.connection.nid
        && state
            .world
            .lock()
            .links
            .get(&id)
            .is_some_and(|l| l.version.to_string() == version);
    if !matches {
        return journey_error_page(&JourneyError::UnknownLink);
    }
    begin(&state, &id, LinkKind::Ftc).await
}

pub async fn begin_identify(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    begin(&state, &id, LinkKind::Identify).await
}

fn field(form: &HashMap<String, String>, k: &str) -> String {
    form.get(k).cloned().unwrap_or_default()
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
        return journey_error_page(&JourneyError::UnknownSession);
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
    match journey::identify(&world, &link, creds) {
        Ok(identity) => {
            let (mydexid, new_member) = match &identity {
                Identity::Existing { uid } => (
                    world
                        .member(*uid)
                        .map(|m| m.mydexid.clone())
                        .unwrap_or_default(),
                    false,
                ),
                Identity::New { mydexid, .. } => (mydexid.clone(), true),
            };
            if let Some(session) = world.sessions.get_mut(sid) {
                session.identity = Some(identity);
            }
            Html(consent_page(&link, sid, &mydexid, new_member, &[])).into_response()
        }
        Err(JourneyError::Invalid(errors)) => {
            let mut values = HashMap::new();
            if register {
                values.insert("mydexid".to_owned(), field(&form, "mydexid"));
                values.insert("email".to_owned(), field(&form, "email"));
            } else {
                values.insert("login_mydexid".to_owned(), field(&form, "mydexid"));
            }
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Html(link_page(
                    &link,
                    allow_register(&world, &link),
                    sid,
                    &errors,
                    &values,
                )),
            )
                .into_response()
        }
        Err(e) => journey_error_page(&e),
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

/// `POST /session/{sid}/consent`: consent, send the callback, go back.
pub async fn consent(
    State(state): State<Arc<AppState>>,
    Path(sid): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let completed = {
        let mut world = state.world.lock();
        let Some(session) = world.sessions.get(&sid).cloned() else {
            return journey_error_page(&JourneyError::UnknownSession);
        };
        let Some(link) = world.links.get(&session.link_id).cloned() else {
            return journey_error_page(&JourneyError::UnknownLink);
        };
        let Some(identity) = session.identity else {
            return error_page(StatusCode::BAD_REQUEST, "Please register or log in first.");
        };
        let accepted = form
            .get("accept")
            .is_some_and(|v| !v.is_empty() && v != "0");
        match journey::consent(
            &state,
            &mut world,
            &link,
            &identity,
            &field(&form, "private_key"),
            accepted,
        ) {
            Ok(done) => {
                world.sessions.remove(&sid);
                done
            }
            Err(JourneyError::Invalid(errors)) => {
                let (mydexid, new_member) = match &identity {
                    Identity::Existing { uid } => (
                        world
                            .member(*uid)
                            .map(|m| m.mydexid.clone())
                            .unwrap_or_default(),
                        false,
                    ),
                    Identity::New { mydexid, .. } => (mydexid.clone(), true),
                };
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Html(consent_page(&link, &sid, &mydexid, new_member, &errors)),
                )
                    .into_response();
            }
            Err(e) => return journey_error_page(&e),
        }
    };
    deliver(&state, completed.callback).await;
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, completed.return_to)],
    )
        .into_response()
}
