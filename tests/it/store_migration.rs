//! The store's schema version through the real binary: the store written by
//! the last release without one (`tests/fixtures/store-v1/`, see
//! `store_fixture.rs`) is upgraded in place on the first start, holds what
//! that release reported, and the daemon then works on it; a store newer
//! than the binary is refused (exit 78) by every command that opens it and
//! left byte for byte as it was; a migration killed with SIGKILL midway
//! resumes on the next start (debug builds slow it down on request:
//! `MYDEX_CONNECTOR_MIGRATION_DRILL`, see `store/migrate.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mydex_test_support::*;
use serde_json::{Value, json};

use crate::store_fixture::{
    cli_json, cli_ok, connect, expected, fixture_dir, fixture_setup, members_fingerprinted,
    unpack_store,
};

/// Sandbox, config and the fixture's store and key in place; the sandbox
/// knows the fixture's members (uids and keys) as the first one did.
async fn on_fixture(smtp: &Smtp, dir: tempfile::TempDir) -> Setup {
    let setup = fixture_setup(smtp, dir).await;
    unpack_store(setup.dir.path());
    std::fs::copy(
        fixture_dir().join("store.key"),
        setup.dir.path().join("secrets/store.key"),
    )
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/_sandbox/members/seed", setup.sandbox.url()))
        .json(&json!({"members": expected()["sandbox_members"]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    setup
        .sandbox_settings(json!({"connection_version": 2}))
        .await;
    setup
}

fn version_file(setup: &Setup) -> Option<String> {
    std::fs::read_to_string(setup.dir.path().join("db/schema-version")).ok()
}

/// Every count the release reported from its store is the same now
/// (`records.queued` counts the readings waiting for the PDS, which refuses
/// meanwhile, whether queued, in flight or unknown; how they split moves
/// as they are retried).
fn assert_same_counts(old: &Value, new: &Value) {
    for key in [
        "invitations",
        "members",
        "members_by_version",
        "suppressed",
        "callbacks",
        "campaign_progress",
    ] {
        assert_eq!(old[key], new[key], "status {key}: was {old}, now {new}");
    }
    for key in ["queued", "delivered", "held", "failed"] {
        let (o, n) = (&old["records"][key], &new["records"][key]);
        assert_eq!(o, n, "records {key}: was {old}, now {new}");
    }
    for c in ["meters", "later"] {
        for key in ["paused", "pause_reason", "paused_by", "bounces"] {
            let (o, n) = (&old["campaigns"][c][key], &new["campaigns"][c][key]);
            assert_eq!(o, n, "campaign {c} {key}: was {old}, now {new}");
        }
    }
    for job in ["expiry", "version"] {
        let (o, n) = (&old["sweeps"][job]["last"], &new["sweeps"][job]["last"]);
        assert_eq!(o, n, "sweep {job}: was {old}, now {new}");
    }
}

/// The daemon's records as the release listed them.
fn assert_same_records(setup: &Setup, exp: &Value) {
    assert_same_counts(&exp["status"], &setup.status());
    assert_eq!(members_fingerprinted(setup), exp["members"]);
    assert_eq!(
        cli_json(setup, &["suppressions", "list", "--json"]),
        exp["suppressions"]
    );
    assert_eq!(
        cli_json(setup, &["callbacks", "list", "--json"]),
        exp["callbacks"]
    );
    assert_eq!(
        cli_json(setup, &["records", "list", "--state", "held", "--json"]),
        exp["held"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_releases_store_is_upgraded_and_the_daemon_works_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = on_fixture(&smtp, dir).await;
    let exp = expected();
    assert_eq!(version_file(&setup), None, "the fixture has no version");
    let (code, err) = run_cli(&setup, &["check-config"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "store: written by an earlier release (schema version 1); the next start upgrades it in place to version {}",
            mydex_connector::store::SCHEMA_VERSION
        )),
        "{err}"
    );
    // While the counts are compared nothing moves: the PDS refuses, as
    // when the fixture was written.
    setup
        .sandbox_settings(json!({"fault_rate": 1.0, "faults": ["503"]}))
        .await;
    let daemon = setup.daemon();
    assert_eq!(
        version_file(&setup),
        Some(format!("{}\n", mydex_connector::store::SCHEMA_VERSION))
    );
    assert!(
        setup.log().contains("store migration: finished"),
        "{}",
        setup.log()
    );
    assert_same_records(&setup, &exp);
    // Read without opening the store (the daemon holds its lock).
    let (code, err) = run_cli(&setup, &["check-config"]);
    assert_eq!(code, 0, "{err}");
    let stamped = format!(
        "store: schema version {}\n",
        mydex_connector::store::SCHEMA_VERSION
    );
    assert!(err.contains(&stamped), "{err}");

    // The readings queued before the upgrade reach the member's PDS.
    setup.sandbox_settings(json!({"fault_rate": 0.0})).await;
    let want = exp["status"]["records"]["delivered"].as_u64().unwrap() + 2;
    let s = setup.wait_status(
        |s| s["records"]["delivered"] == want,
        Duration::from_secs(300),
    );
    assert_eq!(s["records"]["delivered"], want, "{s}\n{}", setup.log());
    let q = &exp["queued_readings"];
    let pds: Value = reqwest::get(format!(
        "{}/_sandbox/pds/{}",
        setup.sandbox.url(),
        q["mydexid"].as_str().unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let rows = pds["datasets"]["ds_energy_readings"].as_array().unwrap();
    for id in q["external_ids"].as_array().unwrap() {
        let n = rows.iter().filter(|r| r["external_id"] == *id).count();
        assert_eq!(n, 1, "{id} once in {pds}");
    }

    // The paused campaign resumed: its queued invitations are mailed, and
    // a callback connects a new member.
    cli_ok(&setup, &["campaign", "resume", "later"]);
    assert_eq!(smtp.wait_for(2, Duration::from_secs(120)).len(), 2);
    connect(&setup, &smtp, "jon@example.com", "jonafterupgrade").await;
    let connected = exp["status"]["invitations"]["connected"].as_u64().unwrap() + 1;
    let s = setup.wait_status(
        |s| s["invitations"]["connected"] == connected,
        Duration::from_secs(60),
    );
    assert_eq!(s["invitations"]["connected"], connected, "{s}");
    assert_eq!(
        s["members"]["total"],
        exp["status"]["members"]["total"].as_u64().unwrap() + 1
    );
    setup.keep_for_log_scan().await;
    setup.stop(daemon);
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let name = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The fixture stamped as a later release would: `meta` and the file.
fn stamp_future(db: &Path, version: u32) {
    let d = sled::open(db).unwrap();
    let meta = d.open_tree("meta").unwrap();
    meta.insert("schema_version", &version.to_be_bytes())
        .unwrap();
    d.flush().unwrap();
    drop(d);
    std::fs::write(db.join("schema-version"), format!("{version}\n")).unwrap();
}

fn run_cli(setup: &Setup, args: &[&str]) -> (i32, String) {
    let out = setup.cli(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_newer_than_the_binary_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = on_fixture(&smtp, dir).await;
    let db = setup.dir.path().join("db");
    let future = mydex_connector::store::SCHEMA_VERSION + 1;
    stamp_future(&db, future);
    let before = snapshot(&db);
    let new_key = setup.dir.path().join("new.key");
    std::fs::write(&new_key, [7u8; 32]).unwrap();
    let says = format!("has schema version {future}, newer than this release reads");
    for args in [
        vec!["run"],
        vec!["check-config"],
        vec!["rotate-key", "--new-key-file", new_key.to_str().unwrap()],
    ] {
        let (code, err) = run_cli(&setup, &args);
        assert_eq!(code, 78, "{args:?}: {err}");
        assert!(err.contains(&says), "{args:?}: {err}");
        assert!(err.contains("nothing was changed"), "{args:?}: {err}");
        assert!(snapshot(&db) == before, "{args:?} changed the store");
    }
    // Without the file, `meta` alone refuses it too.
    std::fs::remove_file(db.join("schema-version")).unwrap();
    let (code, err) = run_cli(&setup, &["run"]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains(&says), "{err}");
    let d = sled::open(&db).unwrap();
    let v = d.open_tree("meta").unwrap().get("schema_version").unwrap();
    assert_eq!(v.as_deref(), Some(&future.to_be_bytes()[..]));
}

/// The daemon started by hand (not waiting for its admin API, which opens
/// only once the store is open), its log appended to `daemon.log`.
fn spawn_daemon(setup: &Setup, drill_ms: u64, notify: &Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(setup.dir.path().join("daemon.log"))
        .unwrap();
    Command::new(bin())
        .args(["run", "--config"])
        .arg(&setup.config)
        .env(
            "RUST_LOG",
            std::env::var("MYDEX_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("MYDEX_CONNECTOR_MIGRATION_DRILL", drill_ms.to_string())
        .env("NOTIFY_SOCKET", notify)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_midway_resumes_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = on_fixture(&smtp, dir).await;
    let exp = expected();
    setup
        .sandbox_settings(json!({"fault_rate": 1.0, "faults": ["503"]}))
        .await;
    // The drill pauses 600 ms every four records: the first progress line
    // (after 5 s) comes while it is in the middle of `idx` (68 records).
    // As systemd: the daemon asks for more start time while the upgrade
    // makes progress.
    let notify_path = setup.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let mut notified = String::new();
    let mut first = spawn_daemon(&setup, 600, &notify_path);
    let start = Instant::now();
    while !setup.log().contains("store migration: progress")
        || !notified.contains("EXTEND_TIMEOUT_USEC=60000000")
    {
        let mut buf = [0u8; 4096];
        while let Ok(n) = notify.recv(&mut buf) {
            notified += &String::from_utf8_lossy(&buf[..n]);
            notified.push('\n');
        }
        assert!(
            !setup.log().contains("store migration: finished"),
            "{notified}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "no progress: {}",
            setup.log()
        );
        assert!(first.try_wait().unwrap().is_none(), "{}", setup.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(send_signal(first.id() as i32, "KILL"), 0);
    first.wait().unwrap();
    assert!(!setup.log().contains("store migration: finished"));
    assert!(
        notified.contains("STATUS=upgrading the store"),
        "{notified}"
    );
    assert!(!notified.contains("READY=1"), "{notified}");
    assert_eq!(version_file(&setup), None);

    let daemon = setup.daemon_with(|c| {
        c.env("MYDEX_CONNECTOR_MIGRATION_DRILL", "0");
    });
    let log = strip_ansi(&setup.log());
    let resumed = log
        .lines()
        .find(|l| l.contains("store migration: resuming"))
        .unwrap_or_else(|| panic!("{log}"));
    let done: u64 = resumed
        .split("done=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{resumed}"));
    assert!(
        done > 0,
        "resumed after the records done before the kill: {resumed}"
    );
    assert!(log.contains("store migration: finished"), "{log}");
    assert_eq!(
        version_file(&setup),
        Some(format!("{}\n", mydex_connector::store::SCHEMA_VERSION))
    );
    assert_same_records(&setup, &exp);
    setup.keep_for_log_scan().await;
    setup.stop(daemon);
}

/// The log without its colours.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
