//! Readings delivery, what becomes of a row besides landing
//! once, through the real binary, the sandbox, a real SMTP server and a
//! real sled: a row held for an invitee who never connects becomes `failed`
//! after `hold_for` (seconds are accepted) and is reported by `records list
//! --state failed`, `status --json` and `/metrics`; the same readings file
//! delivered twice lands each `external_id` once at the sandbox, the second
//! file's rows reported as duplicates in `rejected/`, none lost silently.

use std::path::Path;
use std::time::{Duration, Instant};

use mydex_test_support::*;

/// A setup whose `[delivery]` has `hold_for`.
async fn start(hold_for: &str) -> (Setup, Smtp) {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let opts = Options {
        extra_config: format!(
            "\n[delivery]\ndir = \"readings\"\nbatch_size = 4\nhold_for = \"{hold_for}\"\n"
        ),
        ..Default::default()
    };
    let setup = setup(smtp.port, dir, opts).await;
    (setup, smtp)
}

/// The sandbox's rows of `mydexid` in `ds`.
async fn pds_rows(setup: &Setup, mydexid: &str, ds: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        reqwest::get(format!("{}/_sandbox/pds/{mydexid}", setup.sandbox.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    v["datasets"][ds].as_array().cloned().unwrap_or_default()
}

/// `deliver FILE` succeeds; its stderr.
fn deliver(setup: &Setup, file: &Path) -> String {
    let out = setup.cli(&["deliver", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

/// Wait until the daemon has taken every placed readings file in.
fn wait_taken_in(setup: &Setup) {
    let dir = setup.dir.path().join("readings");
    let start = Instant::now();
    while std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "file not taken in"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every report in `readings/rejected/`, joined.
fn rejected_reports(setup: &Setup) -> String {
    std::fs::read_dir(setup.dir.path().join("readings/rejected"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_for_an_invitee_who_never_connects_fails_after_hold_for() {
    let (setup, smtp) = start("2s").await;
    let checked = setup.cli(&["check-config"]);
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("hold_for = \"2s\""),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
    let _daemon = setup.daemon();
    let people = setup.dir.path().join("people.csv");
    std::fs::write(&people, "email,external_ref\nnever@example.com,M-NEVER\n").unwrap();
    assert!(
        setup
            .cli(&["enqueue", people.to_str().unwrap()])
            .status
            .success()
    );
    // Invited (mailed), never connects.
    assert_eq!(smtp.wait_for(1, Duration::from_secs(120)).len(), 1);
    let file = setup.dir.path().join("r.csv");
    std::fs::write(
        &file,
        "external_ref,external_id,kwh\nM-NEVER,n1,1.5\nM-NEVER,n2,2.5\nM-NEVER,n3,3.5\n",
    )
    .unwrap();
    deliver(&setup, &file);
    let s = setup.wait_status(|s| s["records"]["failed"] == 3, Duration::from_secs(60));
    assert_eq!(s["records"]["failed"], 3, "{}", s["records"]);
    assert_eq!(s["records"]["held"], 0, "{}", s["records"]);
    assert_eq!(s["records"]["queued"], 0, "{}", s["records"]);
    assert_eq!(s["records"]["delivered"], 0, "{}", s["records"]);

    let out = setup.cli(&["records", "list", "--state", "failed", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), 3, "{failed:?}");
    let mut ids: Vec<&str> = failed
        .iter()
        .map(|r| r["external_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["n1", "n2", "n3"]);
    for r in failed {
        assert_eq!(r["state"], "failed", "{r}");
        assert_eq!(r["member"]["external_ref"], "M-NEVER", "{r}");
        assert_eq!(
            r["reason"], "held for longer than hold_for: not connected yet",
            "{r}"
        );
        assert!(r["source"].as_str().unwrap().contains(':'), "{r}");
    }
    let held = setup.cli(&["records", "list", "--state", "held", "--json"]);
    let held: serde_json::Value = serde_json::from_slice(&held.stdout).unwrap();
    assert_eq!(held.as_array().unwrap().len(), 0, "{held}");
    let table = setup.cli(&["records", "list", "--state", "failed"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("not connected yet"), "{table}");

    let metrics = setup.metrics().await;
    for line in [
        "mydex_connector_records{state=\"failed\"} 3",
        "mydex_connector_records{state=\"held\"} 0",
        "mydex_connector_records{state=\"delivered\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    // Nothing reached the sandbox.
    assert_eq!(setup.sandbox_state().await["counts"]["pds_rows"], 0);
    setup.keep_for_log_scan().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_file_twice_lands_each_reading_once_and_reports_the_duplicates() {
    let (setup, _smtp) = start("1h").await;
    let members = seed_members(&setup, 2, 1).await;
    let _daemon = setup.daemon();
    let mut text = String::new();
    for m in &members {
        for j in 0..9 {
            text += &format!(
                "{}\n",
                serde_json::json!({"mydexid": m["mydexid"], "external_id": format!("d{j}"), "kwh": j})
            );
        }
    }
    let file = setup.dir.path().join("twice.jsonl");
    std::fs::write(&file, &text).unwrap();
    deliver(&setup, &file);
    let s = setup.wait_status(
        |s| s["records"]["delivered"] == 18,
        Duration::from_secs(120),
    );
    assert_eq!(s["records"]["delivered"], 18, "{}", s["records"]);
    wait_taken_in(&setup);
    assert_eq!(
        rejected_reports(&setup),
        "",
        "the first file has no rejects"
    );
    let posts = setup.sandbox_state().await["counts"]["pds_create"].clone();

    // The same file again, once the first is delivered.
    let err = deliver(&setup, &file);
    assert!(err.contains("18 readings placed, 0 rejected"), "{err}");
    wait_taken_in(&setup);
    let report = rejected_reports(&setup);
    let dups: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("duplicate of reading"))
        .collect();
    assert_eq!(dups.len(), 18, "every row of the second file: {report}");
    for line in 1..=18 {
        assert!(
            dups.iter()
                .any(|l| l.contains(&format!(":{line}: duplicate of reading "))),
            "line {line}: {report}"
        );
    }
    assert!(report.contains("not sent twice"), "{report}");
    // Each external_id once at the sandbox; nothing more was POSTed.
    for m in &members {
        let rows = pds_rows(&setup, m["mydexid"].as_str().unwrap(), "ds_energy_readings").await;
        let mut ids: Vec<&str> = rows
            .iter()
            .map(|r| r["external_id"].as_str().unwrap())
            .collect();
        ids.sort();
        let want: Vec<String> = (0..9).map(|j| format!("d{j}")).collect();
        assert_eq!(ids, want, "{}", m["mydexid"]);
    }
    let st = setup.sandbox_state().await;
    assert_eq!(st["counts"]["pds_rows"], 18, "{}", st["counts"]);
    assert_eq!(st["counts"]["pds_create"], posts, "{}", st["counts"]);
    let s = setup.status();
    assert_eq!(s["records"]["delivered"], 18, "{}", s["records"]);
    assert_eq!(s["records"]["queued"], 0, "{}", s["records"]);
    assert_eq!(s["records"]["held"], 0, "{}", s["records"]);
    assert_eq!(s["records"]["failed"], 0, "{}", s["records"]);
    // The text log may carry colour codes: read it without them.
    let log = setup
        .log()
        .split('\u{1b}')
        .enumerate()
        .map(|(i, part)| match (i, part.find('m')) {
            (0, _) | (_, None) => part,
            (_, Some(end)) => &part[end + 1..],
        })
        .collect::<String>();
    assert!(
        log.lines().any(|l| l.contains("readings file ingested")
            && (l.contains("duplicates=18") || l.contains("\"duplicates\":18"))),
        "the daemon logs the second file's duplicates: {:?}",
        log.lines()
            .filter(|l| l.contains("readings file ingested"))
            .collect::<Vec<_>>()
    );
    setup.keep_for_log_scan().await;
}
