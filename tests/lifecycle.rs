//! The connection lifecycle through the real binary, against the sandbox and
//! a real SMTP server: version sweeps and update invitations, revoked
//! members, a sweep killed halfway, expiry and reminders.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use support::*;

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
    let out = setup.cli(&["sweep", job]);
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
