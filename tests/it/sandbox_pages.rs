//! The member's pages through real form posts: GET the one-time link, POST
//! the Register or Log in form, POST the agreement with the Private Key, and
//! check every validation message of the Registration seed on the way.

use mydex_test_support::contract::*;
use serde_json::{Value, json};

/// The form action of `kind` (register, login, consent) on a page.
fn action(page: &str, kind: &str) -> String {
    let end = format!("/{kind}\"");
    let stop = page
        .find(&end)
        .unwrap_or_else(|| panic!("no {kind} form in {page}"));
    let start = page[..stop].rfind("action=\"").unwrap() + "action=\"".len();
    page[start..stop + end.len() - 1].to_owned()
}

/// The field (register-{field}) a Registration message is shown at.
fn field_of_message(m: &str) -> &'static str {
    if m.starts_with("MydexID") {
        "mydexid"
    } else if m.starts_with("Email") {
        "email"
    } else {
        "password"
    }
}

/// The input `id` is marked invalid and described by its error message.
fn assert_field_invalid(page: &str, id: &str) {
    let start = page
        .find(&format!("<input id=\"{id}\""))
        .unwrap_or_else(|| panic!("no input {id}"));
    let tag = &page[start..start + page[start..].find('>').unwrap()];
    assert!(tag.contains("aria-invalid=\"true\""), "{tag}");
    let described = tag
        .split("aria-describedby=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("{id} has no aria-describedby: {tag}"));
    let error_id = format!("{id}-error");
    assert!(described.split(' ').any(|d| d == error_id), "{tag}");
    assert!(page.contains(&format!("<div id=\"{error_id}\">")), "{id}");
}

/// Form fields and the messages they must produce.
type Case<'a, F> = (F, Vec<&'a str>);

struct Browser<'a> {
    env: &'a Env,
}

impl Browser<'_> {
    async fn get(&self, url: &str) -> (u16, String) {
        let resp = self.env.http.get(url).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let resp = self
            .env
            .http
            .post(format!("{}{path}", self.env.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, resp.text().await.unwrap(), location)
    }
}

#[tokio::test]
async fn register_form_shows_each_rule_message_then_consent_connects() {
    let env = Env::start().await;
    // Someone already holds "taken1" and "taken@example.com".
    let url = env.ftc_link(json!({})).await;
    env.journey(json!({"url": url, "mydexid": "taken1", "email": "taken@example.com"}))
        .await;

    let b = Browser { env: &env };
    let url = env.ftc_link(json!({"linking_token": "inv-page"})).await;
    let (status, page) = b.get(&url).await;
    assert_eq!(status, 200);
    assert!(page.contains("<h2>Register</h2>") && page.contains("<h2>Log in</h2>"));
    let register = action(&page, "register");

    let too_long = "a".repeat(61);
    let cases: Vec<Case<[(&str, &str); 3]>> = vec![
        (
            [("mydexid", ""), ("email", ""), ("password", "")],
            vec![
                "MydexID is required",
                "Email address is required",
                "Password is required",
            ],
        ),
        (
            [
                ("mydexid", "taken1"),
                ("email", "new@example.com"),
                ("password", "longenough1"),
            ],
            vec!["MydexID is already in use"],
        ),
        (
            [
                ("mydexid", "TAKEN1"),
                ("email", "new@example.com"),
                ("password", "longenough1"),
            ],
            vec!["MydexID is already in use"],
        ),
        (
            [
                ("mydexid", "ali ce"),
                ("email", "new@example.com"),
                ("password", "longenough1"),
            ],
            vec!["MydexID must contain only letters and numbers"],
        ),
        (
            [
                ("mydexid", "20260101"),
                ("email", "new@example.com"),
                ("password", "longenough1"),
            ],
            vec!["MydexID cannot be made up only of numbers"],
        ),
        (
            [
                ("mydexid", "al"),
                ("email", "new@example.com"),
                ("password", "longenough1"),
            ],
            vec!["MydexID must be between 3 and 60 characters long"],
        ),
        (
            [
                ("mydexid", too_long.as_str()),
                ("email", "new@example.com"),
                ("password", "longenough1"),
            ],
            vec!["MydexID must be between 3 and 60 characters long"],
        ),
        (
            [
                ("mydexid", "alice1"),
                ("email", "taken@example.com"),
                ("password", "longenough1"),
            ],
            vec!["Email address is already in use"],
        ),
        (
            [
                ("mydexid", "alice1"),
                ("email", "nope"),
                ("password", "longenough1"),
            ],
            vec!["Email address is not valid"],
        ),
        (
            [
                ("mydexid", "alice1234"),
                ("email", "new@example.com"),
                ("password", "alice1234"),
            ],
            vec!["Password cannot be the same as the MydexID"],
        ),
        (
            [
                ("mydexid", "Alice1234"),
                ("email", "new@example.com"),
                ("password", "aLICE1234"),
            ],
            vec!["Password cannot be the same as the MydexID"],
        ),
        (
            [
                ("mydexid", "alice1"),
                ("email", "new@example.com"),
                ("password", "short"),
            ],
            vec!["Password must be at least 8 characters long"],
        ),
    ];
    for (form, messages) in cases {
        let (status, page, _) = b.post(&register, &form).await;
        assert_eq!(status, 422, "{form:?}");
        for m in &messages {
            // At its field, and in the summary linking to the field.
            assert!(
                page.contains(&format!(
                    "<span class=\"visually-hidden\">Error: </span>{m}</p>"
                )),
                "{form:?}: {m} not at its field in {page}"
            );
            let field = field_of_message(m);
            assert!(
                page.contains(&format!("<li><a href=\"#register-{field}\">{m}</a></li>")),
                "{form:?}: {m} not in the summary"
            );
            assert_field_invalid(&page, &format!("register-{field}"));
        }
        assert!(page.contains("role=\"alert\""));
        assert_eq!(
            page.matches("class=\"error\"").count(),
            messages.len(),
            "{form:?}"
        );
    }
    // Values are echoed back HTML-escaped.
    let (status, page, _) = b
        .post(
            &register,
            &[
                ("mydexid", "<b>x\"y"),
                ("email", "a@b.c"),
                ("password", "longenough1"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("&lt;b&gt;x&quot;y") && !page.contains("<b>x"));

    // A valid registration (whitespace trimmed) leads to the agreement.
    let (status, page, _) = b
        .post(
            &register,
            &[
                ("mydexid", " aliceliddell "),
                ("email", "alice@example.com"),
                ("password", "wonderland1"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("Data Sharing and Services Agreement"));
    assert!(page.contains("name=\"private_key\""));
    // The subscriber's name and each dataset's human name and purpose, no
    // raw ids, one heading.
    assert!(page.contains("What Example Energy asks for"));
    for text in [
        "Personal details",
        "Contact details",
        "view and update",
        "so that",
    ] {
        assert!(page.contains(text), "{text} not on the agreement");
    }
    assert!(!page.contains("ds_contact_details") && !page.contains("ds_personal_details"));
    assert_eq!(page.matches("<h1>").count(), 1);
    assert_eq!(
        page.matches("Data Sharing and Services Agreement</h")
            .count(),
        1
    );
    assert!(page.contains("autocomplete=\"new-password\""));
    let consent = action(&page, "consent");

    let long = "k".repeat(129);
    let key_cases: Vec<Case<Vec<(&str, &str)>>> = vec![
        (
            vec![("private_key", ""), ("accept", "1")],
            vec!["Private Key is required"],
        ),
        (
            vec![("private_key", "aliceliddell"), ("accept", "1")],
            vec!["Private Key cannot be the same as the MydexID"],
        ),
        (
            vec![("private_key", "ALICELIDDELL"), ("accept", "1")],
            vec!["Private Key cannot be the same as the MydexID"],
        ),
        (
            vec![("private_key", "wonderland1"), ("accept", "1")],
            vec!["Private Key cannot be the same as the password"],
        ),
        (
            vec![("private_key", "WonderLand1"), ("accept", "1")],
            vec!["Private Key cannot be the same as the password"],
        ),
        (
            vec![("private_key", "short"), ("accept", "1")],
            vec!["Private Key must be between 8 and 128 characters long"],
        ),
        (
            vec![("private_key", long.as_str()), ("accept", "1")],
            vec!["Private Key must be between 8 and 128 characters long"],
        ),
        (
            vec![("private_key", "a-fine-private-key")],
            vec![
                "You must accept the Data Sharing and Services Agreement and the terms of service",
            ],
        ),
    ];
    for (form, messages) in key_cases {
        let (status, page, _) = b.post(&consent, &form).await;
        assert_eq!(status, 422, "{form:?}");
        for m in &messages {
            assert!(page.contains(m), "{form:?}: {m}");
            let id = if m.starts_with("You must accept") {
                "accept"
            } else {
                "private-key"
            };
            assert_field_invalid(&page, id);
        }
        // The terms box keeps what the member posted.
        let ticked = form.iter().any(|(k, _)| *k == "accept");
        assert_eq!(
            page.contains("name=\"accept\" type=\"checkbox\" value=\"1\" checked"),
            ticked,
            "{form:?}"
        );
    }
    assert!(env.receiver.seen().len() == 1, "no callback before consent");
    let (status, _, location) = b
        .post(
            &consent,
            &[("private_key", "a-fine-private-key"), ("accept", "1")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some(RETURN_TO));
    let cb = env.receiver.last();
    assert_eq!(cb.method, "POST");
    let body = cb.json();
    assert_eq!(body["uid"], 1002);
    assert_eq!(body["mydexid"], "aliceliddell");
    assert_eq!(body["connection_id"], "1002-45678");
    assert_eq!(body["linking_token"], "inv-page");
    // The session is over.
    let (status, _, _) = b
        .post(
            &consent,
            &[("private_key", "a-fine-private-key"), ("accept", "1")],
        )
        .await;
    assert_eq!(status, 404);
    env.stop().await;
}

#[tokio::test]
async fn login_form_checks_password_and_private_key() {
    let env = Env::start().await;
    let url = env.ftc_link(json!({})).await;
    env.journey(json!({"url": url, "mydexid": "bob22", "email": "bob@example.com"}))
        .await;
    let b = Browser { env: &env };
    let url = env.ftc_link(json!({})).await;
    let (_, page) = b.get(&url).await;
    let login = action(&page, "login");
    // Consent before logging in is refused.
    let consent_path = login.replace("/login", "/consent");
    let (status, _, _) = b
        .post(&consent_path, &[("private_key", "x"), ("accept", "1")])
        .await;
    assert_eq!(status, 400);
    for form in [
        [("mydexid", "bob22"), ("password", "wrong-password")],
        [("mydexid", "nobody9"), ("password", "pw-bob22-secret")],
    ] {
        let (status, page, _) = b.post(&login, &form).await;
        assert_eq!(status, 422);
        assert!(page.contains("Unrecognised MydexID or password"));
        // At the login form, not above Register.
        assert!(
            page.contains(
                "<li><a href=\"#login-password\">Unrecognised MydexID or password</a></li>"
            )
        );
        assert_field_invalid(&page, "login-password");
        assert!(page.contains("aria-describedby=\"login-password-error\""));
        assert!(!page.contains("register-password-error"));
    }
    let (status, page, _) = b
        .post(
            &login,
            &[("mydexid", "BOB22"), ("password", "pw-bob22-secret")],
        )
        .await;
    assert_eq!(status, 200);
    let consent = action(&page, "consent");
    let (status, page, _) = b
        .post(&consent, &[("private_key", "not-the-key"), ("accept", "1")])
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Incorrect Private Key"));
    let (status, _, location) = b
        .post(
            &consent,
            &[("private_key", "pk-bob22-private-key"), ("accept", "1")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some(RETURN_TO));
    let cb = env.receiver.last();
    assert_eq!(cb.method, "POST");
    assert_eq!(cb.json()["uid"], 1001);
    env.stop().await;
}

#[tokio::test]
async fn update_link_page_only_lets_the_named_member_log_in() {
    let env = Env::start().await;
    for (id, email) in [
        ("alice1", "alice@example.com"),
        ("bob22", "bob@example.com"),
    ] {
        let url = env.ftc_link(json!({})).await;
        env.journey(json!({"url": url, "mydexid": id, "email": email}))
            .await;
    }
    env.settings(json!({"connection_version": 3})).await;
    let url = env
        .ftc_link(json!({"mydexid": "alice1", "version": 3}))
        .await;
    let b = Browser { env: &env };
    let (status, page) = b.get(&url).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<h2>Register</h2>"));
    let login = action(&page, "login");
    let (status, page, _) = b
        .post(
            &login,
            &[("mydexid", "bob22"), ("password", "pw-bob22-secret")],
        )
        .await;
    assert_eq!(status, 403);
    assert!(page.contains("This one-time link was intended for a different MydexID"));
    let (status, page, _) = b
        .post(
            &login,
            &[("mydexid", "alice1"), ("password", "pw-alice1-secret")],
        )
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("version 3"));
    let consent = action(&page, "consent");
    let (status, _, _) = b
        .post(
            &consent,
            &[("private_key", "pk-alice1-private-key"), ("accept", "on")],
        )
        .await;
    assert_eq!(status, 303);
    let cb = env.receiver.last();
    assert_eq!(cb.method, "PUT");
    assert!(cb.json().get("key").is_none());
    let state = env.state().await;
    assert_eq!(state["members"][0]["version"], 3);
    assert_eq!(state["members"][1]["version"], 1);
    env.stop().await;
}

#[tokio::test]
async fn identify_page_sends_identify_callback() {
    let env = Env::start().await;
    let url = env.ftc_link(json!({})).await;
    env.journey(json!({"url": url, "mydexid": "carol3", "email": "carol@example.com"}))
        .await;
    let b = Browser { env: &env };
    let url = env.identify_link("who-9").await;
    let (status, page) = b.get(&url).await;
    assert_eq!(status, 200);
    let login = action(&page, "login");
    let (_, page, _) = b
        .post(
            &login,
            &[("mydexid", "carol3"), ("password", "pw-carol3-secret")],
        )
        .await;
    let consent = action(&page, "consent");
    let (status, _, location) = b
        .post(
            &consent,
            &[("private_key", "pk-carol3-private-key"), ("accept", "1")],
        )
        .await;
    assert_eq!(status, 303);
    // The browser goes back with the linking token (docs/mydex-contract.md §10.5).
    assert_eq!(
        location.as_deref(),
        Some(format!("{RETURN_TO}/?linking_token=who-9").as_str())
    );
    let cb = env.receiver.last();
    assert_eq!(
        cb.json(),
        json!({"type": "identify", "mydexid": "carol3", "linking_token": "who-9"})
    );
    let (status, page) = b.get(&url).await;
    assert_eq!(status, 410);
    assert!(page.contains("already been used"));
    let _: Option<Value> = None;
    env.stop().await;
}

/// The `name=value` of a response's `Set-Cookie`.
fn cookie_of(resp: &reqwest::Response) -> String {
    let set = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a Set-Cookie")
        .to_owned();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn reloading_the_first_page_keeps_the_link_in_that_browser_only() {
    let env = Env::start().await;
    let url = env.ftc_link(json!({})).await;
    let first = env.http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let set = first
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let path = url.trim_start_matches(&env.base);
    assert!(
        set.contains(&format!("Path={path}")) && set.contains("HttpOnly"),
        "{set}"
    );
    let cookie = cookie_of(&first);
    let page = first.text().await.unwrap();
    let register = action(&page, "register");
    // The same browser reloads: the same forms, the same session.
    for _ in 0..2 {
        let again = env
            .http
            .get(&url)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 200);
        assert_eq!(action(&again.text().await.unwrap(), "register"), register);
    }
    // Another browser (or a forged cookie) finds the link used, told clearly
    // what happened and whom to ask: no "return to the service".
    for other in [None, Some("mydex_sandbox_visit=forged")] {
        let mut req = env.http.get(&url);
        if let Some(c) = other {
            req = req.header("cookie", c);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 410);
        let page = resp.text().await.unwrap();
        assert!(page.contains("already been used"), "{page}");
        assert!(page.contains("ask Example Energy for a new link"), "{page}");
        assert!(!page.contains("return to the service"));
    }
    // A cookie of another link does not open this one.
    let url2 = env.ftc_link(json!({})).await;
    let resp = env
        .http
        .get(&url2)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_ne!(action(&resp.text().await.unwrap(), "register"), register);
    // After consent the session is over: a reload is 410 too.
    let (status, _, _) = b_post(
        &env,
        &register,
        &[
            ("mydexid", "reloader1"),
            ("email", "r@example.com"),
            ("password", "reload-pass"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let consent = register.replace("/register", "/consent");
    let (status, _, _) = b_post(
        &env,
        &consent,
        &[("private_key", "reload-key-1"), ("accept", "1")],
    )
    .await;
    assert_eq!(status, 303);
    let resp = env
        .http
        .get(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 410);
    env.stop().await;
}

async fn b_post(env: &Env, path: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
    Browser { env }.post(path, form).await
}

#[tokio::test]
async fn the_return_to_page_confirms_what_this_browser_did() {
    let env = Env::start_with(|a| a.subscriber_name = "Acme <Power> & Light".into()).await;
    let my = format!("{}/my", env.base);
    // Nothing completed in this browser.
    let resp = env.http.get(&my).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("No connection was completed")
    );
    let url = env.ftc_link(json!({"return_to": my})).await;
    let b = Browser { env: &env };
    let (_, page) = b.get(&url).await;
    assert!(page.contains("Acme &lt;Power&gt; &amp; Light asks to connect"));
    let (_, page, _) = b
        .post(
            &action(&page, "register"),
            &[
                ("mydexid", "confirmme1"),
                ("email", "c@example.com"),
                ("password", "confirm-pass"),
            ],
        )
        .await;
    let resp = env
        .http
        .post(format!("{}{}", env.base, action(&page, "consent")))
        .form(&[("private_key", "confirm-key-1"), ("accept", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], my.as_str());
    let cookie = cookie_of(&resp);
    let page = env
        .http
        .get(&my)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h1>You are connected</h1>"), "{page}");
    assert!(page.contains("<strong>confirmme1</strong>"));
    assert!(page.contains("Acme &lt;Power&gt; &amp; Light") && page.contains("Contact details"));
    // An unknown cookie is no confirmation.
    let page = env
        .http
        .get(&my)
        .header("cookie", "mydex_sandbox_done=nope")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("No connection was completed"));
    env.stop().await;
}
