//! The member's own view of their PDS: `GET /pds` asks them to
//! log in (MydexID and password), `POST /pds` shows "Your Personal Data
//! Store": every dataset's rows as the sandbox holds them, escaped. Kept
//! apart from `pages.rs` (the connection journeys), in the same page frame.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::datasets;
use super::html::{esc, page};
use super::pages::error_page;
use super::state::{AppState, ct_eq};

const LOGIN_FORM: &str = "<form method=\"post\" action=\"/pds\">\n\
<div class=\"field\"><label for=\"pds-mydexid\">MydexID</label>\n\
<input id=\"pds-mydexid\" name=\"mydexid\" type=\"text\" autocomplete=\"username\" \
autocapitalize=\"none\" spellcheck=\"false\"></div>\n\
<div class=\"field\"><label for=\"pds-password\">Password</label>\n\
<input id=\"pds-password\" name=\"password\" type=\"password\" \
autocomplete=\"current-password\"></div>\n\
<button type=\"submit\">Log in</button></form>";

/// `GET /pds`: the login form.
pub async fn login_page() -> Html<String> {
    Html(page("Log in to your Personal Data Store", LOGIN_FORM))
}

/// `POST /pds`: after a good login, the member's rows by dataset.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| {
        form.get(k)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let (mydexid, password) = (get("mydexid"), get("password"));
    let uid = {
        let world = state.world.lock();
        world
            .uid_by_mydexid(&mydexid)
            .and_then(|uid| world.member(uid))
            .filter(|m| ct_eq(&m.password, &password))
            .map(|m| m.uid)
    };
    let Some(uid) = uid else {
        return error_page(
            StatusCode::FORBIDDEN,
            "Wrong MydexID or password.",
            "Check both and log in again at /pds.",
        );
    };
    let mut body = format!("<p>Signed in as <b>{}</b>.</p>\n", esc(&mydexid));
    let datasets = super::pds::member_rows(&state, uid);
    if datasets.is_empty() {
        body.push_str("<p>No rows yet.</p>\n");
    }
    for (ds, rows) in datasets {
        let mut cols: Vec<&String> = rows.iter().flat_map(|r| r.keys()).collect();
        cols.sort();
        cols.dedup();
        let head: String = cols
            .iter()
            .map(|c| format!("<th>{}</th>", esc(c)))
            .collect();
        let lines: String = rows
            .iter()
            .map(|r| {
                let cells: String = cols
                    .iter()
                    .map(|c| format!("<td>{}</td>", esc(r.get(*c).map_or("", |v| v))))
                    .collect();
                format!("<tr>{cells}</tr>\n")
            })
            .collect();
        body.push_str(&format!(
            "<h2>{}</h2>\n<table class=\"dataset\"><tr>{head}</tr>\n{lines}</table>\n",
            esc(&datasets::describe(&ds).0)
        ));
    }
    Html(page(
        "Your Personal Data Store",
        &body.replace("\n\n", "\n"),
    ))
    .into_response()
}
