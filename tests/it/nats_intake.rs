//! Invitee rows through NATS (`[queue] source = "nats"`), with the real
//! binaries, a real `nats-server`, the sandbox and the SMTP sink.
//!
//! - `invitees_published_while_down_are_invited_once`: a file of invitees
//!   published with `enqueue --nats` while the daemon is down; the daemon
//!   starts and `kill -9` is sent to it once it has taken some in; started
//!   again, every invitee is invited exactly once (status counts, the SMTP
//!   sink's recipients); the same file published again adds nothing. Size:
//!   `MYDEX_TEST_NATS_INVITEES` (default 2000; 10000 by hand, about
//!   two minutes: `docs/book/src/nats.md`, "How it is tested").
//! - `hostile_invitee_messages_are_rejected_and_the_consumer_goes_on`: not
//!   JSON, oversized, no email, an unknown campaign, put straight on
//!   `{prefix}.invitees`: each in `rejects list` and on `{prefix}.rejects`
//!   with its reason, then a good row is invited and nothing else changes.
//! - `readings_through_nats_land_once_across_kill_9`: readings published
//!   with `deliver --nats` (`[delivery] source = "nats"`, no `dir`), the
//!   daemon `kill -9`ed once delivery has begun and started again: each
//!   reading in the sandbox's PDS exactly once. Size: 5 members ×
//!   `MYDEX_TEST_NATS_READINGS` (default 100).
//! - `check_config_refuses_nats_sources_without_a_nats_section`: both
//!   keys named; `enqueue --nats` without `[nats]` fails.

use std::collections::HashSet;
use std::time::Duration;

use mydex_test_support::nats::Nats;
use mydex_test_support::*;

use crate::nats::nats_setup;

/// `source = "nats"` in `[queue]`.
fn from_nats(setup: &Setup) {
    setup.edit_config("[queue]\n", "[queue]\nsource = \"nats\"\n");
}

fn invitee_count() -> usize {
    std::env::var("MYDEX_TEST_NATS_INVITEES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// The sum of every invitation state in `status`.
fn invitations_total(s: &serde_json::Value) -> u64 {
    s["invitations"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitees_published_while_down_are_invited_once() {
    let n = invitee_count();
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(nats_dir.path());
    let (setup, smtp, _public) = nats_setup(&nats, 1).await;
    from_nats(&setup);
    let file = setup.dir.path().join("invitees.csv");
    let mut csv = String::from("email,name\n");
    for i in 0..n {
        csv.push_str(&format!("person{i}@example.com,Person {i}\n"));
    }
    std::fs::write(&file, csv).unwrap();

    let out = setup.cli(&["enqueue", "--nats", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains(&format!("published {n} invitees")), "{said}");

    // The daemon takes some in, is killed, and is started again.
    let mut daemon = Some(setup.daemon());
    setup.wait_status(|s| invitations_total(s) > 0, Duration::from_secs(300));
    if let Some(mut d) = daemon.take() {
        let _ = d.0.kill();
        let _ = d.0.wait();
    }
    daemon = Some(setup.daemon());
    let s = setup.wait_status(
        |s| s["invitations"]["sent"] == n as u64 && s["nats"]["pending"] == 0,
        Duration::from_secs(600),
    );
    assert_eq!(s["invitations"]["sent"], n as u64, "{s}");
    assert_eq!(invitations_total(&s), n as u64, "nobody twice: {s}");

    // The same file again: JetStream's dedup window stores nothing new.
    let out = setup.cli(&["enqueue", "--nats", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("published 0 invitees") && said.contains(&format!("({n} already published)")),
        "{said}"
    );
    let s = setup.wait_status(|s| s["nats"]["pending"] == 0, Duration::from_secs(120));
    assert_eq!(invitations_total(&s), n as u64, "{s}");

    // The mail: every invitee mailed. Only invitations in flight at the
    // kill (at most `invitations.concurrency`, 16 in these tests) may be
    // mailed twice: their mail went out, the daemon died before recording
    // it (as in crash.rs). Nobody is invited twice: the totals above.
    let arrivals = smtp.arrivals();
    let people: HashSet<String> = arrivals.iter().map(|(_, to)| to.clone()).collect();
    assert_eq!(people.len(), n, "every invitee mailed");
    let duplicates = arrivals.len() - n;
    println!(
        "mails: {} for {n} invitees ({duplicates} sent twice after one kill)",
        arrivals.len()
    );
    assert!(
        duplicates <= 16,
        "only invitations in flight at the kill may be mailed twice: {duplicates}"
    );
    drop(daemon);
    setup.keep_for_log_scan().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_invitee_messages_are_rejected_and_the_consumer_goes_on() {
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(nats_dir.path());
    let (setup, smtp, _public) = nats_setup(&nats, 1).await;
    from_nats(&setup);
    let _daemon = setup.daemon();
    setup.wait_status(|s| s["nats"]["connected"] == true, Duration::from_secs(120));
    let client = async_nats::connect(nats.urls()[0].as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    // The daemon sets the streams up; wait for them.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while js.get_stream("MYDEXTEST_REJECTS").await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no streams");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        ("h-notjson", b"this is not json".to_vec(), "JSON"),
        ("h-oversized", vec![b'x'; 300 * 1024], "over the limit"),
        ("h-noemail", br#"{"name":"No Email"}"#.to_vec(), "email"),
        (
            "h-campaign",
            br#"{"email":"who@example.com","campaign":"nope"}"#.to_vec(),
            "nope",
        ),
    ];
    for (id, body, _) in &hostile {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", *id);
        js.publish_with_headers("mydextest.invitees", headers, body.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Then a good one: taken after them.
    js.publish(
        "mydextest.invitees",
        br#"{"email":"good@example.com"}"#.to_vec().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let s = setup.wait_status(
        |s| s["invitations"]["sent"] == 1 && s["nats"]["pending"] == 0,
        Duration::from_secs(120),
    );
    assert_eq!(invitations_total(&s), 1, "only the good one: {s}");
    assert_eq!(smtp.arrivals().len(), 1);

    // In `rejects list`, with the message id as file and the reason.
    let out = setup.cli(&["rejects", "list", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for (id, _, why) in &hostile {
        assert!(
            rows.iter().any(|r| r["file"] == *id
                && r["line"] == 1
                && r["reason"].as_str().unwrap_or("").contains(why)),
            "{id}: {rows:?}"
        );
    }
    assert_eq!(rows.len(), hostile.len(), "{rows:?}");

    // And on `{prefix}.rejects`.
    let stream = js.get_stream("MYDEXTEST_REJECTS").await.unwrap();
    let mut published = Vec::new();
    for seq in 1..=hostile.len() as u64 {
        let m = stream.get_raw_message(seq).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        published.push(v);
    }
    for (id, _, why) in &hostile {
        assert!(
            published
                .iter()
                .any(|r| r["file"] == *id && r["reason"].as_str().unwrap_or("").contains(why)),
            "{id}: {published:?}"
        );
    }
    setup.keep_for_log_scan().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_through_nats_land_once_across_kill_9() {
    let members_n: u64 = 5;
    let readings_n: u64 = std::env::var("MYDEX_TEST_NATS_READINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(nats_dir.path());
    let (setup, _smtp, _public) = nats_setup(&nats, 1).await;
    // `[delivery]` last, from NATS, with no directory of its own.
    let mut text = std::fs::read_to_string(&setup.config).unwrap();
    text += "\n[delivery]\nsource = \"nats\"\nbatch_size = 10\nconcurrency = 4\n";
    std::fs::write(&setup.config, text).unwrap();
    let members = seed_members(&setup, members_n, 1).await;

    let file = setup.dir.path().join("readings.jsonl");
    let mut text = String::new();
    for m in &members {
        for j in 0..readings_n {
            text += &serde_json::json!({
                "connection_id": m["connection_id"],
                "external_id": format!("{}-r{j}", m["mydexid"].as_str().unwrap()),
                "kwh": format!("{j}.{}", j % 10),
                "read_at": format!("2026-01-01T00:{:02}:00Z", j % 60),
            })
            .to_string();
            text.push('\n');
        }
    }
    std::fs::write(&file, text).unwrap();
    let out = setup.cli(&["deliver", "--nats", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = members_n * readings_n;
    assert!(
        said.contains(&format!("published {total} readings")),
        "{said}"
    );

    // Killed once some are in, started again.
    let mut daemon = setup.daemon();
    setup.wait_status(
        |s| s["records"]["delivered"].as_u64().unwrap_or(0) > 0,
        Duration::from_secs(300),
    );
    assert_eq!(send_signal(daemon.0.id() as i32, "KILL"), 0);
    let _ = wait_exit(&mut daemon, Duration::from_secs(30));
    let _daemon = setup.daemon();
    let s = setup.wait_status(
        |s| {
            s["records"]["delivered"].as_u64() == Some(total)
                && s["records"]["queued"] == 0
                && s["nats"]["pending"] == 0
        },
        Duration::from_secs(600),
    );
    assert_eq!(s["records"]["delivered"], total, "{}", s["records"]);

    // Every reading exactly once in the sandbox's PDS.
    let http = reqwest::Client::new();
    for m in &members {
        let mydexid = m["mydexid"].as_str().unwrap();
        let pds: serde_json::Value = http
            .get(format!("{}/_sandbox/pds/{mydexid}", setup.sandbox.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = pds["datasets"]["ds_energy_readings"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ids: HashSet<&str> = rows
            .iter()
            .filter_map(|r| r["external_id"].as_str())
            .collect();
        assert_eq!(rows.len() as u64, readings_n, "{mydexid}: no reading twice");
        assert_eq!(ids.len() as u64, readings_n, "{mydexid}: every reading");
    }
    setup.keep_for_log_scan().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_refuses_nats_sources_without_a_nats_section() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    from_nats(&setup);
    let mut text = std::fs::read_to_string(&setup.config).unwrap();
    text += "\n[delivery]\nsource = \"nats\"\n";
    std::fs::write(&setup.config, text).unwrap();
    let out = setup.cli(&["check-config"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("queue.source"), "{said}");
    assert!(said.contains("delivery.source"), "{said}");
    assert!(said.contains("no [nats] section"), "{said}");
    // And the directory commands point at `--nats`.
    let file = setup.dir.path().join("one.csv");
    std::fs::write(&file, "email\na@example.com\n").unwrap();
    let out = setup.cli(&["enqueue", "--nats", file.to_str().unwrap()]);
    assert!(!out.status.success());
}
