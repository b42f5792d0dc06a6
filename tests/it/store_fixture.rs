//! The store written by the last release without a schema version, kept as
//! a fixture (`tests/fixtures/store-v1/`) so `store_migration.rs` can upgrade
//! a real one. `make_store_v1` (ignored; run by
//! `tests/fixtures/make-store-v1.sh` with that release's binary) drives the
//! release against the sandbox and the SMTP server until its store holds
//! every kind of record, then records what the release itself reports
//! about it (`status`, `members export --with-keys`, …) in `expected.json`.
//! The setup both sides share is here too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mydex_test_support::*;
use serde_json::{Value, json};
use sha2::Digest;

use crate::bounces::{post_bounce, sent};

/// The fixture's directory.
pub(crate) fn fixture_dir() -> PathBuf {
    repo_root().join("tests/fixtures/store-v1")
}

/// The options the fixture was written with (the migration test uses the
/// same, so nothing moves by configuration alone).
pub(crate) fn options() -> Options {
    Options {
        invitations: "concurrency = 4\nlink_ttl = \"3s\"\nreminder_after = \"30d\"\n".into(),
        extra_config: "\n[[campaign]]\nname = \"later\"\nsubject = \"Connect later\"\nrate = \"unlimited\"\n\n[delivery]\ndir = \"readings\"\nbatch_size = 10\nhold_for = \"30d\"\n".into(),
        ..Options::default()
    }
}

/// Sandbox and config as the fixture expects (not yet the daemon).
pub(crate) async fn fixture_setup(smtp: &Smtp, dir: tempfile::TempDir) -> Setup {
    let setup = setup(smtp.port, dir, options()).await;
    setup.edit_config(
        "from = \"Example Energy <connect@example.com>\"\n",
        "from = \"Example Energy <connect@example.com>\"\nreturn_path = \"bounces+{token}@example.com\"\nunsubscribe_mailto = \"unsubscribe@example.com\"\n",
    );
    setup.edit_config(
        "token_file = \"secrets/admin_token\"",
        "token_file = \"secrets/admin_token\"\nallow_key_export = true",
    );
    setup.edit_config(
        "max_attempts = 12",
        "max_attempts = 12\nconnection_version = 2",
    );
    setup
}

/// A member key as the fixture records it: its SHA-256, in hex.
pub(crate) fn key_fingerprint(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

pub(crate) fn cli_ok(setup: &Setup, args: &[&str]) -> String {
    let out = setup.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        setup.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn cli_json(setup: &Setup, args: &[&str]) -> Value {
    serde_json::from_str(&cli_ok(setup, args)).unwrap()
}

/// `members export --with-keys`, each key replaced by its fingerprint.
pub(crate) fn members_fingerprinted(setup: &Setup) -> Value {
    let mut doc = cli_json(
        setup,
        &["members", "export", "--format", "json", "--with-keys"],
    );
    for m in doc.as_array_mut().unwrap() {
        let key = m["key"].as_str().map(key_fingerprint);
        m.as_object_mut().unwrap().remove("key");
        m["key_sha256"] = json!(key);
    }
    doc
}

fn enqueue(setup: &Setup, name: &str, body: &str, campaign: Option<&str>) {
    let file = setup.dir.path().join(name);
    std::fs::write(&file, body).unwrap();
    let mut args = vec!["enqueue", file.to_str().unwrap()];
    if let Some(c) = campaign {
        args.extend(["--campaign", c]);
    }
    cli_ok(setup, &args);
}

/// An authenticated callback body posted as Mydex would; its HTTP status.
pub(crate) async fn post_callback(setup: &Setup, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(setup.callback_url())
        .header("Authentication", mydex_connector::mydex::token_hash(TOKEN))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn post_records(setup: &Setup, rows: &[Value]) -> Value {
    let body: String = rows.iter().map(|r| format!("{r}\n")).collect();
    let r = reqwest::Client::new()
        .post(setup.admin_url("/records"))
        .bearer_auth(ADMIN_TOKEN)
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

/// The mail last sent to `to`.
fn mail_to(smtp: &Smtp, to: &str) -> PathBuf {
    smtp.messages()
        .into_iter()
        .rfind(|p| read_mail(p).to == to)
        .unwrap_or_else(|| panic!("no mail to {to}"))
}

pub(crate) async fn connect(setup: &Setup, smtp: &Smtp, to: &str, mydexid: &str) {
    let m = read_mail(&mail_to(smtp, to));
    let (status, body) = setup.journey(&m.qr_link, mydexid, to).await;
    assert!(
        status < 300 && body["callback_status"] == 200,
        "{status} {body}"
    );
}

fn wait(setup: &Setup, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let s = setup.wait_status(&pred, Duration::from_secs(120));
    assert!(pred(&s), "{what}: {s}\n{}", setup.log());
    s
}

/// Invitations in every state, members at two versions, a version sweep.
async fn invitations_and_members(setup: &Setup, smtp: &Smtp) {
    let mut csv = String::from("email,name,external_ref\n");
    for (i, n) in ["ann", "bob", "cat", "dan", "eve", "fay", "gus"]
        .iter()
        .enumerate()
    {
        csv += &format!("{n}@example.com,{n},MTR-{:03}\n", i + 1);
    }
    enqueue(setup, "people.csv", &csv, None);
    assert_eq!(smtp.wait_for(7, Duration::from_secs(120)).len(), 7);
    // Two members connect at version 1 (outdated: ours is 2), one at 2.
    connect(setup, smtp, "ann@example.com", "annfixture1").await;
    connect(setup, smtp, "bob@example.com", "bobfixture2").await;
    setup
        .sandbox_settings(json!({"connection_version": 2}))
        .await;
    connect(setup, smtp, "cat@example.com", "catfixture3").await;
    wait(setup, "three connected", |s| {
        s["invitations"]["connected"] == 3
    });
    // The links of the four others are past `link_ttl`: expired.
    tokio::time::sleep(Duration::from_secs(4)).await;
    cli_ok(setup, &["sweep", "expiry"]);
    wait(setup, "four expired", |s| s["invitations"]["expired"] == 4);
    // Sent, and left so (no expiry sweep runs again).
    enqueue(
        setup,
        "more.csv",
        "email,name,external_ref\nhal@example.com,hal,MTR-008\nivy@example.com,ivy,MTR-009\n",
        None,
    );
    wait(setup, "two sent", |s| s["invitations"]["sent"] == 2);
    // The version sweep invites the two outdated members to update.
    cli_ok(setup, &["sweep", "version"]);
    wait(setup, "two updates sent", |s| s["invitations"]["sent"] == 4);
}

/// A hard bounce, a soft one, an unsubscribe, a suppression by hand, a
/// paused campaign with queued invitations, a forgotten person.
async fn mail_side(setup: &Setup, smtp: &Smtp) {
    let eve = sent(&mail_to(smtp, "eve@example.com"));
    let (status, body) = post_bounce(
        setup,
        json!({"token": eve.b, "type": "hard", "diagnostic": "550 5.1.1 mailbox unknown"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let fay = sent(&mail_to(smtp, "fay@example.com"));
    let (status, body) = post_bounce(
        setup,
        json!({"token": fay.b, "type": "soft", "diagnostic": "451 4.3.0 try again later"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let gus = sent(&mail_to(smtp, "gus@example.com"));
    let url = format!(
        "http://127.0.0.1:{}/unsubscribe/{}",
        setup.callback_port, gus.u
    );
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    cli_ok(
        setup,
        &[
            "suppressions",
            "add",
            "--email",
            "zed@example.com",
            "--reason",
            "asked by phone",
        ],
    );
    cli_ok(
        setup,
        &["campaign", "pause", "later", "--reason", "fixture"],
    );
    enqueue(
        setup,
        "later.csv",
        "email,name,external_ref\njon@example.com,jon,MTR-010\nkim@example.com,kim,MTR-011\n",
        Some("later"),
    );
    wait(setup, "two queued", |s| s["invitations"]["queued"] == 2);
    cli_ok(setup, &["people", "forget", "--email", "fay@example.com"]);
}

/// A quarantined callback, an unmatched one, a notification event.
async fn callbacks(setup: &Setup) {
    assert_eq!(
        post_callback(
            setup,
            b"{\"uid\": [1, 2], \"not\": \"a callback\"}".to_vec()
        )
        .await,
        200
    );
    let unmatched = json!({
        "uid": 9001, "mydexid": "nobodyfixture", "key": "fixture-key-of-nobody-0123456789",
        "connection_id": "9001-45678", "linking_token": "lt_nothing_of_ours",
        "fields": {"field_ds_personal_details": {"0": {"": {"access": {"r": {"a": 1, "s": "A"}, "w": {"a": 0, "s": "A"}}}}}},
    });
    assert_eq!(
        post_callback(setup, serde_json::to_vec(&unmatched).unwrap()).await,
        200
    );
    let r = reqwest::Client::new()
        .post(format!("{}/_sandbox/notify", setup.sandbox.url()))
        .json(&json!({"mydexid": "annfixture1", "message": "fixture"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    wait(setup, "callbacks kept", |s| {
        s["callbacks"]["quarantined"] == 1
    });
}

/// Readings delivered, held (an invitee not connected) and queued (the
/// PDS failing: left for the next start).
async fn readings(setup: &Setup) -> Value {
    let row = |who: (&str, &str), id: &str| json!({who.0: who.1, "external_id": id, "kwh": 1.5});
    let ann = ("mydexid", "annfixture1");
    post_records(setup, &[row(ann, "a1"), row(ann, "a2"), row(ann, "a3")]).await;
    wait(setup, "three delivered", |s| s["records"]["delivered"] == 3);
    post_records(setup, &[row(("external_ref", "MTR-004"), "d1")]).await;
    wait(setup, "one held", |s| s["records"]["held"] == 1);
    setup
        .sandbox_settings(json!({"fault_rate": 1.0, "faults": ["503"]}))
        .await;
    let cat = ("mydexid", "catfixture3");
    post_records(setup, &[row(cat, "c1"), row(cat, "c2")]).await;
    // Tried and refused at least once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    json!({"mydexid": "catfixture3", "external_ids": ["c1", "c2"]})
}

/// What the sandbox knew of each member, for a later sandbox to know them.
async fn sandbox_members(setup: &Setup) -> Value {
    let state = setup.sandbox_state().await;
    let members: Vec<Value> = state["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            json!({"uid": m["uid"], "mydexid": m["mydexid"], "email": m["email"],
                   "key": m["key"], "version": m["version"], "revoked": m["revoked"]})
        })
        .collect();
    json!(members)
}

fn write_fixture(setup: &Setup, expected: &Value) {
    let out = fixture_dir();
    std::fs::create_dir_all(&out).unwrap();
    let tar = std::process::Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-czf",
        ])
        .arg(out.join("store.tar.gz"))
        .arg("-C")
        .arg(setup.dir.path())
        .arg("db")
        .status()
        .unwrap();
    assert!(tar.success());
    std::fs::copy(
        setup.dir.path().join("secrets/store.key"),
        out.join("store.key"),
    )
    .unwrap();
    let text = serde_json::to_string_pretty(expected).unwrap() + "\n";
    std::fs::write(out.join("expected.json"), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/fixtures/store-v1: run by tests/fixtures/make-store-v1.sh"]
async fn make_store_v1() {
    assert!(
        std::env::var_os("CARGO_BIN_EXE_mydex-connector").is_some(),
        "set CARGO_BIN_EXE_mydex-connector to the release's binary (make-store-v1.sh)"
    );
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = fixture_setup(&smtp, dir).await;
    let daemon = setup.daemon();
    invitations_and_members(&setup, &smtp).await;
    mail_side(&setup, &smtp).await;
    callbacks(&setup).await;
    let queued_readings = readings(&setup).await;
    let expected = json!({
        "status": setup.status(),
        "members": members_fingerprinted(&setup),
        "suppressions": cli_json(&setup, &["suppressions", "list", "--json"]),
        "callbacks": cli_json(&setup, &["callbacks", "list", "--json"]),
        "held": cli_json(&setup, &["records", "list", "--state", "held", "--json"]),
        "queued_readings": queued_readings,
        "sandbox_members": sandbox_members(&setup).await,
    });
    setup.stop(daemon);
    write_fixture(&setup, &expected);
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&expected["status"]).unwrap()
    );
}

/// The fixture's store, unpacked as `{dir}/db` (where `setup` puts it).
pub(crate) fn unpack_store(dir: &Path) {
    let ok = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(fixture_dir().join("store.tar.gz"))
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "unpacking the fixture");
}

/// The fixture's record of what the release reported.
pub(crate) fn expected() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}
