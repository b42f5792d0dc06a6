//! The operator's commands through the real binary, all via the admin API:
//! `invitations list/show/retry` (with the reason for failures) and
//! `members export` (keys only when the config allows it).

use std::time::Duration;

use mydex_test_support::*;

fn run_ok(setup: &Setup, args: &[&str]) -> String {
    let out = setup.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_show_retry_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let refusing = smtp(dir.path(), &["--reject-5xx", "bad"]);
    let port = refusing.port;
    let setup = setup(port, dir, Options::default()).await;
    let mut daemon = setup.daemon();
    let file = setup.dir.path().join("people.csv");
    std::fs::write(
        &file,
        "email,name,external_ref\nok0@example.com,Ok 0,MTR-0\nok1@example.com,Ok 1,MTR-1\nbad2@example.com,Bad 2,MTR-2\n",
    )
    .unwrap();
    run_ok(&setup, &["enqueue", file.to_str().unwrap()]);
    let paths = refusing.wait_for(2, Duration::from_secs(120));
    assert_eq!(paths.len(), 2, "{}", setup.log());
    let mails: Vec<Mail> = paths.iter().map(|p| read_mail(p)).collect();
    let http = reqwest::Client::new();
    for (i, m) in mails.iter().enumerate() {
        let r = http
            .post(format!("{}/_sandbox/journeys", setup.sandbox.url()))
            .json(&serde_json::json!({"url": m.qr_link, "mydexid": format!("oper{i}x"), "email": m.to}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let s = setup.wait_status(
        |s| s["invitations"]["connected"] == 2 && s["invitations"]["failed"] == 1,
        Duration::from_secs(120),
    );
    assert_eq!(s["invitations"]["failed"], 1, "{s}");

    // The status table shows the campaign's progress and members by version.
    let table = run_ok(&setup, &["status"]);
    println!("{table}");
    assert!(table.contains("meters") && table.contains("66%"), "{table}");
    assert!(table.contains("version 1"), "{table}");

    // list by state, with the reason; by external ref; show with history.
    let failed = run_ok(&setup, &["invitations", "list", "--state", "failed"]);
    println!("{failed}");
    assert!(failed.contains("bad2@example.com"), "{failed}");
    assert!(
        failed.contains("550"),
        "the SMTP reply is the reason: {failed}"
    );
    assert!(!failed.contains("ok0@example.com"));
    let by_ref: serde_json::Value = serde_json::from_str(&run_ok(
        &setup,
        &["invitations", "list", "--external-ref", "MTR-1", "--json"],
    ))
    .unwrap();
    assert_eq!(by_ref.as_array().unwrap().len(), 1);
    assert_eq!(by_ref[0]["email"], "ok1@example.com");
    assert_eq!(by_ref[0]["state"], "connected");
    let id = serde_json::from_str::<serde_json::Value>(&run_ok(
        &setup,
        &["invitations", "list", "--state", "failed", "--json"],
    ))
    .unwrap()[0]["id"]
        .as_u64()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_str(&run_ok(
        &setup,
        &["invitations", "show", &id.to_string(), "--json"],
    ))
    .unwrap();
    assert_eq!(shown["state"], "failed");
    assert!(shown["history"].as_array().unwrap().len() >= 2, "{shown}");
    assert!(
        shown.get("linking_token").is_none(),
        "no linking token shown"
    );
    let bad = setup.cli(&["invitations", "list", "--state", "nonsense"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not one of"));

    // The routes need the bearer token.
    let r = reqwest::get(setup.admin_url("/invitations")).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = reqwest::get(setup.admin_url("/members")).await.unwrap();
    assert_eq!(r.status(), 401);

    // Retry once the mail server accepts the address again.
    drop(refusing);
    let accepting = smtp_at(&setup.dir.path().join("second"), Some(port), &[]);
    let out = run_ok(&setup, &["invitations", "retry", "--all-failed"]);
    assert!(out.contains("1 failed invitation queued again"), "{out}");
    let m = accepting.wait_for(1, Duration::from_secs(120));
    assert_eq!(m.len(), 1, "{}", setup.log());
    assert_eq!(read_mail(&m[0]).to, "bad2@example.com");
    let s = setup.wait_status(|s| s["invitations"]["sent"] == 1, Duration::from_secs(120));
    assert_eq!(s["invitations"]["failed"], 0, "{s}");
    let again = setup.cli(&["invitations", "retry", &id.to_string()]);
    assert_eq!(again.status.code(), Some(1), "only failed ones are retried");

    // Export: CSV without keys; keys refused unless allowed.
    let csv = run_ok(&setup, &["members", "export"]);
    println!("{csv}");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "external_ref,mydexid,uid,connection_id,version,status,campaign,email"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .any(|r| r.starts_with("MTR-0,") || r.starts_with("MTR-1,"))
    );
    let refused = setup.cli(&["members", "export", "--with-keys"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("allow_key_export"));

    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    let config = std::fs::read_to_string(&setup.config).unwrap().replace(
        "token_file = \"secrets/admin_token\"",
        "token_file = \"secrets/admin_token\"\nallow_key_export = true",
    );
    std::fs::write(&setup.config, config).unwrap();
    let _daemon = setup.daemon();
    let exported: serde_json::Value = serde_json::from_str(&run_ok(
        &setup,
        &["members", "export", "--format", "json", "--with-keys"],
    ))
    .unwrap();
    let state: serde_json::Value = reqwest::get(format!("{}/_sandbox/state", setup.sandbox.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut sandbox_keys: Vec<String> = state["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap().to_string())
        .collect();
    let mut keys: Vec<String> = exported
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap().to_string())
        .collect();
    sandbox_keys.sort();
    keys.sort();
    assert_eq!(keys, sandbox_keys, "the keys Mydex handed over, decrypted");
    setup.keep_for_log_scan().await;
}
