//! Forged bounces, through the real binary, the sandbox and the real SMTP
//! server: `bounce` and `POST /bounces` act only on a report that names a
//! mail of ours (the VERP token of the address it came back to, or the
//! Message-ID of a mail we sent) and then only on that mail's recipient,
//! whatever its `Final-Recipient` lines say. A report listing 1,000
//! addresses we never mailed, or naming two real invitees without a token
//! of ours, suppresses nobody and is counted as ignored (`status`'s
//! `bounces.ignored`, `/metrics`). A 4 MiB hostile report keeps the `bounce`
//! process under 64 MiB peak RSS (measured by `wait4`, not sampled).

use std::path::{Path, PathBuf};
use std::time::Duration;

use mydex_test_support::*;

use crate::bounces::{Sent, bounce, code, enqueue, post_bounce, sent, started};

/// A delivery status notification as Postfix writes one, come back to
/// `to`, listing each of `recipients` as failed (550 5.1.1), and quoting
/// `returned` (the original mail's headers) as `text/rfc822-headers`.
fn dsn(to: &str, recipients: &[String], returned: &str) -> String {
    let mut groups = String::from("Reporting-MTA: dns; mx.example.net\r\n");
    for r in recipients {
        groups.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {r}\r\nOriginal-Recipient: rfc822;{r}\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 mailbox unavailable\r\n"
        ));
    }
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-Id: <{}@mx.example.net>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"R\"\r\n\r\n--R\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n--R\r\nContent-Type: message/delivery-status\r\n\r\n{groups}\r\n--R\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n--R--\r\n",
        rand::random::<u64>()
    )
}

/// An RFC 5965 complaint about the mail whose headers are `returned`,
/// naming `recipient` as the mailbox providers that do not redact do.
fn complaint(recipient: &str, returned: &str) -> String {
    format!(
        "From: <fbl@isp.example.org>\r\nTo: <abuse@example.com>\r\nSubject: FW: complaint\r\nMessage-ID: <arf-{}@isp.example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n--F\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n\r\n--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\nOriginal-Rcpt-To: <{recipient}>\r\n\r\n--F\r\nContent-Type: message/rfc822\r\n\r\n{returned}\r\nhello\r\n\r\n--F--\r\n",
        rand::random::<u64>()
    )
}

/// The headers of a mail of ours to `to`, as a report quotes them.
fn returned(to: &str, message_id: &str) -> String {
    format!(
        "From: Example Energy <connect@example.com>\r\nTo: {to}\r\nSubject: Connect meter\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
    )
}

fn write(setup: &Setup, name: &str, text: &str) -> PathBuf {
    let path = setup.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn ignored(setup: &Setup) -> u64 {
    let s = setup.status();
    s["bounces"]["ignored"]
        .as_u64()
        .unwrap_or_else(|| panic!("status has bounces.ignored: {s}"))
}

async fn metric(setup: &Setup, name: &str) -> String {
    let text = setup.metrics().await;
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_default()
        .to_string()
}

/// `s` with one character of `part` (inside it) changed.
fn altered(s: &str, part: &str) -> String {
    let at = s.find(part).unwrap() + part.len() / 2;
    let mut b = s.to_string().into_bytes();
    b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap()
}

/// Positions of `emails` on the suppression list (`POST /suppressions/check`).
async fn suppressed_of(setup: &Setup, emails: &[&str]) -> Vec<u64> {
    let r = reqwest::Client::new()
        .post(setup.admin_url("/suppressions/check"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "emails": emails }))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    body["suppressed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["index"].as_u64())
        .collect()
}

/// Invite `people` and wait for their mails.
async fn mailed(smtp: &Smtp, setup: &Setup, people: &[&str]) -> Vec<Sent> {
    let mut csv = String::from("email,name\n");
    for p in people {
        csv += &format!("{p},Someone\n");
    }
    enqueue(setup, "people.csv", &csv);
    let paths = smtp.wait_for(people.len(), Duration::from_secs(120));
    assert_eq!(paths.len(), people.len(), "{}", setup.log());
    let mails: Vec<Sent> = paths.iter().map(|p| sent(p)).collect();
    people
        .iter()
        .map(|p| {
            let m = mails.iter().find(|m| m.to == *p).unwrap();
            Sent {
                to: m.to.clone(),
                b: m.b.clone(),
                u: m.u.clone(),
                message_id: m.message_id.clone(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_reports_suppress_nobody_and_are_counted_as_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let (setup, _daemon) = started(&smtp, dir, Options::default()).await;
    let people = ["ann@example.com", "bob@example.com"];
    let mails = mailed(&smtp, &setup, &people).await;
    let (ann, bob) = (&mails[0], &mails[1]);
    assert_eq!(ignored(&setup), 0);

    // 1,000 addresses we never mailed, no token of ours.
    let strangers: Vec<String> = (0..1000)
        .map(|i| format!("p{i}@elsewhere.example"))
        .collect();
    let forged = dsn(
        "postmaster@example.com",
        &strangers,
        &returned(&strangers[0], "<inv-1-0000000000000001@example.com>"),
    );
    let out = bounce(&setup, &write(&setup, "forged-1000.eml", &forged));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 65, "{err}");
    assert!(
        err.contains("ignored") && err.contains("1000 recipients"),
        "{err}"
    );
    assert!(err.contains("nothing changed"), "{err}");
    let s = setup.status();
    assert_eq!(s["suppressed"], 0, "{s}");
    assert_eq!(s["bounces"]["ignored"], 1, "{s}");

    // Two real invitees, no token of ours: the addresses name nobody.
    let two = vec![ann.to.clone(), bob.to.clone()];
    let forged = dsn(
        "bounces@example.com",
        &two,
        &returned(&ann.to, "<x@example.com>"),
    );
    let out = bounce(&setup, &write(&setup, "forged-two.eml", &forged));
    assert_eq!(code(&out), 65, "{}", String::from_utf8_lossy(&out.stderr));
    // An altered VERP token and an altered Message-ID of ours.
    let forged = dsn(
        &format!("bounces+{}@example.com", altered(&ann.b, &ann.b)),
        &two,
        &returned(&ann.to, &altered(&ann.message_id, &ann.message_id[1..50])),
    );
    let out = bounce(&setup, &write(&setup, "forged-altered.eml", &forged));
    assert_eq!(code(&out), 65, "{}", String::from_utf8_lossy(&out.stderr));
    // A complaint naming Bob by address only.
    let forged = complaint(&bob.to, &returned(&bob.to, "<y@example.com>"));
    let out = bounce(&setup, &write(&setup, "forged-arf.eml", &forged));
    assert_eq!(code(&out), 65, "{}", String::from_utf8_lossy(&out.stderr));
    // `POST /bounces` by address, or naming nothing.
    for body in [
        serde_json::json!({"email": ann.to, "type": "hard", "diagnostic": "550 5.1.1"}),
        serde_json::json!({"type": "complaint"}),
        serde_json::json!({"email": bob.to, "message_id": "<inv-2-00@example.com>", "type": "hard"}),
    ] {
        let (status, answer) = post_bounce(&setup, body).await;
        assert_eq!(status, 404, "{answer}");
        assert_eq!(answer["result"], "ignored", "{answer}");
    }

    let s = setup.status();
    assert_eq!(s["suppressed"], 0, "{s}");
    assert_eq!(s["invitations"]["sent"], 2, "{s}");
    assert_eq!(s["invitations"]["failed"], 0, "{s}");
    assert_eq!(s["bounces"]["ignored"], 7, "{s}");
    assert_eq!(s["campaigns"]["meters"]["bounces"]["hard"], 0, "{s}");
    assert!(suppressed_of(&setup, &people).await.is_empty());
    assert_eq!(
        metric(&setup, "mydex_connector_bounces_ignored_total").await,
        "mydex_connector_bounces_ignored_total 7"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_bounce_acts_on_its_own_mails_recipient_only() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let (setup, _daemon) = started(&smtp, dir, Options::default()).await;
    let people = ["ann@example.com", "bob@example.com", "cid@example.com"];
    let mails = mailed(&smtp, &setup, &people).await;
    let (ann, bob, cid) = (&mails[0], &mails[1], &mails[2]);
    // Our Message-ID carries the mail's `m` token.
    assert!(ann.message_id.starts_with("<m"), "{}", ann.message_id);

    // Back to Ann's VERP address, listing Bob, Cid and three strangers
    // (not Ann): only Ann, the recipient of that mail, is suppressed.
    let listed = vec![
        bob.to.clone(),
        cid.to.clone(),
        "x1@elsewhere.example".into(),
        "x2@elsewhere.example".into(),
        "x3@elsewhere.example".into(),
    ];
    let report = dsn(
        &format!("bounces+{}@example.com", ann.b),
        &listed,
        &returned(&bob.to, "<z@example.com>"),
    );
    let out = bounce(&setup, &write(&setup, "verp.eml", &report));
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("suppressed"), "{said}");
    assert!(
        said.contains("the report lists 5 recipients: only the recipient of the mail it names"),
        "{said}"
    );
    let s = setup.status();
    assert_eq!(s["suppressed"], 1, "{s}");
    assert_eq!(s["invitations"]["failed"], 1, "{s}");
    assert_eq!(s["invitations"]["sent"], 2, "{s}");
    assert_eq!(suppressed_of(&setup, &people).await, vec![0]);

    // No VERP token (another return path), no unsubscribe token: Bob's
    // Message-ID in the returned headers names his mail; Cid, listed, is
    // not touched.
    let report = dsn(
        "postmaster@example.com",
        std::slice::from_ref(&cid.to),
        &returned(&cid.to, &bob.message_id),
    );
    let out = bounce(&setup, &write(&setup, "by-message-id.eml", &report));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(suppressed_of(&setup, &people).await, vec![0, 1]);

    // A complaint whose only reference is Cid's Message-ID, naming another
    // recipient: Cid complained.
    let report = complaint(
        "someone@elsewhere.example",
        &returned("x@y.example", &cid.message_id),
    );
    let out = bounce(&setup, &write(&setup, "arf.eml", &report));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let s = setup.status();
    assert_eq!(s["suppressed"], 3, "{s}");
    assert_eq!(s["invitations"]["failed"], 3, "{s}");
    assert_eq!(s["campaigns"]["meters"]["bounces"]["hard"], 2, "{s}");
    assert_eq!(s["campaigns"]["meters"]["bounces"]["complaints"], 1, "{s}");
    assert_eq!(s["bounces"]["ignored"], 0, "{s}");
    let out = setup.cli(&["suppressions", "list", "--json"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert_eq!(list.matches("\"source\":\"bounce\"").count(), 2, "{list}");
    assert_eq!(
        list.matches("\"source\":\"complaint\"").count(),
        1,
        "{list}"
    );
}

/// Run `bounce FILE` under a small Python parent that waits for it with
/// `os.wait4`: its exit code, its peak RSS in KiB (`ru_maxrss`, the
/// kernel's high-water mark for that process), and its stderr. Not spawned
/// from this test process itself: a child started by `vfork`/`posix_spawn`
/// inherits its parent's high-water mark at `exec`, and this process is
/// large; Python's (about 10 MiB) is far below the daemon binary's own.
fn bounce_peak_rss(setup: &Setup, file: &Path) -> (i32, u64, String) {
    const WAIT: &str = "import os, subprocess, sys\n\
        err = open(sys.argv[1], 'w')\n\
        p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)\n\
        _, status, usage = os.wait4(p.pid, 0)\n\
        p.returncode = os.waitstatus_to_exitcode(status)\n\
        print(p.returncode, usage.ru_maxrss)\n";
    let err_path = setup.dir.path().join("bounce.stderr");
    let out = std::process::Command::new("python3")
        .args(["-c", WAIT])
        .arg(&err_path)
        .arg(bin())
        .args(["bounce", "--config"])
        .arg(&setup.config)
        .arg(file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = said.split_whitespace();
    let (Some(code), Some(peak)) = (words.next(), words.next()) else {
        panic!("{said} {}", String::from_utf8_lossy(&out.stderr));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (code.parse().unwrap(), peak.parse().unwrap(), stderr)
}

/// A multipart/report of `total` bytes: `head` (its delivery status part
/// opened), then `unit` repeated.
fn hostile(head: &str, unit: &str, total: usize) -> String {
    let mut text = String::with_capacity(total);
    text.push_str(head);
    while text.len() + unit.len() <= total {
        text.push_str(unit);
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_mib_hostile_report_stays_under_64_mib_in_bounce() {
    const MIB: usize = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let (setup, _daemon) = started(&smtp, dir, Options::default()).await;
    let report = "From: MAILER-DAEMON@mx.example.net\r\nTo: postmaster@example.com\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"R\"\r\n";
    let status_part = format!(
        "{report}\r\n--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
    );
    let cases = [
        // Blank-line groups, each a failed recipient.
        (
            "groups",
            hostile(&status_part, "Action: failed\n\n", 4 * MIB),
        ),
        ("empty groups", hostile(&status_part, "\n", 4 * MIB)),
        // One-line headers, and empty MIME parts: a record each in a parser.
        (
            "headers",
            hostile(report, "X:y\r\n", 4 * MIB - 8) + "\r\n\r\nx",
        ),
        (
            "parts",
            hostile(&format!("{report}\r\n"), "--R\n\nx\n", 4 * MIB),
        ),
    ];
    let mut figures = Vec::new();
    for (what, text) in &cases {
        assert!(text.len() <= 4 * MIB && text.len() > 4 * MIB - 64, "{what}");
        let file = write(&setup, "hostile.eml", text);
        let (code, peak_kib, err) = bounce_peak_rss(&setup, &file);
        assert_eq!(code, 65, "{what}: {err}");
        assert!(err.contains("nothing changed"), "{what}: {err}");
        assert!(
            peak_kib < 64 * 1024,
            "{what}: the bounce process peaked at {} MiB",
            peak_kib / 1024
        );
        figures.push(format!("{what}: {:.1} MiB", peak_kib as f64 / 1024.0));
    }
    // One byte over the cap: a clear error, the same bound.
    let over = write(&setup, "over.eml", &"x".repeat(4 * MIB + 1));
    let (code, peak_kib, err) = bounce_peak_rss(&setup, &over);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("over 4194304 bytes"), "{err}");
    assert!(
        peak_kib < 64 * 1024,
        "over the cap: {} MiB",
        peak_kib / 1024
    );
    figures.push(format!("over the cap: {:.1} MiB", peak_kib as f64 / 1024.0));
    println!(
        "bounce peak RSS on 4 MiB hostile reports: {}",
        figures.join(", ")
    );
    let s = setup.status();
    assert_eq!(s["suppressed"], 0, "{s}");
    // The groups case parses as a report naming no mail of ours; the others
    // are no report at all.
    assert_eq!(s["bounces"]["ignored"], 1, "{s}");
}
