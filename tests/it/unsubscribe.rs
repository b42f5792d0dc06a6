//! One-click unsubscribe (RFC 8058) through the real binary, the sandbox and
//! the real SMTP server: every mail (invitation, reminder, update) carries
//! `List-Unsubscribe` and `List-Unsubscribe-Post` and the VERP envelope
//! sender; a POST to the mailed URL stops every further mail to that person;
//! re-inviting them is refused with the reason; a wrong or altered token is
//! 404 and suppresses nobody.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mydex_test_support::*;

/// `(List-Unsubscribe, List-Unsubscribe-Post)` of a received message.
fn unsubscribe_headers(path: &Path) -> (String, String) {
    let raw = std::fs::read(path).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let get = |name: &str| {
        // Unfolded: a long header is folded onto continuation lines.
        msg.header_raw(name)
            .unwrap_or_else(|| panic!("{name} missing in {}", path.display()))
            .replace("\r\n", "")
            .replace('\n', "")
            .trim()
            .to_string()
    };
    (get("List-Unsubscribe"), get("List-Unsubscribe-Post"))
}

/// Check both headers and the envelope sender; the one-click URL.
fn check_headers(setup: &Setup, path: &Path) -> String {
    let (list, post) = unsubscribe_headers(path);
    assert_eq!(post, "List-Unsubscribe=One-Click");
    let prefix = format!("<http://127.0.0.1:{}/unsubscribe/u", setup.callback_port);
    assert!(list.starts_with(&prefix), "{list}");
    assert!(
        list.contains(", <mailto:unsubscribe@example.com?subject=unsubscribe%20u"),
        "{list}"
    );
    let from = Smtp::mail_from(path);
    assert!(
        from.starts_with("bounces+b") && from.ends_with("@example.com"),
        "{from}"
    );
    assert_eq!(from.len(), "bounces+@example.com".len() + 49, "{from}");
    list[1..list.find('>').unwrap()].to_string()
}

async fn with_mail_keys(smtp: &Smtp, dir: tempfile::TempDir, opts: Options) -> Setup {
    let setup = setup(smtp.port, dir, opts).await;
    setup.edit_config(
        "from = \"Example Energy <connect@example.com>\"\n",
        "from = \"Example Energy <connect@example.com>\"\nreturn_path = \"bounces+{token}@example.com\"\nunsubscribe_mailto = \"unsubscribe@example.com\"\n",
    );
    setup
}

fn enqueue(setup: &Setup, name: &str, body: &str) {
    let file = setup.dir.path().join(name);
    std::fs::write(&file, body).unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn to_of(p: &Path) -> String {
    read_mail(p).to
}

async fn click(url: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The rejected-rows report of queue file `name` (`NAME.csv`; the queue
/// names it `{unique}-NAME.jsonl.rejected.txt`), once intake wrote it.
pub fn rejected_report(setup: &Setup, name: &str) -> String {
    let stem = name.trim_end_matches(".csv");
    let dir = setup.dir.path().join("queue/rejected");
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let found = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(&format!("-{stem}."))
            });
        // Created on the first rejected row, written out when the file is done.
        if let Some(text) = found
            .and_then(|e| std::fs::read_to_string(e.path()).ok())
            .filter(|t| t.ends_with('\n'))
        {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    String::new()
}

/// The rejected-rows report of queue file `name`, once intake wrote it.
fn wait_rejected(setup: &Setup, name: &str) -> String {
    rejected_report(setup, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_stops_reminders_and_reinvitations() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = with_mail_keys(
        &smtp,
        dir,
        Options {
            invitations: "link_ttl = \"2s\"\nreminder_after = \"1s\"\nmax_reminders = 2\n".into(),
            schedule: format!("version_check = \"{NEVER}\"\nexpiry_check = \"* * * * * *\"\n"),
            ..Options::default()
        },
    )
    .await;
    setup
        .sandbox_settings(serde_json::json!({"link_ttl": "2s"}))
        .await;
    let _daemon = setup.daemon();
    enqueue(
        &setup,
        "people.csv",
        "email,name\nann@example.com,Ann\nbob@example.com,Bob\n",
    );
    let first = smtp.wait_for(2, Duration::from_secs(60));
    assert_eq!(first.len(), 2, "{}", setup.log());
    let ann = first
        .iter()
        .find(|p| to_of(p) == "ann@example.com")
        .unwrap();
    let url = check_headers(&setup, ann);

    assert_eq!(click(&url).await, 200);
    let ann_before = smtp
        .messages()
        .iter()
        .filter(|p| to_of(p) == "ann@example.com")
        .count();
    let s = setup.status();
    assert_eq!(s["suppressed"], 1, "{s}");
    // Clicking again changes nothing.
    assert_eq!(click(&url).await, 200);
    assert_eq!(setup.status()["suppressed"], 1);

    // Bob gets his invitation and both reminders (each with the headers);
    // Ann gets nothing more meanwhile.
    let all = smtp.wait_for(ann_before + 3, Duration::from_secs(90));
    let bobs: Vec<&PathBuf> = all
        .iter()
        .filter(|p| to_of(p) == "bob@example.com")
        .collect();
    assert_eq!(bobs.len(), 3, "{}", setup.log());
    for p in &bobs {
        check_headers(&setup, p);
    }
    assert!(read_mail(bobs[2]).subject.starts_with("Reminder: "));
    let s = setup.wait_status(
        |s| s["invitations"]["expired"] == 1,
        Duration::from_secs(30),
    );
    assert_eq!(
        s["invitations"]["expired"], 1,
        "Bob's, after his reminders: {s}"
    );
    let ann_after = smtp
        .messages()
        .iter()
        .filter(|p| to_of(p) == "ann@example.com")
        .count();
    assert_eq!(ann_after, ann_before, "no reminder for Ann");
    assert_eq!(
        s["invitations"]["failed"], 1,
        "Ann's invitation failed: {s}"
    );
    let listed = setup.cli(&["invitations", "list", "--state", "failed", "--json"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("unsubscribed"),
        "{text}\n{}",
        String::from_utf8_lossy(&listed.stderr)
    );

    // Re-inviting Ann is refused with the reason, by `enqueue` itself
    // (it asks the daemon) and by the API.
    let again = setup.dir.path().join("again.csv");
    std::fs::write(&again, "email,name\nANN@example.com,Ann\n").unwrap();
    let out = setup.cli(&["enqueue", again.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("again.csv:2: suppressed: unsubscribed"),
        "{err}"
    );
    let resp = reqwest::Client::new()
        .post(setup.admin_url("/invitees"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(r#"[{"email": "ann@example.com", "name": "Ann"}]"#)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["rows"][0]["status"], "rejected", "{body}");
    assert_eq!(
        body["rows"][0]["error"], "suppressed: unsubscribed",
        "{body}"
    );
    let ann_end = smtp
        .messages()
        .iter()
        .filter(|p| to_of(p) == "ann@example.com")
        .count();
    assert_eq!(ann_end, ann_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_unsubscribed_gets_no_update_after_a_version_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = with_mail_keys(&smtp, dir, Options::default()).await;
    let daemon = setup.daemon();
    enqueue(
        &setup,
        "people.csv",
        "email,name\ncat@example.com,Cat\ndan@example.com,Dan\n",
    );
    let first = smtp.wait_for(2, Duration::from_secs(60));
    assert_eq!(first.len(), 2, "{}", setup.log());
    let mut cat_url = String::new();
    for p in &first {
        let m = read_mail(p);
        let url = check_headers(&setup, p);
        let id = if m.to.starts_with("cat") {
            "catmember1"
        } else {
            "danmember1"
        };
        let (status, body) = setup.journey(&m.qr_link, id, &m.to).await;
        assert_eq!(status, 200, "{body}");
        if m.to.starts_with("cat") {
            cat_url = url;
        }
    }
    let s = setup.wait_status(|s| s["members"]["total"] == 2, Duration::from_secs(60));
    assert_eq!(s["members"]["total"], 2, "{s}");
    // Cat, connected, unsubscribes from the mail she had.
    assert_eq!(click(&cat_url).await, 200);
    assert_eq!(setup.status()["suppressed"], 1);
    assert_eq!(
        setup.status()["invitations"]["connected"],
        2,
        "connected stays connected"
    );

    setup
        .sandbox_settings(serde_json::json!({"connection_version": 2}))
        .await;
    setup.stop(daemon);
    setup.edit_config(
        "max_attempts = 12\n",
        "max_attempts = 12\nconnection_version = 2\n",
    );
    let _daemon = setup.daemon();
    let out = setup.cli(&["sweep", "version"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = setup.wait_status(
        |s| s["sweeps"]["version"]["finished"] == true,
        Duration::from_secs(60),
    );
    assert_eq!(s["sweeps"]["version"]["last"]["checked"], 2, "{s}");
    // Dan's update arrives (with the headers); Cat gets none.
    let all = smtp.wait_for(3, Duration::from_secs(60));
    assert_eq!(all.len(), 3, "{}", setup.log());
    assert_eq!(to_of(&all[2]), "dan@example.com");
    check_headers(&setup, &all[2]);
    let s = setup.wait_status(|s| s["invitations"]["sent"] == 1, Duration::from_secs(30));
    assert_eq!(s["invitations"]["sent"], 1, "only Dan's update: {s}");
    assert!(
        smtp.messages()
            .iter()
            .filter(|p| to_of(p) == "cat@example.com")
            .count()
            == 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shows_a_button_and_wrong_or_altered_tokens_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = with_mail_keys(&smtp, dir, Options::default()).await;
    let _daemon = setup.daemon();
    enqueue(&setup, "people.csv", "email,name\neve@example.com,Eve\n");
    let first = smtp.wait_for(1, Duration::from_secs(60));
    assert_eq!(first.len(), 1, "{}", setup.log());
    let url = check_headers(&setup, &first[0]);

    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<form method=\"post\">") && html.contains("List-Unsubscribe"),
        "{html}"
    );
    assert_eq!(setup.status()["suppressed"], 0, "a GET changes nothing");

    let token = url.rsplit('/').next().unwrap().to_string();
    let base = format!("http://127.0.0.1:{}/unsubscribe/", setup.callback_port);
    let mut wrong = vec![
        String::new(),
        "x".into(),
        format!("b{}", &token[1..]),
        token[..48].to_string(),
        format!("{token}0"),
        "%00%ff%fe".into(),
        "..%2f..%2fetc%2fpasswd".into(),
    ];
    for i in [1, 10, 20, 30, 48] {
        let mut b = token.clone().into_bytes();
        b[i] = if b[i] == b'0' { b'1' } else { b'0' };
        wrong.push(String::from_utf8(b).unwrap());
    }
    for w in &wrong {
        let r = reqwest::Client::new()
            .post(format!("{base}{w}"))
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(
            status == 404 || (w.is_empty() && status == 405),
            "{w:?}: {status}"
        );
        assert_eq!(
            reqwest::get(format!("{base}{w}"))
                .await
                .unwrap()
                .status()
                .as_u16()
                / 100,
            4,
            "{w:?}"
        );
    }
    // Tokens of any bytes (percent-encoded into the path): 4xx, nothing changed.
    for _ in 0..300 {
        let len = rand::random::<u8>() as usize % 80;
        let bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        let path: String =
            percent_encoding::percent_encode(&bytes, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let r = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "{bytes:?}: {status}");
    }
    // Oversized bodies are refused too.
    let r = reqwest::Client::new()
        .post(&url)
        .body(vec![b'a'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(setup.status()["suppressed"], 0, "nobody suppressed");
    assert_eq!(setup.status()["invitations"]["sent"], 1);
}

/// `bounce --config PATH` fed `mail` on standard input, as an MTA's pipe
/// transport delivers it.
fn pipe_to_bounce(setup: &Setup, mail: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(bin())
        .args(["bounce", "--config"])
        .arg(&setup.config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(mail.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A mail client's answer to the `mailto:` of `List-Unsubscribe`.
fn unsubscribe_mail(from: &str, to: &str, subject: &str) -> String {
    format!(
        "Return-Path: <{from}>\r\nDelivered-To: {to}\r\nFrom: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{}@mail.example.net>\r\nContent-Type: text/plain\r\n\r\nThis message was sent to unsubscribe.\r\n",
        rand::random::<u64>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_mail_piped_to_bounce_suppresses_only_the_token_holder() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = with_mail_keys(&smtp, dir, Options::default()).await;
    let _daemon = setup.daemon();
    enqueue(
        &setup,
        "people.csv",
        "email,name\nfay@example.com,Fay\ngus@example.com,Gus\n",
    );
    let first = smtp.wait_for(2, Duration::from_secs(60));
    assert_eq!(first.len(), 2, "{}", setup.log());
    let fay = first
        .iter()
        .find(|p| to_of(p) == "fay@example.com")
        .unwrap();
    check_headers(&setup, fay);
    let (list, _) = unsubscribe_headers(fay);
    let at = list.find("?subject=unsubscribe%20").unwrap() + "?subject=unsubscribe%20".len();
    let token: String = list[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    assert_eq!(token.len(), 49, "{list}");
    let to = "unsubscribe@example.com";
    let code = |o: &std::process::Output| o.status.code().unwrap_or(-1);

    // Hostile first: nobody is suppressed, exit 65 (the MTA bounces it to
    // the postmaster rather than retrying), one clear line.
    let mut altered = token.clone().into_bytes();
    altered[20] = if altered[20] == b'0' { b'1' } else { b'0' };
    let altered = String::from_utf8(altered).unwrap();
    let bounce_kind = format!("b{}", &token[1..]);
    for (what, mail) in [
        (
            "altered token",
            unsubscribe_mail("fay@example.com", to, &format!("unsubscribe {altered}")),
        ),
        (
            "no token",
            unsubscribe_mail("fay@example.com", to, "unsubscribe"),
        ),
        (
            "forged From, no token",
            unsubscribe_mail("gus@example.com", to, "please unsubscribe gus@example.com"),
        ),
        (
            "a bounce token",
            unsubscribe_mail("fay@example.com", to, &format!("unsubscribe {bounce_kind}")),
        ),
        (
            "another address",
            unsubscribe_mail(
                "fay@example.com",
                "info@example.com",
                &format!("unsubscribe {token}"),
            ),
        ),
        ("not a mail", "\u{0}\u{1}garbage".to_string()),
    ] {
        let out = pipe_to_bounce(&setup, &mail);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 65, "{what}: {err}");
        assert!(err.contains("nothing changed"), "{what}: {err}");
        let said: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("mydex-connector bounce:"))
            .collect();
        assert_eq!(said.len(), 1, "{what}: {err}");
        assert_eq!(setup.status()["suppressed"], 0, "{what}");
    }

    // The real request, with a From that is not Fay's (it names nobody):
    // Fay, whose token it is, is suppressed; Gus is not.
    let out = pipe_to_bounce(
        &setup,
        &unsubscribe_mail(
            "someone@elsewhere.example",
            to,
            &format!("unsubscribe {token}"),
        ),
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let s = setup.status();
    assert_eq!(s["suppressed"], 1, "{s}");
    // Her open invitation failed as unsubscribed; Gus's is still sent.
    let listed = setup.cli(&["invitations", "list", "--state", "failed", "--json"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("unsubscribed"), "{text}");
    assert_eq!(s["invitations"]["failed"], 1, "{s}");
    assert_eq!(s["invitations"]["sent"], 1, "{s}");
    // The same mail again changes nothing more.
    let out = pipe_to_bounce(
        &setup,
        &unsubscribe_mail("fay@example.com", to, &format!("unsubscribe {token}")),
    );
    assert_eq!(code(&out), 0);
    assert_eq!(setup.status()["suppressed"], 1);
    // Re-inviting Fay is refused with the reason.
    let again = setup.dir.path().join("again.csv");
    std::fs::write(&again, "email,name\nfay@example.com,Fay\n").unwrap();
    let out = setup.cli(&["enqueue", again.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("again.csv:2: suppressed: unsubscribed"),
        "{err}"
    );
}

async fn check(setup: &Setup, token: Option<&str>, body: String) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .post(setup.admin_url("/suppressions/check"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_checks_suppressions_in_chunks_and_places_the_file_when_the_daemon_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = with_mail_keys(&smtp, dir, Options::default()).await;
    let daemon = setup.daemon();
    let ivy = serde_json::json!({"email": "ivy@example.com", "reason": "asked by phone"});
    let r = reqwest::Client::new()
        .post(setup.admin_url("/suppressions"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&ivy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Hal's invitation bounced (by its VERP token: a report acts only on a
    // mail of ours).
    enqueue(&setup, "hal.csv", "email,name\nhal@example.com,Hal\n");
    let hal = smtp.wait_for(1, Duration::from_secs(120));
    assert_eq!(hal.len(), 1, "{}", setup.log());
    let hal = crate::bounces::sent(&hal[0]);
    let hal_bounce =
        serde_json::json!({"token": hal.b, "type": "hard", "diagnostic": "550 5.1.1 no such user"});
    let r = reqwest::Client::new()
        .post(setup.admin_url("/bounces"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&hal_bounce)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The endpoint: positions and reasons only, never an address or hash.
    let (status, body) = check(
        &setup,
        Some(ADMIN_TOKEN),
        r#"{"emails": ["nobody@example.com", "IVY@example.com", "not an address"]}"#.into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checked"], 3);
    assert_eq!(
        body["suppressed"],
        serde_json::json!([{"index": 1, "reason": "asked by phone"}])
    );
    let text = body.to_string();
    assert!(!text.contains("ivy") && !text.contains("person"), "{text}");
    // Wrong, missing, oversized and hostile requests.
    assert_eq!(check(&setup, None, r#"{"emails": []}"#.into()).await.0, 401);
    assert_eq!(
        check(&setup, Some("wrong-token"), r#"{"emails": []}"#.into())
            .await
            .0
            / 100,
        4
    );
    for bad in [
        "",
        "[]",
        "{\"emails\": \"a@b.c\"}",
        "{\"emails\": [], \"x\": 1}",
        "\u{0}\u{ff}",
    ] {
        let (status, body) = check(&setup, Some(ADMIN_TOKEN), bad.into()).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
    }
    let many: Vec<String> = (0..1001).map(|i| format!("p{i}@example.com")).collect();
    let (status, body) = check(
        &setup,
        Some(ADMIN_TOKEN),
        serde_json::json!({"emails": many}).to_string(),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    let (status, _) = check(
        &setup,
        Some(ADMIN_TOKEN),
        format!("{{\"emails\": [\"{}\"]}}", "a".repeat(3 * 300 * 1024)),
    )
    .await;
    assert_eq!(status, 413);

    // A file of 1,200 rows: checked in two chunks; the suppressed rows
    // are reported with line and reason and not placed.
    let mut csv = String::from("email,name\n");
    for i in 0..1200 {
        match i {
            10 => csv.push_str("hal@example.com,Hal\n"),
            1100 => csv.push_str("Ivy@Example.com,Ivy\n"),
            _ => csv.push_str(&format!("p{i}@example.com,P{i}\n")),
        }
    }
    let file = setup.dir.path().join("big.csv");
    std::fs::write(&file, &csv).unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("big.csv:12: suppressed: bounced: 550 5.1.1 no such user"),
        "{err}"
    );
    assert!(
        err.contains("big.csv:1102: suppressed: asked by phone"),
        "{err}"
    );
    assert!(err.contains("1198 rows queued, 2 rejected"), "{err}");
    let total = |s: &serde_json::Value| {
        s["invitations"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>())
    };
    // And Hal's first, failed by his bounce.
    let s = setup.wait_status(|s| total(s) == 1199, Duration::from_secs(120));
    assert_eq!(total(&s), 1199, "{s}");

    // The daemon down: one line says so, the file is placed, and the
    // daemon's intake rejects the suppressed row when it is back.
    setup.stop(daemon);
    let file = setup.dir.path().join("later.csv");
    std::fs::write(
        &file,
        "email,name\nhal@example.com,Hal\nzed@example.com,Zed\n",
    )
    .unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let notes: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("suppressions not checked"))
        .collect();
    assert_eq!(notes.len(), 1, "{err}");
    assert!(err.contains("2 rows queued, 0 rejected"), "{err}");
    let _daemon = setup.daemon();
    let rejected = wait_rejected(&setup, "later.csv");
    assert!(rejected.contains("suppressed: bounced"), "{rejected:?}");
}
