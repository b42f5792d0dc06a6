//! The member's pages in a real browser: headless Chromium driven through
//! Debian's chromedriver (WebDriver, `fantoccini`), at desktop width (1280
//! px) and phone width (390 px, mobile emulation, so a page without a
//! viewport meta would lay out 980 px wide). Through the whole journey (the
//! link mailed by the real daemon → register → agreement → the `return_to`
//! confirmation, the callback reaching the daemon), each Registration
//! rule's error at its field, and on every page: no horizontal overflow, a
//! readable font size, no script, and axe-core (from npm) finding no serious
//! or critical violation. Also the invitation mail's HTML part as the
//! daemon sent it, and the unsubscribe pages it links (each naming the
//! organisation). Screenshots of each page at both widths go to
//! `target/browser-screenshots/`.
//!
//! Needs `chromium`, `chromium-driver` (apt) and axe-core under
//! `target/browser` (`npm install --prefix target/browser axe-core@4.11.0`);
//! `.ci/run` installs them. Without them every test fails, saying so.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use mydex_test_support::{Options, Proc, read_mail, setup, smtp};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The pinned axe-core version `.ci/run` installs.
const AXE_VERSION: &str = "4.11.0";

/// One browser at a time in this test binary: Chromium is heavy on a
/// loaded 2-core machine.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    Desktop,
    Phone,
}

impl Width {
    fn name(self) -> &'static str {
        match self {
            Width::Desktop => "desktop-1280",
            Width::Phone => "phone-390",
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// axe-core's script, or a failure naming how to install it.
fn axe_source() -> String {
    let path = target_dir().join("browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the browser suite needs axe-core at {}: {e}; install it with \
             `npm install --prefix target/browser axe-core@{AXE_VERSION}` (.ci/run does)",
            path.display()
        )
    })
}

/// Chromedriver on a free port, answering `/status`.
async fn chromedriver() -> (Proc, String) {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).is_file(),
            "the browser suite needs {tool}: `apt-get install -y chromium chromium-driver` \
             (.ci/run installs them)"
        );
    }
    let port = mydex_test_support::free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let proc = Proc(child);
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        let ready = http
            .get(format!("{url}/status"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success());
        if ready.is_some() {
            return (proc, url);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "chromedriver did not answer on {url} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn capabilities(width: Width) -> serde_json::Map<String, Value> {
    let mut options = json!({
        "binary": CHROMIUM,
        "args": [
            "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1280,900", "--lang=en-GB", "--no-first-run",
        ],
    });
    if width == Width::Phone {
        options["mobileEmulation"] = json!({
            "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0, "mobile": true, "touch": true},
            "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/130.0 Mobile Safari/537.36",
        });
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), options);
    caps.insert(
        "timeouts".into(),
        json!({"pageLoad": 120_000, "script": 120_000, "implicit": 0}),
    );
    caps
}

/// Run `body` with a fresh browser session at `width`; the session and the
/// driver end whatever happens.
async fn with_browser<F, Fut>(width: Width, body: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let _one = ONE_BROWSER.lock().await;
    let (_driver, url) = chromedriver().await;
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities(width))
        .connect(&url)
        .await
        .expect("a Chromium session through chromedriver");
    let outcome = AssertUnwindSafe(async {
        if width == Width::Phone {
            phone_emulation_is_on(&client).await;
        }
        body(client.clone()).await
    })
    .catch_unwind()
    .await;
    let _ = client.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The phone checks mean something only if the browser lays out like a
/// phone: a page without a viewport meta gets the 980 px layout there.
async fn phone_emulation_is_on(c: &Client) {
    c.goto("data:text/html,<!doctype html><title>x</title><p>no viewport meta</p>")
        .await
        .expect("a data: page");
    let width = js(c, "return window.innerWidth;").await;
    assert_eq!(width, json!(980), "phone emulation is not active");
}

/// Evaluate `script` (a function body) in the page.
async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}: {script}"))
}

/// Click `css` and wait (polling, 120 s at most) for the next document.
async fn click_and_wait(c: &Client, css: &str) {
    js(c, "window.__mydexOld = true; return null;").await;
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
    wait_new_document(c).await;
}

async fn wait_new_document(c: &Client) {
    let start = Instant::now();
    loop {
        let v = c
            .execute(
                "return document.readyState === 'complete' && !window.__mydexOld;",
                vec![],
            )
            .await;
        if matches!(v, Ok(Value::Bool(true))) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no new page within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn h1(c: &Client) -> String {
    js(
        c,
        "const h = document.querySelector('h1'); return h ? h.textContent : '';",
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

async fn body_text(c: &Client) -> String {
    js(c, "return document.body.innerText;")
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Replace the value of field `id` with `text`.
async fn fill(c: &Client, id: &str, text: &str) {
    let field = c
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no field {id}: {e}"));
    field.clear().await.expect("clear");
    if !text.is_empty() {
        field.send_keys(text).await.expect("type");
    }
}

/// Every check of a page, then its screenshot `{width}-{name}.png`.
async fn check_page(c: &Client, width: Width, name: &str, axe: &str) {
    let facts = js(
        c,
        "const sizes = [...document.querySelectorAll('main p, main label, main li, main input, \
         main button, main h2')].filter(e => e.offsetParent !== null && e.textContent.trim() !== '' \
         || e.tagName === 'INPUT' && e.type !== 'checkbox').map(e => parseFloat(getComputedStyle(e).fontSize));
         return {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: window.innerWidth,
                 scale: window.visualViewport ? window.visualViewport.scale : 1,
                 body: parseFloat(getComputedStyle(document.body).fontSize),
                 smallest: Math.min(...sizes), scripts: document.scripts.length,
                 viewport: !!document.querySelector('meta[name=viewport]'),
                 h1s: document.querySelectorAll('h1').length};",
    )
    .await;
    let num = |k: &str| facts[k].as_f64().unwrap_or(f64::NAN);
    let at = format!("{} {name}: {facts}", width.name());
    assert!(
        num("scrollWidth") <= num("innerWidth"),
        "horizontal overflow: {at}"
    );
    match width {
        Width::Phone => assert_eq!(num("innerWidth"), 390.0, "laid out at 390 px: {at}"),
        Width::Desktop => assert!(num("innerWidth") >= 1200.0, "{at}"),
    }
    assert!(
        num("body") * num("scale") >= 16.0,
        "body text under 16 px: {at}"
    );
    assert!(
        num("smallest") * num("scale") >= 14.0,
        "text under 14 px: {at}"
    );
    assert_eq!(facts["scripts"], 0, "no JavaScript in the page: {at}");
    assert_eq!(facts["viewport"], true, "{at}");
    assert_eq!(facts["h1s"], 1, "one h1: {at}");
    axe_check(c, &at, axe).await;
    screenshot(c, width, name).await;
}

/// axe-core in the page: no serious or critical violation (the others are
/// printed).
async fn axe_check(c: &Client, at: &str, axe: &str) {
    js(c, &format!("{axe}\nreturn null;")).await;
    let result = js(
        c,
        "return axe.run(document, {resultTypes: ['violations']}).then(r => ({version: axe.version, \
         violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, \
         nodes: v.nodes.map(n => n.target.join(' '))}))}));",
    )
    .await;
    assert_eq!(result["version"], AXE_VERSION, "{result}");
    let violations = result["violations"].as_array().cloned().unwrap_or_default();
    for v in &violations {
        println!(
            "axe {at}: {} ({}) {}: {}",
            v["id"], v["impact"], v["help"], v["nodes"]
        );
    }
    let grave: Vec<&Value> = violations
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(
        grave.is_empty(),
        "axe, serious or critical: {grave:?} at {at}"
    );
}

async fn screenshot(c: &Client, width: Width, name: &str) {
    let dir = target_dir().join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{}-{name}.png", width.name())), png).expect("write");
}

/// The daemon mails a link; a person follows it in the browser to the end.
async fn whole_journey(width: Width) {
    let axe = axe_source();
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let my = format!("{}/my", setup.sandbox.url());
    setup.edit_config("[mydex]\n", &format!("[mydex]\nreturn_to = \"{my}\"\n"));
    let _daemon = setup.daemon();
    let csv = setup.dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "email,name,external_ref\nreader@example.com,Rea Der,MTR-1\n",
    )
    .unwrap();
    let out = setup.cli(&["enqueue", csv.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mails = smtp.wait_for(1, Duration::from_secs(120));
    assert_eq!(mails.len(), 1, "{}", setup.log());
    let link = read_mail(&mails[0]).text_link;

    with_browser(width, |c| async move {
        c.goto(&link).await.expect("the link opens");
        assert_eq!(h1(&c).await, "Connect with Mydex");
        assert!(
            body_text(&c)
                .await
                .contains("Example Energy asks to connect")
        );
        check_page(&c, width, "1-link", &axe).await;
        // A reload keeps the link in this browser.
        c.refresh().await.expect("reload");
        assert_eq!(
            h1(&c).await,
            "Connect with Mydex",
            "{}",
            body_text(&c).await
        );
        fill(&c, "register-mydexid", "reader1").await;
        fill(&c, "register-email", "reader@example.com").await;
        fill(&c, "register-password", "reading-glasses").await;
        click_and_wait(&c, "form[action$='/register'] button").await;
        assert_eq!(h1(&c).await, "Data Sharing and Services Agreement");
        let text = body_text(&c).await;
        for want in [
            "What Example Energy asks for",
            "Contact details",
            "Personal details",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
        assert!(!text.contains("ds_contact_details"), "{text}");
        check_page(&c, width, "2-agreement", &axe).await;
        fill(&c, "private-key", "my-very-own-key").await;
        c.find(Locator::Css("label[for=accept]"))
            .await
            .expect("the terms label")
            .click()
            .await
            .expect("tick the terms by their label");
        click_and_wait(&c, "form[action$='/consent'] button").await;
        assert_eq!(h1(&c).await, "You are connected", "{}", body_text(&c).await);
        let url = c.current_url().await.expect("url");
        assert_eq!(
            url.as_str(),
            my,
            "the journey ends on the sandbox's return_to page"
        );
        assert!(body_text(&c).await.contains("reader1"));
        check_page(&c, width, "3-confirmation", &axe).await;
        // The link is spent now; its page says so, accessibly.
        c.goto(&link).await.expect("the link again");
        assert_eq!(h1(&c).await, "Link no longer valid");
        check_page(&c, width, "4-used-link", &axe).await;
    })
    .await;

    // The callback reached the daemon: the member is stored, connected.
    let s = setup.wait_status(
        |s| s["members"]["total"] == 1 && s["invitations"]["connected"] == 1,
        Duration::from_secs(120),
    );
    assert_eq!(s["members"]["total"], 1, "{s}\n{}", setup.log());
    assert_eq!(s["invitations"]["connected"], 1, "{s}");
    // The member key (and the password typed in the browser) never in a log line.
    setup.keep_for_log_scan().await;
    assert!(!setup.log().contains("my-very-own-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_journey_at_desktop_width() {
    whole_journey(Width::Desktop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_journey_at_phone_width() {
    whole_journey(Width::Phone).await;
}

/// The field ids of the register form for a Registration message.
fn register_field(message: &str) -> &'static str {
    if message.starts_with("MydexID") {
        "register-mydexid"
    } else if message.starts_with("Email") {
        "register-email"
    } else {
        "register-password"
    }
}

/// A field id, its message, and whether the summary links to that field.
type AtField<'a> = (&'a str, &'a str, bool);

/// `messages` (field id, message, whether the summary links to that field)
/// are shown at their fields (aria-invalid, aria-describedby naming an
/// element with the message) and in the role=alert summary; the first
/// invalid field has the focus; no other field is invalid.
async fn assert_errors_at_fields(c: &Client, messages: &[AtField<'_>]) {
    // Chromium applies `autofocus` at a rendering step after the load: poll.
    let start = Instant::now();
    while js(
        c,
        "return document.activeElement ? document.activeElement.id : '';",
    )
    .await
        != json!(messages[0].0)
        && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = js(
        c,
        "const s = document.querySelector('[role=alert]');
         const fields = [...document.querySelectorAll('input')].map(i => ({id: i.id,
           invalid: i.getAttribute('aria-invalid'),
           described: (i.getAttribute('aria-describedby') || '').split(' ').filter(x => x)
             .map(d => { const e = document.getElementById(d); return e ? e.textContent : '<missing ' + d + '>'; })
             .join(' | ')}));
         return {summary: s ? s.innerText : null,
                 links: s ? [...s.querySelectorAll('a')].map(a => a.getAttribute('href')) : [],
                 focus: document.activeElement ? document.activeElement.id : null, fields};",
    )
    .await;
    let summary = state["summary"]
        .as_str()
        .unwrap_or_else(|| panic!("no summary: {state}"));
    let fields = state["fields"].as_array().unwrap();
    for (field, message, linked) in messages {
        assert!(
            summary.contains(message),
            "{message} not in the summary: {state}"
        );
        let f = fields
            .iter()
            .find(|f| f["id"] == *field)
            .unwrap_or_else(|| panic!("no field {field}: {state}"));
        assert_eq!(f["invalid"], "true", "{field}: {state}");
        assert!(
            f["described"].as_str().unwrap_or("").contains(message),
            "{field} is not described by {message}: {state}"
        );
        let href = format!("#{field}");
        let links = state["links"].as_array().unwrap();
        assert_eq!(
            links.iter().any(|l| l == &json!(href)),
            *linked,
            "{href}: {state}"
        );
    }
    assert_eq!(
        state["focus"], messages[0].0,
        "focus on the first invalid field: {state}"
    );
    let invalid = fields.iter().filter(|f| f["invalid"] == "true").count();
    let distinct: std::collections::HashSet<&str> = messages.iter().map(|m| m.0).collect();
    assert_eq!(
        invalid,
        distinct.len(),
        "only these fields are invalid: {state}"
    );
}

/// Each Registration rule's message at its field, then each Private Key
/// rule's and the terms', then a failed login at the login form.
async fn rules_at_fields(width: Width) {
    use mydex_test_support::contract::Env;
    let axe = axe_source();
    let env = Env::start().await;
    let url = env.ftc_link(json!({})).await;
    let (status, _) = env
        .journey(json!({"url": url, "mydexid": "taken1", "email": "taken@example.com"}))
        .await;
    assert_eq!(status, 200);
    let link = env.ftc_link(json!({})).await;
    let login_link = env.ftc_link(json!({})).await;
    let long = "a".repeat(61);
    let cases: Vec<([&str; 3], Vec<&str>)> = vec![
        (
            ["", "", ""],
            vec![
                "MydexID is required",
                "Email address is required",
                "Password is required",
            ],
        ),
        (
            ["TAKEN1", "new@example.com", "longenough1"],
            vec!["MydexID is already in use"],
        ),
        (
            ["ali ce", "new@example.com", "longenough1"],
            vec!["MydexID must contain only letters and numbers"],
        ),
        (
            ["20260101", "new@example.com", "longenough1"],
            vec!["MydexID cannot be made up only of numbers"],
        ),
        (
            ["al", "new@example.com", "longenough1"],
            vec!["MydexID must be between 3 and 60 characters long"],
        ),
        (
            [long.as_str(), "new@example.com", "longenough1"],
            vec!["MydexID must be between 3 and 60 characters long"],
        ),
        (
            ["alice1", "taken@example.com", "longenough1"],
            vec!["Email address is already in use"],
        ),
        (
            ["alice1", "nope", "longenough1"],
            vec!["Email address is not valid"],
        ),
        (
            ["NewMember7", "new@example.com", "newmember7"],
            vec!["Password cannot be the same as the MydexID"],
        ),
        (
            ["alice1", "new@example.com", "short"],
            vec!["Password must be at least 8 characters long"],
        ),
    ];
    with_browser(width, |c| async move {
        c.goto(&link).await.expect("the link opens");
        for (i, ([mydexid, email, password], messages)) in cases.iter().enumerate() {
            fill(&c, "register-mydexid", mydexid).await;
            fill(&c, "register-email", email).await;
            fill(&c, "register-password", password).await;
            click_and_wait(&c, "form[action$='/register'] button").await;
            let expected: Vec<AtField> = messages
                .iter()
                .map(|m| (register_field(m), *m, true))
                .collect();
            assert_errors_at_fields(&c, &expected).await;
            if i == 0 {
                check_page(&c, width, "5-register-errors", &axe).await;
            }
        }
        agreement_rules(&c, width, &axe).await;
        c.goto(&login_link).await.expect("another link");
        fill(&c, "login-mydexid", "taken1").await;
        fill(&c, "login-password", "not-the-password").await;
        click_and_wait(&c, "form[action$='/login'] button").await;
        let m = "Unrecognised MydexID or password";
        assert_errors_at_fields(
            &c,
            &[("login-mydexid", m, false), ("login-password", m, true)],
        )
        .await;
        check_page(&c, width, "7-login-error", &axe).await;
    })
    .await;
    env.stop().await;
}

/// On the agreement: each Private Key rule at the key field, the terms at
/// their box, which keeps its tick after an error.
async fn agreement_rules(c: &Client, width: Width, axe: &str) {
    fill(c, "register-mydexid", "NewMember7").await;
    fill(c, "register-email", "new7@example.com").await;
    fill(c, "register-password", "a-password-7").await;
    click_and_wait(c, "form[action$='/register'] button").await;
    assert_eq!(h1(c).await, "Data Sharing and Services Agreement");
    let long = "k".repeat(129);
    let cases: Vec<(&str, bool, Vec<AtField>)> = vec![
        (
            "",
            true,
            vec![("private-key", "Private Key is required", true)],
        ),
        (
            "newmember7",
            true,
            vec![(
                "private-key",
                "Private Key cannot be the same as the MydexID",
                true,
            )],
        ),
        (
            "A-PASSWORD-7",
            true,
            vec![(
                "private-key",
                "Private Key cannot be the same as the password",
                true,
            )],
        ),
        (
            "short",
            true,
            vec![(
                "private-key",
                "Private Key must be between 8 and 128 characters long",
                true,
            )],
        ),
        (
            long.as_str(),
            true,
            vec![(
                "private-key",
                "Private Key must be between 8 and 128 characters long",
                true,
            )],
        ),
        (
            "a-fine-private-key",
            false,
            vec![(
                "accept",
                "You must accept the Data Sharing and Services Agreement and the terms of service",
                true,
            )],
        ),
    ];
    for (i, (key, tick, expected)) in cases.iter().enumerate() {
        fill(c, "private-key", key).await;
        let ticked = js(c, "return document.getElementById('accept').checked;").await;
        if ticked != json!(*tick) {
            c.find(Locator::Id("accept"))
                .await
                .expect("terms")
                .click()
                .await
                .expect("tick");
        }
        click_and_wait(c, "form[action$='/consent'] button").await;
        assert_errors_at_fields(c, expected).await;
        let kept = js(c, "return document.getElementById('accept').checked;").await;
        assert_eq!(kept, json!(*tick), "the terms box keeps what was posted");
        if i == 0 {
            check_page(c, width, "6-agreement-errors", axe).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_error_at_its_field_at_desktop_width() {
    rules_at_fields(Width::Desktop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_error_at_its_field_at_phone_width() {
    rules_at_fields(Width::Phone).await;
}

/// Who the mail and the unsubscribe pages name.
const ORG: &str = r#"
[organisation]
name = "Northwind Power"
website = "https://northwind.example"
contact = "Call 0800 123 456 or write to help@northwind.example"
privacy_url = "https://northwind.example/privacy"
"#;

/// The HTML part of the mail at `path` as a file a browser opens (its
/// inline images as `data:` URLs), and the unsubscribe URL it carries.
fn mail_as_page(path: &Path, dir: &Path) -> (PathBuf, String) {
    use base64::Engine;
    use mail_parser::MimeHeaders;
    let raw = std::fs::read(path).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let mut html = msg.body_html(0).expect("an HTML part").to_string();
    for a in msg.attachments() {
        let (Some(id), Some(ct)) = (a.content_id(), a.content_type()) else {
            continue;
        };
        let data = base64::engine::general_purpose::STANDARD.encode(a.contents());
        let mime = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("png"));
        html = html.replace(&format!("cid:{id}"), &format!("data:{mime};base64,{data}"));
    }
    assert!(!html.contains("cid:"), "every image is in the page");
    let file = dir.join("invitation-mail.html");
    std::fs::write(&file, html).unwrap();
    let list = msg
        .header_raw("List-Unsubscribe")
        .unwrap()
        .trim()
        .to_string();
    let url = list
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    (file, url)
}

/// The invitation mail the daemon sent (its HTML part), then the
/// unsubscribe page it links, then that page after the click: each readable
/// at `width`, naming the organisation, with no serious axe violation.
async fn mail_and_unsubscribe(width: Width) {
    let axe = axe_source();
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let opts = Options {
        extra_config: ORG.into(),
        ..Default::default()
    };
    let setup = setup(smtp.port, dir, opts).await;
    let _daemon = setup.daemon();
    let csv = setup.dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "email,name,external_ref\nreader@example.com,Rea Der,MTR-1\n",
    )
    .unwrap();
    let out = setup.cli(&["enqueue", csv.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mails = smtp.wait_for(1, Duration::from_secs(120));
    assert_eq!(mails.len(), 1, "{}", setup.log());
    let link = read_mail(&mails[0]).text_link;
    let (page, unsubscribe) = mail_as_page(&mails[0], setup.dir.path());
    with_browser(width, |c| async move {
        c.goto(&format!("file://{}", page.display()))
            .await
            .expect("the mail opens");
        let text = body_text(&c).await;
        for want in [
            "Northwind Power",
            "Hello Rea Der,",
            "24 hours",
            link.as_str(),
        ] {
            assert!(text.contains(want), "{want} not in the mail: {text}");
        }
        check_page(&c, width, "8-invitation-mail", &axe).await;
        c.goto(&unsubscribe).await.expect("the unsubscribe page");
        assert_eq!(h1(&c).await, "Stop these emails");
        let text = body_text(&c).await;
        assert!(
            text.contains("no more email from Northwind Power"),
            "{text}"
        );
        assert!(text.contains("help@northwind.example"), "{text}");
        check_page(&c, width, "9-unsubscribe", &axe).await;
        click_and_wait(&c, "form button").await;
        assert_eq!(
            h1(&c).await,
            "You are unsubscribed",
            "{}",
            body_text(&c).await
        );
        assert!(
            body_text(&c)
                .await
                .contains("Northwind Power will send you no more email")
        );
        check_page(&c, width, "10-unsubscribed", &axe).await;
    })
    .await;
    assert_eq!(setup.status()["suppressed"], 1, "the click unsubscribed");
    setup.keep_for_log_scan().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mail_and_the_unsubscribe_pages_at_desktop_width() {
    mail_and_unsubscribe(Width::Desktop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mail_and_the_unsubscribe_pages_at_phone_width() {
    mail_and_unsubscribe(Width::Phone).await;
}
