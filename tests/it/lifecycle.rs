//! The connection lifecycle through the real binary, against the sandbox and
//! a real SMTP server: version sweeps and update invitations, revoked
//! members, a sweep killed halfway, expiry and reminders.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use mydex_test_support::*;

fn csv(prefix: &str, n: usize) -> String {
    let mut s = String::from("email,name,external_ref\n");
    for i in 0..n {
        s += &format!("{prefix}{i}@example.com,Person {i},MTR-{i:05}\n");
    }
    s
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

fn sweep_now(setup: &Setup, job: &str) {
    let out = setup.cli(&["sweep", job, "--json"]);
    assert!(
        out.status.success(),
        "sweep {job}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["trigger"], "started", "{doc}");
}

/// The link of every sandbox link URL: (kind, version, mydexid).
fn links_by_url(state: &serde_json::Value) -> HashMap<String, serde_json::Value> {
    state["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["url"].as_str().unwrap().to_string(), l.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_sweep_invites_outdated_members_to_update_and_handles_revoked_ones() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(
        smtp.port,
        dir,
        Options {
            extra_config: "reconnect_on_revoke = true\n".into(),
            ..Options::default()
        },
    )
    .await;
    let daemon = setup.daemon();

    // 52 members connect at version 1.
    enqueue(&setup, "people.csv", &csv("person", 52));
    let paths = smtp.wait_for(52, Duration::from_secs(120));
    assert_eq!(paths.len(), 52, "{}", setup.log());
    let first: Vec<Mail> = paths.iter().map(|p| read_mail(p)).collect();
    let mut mydexid_of = HashMap::new();
    for (i, m) in first.iter().enumerate() {
        let id = format!("member{i}x");
        let (status, body) = setup.journey(&m.qr_link, &id, &m.to).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["callback_status"], 200, "{body}");
        mydexid_of.insert(m.to.clone(), id);
    }
    let s = setup.wait_status(|s| s["members"]["total"] == 52, Duration::from_secs(60));
    assert_eq!(s["members"]["total"], 52, "{s}");
    assert_eq!(s["members"]["outdated"], 0);

    // Two members revoke the connection at Mydex.
    let revoked: Vec<String> = first[50..]
        .iter()
        .map(|m| mydexid_of[&m.to].clone())
        .collect();
    for id in &revoked {
        let r = reqwest::Client::new()
            .post(format!(
                "{}/_sandbox/members/{id}/revoke",
                setup.sandbox.url()
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    // The Dedicated Connection moves to version 2, and so does our config.
    setup
        .sandbox_settings(serde_json::json!({"connection_version": 2}))
        .await;
    setup.stop(daemon);
    setup.edit_config(
        "max_attempts = 12\n",
        "max_attempts = 12\nconnection_version = 2\n",
    );
    let _daemon = setup.daemon();
    let s = setup.status();
    assert_eq!(s["members"]["outdated"], 52, "all still at version 1: {s}");
    assert_eq!(s["sweeps"]["version"]["run"], 0, "no sweep yet: {s}");

    // One sweep.
    sweep_now(&setup, "version");
    let s = setup.wait_status(
        |s| s["sweeps"]["version"]["finished"] == true,
        Duration::from_secs(60),
    );
    let last = &s["sweeps"]["version"]["last"];
    assert_eq!(last["checked"], 52, "{s}\n{}", setup.log());
    assert_eq!(last["outdated"], 50, "{s}");
    assert_eq!(last["disconnected"], 2, "{s}");
    assert_eq!(
        last["invited"], 52,
        "50 updates and 2 new first connections: {s}"
    );
    assert_eq!(last["errors"], 0, "{s}");
    assert_eq!(s["members"]["disconnected"], 2, "{s}");
    // The sweep's progress is in /metrics too.
    let metrics = setup.metrics().await;
    for line in [
        "mydex_connector_sweep_checked{job=\"version\"} 52",
        "mydex_connector_sweep_running{job=\"version\"} 0",
        "mydex_connector_sweep_run{job=\"version\"} 1",
        "mydex_connector_sweep_errors{job=\"version\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    assert_eq!(s["members"]["outdated"], 50, "{s}");
    assert!(setup.log().contains("version sweep finished"));

    // 50 update emails and 2 new invitations.
    let paths = smtp.wait_for(104, Duration::from_secs(120));
    assert_eq!(paths.len(), 104, "{}", setup.log());
    let second: Vec<Mail> = paths[52..].iter().map(|p| read_mail(p)).collect();
    let state = setup.sandbox_state().await;
    let links = links_by_url(&state);
    let mut updates = Vec::new();
    let mut reconnects = Vec::new();
    for m in &second {
        assert_eq!(m.qr_link, m.text_link);
        let link = &links[&m.text_link];
        let expected = &mydexid_of[&m.to];
        assert_eq!(
            link["mydexid"],
            expected.as_str(),
            "the member's own MydexID"
        );
        if revoked.contains(expected) {
            // A new first-time connection: no version asked for.
            assert_eq!(link["version"], 1, "a first-time link: {link}");
            reconnects.push(m);
        } else {
            assert_eq!(link["version"], 2, "an update to version 2: {link}");
            updates.push(m);
        }
    }
    assert_eq!(updates.len(), 50);
    assert_eq!(reconnects.len(), 2);
    let recipients: HashSet<&str> = second.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(recipients.len(), 52, "each member mailed once");

    // Members consent to version 2: the PUT callbacks complete the updates.
    for m in &updates {
        let (status, body) = setup.journey(&m.qr_link, &mydexid_of[&m.to], &m.to).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["callback_status"], 200, "{body}");
    }
    for m in &reconnects {
        let (status, body) = setup.journey(&m.qr_link, &mydexid_of[&m.to], &m.to).await;
        assert_eq!(status, 200, "{body}");
    }
    let s = setup.wait_status(
        |s| s["members"]["outdated"] == 0 && s["members"]["disconnected"] == 0,
        Duration::from_secs(60),
    );
    assert_eq!(s["members"]["outdated"], 0, "{s}");
    assert_eq!(s["members"]["disconnected"], 0, "{s}");
    assert_eq!(s["members"]["total"], 52, "{s}");
    assert_eq!(s["invitations"]["connected"], 104, "{s}");
    assert_eq!(s["callbacks"]["unmatched"], 0, "{s}");

    // A second sweep finds everyone current and invites nobody.
    sweep_now(&setup, "version");
    let s = setup.wait_status(
        |s| s["sweeps"]["version"]["run"] == 2 && s["sweeps"]["version"]["finished"] == true,
        Duration::from_secs(60),
    );
    let last = &s["sweeps"]["version"]["last"];
    assert_eq!(last["checked"], 52, "{s}");
    assert_eq!(last["outdated"], 0, "{s}");
    assert_eq!(last["invited"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_killed_halfway_resumes_and_checks_no_member_twice() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(
        smtp.port,
        dir,
        Options {
            schedule: format!(
                "version_check = \"{NEVER}\"\nexpiry_check = \"{NEVER}\"\nsweep_concurrency = 2\nsweep_rate = \"2/s\"\n"
            ),
            ..Options::default()
        },
    )
    .await;
    let members = seed_members(&setup, 40, 1).await;
    let daemon = setup.daemon();
    assert_eq!(setup.status()["members"]["total"], 40);
    sweep_now(&setup, "version");
    // Kill it (SIGKILL: no chance to save anything) once some are checked.
    let mut checks = 0;
    for _ in 0..600 {
        let state = setup.sandbox_state().await;
        checks = state["counts"]["status"].as_u64().unwrap();
        if checks >= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(checks >= 12, "the sweep did not get going: {}", setup.log());
    drop(daemon);
    let before: u64 = setup.sandbox_state().await["counts"]["status"]
        .as_u64()
        .unwrap();
    assert!(
        before < 40,
        "killed halfway, not at the end ({before} checks)"
    );

    // The next start resumes the run on its own.
    let _daemon = setup.daemon();
    let s = setup.wait_status(
        |s| s["sweeps"]["version"]["finished"] == true,
        Duration::from_secs(60),
    );
    let last = &s["sweeps"]["version"]["last"];
    assert_eq!(last["run"], 1, "the same run, resumed: {s}");
    assert_eq!(last["resumes"], 1, "{s}");
    assert!(setup.log().contains("resumed where it stopped"));
    let checked = last["checked"].as_u64().unwrap();
    let interrupted = last["interrupted"].as_u64().unwrap();
    assert_eq!(checked + interrupted, 40, "every member accounted for: {s}");
    // At most the chunk that was being worked on when it was killed.
    assert!(interrupted <= 16, "{s}");

    // No member was asked about twice.
    let state = setup.sandbox_state().await;
    let per_uid = state["status_checks"].as_object().unwrap();
    for m in &members {
        let uid = m["uid"].as_u64().unwrap().to_string();
        let n = per_uid.get(&uid).and_then(|v| v.as_u64()).unwrap_or(0);
        assert!(n <= 1, "member {uid} checked {n} times");
    }
    let total: u64 = per_uid.values().map(|v| v.as_u64().unwrap()).sum();
    assert!(total >= checked, "{total} requests for {checked} checks");
    assert!(total <= 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_links_expire_reminders_bring_fresh_links_and_a_late_callback_still_connects() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(
        smtp.port,
        dir,
        Options {
            invitations: "link_ttl = \"2s\"\nreminder_after = \"1s\"\nmax_reminders = 2\n".into(),
            schedule: format!("version_check = \"{NEVER}\"\nexpiry_check = \"* * * * * *\"\n"),
            ..Options::default()
        },
    )
    .await;
    // Mydex's links die as fast as ours.
    setup
        .sandbox_settings(serde_json::json!({"link_ttl": "2s"}))
        .await;
    let _daemon = setup.daemon();
    enqueue(&setup, "people.csv", &csv("person", 3));

    // Each gets the invitation and two reminders, then nothing more.
    let paths = smtp.wait_for(9, Duration::from_secs(90));
    assert_eq!(paths.len(), 9, "{}", setup.log());
    let s = setup.wait_status(
        |s| s["invitations"]["expired"] == 3,
        Duration::from_secs(30),
    );
    assert_eq!(s["invitations"]["expired"], 3, "{s}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(smtp.messages().len(), 9, "no reminder past max_reminders");
    let mails: Vec<Mail> = smtp.messages().iter().map(|p| read_mail(p)).collect();
    let mut by_person: HashMap<String, Vec<&Mail>> = HashMap::new();
    for m in &mails {
        by_person.entry(m.to.clone()).or_default().push(m);
    }
    assert_eq!(by_person.len(), 3);
    for (to, ms) in &by_person {
        assert_eq!(ms.len(), 3, "{to}");
        assert!(!ms[0].subject.starts_with("Reminder"), "{}", ms[0].subject);
        assert!(ms[1].subject.starts_with("Reminder: "), "{}", ms[1].subject);
        assert!(ms[2].subject.starts_with("Reminder: "));
        let links: HashSet<&str> = ms.iter().map(|m| m.text_link.as_str()).collect();
        assert_eq!(links.len(), 3, "a fresh link each time");
        // The old links are dead at Mydex.
        let (status, body) = setup.journey(&ms[0].qr_link, "late0x", to).await;
        assert_eq!(status, 410, "{body}");
    }
    assert_eq!(
        setup.status()["invitations"]["connected"],
        0,
        "nobody connected"
    );

    // A late callback: the invitation is expired here, Mydex's link still
    // works (it lives longer there), and the member connects.
    setup
        .sandbox_settings(serde_json::json!({"link_ttl": "1h"}))
        .await;
    enqueue(
        &setup,
        "late.csv",
        "email,name\nlate@example.com,Late Person\n",
    );
    let paths = smtp.wait_for(12, Duration::from_secs(60));
    assert_eq!(paths.len(), 12, "{}", setup.log());
    let s = setup.wait_status(
        |s| s["invitations"]["expired"] == 4,
        Duration::from_secs(30),
    );
    assert_eq!(s["invitations"]["expired"], 4, "{s}");
    let last = read_mail(&paths[11]);
    assert_eq!(last.to, "late@example.com");
    let (status, body) = setup.journey(&last.qr_link, "latecomer1", &last.to).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["callback_status"], 200, "{body}");
    let s = setup.wait_status(
        |s| s["invitations"]["connected"] == 1,
        Duration::from_secs(30),
    );
    assert_eq!(s["invitations"]["connected"], 1, "{s}");
    assert_eq!(s["invitations"]["expired"], 3, "{s}");
    assert_eq!(s["members"]["total"], 1, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_connects_known_members_without_a_new_ftc_and_notifications_are_passed_on() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let seen = dir.path().join("notifications.jsonl");
    let script = format!(
        "import sys; open({:?}, 'ab').write(sys.stdin.buffer.read() + b'\\n')",
        seen.display().to_string()
    );
    // An operator's webhook: a real HTTP server keeping what it is sent.
    let hooked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let keep = hooked.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let setup = setup(
        smtp.port,
        dir,
        Options {
            extra_config: format!(
                "\n[[campaign]]\nname = \"returning\"\ninvite = \"identify\"\n\n[notifications]\ncommand = [\"python3\", \"-c\", {script:?}]\nwebhook_url = \"http://127.0.0.1:{hook_port}/hook\"\n"
            ),
            ..Options::default()
        },
    )
    .await;
    let members = seed_members(&setup, 1, 1).await;
    let known = members[0]["mydexid"].as_str().unwrap().to_string();
    let _daemon = setup.daemon();
    enqueue(
        &setup,
        "returning.csv",
        "email,campaign\nknown@example.com,returning\nfresh@example.com,returning\n",
    );
    assert_eq!(
        smtp.wait_for(2, Duration::from_secs(120)).len(),
        2,
        "{}",
        setup.log()
    );
    let state = setup.sandbox_state().await;
    let identify: Vec<&serde_json::Value> = state["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "identify")
        .collect();
    assert_eq!(identify.len(), 2, "two identify links: {state}");
    assert_eq!(state["counts"]["ftc_setup"], 0, "no FTC yet");
    // Which link went to whom: from the mails' text.
    let mut link_of = HashMap::new();
    for p in smtp.messages() {
        let raw = std::fs::read_to_string(&p).unwrap();
        let to = if raw.contains("known@example.com") {
            "known"
        } else {
            "fresh"
        };
        let link = identify
            .iter()
            .map(|l| l["url"].as_str().unwrap())
            .find(|u| raw.contains(u))
            .expect("the identify link is in the mail");
        link_of.insert(to, link.to_string());
    }

    // A MydexID we hold: connected at once, no FTC.
    let (status, body) = setup
        .journey(&link_of["known"], &known, "known@example.com")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["callback_status"], 200, "{body}");
    let s = setup.wait_status(
        |s| s["invitations"]["connected"] == 1,
        Duration::from_secs(30),
    );
    assert_eq!(s["invitations"]["connected"], 1, "{s}");
    assert_eq!(s["callbacks"]["identify"], 1, "{s}");
    assert_eq!(setup.sandbox_state().await["counts"]["ftc_setup"], 0);

    // A new MydexID: learnt, then a first connection naming it.
    let (status, body) = setup
        .journey(&link_of["fresh"], "freshface1", "fresh@example.com")
        .await;
    assert_eq!(status, 200, "{body}");
    let paths = smtp.wait_for(3, Duration::from_secs(60));
    assert_eq!(paths.len(), 3, "{}", setup.log());
    let ftc = read_mail(&paths[2]);
    assert_eq!(ftc.to, "fresh@example.com");
    let state = setup.sandbox_state().await;
    let link = &links_by_url(&state)[&ftc.text_link];
    assert_eq!(link["kind"], "ftc");
    assert_eq!(link["mydexid"], "freshface1", "the learnt MydexID: {link}");
    let (status, body) = setup
        .journey(&ftc.qr_link, "freshface1", "fresh@example.com")
        .await;
    assert_eq!(status, 200, "{body}");
    let s = setup.wait_status(
        |s| s["invitations"]["connected"] == 2,
        Duration::from_secs(30),
    );
    assert_eq!(s["invitations"]["connected"], 2, "{s}");
    assert_eq!(s["members"]["total"], 2, "{s}");

    // Notifications: kept, counted per dataset and action, passed on.
    // (The same notification twice is a replay: each has its own updated_id.)
    for (n, (dataset, action)) in [
        ("ds_events", "create"),
        ("ds_events", "create"),
        ("ds_meter", "update"),
    ]
    .into_iter()
    .enumerate()
    {
        let r: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/_sandbox/notify", setup.sandbox.url()))
            .json(&serde_json::json!({"mydexid": "freshface1", "dataset": dataset, "action": action, "updated_id": n.to_string()}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["callback_status"], 200, "{r}");
    }
    let s = setup.status();
    assert_eq!(s["callbacks"]["notification"], 3, "{s}");
    let by = &s["callbacks"]["notifications_by_dataset_action"];
    assert_eq!(by["ds_events/create"], 2, "{s}");
    assert_eq!(by["ds_meter/update"], 1, "{s}");
    let start = std::time::Instant::now();
    let lines = loop {
        let text = std::fs::read_to_string(&seen).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 3 || start.elapsed() > Duration::from_secs(20) {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(lines.len(), 3, "the command got each notification once");
    assert!(lines.iter().all(|l| l["type"] == "notification"));
    assert_eq!(
        lines.iter().filter(|l| l["dataset"] == "ds_meter").count(),
        1
    );
    let start = std::time::Instant::now();
    while hooked.lock().unwrap().len() < 3 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let posted = hooked.lock().unwrap().clone();
    assert_eq!(posted.len(), 3, "the webhook got each notification once");
    assert!(
        posted
            .iter()
            .all(|p| p["type"] == "notification" && p["connection_id"].is_string())
    );
}
