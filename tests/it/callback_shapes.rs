//! Every callback shape Mydex publishes, end to end: the real binary, the
//! sandbox sending each callback in the next published shape (`rotate`:
//! JSON, `uid` as a string, PHP-bracket forms with and without a type, JSON
//! labelled as a form, as text or not at all, no `uid`, a `uid` that is not the
//! `connection_id`'s prefix) and the real SMTP server. Every member connects,
//! updates to a new version, and the keys exported are the ones issued.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use mydex_test_support::*;
use serde_json::Value;

const SHAPES: [&str; 9] = [
    "json",
    "json-string-uid",
    "form",
    "form-untyped",
    "json-as-form",
    "json-as-text",
    "json-untyped",
    "no-uid",
    "uid-mismatch",
];

fn run_ok(setup: &Setup, args: &[&str]) -> String {
    let out = setup.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// How many callbacks of `kind` the sandbox sent in each shape.
fn shapes_sent(state: &Value, kind: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in state["callbacks"].as_array().unwrap() {
        if c["type"] == kind {
            assert!(
                c["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s)),
                "every callback answered 2xx: {c}"
            );
            *out.entry(c["shape"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    out
}

/// The exported members against the sandbox's: same keys per connection,
/// the uid the connection_id names, and the uid sent kept where it differs.
async fn exported_match_the_sandbox(setup: &Setup, version: u64) {
    let exported: Value = serde_json::from_str(&run_ok(
        setup,
        &["members", "export", "--format", "json", "--with-keys"],
    ))
    .unwrap();
    let exported = exported.as_array().unwrap();
    let state = setup.sandbox_state().await;
    let issued: HashMap<String, String> = state["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["connection_id"].as_str().unwrap().to_string(),
                m["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(exported.len(), issued.len());
    let mut mismatched = 0;
    for m in exported {
        let conn = m["connection_id"].as_str().unwrap();
        assert_eq!(
            m["key"].as_str(),
            Some(issued[conn].as_str()),
            "the key Mydex issued for {conn}"
        );
        assert_eq!(m["status"], "active", "{m}");
        assert_eq!(m["version"], version, "{m}");
        let prefix = conn.split('-').next().unwrap();
        assert_eq!(m["uid"].to_string(), prefix, "uid from connection_id: {m}");
        if let Some(sent) = m.get("uid_sent") {
            assert_eq!(sent, "1", "{m}");
            assert!(m["note"].as_str().unwrap().contains(conn), "{m}");
            mismatched += 1;
        }
    }
    // Two uid-mismatch callbacks in each round of 18 (two turns of 9 shapes).
    assert_eq!(mismatched, 2, "{exported:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_callback_shape_connects_and_updates() {
    const N: usize = 18;
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    setup.edit_config(
        "token_file = \"secrets/admin_token\"",
        "token_file = \"secrets/admin_token\"\nallow_key_export = true",
    );
    setup
        .sandbox_settings(serde_json::json!({"callback_shape": "rotate"}))
        .await;
    let daemon = setup.daemon();

    // N first-time connections, each callback in the next shape.
    let mut csv = String::from("email,name,external_ref\n");
    for i in 0..N {
        csv += &format!("shape{i}@example.com,Shape {i},SHP-{i:03}\n");
    }
    let file = setup.dir.path().join("shapes.csv");
    std::fs::write(&file, csv).unwrap();
    run_ok(&setup, &["enqueue", file.to_str().unwrap()]);
    let paths = smtp.wait_for(N, Duration::from_secs(120));
    assert_eq!(paths.len(), N, "{}", setup.log());
    let mut mydexid_of = HashMap::new();
    for (i, p) in paths.iter().enumerate() {
        let m = read_mail(p);
        let id = format!("shape{i}x");
        let (status, body) = setup.journey(&m.qr_link, &id, &m.to).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["callback_status"], 200, "{body}\n{}", setup.log());
        mydexid_of.insert(m.to.clone(), id);
    }
    let s = setup.wait_status(
        |s| s["invitations"]["connected"] == N,
        Duration::from_secs(60),
    );
    assert_eq!(s["invitations"]["connected"], N, "{s}");
    assert_eq!(s["members"]["total"], N, "{s}");
    assert_eq!(s["callbacks"]["unmatched"], 0, "{s}");
    let sent = shapes_sent(&setup.sandbox_state().await, "ftc");
    for shape in SHAPES {
        assert!(
            sent.get(shape).copied().unwrap_or(0) >= 2,
            "{shape}: {sent:?}"
        );
    }
    assert!(
        setup
            .log()
            .contains("callback uid differs from its connection_id"),
        "the mismatch is said"
    );
    exported_match_the_sandbox(&setup, 1).await;

    // Version 2: the sweep invites every member to update; the PUTs come in
    // every shape too.
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
    let paths = smtp.wait_for(2 * N, Duration::from_secs(120));
    assert_eq!(paths.len(), 2 * N, "{}", setup.log());
    for p in &paths[N..] {
        let m = read_mail(p);
        let (status, body) = setup.journey(&m.qr_link, &mydexid_of[&m.to], &m.to).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["callback_status"], 200, "{body}\n{}", setup.log());
    }
    let s = setup.wait_status(
        |s| s["members"]["outdated"] == 0 && s["invitations"]["connected"] == 2 * N,
        Duration::from_secs(60),
    );
    assert_eq!(s["members"]["outdated"], 0, "{s}");
    assert_eq!(s["members"]["total"], N, "{s}");
    assert_eq!(s["members"]["disconnected"], 0, "{s}");
    assert_eq!(s["callbacks"]["unmatched"], 0, "{s}");
    let sent = shapes_sent(&setup.sandbox_state().await, "update");
    for shape in SHAPES {
        assert!(
            sent.get(shape).copied().unwrap_or(0) >= 2,
            "{shape}: {sent:?}"
        );
    }
    exported_match_the_sandbox(&setup, 2).await;
    setup.keep_for_log_scan().await;
}
