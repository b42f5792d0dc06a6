//! Campaigns from config, through the real binary with a real SMTP server:
//! the exact rate window measured at the SMTP server, the send window,
//! operator pause and resume (kept across a restart), and the error
//! threshold that pauses a campaign by itself.

use std::time::Duration;

use mydex_test_support::*;

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

fn cli_ok(setup: &Setup, args: &[&str]) -> serde_json::Value {
    let out = setup.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A weekday that is not today (nor tomorrow) in UTC.
fn another_day() -> &'static str {
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // 1970-01-01 was a Thursday (index 3).
    let today = ((secs / 86400 + 3) % 7) as usize;
    days[(today + 3) % 7]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_window_send_window_and_operator_pause() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let day = another_day();
    let setup = setup(
        smtp.port,
        dir,
        Options {
            extra_config: format!(
                "\n[[campaign]]\nname = \"paced\"\nrate = \"4/2s\"\n\n[[campaign]]\nname = \"closed\"\nsend_window = \"{day} 00:00-00:01\"\ntime_zone = \"Europe/London\"\n"
            ),
            ..Options::default()
        },
    )
    .await;
    let daemon = setup.daemon();
    let mut rows = String::from("email,campaign\n");
    for i in 0..14 {
        rows += &format!("paced{i}@example.com,paced\n");
    }
    for i in 0..3 {
        rows += &format!("closed{i}@example.com,closed\n");
    }
    enqueue(&setup, "rows.csv", &rows);

    // The paced campaign: never more than 4 arrivals in any 2 s window, as
    // the SMTP server saw them.
    let paths = smtp.wait_for(14, Duration::from_secs(120));
    assert_eq!(paths.len(), 14, "{}", setup.log());
    let times: Vec<f64> = smtp
        .arrivals()
        .into_iter()
        .filter(|(_, to)| to.starts_with("paced"))
        .map(|(t, _)| t)
        .collect();
    assert_eq!(times.len(), 14);
    for t in &times {
        let in_window = times.iter().filter(|u| **u >= *t && **u < t + 2.0).count();
        assert!(in_window <= 4, "{in_window} mails within 2 s from {t}");
    }

    // The closed campaign sends nothing outside its window (while the
    // paced one's last mails are recorded sent: a mail reaches the SMTP
    // server before the daemon records it).
    std::thread::sleep(Duration::from_secs(2));
    let s = setup.wait_status(
        |s| s["campaigns"]["paced"]["sent"] == 14,
        Duration::from_secs(60),
    );
    assert!(
        smtp.arrivals()
            .iter()
            .all(|(_, to)| !to.starts_with("closed")),
        "mail went out outside the send window"
    );
    assert_eq!(
        s["campaigns"]["closed"]["state"], "outside_send_window",
        "{s}"
    );
    assert_eq!(s["campaigns"]["paced"]["state"], "active", "{s}");
    assert_eq!(s["campaigns"]["paced"]["sent"], 14, "{s}");
    assert_eq!(s["invitations"]["queued"], 3, "{s}");

    // An operator pauses a campaign; the pause holds across a restart.
    let doc = cli_ok(
        &setup,
        &[
            "campaign",
            "pause",
            "meters",
            "--reason",
            "mailbox full",
            "--json",
        ],
    );
    assert_eq!(doc["paused"], true, "{doc}");
    enqueue(
        &setup,
        "more.csv",
        "email\nheld1@example.com\nheld2@example.com\n",
    );
    setup.stop(daemon);
    let _daemon = setup.daemon();
    let s = setup.status();
    assert_eq!(s["campaigns"]["meters"]["paused"], true, "{s}");
    assert_eq!(s["campaigns"]["meters"]["paused_by"], "operator", "{s}");
    assert_eq!(
        s["campaigns"]["meters"]["pause_reason"], "mailbox full",
        "{s}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(smtp.messages().len(), 14, "nothing sent while paused");
    let s = setup.wait_status(|s| s["invitations"]["queued"] == 5, Duration::from_secs(60));
    assert_eq!(s["invitations"]["queued"], 5, "{s}");

    let doc = cli_ok(&setup, &["campaign", "resume", "meters", "--json"]);
    assert_eq!(doc["was_paused"], true, "{doc}");
    let paths = smtp.wait_for(16, Duration::from_secs(120));
    assert_eq!(paths.len(), 16, "{}", setup.log());
    assert_eq!(setup.status()["campaigns"]["meters"]["paused"], false);

    // Unknown campaigns and missing tokens are refused.
    let out = setup.cli(&["campaign", "pause", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no campaign named"));
    let r = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/campaigns/meters/pause",
            setup.admin_port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/sweeps/version",
            setup.admin_port
        ))
        .bearer_auth("wrong-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_threshold_pauses_the_campaign_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // Every recipient refused with a 5xx.
    let smtp = smtp(dir.path(), &["--reject-5xx", "@"]);
    let setup = setup(
        smtp.port,
        dir,
        Options {
            invitations: "concurrency = 1\n".into(),
            extra_config: "error_threshold = 3\n".into(),
            ..Options::default()
        },
    )
    .await;
    let _daemon = setup.daemon();
    let mut rows = String::from("email\n");
    for i in 0..10 {
        rows += &format!("person{i}@example.com\n");
    }
    enqueue(&setup, "rows.csv", &rows);
    let s = setup.wait_status(
        |s| s["campaigns"]["meters"]["paused"] == true,
        Duration::from_secs(120),
    );
    assert_eq!(
        s["campaigns"]["meters"]["paused"],
        true,
        "{s}\n{}",
        setup.log()
    );
    assert_eq!(s["campaigns"]["meters"]["paused_by"], "error_threshold");
    let reason = s["campaigns"]["meters"]["pause_reason"].as_str().unwrap();
    assert!(reason.contains("error_threshold = 3"), "{reason}");
    assert!(
        reason.contains("550"),
        "the SMTP reply is in the reason: {reason}"
    );
    assert!(setup.log().contains("campaign paused itself"));
    // The third failure may be recorded just after the pause shows; then,
    // paused, nothing more is tried (a window of 2 s to see it).
    setup.wait_status(
        |s| s["invitations"]["failed"].as_u64() >= Some(3),
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_secs(2));
    let s = setup.status();
    assert_eq!(s["invitations"]["failed"], 3, "{s}");
    assert_eq!(s["invitations"]["queued"], 7, "{s}");

    // Resumed without a fix, it fails three more and pauses again.
    cli_ok(&setup, &["campaign", "resume", "meters", "--json"]);
    let s = setup.wait_status(
        |s| s["invitations"]["failed"] == 6 && s["campaigns"]["meters"]["paused"] == true,
        Duration::from_secs(120),
    );
    assert_eq!(s["invitations"]["failed"], 6, "{s}");
    assert_eq!(s["campaigns"]["meters"]["paused"], true, "{s}");
    assert!(smtp.messages().is_empty());
}
