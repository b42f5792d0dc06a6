//! An authenticated callback is never lost, through the real binary, the
//! sandbox and a real SMTP server: hostile-but-authenticated bodies are
//! answered 2xx and kept as quarantined (listed, shown with no key, counted
//! in status and metrics, logged without the key); an over-long body gets
//! its 413 even when the client sends it all before reading; and callbacks
//! quarantined under a wrong `mydex.connection_nid` connect their members
//! once the config is fixed and an operator replays them.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use mydex_test_support::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn cli_json(setup: &Setup, args: &[&str]) -> serde_json::Value {
    let out = setup.cli(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)))
}

/// Bytes that are no callback (a fixed pseudo-random sequence).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The log without terminal colours.
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

const SECRET: &str = "QuArAnTiNeDsEcReTkEy";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_authenticated_bodies_are_kept_quarantined_and_shown_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let daemon = setup.daemon();
    let http = reqwest::Client::new();
    let url = setup.callback_url();
    let auth = mydex_connector::mydex::token_hash(TOKEN);
    let utf16: Vec<u8> = format!(r#"{{"uid":1001,"key":"{SECRET}","connection_id":"1001-99999"}}"#)
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("random bytes", "application/octet-stream", noise(700, 7)),
        ("random bytes as JSON", "application/json", noise(300, 11)),
        (
            "wrong types",
            "application/json",
            serde_json::to_vec(&serde_json::json!({"uid": [1, 2], "key": {"k": SECRET}, "connection_id": 1001, "mydexid": false})).unwrap(),
        ),
        (
            "JSON labelled as something odd, another NID",
            "text/csv; charset=ebcdic",
            serde_json::to_vec(&serde_json::json!({"uid": 1001, "mydexid": "RBFish123", "key": SECRET, "connection_id": "1001-99999", "fields": {}})).unwrap(),
        ),
        (
            "a form for another NID",
            "application/x-www-form-urlencoded",
            format!("connection_id=1001-99999&uid=1001&mydexid=RBFish123&key={SECRET}&fields[field_ds_personal_details][0][][access][r][a]=1").into_bytes(),
        ),
        ("UTF-16 JSON, another NID", "application/json", utf16),
    ];
    let mut ids = Vec::new();
    for (what, ctype, body) in &cases {
        let r = http
            .post(&url)
            .header("Authentication", &auth)
            .header("Content-Type", *ctype)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let answer: serde_json::Value = r.json().await.unwrap();
        assert!(status.is_success(), "{what}: {status} {answer}");
        assert_eq!(answer["status"], "quarantined", "{what}: {answer}");
        ids.push(answer["id"].as_u64().unwrap());
    }
    // An unauthenticated one stays a 401, and is not stored.
    let r = http.post(&url).body(noise(50, 3)).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let check = |setup: &Setup| {
        let listed = cli_json(setup, &["callbacks", "list", "--quarantined", "--json"]);
        let listed: HashMap<u64, serde_json::Value> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_u64().unwrap(), c.clone()))
            .collect();
        assert_eq!(listed.len(), cases.len(), "{listed:?}");
        for (id, (what, ctype, body)) in ids.iter().zip(&cases) {
            let c = &listed[id];
            assert_eq!(c["state"], "quarantined", "{what}: {c}");
            assert!(!c["reason"].as_str().unwrap().is_empty(), "{what}: {c}");
            assert_eq!(c["size"], body.len(), "{what}: {c}");
            assert_eq!(c["content_type"], *ctype, "{what}: {c}");
            let out = setup.cli(&["callbacks", "show", &id.to_string()]);
            assert!(out.status.success(), "{}", text(&out.stderr));
            let shown = text(&out.stdout);
            assert!(!shown.contains(SECRET), "{what}: the key is shown: {shown}");
            if text(body).contains(SECRET) || what.contains("UTF-16") {
                assert!(shown.contains("<redacted>"), "{what}: {shown}");
            }
        }
        let s = setup.status();
        assert_eq!(s["callbacks"]["quarantined"], cases.len(), "{s}");
        assert_eq!(s["callbacks"]["stored"], cases.len(), "{s}");
        assert_eq!(s["callbacks"]["unmatched"], 0, "{s}");
        assert_eq!(s["members"]["total"], 0, "{s}");
        let human = setup.cli(&["status"]);
        assert!(
            text(&human.stdout).contains("quarantined"),
            "{}",
            text(&human.stdout)
        );
    };
    check(&setup);
    let metrics = setup.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("mydex_connector_callbacks_quarantined {}", cases.len())),
        "{metrics}"
    );
    // Replaying one that still does not parse keeps it quarantined.
    let out = setup.cli(&["callbacks", "replay", &ids[0].to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("quarantined"),
        "{}",
        text(&out.stdout)
    );
    let shown = cli_json(
        &setup,
        &["callbacks", "show", &ids[0].to_string(), "--json"],
    );
    assert_eq!(shown["history"].as_array().unwrap().len(), 1, "{shown}");
    // Kept across a restart.
    setup.stop(daemon);
    let _daemon = setup.daemon();
    check(&setup);
    let log = strip_ansi(&setup.log());
    for id in &ids {
        assert!(
            log.lines().any(
                |l| l.contains("callback quarantined") && l.contains(&format!("callback={id}"))
            ),
            "no quarantine line for {id}: {log}"
        );
    }
    assert!(!log.contains(SECRET), "the key is in the log");
    assert!(contains_bytes(setup.dir.path(), SECRET.as_bytes()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_body_sent_whole_before_reading_gets_its_413() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let _daemon = setup.daemon();
    let port = setup.callback_port;
    let auth = mydex_connector::mydex::token_hash(TOKEN);
    // The default callback.body_limit is 64 KiB: send twice that, all of
    // it, and only then read.
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let body = vec![b'x'; 128 * 1024];
        let head = format!(
            "POST /mydex/callback HTTP/1.1\r\nHost: x\r\nAuthentication: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        s.flush().unwrap();
        let mut answer = Vec::new();
        // Read to the end: the server closes after its answer, without a reset.
        match s.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) => panic!("reading the answer: {e} (after {:?})", text(&answer)),
        }
        text(&answer)
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let s = setup.status();
    assert_eq!(s["callbacks"]["stored"], 0, "{s}");
}

fn export_keys(setup: &Setup) -> HashMap<String, String> {
    let doc = cli_json(
        setup,
        &["members", "export", "--format", "json", "--with-keys"],
    );
    doc.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["connection_id"].as_str().unwrap().to_string(),
                m["key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_quarantined_under_a_wrong_nid_connect_after_the_fix_and_a_replay() {
    const N: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    setup.edit_config(
        "token_file = \"secrets/admin_token\"",
        "token_file = \"secrets/admin_token\"\nallow_key_export = true",
    );
    // Invitations issued under the right config.
    let daemon = setup.daemon();
    let file = setup.dir.path().join("people.csv");
    let mut csv = String::from("email,name,external_ref\n");
    for i in 0..N {
        csv += &format!("q{i}@example.com,Q {i},MTR-{i:03}\n");
    }
    std::fs::write(&file, csv).unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let paths = smtp.wait_for(N, Duration::from_secs(120));
    assert_eq!(paths.len(), N, "{}", setup.log());
    setup.stop(daemon);

    // A mistyped NID; the members complete their journeys meanwhile.
    setup.edit_config("connection_nid = \"45678\"", "connection_nid = \"45679\"");
    let daemon = setup.daemon();
    for (i, p) in paths.iter().enumerate() {
        let m = read_mail(p);
        let (status, body) = setup.journey(&m.qr_link, &format!("quar{i}x"), &m.to).await;
        assert!(
            status < 300 && body["callback_status"] == 200,
            "{status} {body}"
        );
    }
    let s = setup.status();
    assert_eq!(s["callbacks"]["quarantined"], N, "{s}");
    assert_eq!(s["members"]["total"], 0, "{s}");
    let listed = cli_json(&setup, &["callbacks", "list", "--quarantined", "--json"]);
    for c in listed.as_array().unwrap() {
        assert!(
            c["reason"].as_str().unwrap().contains("45679")
                || c["reason"].as_str().unwrap().to_lowercase().contains("nid")
                || c["reason"].as_str().unwrap().contains("connection_id"),
            "{c}"
        );
    }
    // Replaying under the wrong NID changes nothing.
    let out = setup.cli(&["callbacks", "replay", "--all-quarantined"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("{N} quarantined callbacks replayed: 0 applied")),
        "{}",
        text(&out.stdout)
    );
    setup.stop(daemon);

    // Fixed, restarted, replayed: every member connected.
    setup.edit_config("connection_nid = \"45679\"", "connection_nid = \"45678\"");
    let _daemon = setup.daemon();
    let out = setup.cli(&["callbacks", "replay", "--all-quarantined"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!(
            "{N} quarantined callbacks replayed: {N} applied, 0 still quarantined"
        )),
        "{}",
        text(&out.stdout)
    );
    let s = setup.status();
    assert_eq!(s["members"]["total"], N, "{s}");
    assert_eq!(s["invitations"]["connected"], N, "{s}");
    assert_eq!(s["callbacks"]["quarantined"], 0, "{s}");
    assert_eq!(s["callbacks"]["stored"], N, "{s}");
    let all = cli_json(&setup, &["callbacks", "list", "--json"]);
    for c in all.as_array().unwrap() {
        assert_eq!(c["state"], "applied", "{c}");
        assert_eq!(c["status"], "connected", "{c}");
        assert_eq!(c["kind"], "ftc", "{c}");
    }
    let state = setup.sandbox_state().await;
    let sandbox_keys: HashMap<String, String> = state["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            Some((
                m["connection_id"].as_str()?.to_string(),
                m["key"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert_eq!(sandbox_keys.len(), N);
    assert_eq!(export_keys(&setup), sandbox_keys);
    // A second replay of an applied one changes nothing: it is still the
    // callback that connected its member.
    let first = all[0]["id"].as_u64().unwrap();
    let again = cli_json(&setup, &["callbacks", "show", &first.to_string(), "--json"]);
    assert!(
        !again
            .to_string()
            .contains(sandbox_keys.values().next().unwrap())
    );
    let out = setup.cli(&["callbacks", "replay", &first.to_string()]);
    assert!(
        text(&out.stdout).contains(&format!("callback {first}: applied (connected)")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(setup.status()["members"]["total"], N);
    assert_eq!(setup.status()["invitations"]["connected"], N);
    let log = setup.log();
    for key in sandbox_keys.values() {
        assert!(!log.contains(key.as_str()), "a member key is in the log");
    }
    setup.keep_for_log_scan().await;
}
