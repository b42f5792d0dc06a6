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

    // Re-inviting Ann is refused with the reason, by intake and the API.
    enqueue(&setup, "again.csv", "email,name\nANN@example.com,Ann\n");
    let rejected = wait_rejected(&setup, "again.csv");
    assert!(
        rejected.contains("suppressed: unsubscribed"),
        "{rejected:?}"
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
