//! Rows rejected after `enqueue` or `deliver` said "queued" are kept by the
//! daemon and listed with the operator's own file and line: a duplicate
//! invitee and a reading for an unknown meter, through the real binary, a
//! real daemon, sandbox and SMTP server; `enqueue --wait` and `deliver
//! --wait` print the daemon's verdict; `status` and `/metrics` count the
//! rejects; a `--wait` without a daemon says so and exits 75, and the rows
//! it placed are still listed once the daemon has run.

use std::time::Duration;

use mydex_test_support::*;

async fn start() -> (Setup, Smtp) {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let opts = Options {
        extra_config: "\n[delivery]\ndir = \"readings\"\n".into(),
        ..Default::default()
    };
    let setup = setup(smtp.port, dir, opts).await;
    (setup, smtp)
}

/// `rejects list --json` (and any extra arguments), parsed.
fn rejects(setup: &Setup, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["rejects", "list", "--json"];
    args.extend_from_slice(extra);
    let out = setup.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .expect("rejects list --json prints a JSON array")
}

/// The (file, line) of each reject, and whether its reason holds `word`.
fn has(rows: &[serde_json::Value], file: &str, line: u64, word: &str) -> bool {
    rows.iter().any(|r| {
        r["file"] == file && r["line"] == line && r["reason"].as_str().unwrap().contains(word)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_and_an_unknown_meter_are_listed_with_the_operators_lines() {
    let (setup, smtp) = start().await;
    let _daemon = setup.daemon();
    let people = setup.dir.path().join("people.csv");
    std::fs::write(
        &people,
        "email,name,external_ref\n\
         ann@example.com,Ann,M1\n\
         not-an-email,Bad,M2\n\
         \n\
         bob@example.com,Bob,M3\n\
         ann@example.com,Ann again,M1\n",
    )
    .unwrap();
    let shown = people.to_str().unwrap();
    let out = setup.cli(&["enqueue", shown, "--wait", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    // A rejected row (the CLI's own) and a duplicate (the daemon's): exit 1.
    assert_eq!(out.status.code(), Some(1), "{err}\n{}", setup.log());
    let verdicts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = &verdicts[0];
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["verdict"]["file"], shown, "{v}");
    assert_eq!(v["verdict"]["stored"], 2, "{v}");
    assert_eq!(v["verdict"]["duplicates"], 1, "{v}");
    assert_eq!(v["verdict"]["rejected"], 1, "{v}");
    let listed = v["rejects"].as_array().unwrap();
    assert!(has(listed, shown, 3, "not a valid address"), "{v}");
    assert!(has(listed, shown, 6, "duplicate"), "{v}");
    assert_eq!(smtp.wait_for(2, Duration::from_secs(60)).len(), 2);

    // Readings: one for an invitee (held until they connect), one for a
    // meter nobody has, on the operator's line 3.
    let readings = setup.dir.path().join("meters.csv");
    std::fs::write(
        &readings,
        "external_ref,external_id,kwh\nM1,r1,1.5\nM-NOBODY,r2,2.5\n",
    )
    .unwrap();
    let meters = readings.to_str().unwrap();
    let out = setup.cli(&["deliver", meters, "--wait"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "{meters}: 1 row stored, 1 held for their member, 0 duplicates, 1 rejected"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{meters}:3: unknown member")),
        "{text}"
    );

    // Listed later, counted in status and /metrics.
    let all = rejects(&setup, &[]);
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(has(&all, shown, 3, "not a valid address"), "{all:?}");
    assert!(has(&all, shown, 6, "duplicate"), "{all:?}");
    assert!(has(&all, meters, 3, "unknown member"), "{all:?}");
    for r in &all {
        let at = r["at"].as_str().unwrap();
        assert!(at.ends_with('Z') && at.contains('T'), "{r}");
    }
    assert_eq!(rejects(&setup, &["--since", "1h"]).len(), 3);
    assert!(rejects(&setup, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    // A row refused over the admin API is kept too, named by the request.
    let r = reqwest::Client::new()
        .post(setup.admin_url("/invitees"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/x-ndjson")
        .body("{\"email\":\"eve@example.com\"}\n{\"email\":\"broken\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let all = rejects(&setup, &[]);
    assert!(
        has(&all, "POST /invitees", 2, "not a valid address"),
        "{all:?}"
    );
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(setup.status()["rejected"], 4);
    let metrics = setup.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mydex_connector_rejected_rows") && l.ends_with(" 4")),
        "{metrics}"
    );
    let human = setup.cli(&["rejects", "list"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains(&format!("{meters}:3  unknown member")),
        "{human}"
    );
    assert!(human.contains("4 rejected rows"), "{human}");
    assert!(!human.contains("{\""), "{human}");

    // A forgotten person leaves no reject naming them.
    let out = setup.cli(&["people", "forget", "--email", "ann@example.com"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = rejects(&setup, &[]);
    assert!(!has(&all, shown, 6, "duplicate"), "{all:?}");
    assert!(
        all.iter()
            .all(|r| !r["reason"].as_str().unwrap().contains("ann@example.com")),
        "{all:?}"
    );
    assert_eq!(all.len(), 3, "{all:?}");
    setup.keep_for_log_scan().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_without_a_daemon_says_so_and_nothing_is_lost() {
    let (setup, smtp) = start().await;
    let people = setup.dir.path().join("later.jsonl");
    std::fs::write(
        &people,
        "{\"email\":\"cat@example.com\"}\n{\"email\":\"nope\"}\n",
    )
    .unwrap();
    let shown = people.to_str().unwrap();
    let out = setup.cli(&["enqueue", shown, "--wait", "--wait-timeout", "5s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains("no verdict") && err.contains("does not answer"),
        "{err}"
    );

    // A file copied in by another tool: its own name and lines.
    let copied = setup.dir.path().join("queue/copied.csv");
    std::fs::write(&copied, "email\ndan@example.com\nbroken\n").unwrap();

    let _daemon = setup.daemon();
    assert_eq!(smtp.wait_for(2, Duration::from_secs(60)).len(), 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let all = loop {
        let all = rejects(&setup, &[]);
        if all.len() >= 2 || std::time::Instant::now() > deadline {
            break all;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(all.len(), 2, "{all:?}\n{}", setup.log());
    assert!(has(&all, shown, 2, "not a valid address"), "{all:?}");
    assert!(has(&all, "copied.csv", 3, "not a valid address"), "{all:?}");
    setup.keep_for_log_scan().await;
}
