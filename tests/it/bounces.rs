//! Bounces and complaints through the real binary, the sandbox and the real
//! SMTP server: DSN samples as Postfix and Exim write them
//! (`tests/fixtures/dsn/`, their placeholders replaced by the tokens of the
//! mail each answers) fed to `mydex-connector bounce`; `POST /bounces`; soft
//! bounces counting as hard at `smtp.max_soft_bounces`; a campaign pausing
//! at its `bounce_threshold`; hostile input changing nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mydex_test_support::*;

const B_PLACEHOLDER: &str = "b000000000000000000000000000000000000000000000000";
const U_PLACEHOLDER: &str = "u000000000000000000000000000000000000000000000000";
const R_PLACEHOLDER: &str = "dsn-recipient@example.net";
/// The returned mail's Message-ID in the MTA fixtures, and in the complaint.
const M_PLACEHOLDERS: [&str; 2] = [
    "<inv-000000000001@example.com>",
    "<inv-281474976710657-6b1f0c1e2d3a4b5c@example.com>",
];

/// What a received mail carries: recipient, VERP token, unsubscribe token.
pub(crate) struct Sent {
    pub(crate) to: String,
    pub(crate) b: String,
    pub(crate) u: String,
    /// Its Message-ID, with the angle brackets.
    pub(crate) message_id: String,
}

pub(crate) fn sent(path: &Path) -> Sent {
    let raw = std::fs::read(path).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let list = msg.header_raw("List-Unsubscribe").unwrap().to_string();
    let at = list.find("/unsubscribe/").unwrap() + 13;
    let u = list[at..at + 49].to_string();
    let from = Smtp::mail_from(path);
    let b = from
        .strip_prefix("bounces+")
        .and_then(|r| r.strip_suffix("@example.com"))
        .unwrap()
        .to_string();
    let message_id = msg.header_raw("Message-ID").unwrap().trim().to_string();
    Sent {
        to: read_mail(path).to,
        b,
        u,
        message_id,
    }
}

/// A fixture with its placeholders replaced, written beside the test.
fn fixture(setup: &Setup, name: &str, s: &Sent, tweak: &[(&str, &str)]) -> PathBuf {
    let src = repo_root().join("tests/fixtures/dsn").join(name);
    let mut text = std::fs::read_to_string(src).unwrap();
    assert!(text.contains(B_PLACEHOLDER) || text.contains(U_PLACEHOLDER));
    text = text
        .replace(B_PLACEHOLDER, &s.b)
        .replace(U_PLACEHOLDER, &s.u)
        .replace(R_PLACEHOLDER, &s.to);
    for m in M_PLACEHOLDERS {
        text = text.replace(m, &s.message_id);
    }
    for (from, to) in tweak {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    let out = setup.dir.path().join(format!("{}-{name}", rand_suffix()));
    std::fs::write(&out, text).unwrap();
    out
}

/// The `Message-Id` of a fixture as captured (its `<…>`).
fn fixture_message_id(name: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/dsn").join(name)).unwrap();
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .unwrap();
    line["message-id:".len()..]
        .trim()
        .trim_end_matches('>')
        .to_string()
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

pub(crate) fn bounce(setup: &Setup, file: &Path) -> std::process::Output {
    setup.cli(&["bounce", file.to_str().unwrap()])
}

pub(crate) fn enqueue(setup: &Setup, name: &str, body: &str) {
    let file = setup.dir.path().join(name);
    std::fs::write(&file, body).unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) async fn started(smtp: &Smtp, dir: tempfile::TempDir, opts: Options) -> (Setup, Proc) {
    let setup = setup(smtp.port, dir, opts).await;
    setup.edit_config(
        "from = \"Example Energy <connect@example.com>\"\n",
        "from = \"Example Energy <connect@example.com>\"\nreturn_path = \"bounces+{token}@example.com\"\n",
    );
    let daemon = setup.daemon();
    (setup, daemon)
}

fn failed_reasons(setup: &Setup) -> String {
    let out = setup.cli(&["invitations", "list", "--state", "failed", "--json"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_and_exim_hard_bounces_suppress_and_fail_with_the_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let (setup, _daemon) = started(&smtp, dir, Options::default()).await;
    enqueue(
        &setup,
        "p.csv",
        "email,name\npf@example.com,Pf\nex@example.com,Ex\n",
    );
    let paths = smtp.wait_for(2, Duration::from_secs(60));
    assert_eq!(paths.len(), 2, "{}", setup.log());
    let mails: Vec<Sent> = paths.iter().map(|p| sent(p)).collect();
    let pf = mails.iter().find(|m| m.to == "pf@example.com").unwrap();
    let ex = mails.iter().find(|m| m.to == "ex@example.com").unwrap();

    let out = bounce(&setup, &fixture(&setup, "postfix-hard-550.eml", pf, &[]));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(setup.status()["suppressed"], 1);
    // Exim's, come back to another address than the VERP one and without
    // the unsubscribe token: the returned Message-ID names the mail.
    let exim = fixture(
        &setup,
        "exim-hard-550.eml",
        ex,
        &[
            (
                &format!("bounces+{}@example.com", ex.b),
                "postmaster@example.com",
            ),
            (&format!("/unsubscribe/{}", ex.u), "/unsubscribe/x"),
        ],
    );
    let out = bounce(&setup, &exim);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    // The MTA delivering the same report again changes nothing.
    let out = bounce(&setup, &exim);
    assert_eq!(code(&out), 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("duplicate"),
        "{out:?}"
    );
    let s = setup.status();
    assert_eq!(s["suppressed"], 2, "{s}");
    assert_eq!(s["invitations"]["failed"], 2, "{s}");
    assert_eq!(s["campaigns"]["meters"]["bounces"]["hard"], 2, "{s}");
    let reasons = failed_reasons(&setup);
    assert_eq!(
        reasons
            .matches("bounced: 550 5.1.1 mailbox unavailable")
            .count(),
        2,
        "{reasons}"
    );

    // Suppressed: re-enqueueing is refused with the reason, by `enqueue`
    // itself (it asks the daemon).
    let again = setup.dir.path().join("again.csv");
    std::fs::write(&again, "email,name\npf@example.com,Pf\n").unwrap();
    let out = setup.cli(&["enqueue", again.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("again.csv:2: suppressed: bounced: 550 5.1.1"),
        "{err}"
    );
    // The list shows no address.
    let out = setup.cli(&["suppressions", "list", "--json"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("\"source\":\"bounce\""), "{list}");
    assert!(!list.contains("@example.com"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_bounces_count_as_hard_at_the_third_and_a_complaint_suppresses() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let (setup, _daemon) = started(&smtp, dir, Options::default()).await;
    enqueue(
        &setup,
        "p.csv",
        "email,name\nsoft@example.com,Soft\nfbl@example.com,Fbl\n",
    );
    let paths = smtp.wait_for(2, Duration::from_secs(60));
    assert_eq!(paths.len(), 2, "{}", setup.log());
    let mails: Vec<Sent> = paths.iter().map(|p| sent(p)).collect();
    let soft = mails.iter().find(|m| m.to == "soft@example.com").unwrap();
    let fbl = mails.iter().find(|m| m.to == "fbl@example.com").unwrap();

    // The third report is another one (its own Message-Id), not the first again.
    let message_id = fixture_message_id("postfix-delayed-451.eml");
    let delays = [
        fixture(&setup, "postfix-delayed-451.eml", soft, &[]),
        fixture(&setup, "exim-delayed.eml", soft, &[]),
        fixture(
            &setup,
            "postfix-delayed-451.eml",
            soft,
            &[(&message_id, &format!("{message_id}.again"))],
        ),
    ];
    for (i, f) in delays.iter().enumerate() {
        let out = bounce(&setup, f);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        let s = setup.status();
        if i < 2 {
            assert_eq!(s["suppressed"], 0, "soft bounce {}: {s}", i + 1);
            assert_eq!(s["invitations"]["sent"], 2, "{s}");
        } else {
            assert_eq!(s["suppressed"], 1, "the third counts as hard: {s}");
            assert_eq!(s["invitations"]["failed"], 1, "{s}");
        }
    }
    assert!(
        failed_reasons(&setup)
            .contains("bounced: 451 4.3.0 mail system busy, try again later (soft bounce 3 of 3)")
    );

    let out = bounce(&setup, &fixture(&setup, "arf-complaint.eml", fbl, &[]));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let s = setup.status();
    assert_eq!(s["suppressed"], 2, "{s}");
    assert_eq!(s["campaigns"]["meters"]["bounces"]["complaints"], 1, "{s}");
    assert!(failed_reasons(&setup).contains("complaint"));

    // Not a report, and a 10 MB message: exit 65, clear words, nothing changed.
    let plain = setup.dir.path().join("plain.eml");
    std::fs::write(
        &plain,
        "From: a@example.com\r\nSubject: hello\r\n\r\nhi\r\n",
    )
    .unwrap();
    let out = bounce(&setup, &plain);
    assert_eq!(code(&out), 65);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a bounce or complaint report"),
        "{out:?}"
    );
    let big = setup.dir.path().join("big.eml");
    let mut text = std::fs::read_to_string(&delays[0]).unwrap();
    text.push_str(&"x".repeat(10 * 1024 * 1024));
    std::fs::write(&big, text).unwrap();
    let out = bounce(&setup, &big);
    assert_eq!(code(&out), 65);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bytes"),
        "{out:?}"
    );
    assert_eq!(setup.status()["suppressed"], 2);
}

pub(crate) async fn post_bounce(
    setup: &Setup,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(setup.admin_url("/bounces"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_bounces_and_a_campaign_pausing_at_its_bounce_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let (setup, _daemon) = started(
        &smtp,
        dir,
        Options {
            extra_config: "bounce_threshold = \"5%\"\n".into(),
            ..Options::default()
        },
    )
    .await;
    let mut csv = String::from("email,name\n");
    for i in 0..100 {
        csv += &format!("p{i}@example.com,P {i}\n");
    }
    enqueue(&setup, "p.csv", &csv);
    let paths = smtp.wait_for(100, Duration::from_secs(180));
    assert_eq!(paths.len(), 100, "{}", setup.log());
    let first = sent(&paths[0]);

    // Naming no mail of ours: ignored (404, counted), nothing changed. An
    // address names nobody, whoever it is.
    for bad in [
        serde_json::json!({"token": "u0", "type": "hard"}),
        // One character of a real token changed.
        serde_json::json!({"token": format!("{}{}", &first.b[..48], if first.b.ends_with('0') { '1' } else { '0' }), "type": "hard"}),
        serde_json::json!({"message_id": first.message_id.replace("@", ".0@"), "type": "hard"}),
        serde_json::json!({"email": first.to, "type": "hard"}),
        serde_json::json!({"email": "not an address", "type": "hard"}),
        serde_json::json!({"type": "hard"}),
    ] {
        let (status, body) = post_bounce(&setup, bad).await;
        assert!(status == 404, "{status} {body}");
        assert_eq!(body["result"], "ignored", "{body}");
    }
    // Malformed: clear errors, nothing changed.
    for bad in [
        serde_json::json!({"token": first.b, "type": "bouncy"}),
        serde_json::json!({"token": 5, "type": "hard"}),
        serde_json::json!({"token": first.b, "type": "hard", "person": "p1"}),
    ] {
        let (status, body) = post_bounce(&setup, bad).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].is_string());
    }
    let s = setup.status();
    assert_eq!(s["suppressed"], 0, "{s}");
    assert_eq!(s["bounces"]["ignored"], 6, "{s}");

    // By token (the VERP one), then by the Message-ID of each mail (an
    // address beside it is not used): 5 hard bounces of 100 is 5%.
    let (status, body) = post_bounce(&setup, serde_json::json!({"token": first.b, "type": "hard", "diagnostic": "550 5.1.1 <x@y.example> unknown"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "suppressed");
    assert!(
        body["reason"].as_str().unwrap().contains("<address>"),
        "{body}"
    );
    let mut bounced = vec![first.to.clone()];
    for p in paths[1..].iter().take(4) {
        let mail = sent(p);
        let (status, body) = post_bounce(
            &setup,
            serde_json::json!({"message_id": mail.message_id, "email": first.to, "type": "hard", "diagnostic": "550 5.1.1 unknown"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        bounced.push(mail.to);
    }
    let s = setup.status();
    assert_eq!(s["suppressed"], 5, "{s}");
    assert_eq!(
        s["campaigns"]["meters"]["paused"], false,
        "5% is not past 5%: {s}"
    );
    // The sixth passes it: the campaign pauses itself.
    let sixth = sent(&paths[5]);
    assert!(!bounced.contains(&sixth.to));
    let (status, _) = post_bounce(
        &setup,
        serde_json::json!({"token": sixth.u, "type": "hard", "diagnostic": "550 5.1.1 unknown"}),
    )
    .await;
    assert_eq!(status, 200);
    let s = setup.status();
    assert_eq!(s["campaigns"]["meters"]["paused"], true, "{s}");
    assert_eq!(
        s["campaigns"]["meters"]["paused_by"], "bounce_threshold",
        "{s}"
    );
    assert_eq!(s["campaigns"]["meters"]["bounces"]["hard"], 6, "{s}");
    assert_eq!(s["campaigns"]["meters"]["bounces"]["mailed"], 100, "{s}");
    let metrics = setup.metrics().await;
    assert!(
        metrics.contains("mydex_connector_bounces{campaign=\"meters\",type=\"hard\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mydex_connector_suppressed 6"),
        "{metrics}"
    );
}
