//! Invitee rows through NATS (`[queue] source = "nats"`), with the real
//! binaries, a real `nats-server`, the sandbox and the SMTP sink.
//!
//! - `invitees_published_while_down_are_invited_once`: a file of invitees
//!   published with `enqueue --nats` while the daemon is down; the daemon
//!   starts and `kill -9` is sent to it once it has taken some in; started
//!   again, every invitee is invited exactly once (status counts, the SMTP
//!   sink's recipients); the same file published again adds nothing. Size:
//!   `MYDEX_TEST_NATS_INVITEES` (default 2000; the issue's figure is
//!   10000).
//! - `hostile_invitee_messages_are_rejected_and_the_consumer_goes_on`: not
//!   JSON, oversized, no email, an unknown campaign, put straight on
//!   `{prefix}.invitees`: each in `rejects list` and on `{prefix}.rejects`
//!   with its reason, then a good row is invited and nothing else changes.

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
        said.contains(&format!("published 0 invitees"))
            && said.contains(&format!("({n} already published)")),
        "{said}"
    );
    let s = setup.wait_status(|s| s["nats"]["pending"] == 0, Duration::from_secs(120));
    assert_eq!(invitations_total(&s), n as u64, "{s}");

    // The mail: one message per invitee, no one twice.
    let arrivals = smtp.arrivals();
    let people: HashSet<String> = arrivals.iter().map(|(_, to)| to.clone()).collect();
    assert_eq!(arrivals.len(), n, "one mail each");
    assert_eq!(people.len(), n, "no one mailed twice");
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
