//! `rotate-key` through the real binary: members connected by real journeys
//! keep their keys under the new store key, the old key is refused (exit 78)
//! without a byte of the store changing, bad new keys are refused with the
//! store untouched, and a rotation killed (-9) midway, again and again, is
//! refused by the daemon with either key and finished by rerunning it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mydex_test_support::*;
use secrecy::SecretBox;
use sha2::{Digest, Sha256};

/// Every file under the store directory and the SHA-256 of its bytes, but
/// for sled's `snap.*`: sled rebuilds that recovery index from its log (the
/// `db` file, which holds every record) at each open, before we can read the
/// key check, so a refused start may rename a fresh one into place; the data
/// (`db`) and `conf` must stay byte for byte the same.
fn store_hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
            {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    hex::encode(Sha256::digest(&bytes)),
                );
            }
        }
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `run` against a store it must refuse: its exit status and stderr.
fn run_refused(setup: &Setup) -> (Option<i32>, String) {
    let mut child = Proc(
        Command::new(bin())
            .args(["run", "--config"])
            .arg(&setup.config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Read as it comes: a chatty log (RUST_LOG in the environment) must not
    // fill the pipe and hold the daemon before it exits.
    let mut stderr = child.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        err
    });
    let status =
        wait_exit(&mut child, Duration::from_secs(120)).expect("the daemon refuses, and exits");
    (status.code(), reader.join().unwrap())
}

fn export_keys(setup: &Setup) -> Vec<(String, String)> {
    let out = setup.cli(&["members", "export", "--format", "json", "--with-keys"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut v: Vec<(String, String)> = doc
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
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_connected_members_and_refuse_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    setup.edit_config(
        "token_file = \"secrets/admin_token\"",
        "token_file = \"secrets/admin_token\"\nallow_key_export = true",
    );
    let daemon = setup.daemon();
    let file = setup.dir.path().join("people.csv");
    let mut csv = String::from("email,name,external_ref\n");
    for i in 0..12 {
        csv += &format!("rot{i}@example.com,Rot {i},MTR-{i:03}\n");
    }
    std::fs::write(&file, csv).unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let paths = smtp.wait_for(12, Duration::from_secs(120));
    assert_eq!(paths.len(), 12, "{}", setup.log());
    for (i, p) in paths.iter().enumerate() {
        let m = read_mail(p);
        let (status, body) = setup.journey(&m.qr_link, &format!("rot{i}x"), &m.to).await;
        assert!(
            status < 300 && body["callback_status"] == 200,
            "{status} {body}"
        );
    }
    let s = setup.wait_status(|s| s["members"]["total"] == 12, Duration::from_secs(120));
    assert_eq!(s["members"]["total"], 12, "{s}");
    let before = export_keys(&setup);
    assert_eq!(before.len(), 12);

    let secrets = setup.dir.path().join("secrets");
    let new_key = [7u8; 32];
    // The new key as 64 hex characters (the other form store.key_file takes).
    std::fs::write(secrets.join("new.key"), hex::encode(new_key) + "\n").unwrap();
    let new_key_arg = secrets.join("new.key").display().to_string();

    // The daemon holds the store: rotate-key says so and changes nothing.
    let busy = setup.cli(&["rotate-key", "--new-key-file", &new_key_arg]);
    assert_eq!(busy.status.code(), Some(1), "{}", text(&busy.stderr));
    assert!(
        text(&busy.stderr).contains("in use by another process"),
        "{}",
        text(&busy.stderr)
    );
    setup.stop(daemon);

    let db = setup.dir.path().join("db");
    let pristine = store_hashes(&db);
    // Bad new keys: clear errors (exit 78), store untouched.
    std::fs::write(secrets.join("short.key"), [1u8; 16]).unwrap();
    std::fs::write(secrets.join("same.key"), [42u8; 32]).unwrap();
    for (file, expect) in [
        ("missing.key", "does not exist"),
        ("short.key", "must hold exactly 32 bytes"),
        ("same.key", "already holds"),
    ] {
        let path = secrets.join(file).display().to_string();
        let out = setup.cli(&["rotate-key", "--new-key-file", &path]);
        let err = text(&out.stderr);
        println!("{file}: {err}");
        assert_eq!(out.status.code(), Some(78), "{file}: {err}");
        assert!(err.contains(expect), "{file}: {err}");
        assert_eq!(
            store_hashes(&db),
            pristine,
            "{file}: the store is untouched"
        );
    }

    let out = setup.cli(&["rotate-key", "--new-key-file", &new_key_arg]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("12 member keys re-sealed"), "{stdout}");
    assert!(stdout.contains("replace store.key_file"), "{stdout}");
    for (_, key) in &before {
        assert!(!stdout.contains(key) && !stderr.contains(key));
        assert!(contains_bytes(&db, key.as_bytes()).is_empty());
    }
    assert!(!stdout.contains(&hex::encode(new_key)) && !stderr.contains(&hex::encode(new_key)));

    // The old key (still in store.key_file) is refused; nothing is written.
    let rotated = store_hashes(&db);
    let (code, err) = run_refused(&setup);
    println!("old key: {err}");
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("does not open with the configured store.key_file"),
        "{err}"
    );
    assert_eq!(store_hashes(&db), rotated, "a refused start writes nothing");
    // Running it again with the old key in the config: already done.
    let again = setup.cli(&["rotate-key", "--new-key-file", &new_key_arg]);
    assert_eq!(again.status.code(), Some(78));
    assert!(
        text(&again.stderr).contains("already uses the new key"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(store_hashes(&db), rotated);

    // With the new key: the same members, the same keys.
    setup.edit_config(
        "key_file = \"secrets/store.key\"",
        "key_file = \"secrets/new.key\"",
    );
    let _daemon = setup.daemon();
    let s = setup.status();
    assert_eq!(s["members"]["total"], 12, "{s}");
    assert_eq!(s["invitations"]["connected"], 12, "{s}");
    assert_eq!(
        export_keys(&setup),
        before,
        "every key decrypts to what Mydex sent"
    );
    setup.keep_for_log_scan().await;
}

const MEMBERS: usize = 20_000;

fn member_key(i: usize) -> String {
    format!("member-key-{i:05}-{}", i * 7919 % 100_003)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_midway_is_refused_then_finished() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing here sends mail or calls Mydex; the config only needs to load.
    let setup = setup(free_port(), dir, Options::default()).await;
    let db = setup.dir.path().join("db");
    let ids: Vec<String> = (0..MEMBERS)
        .map(|i| format!("{}-45678", 100_000 + i))
        .collect();
    let keys: Vec<String> = (0..MEMBERS).map(member_key).collect();
    {
        let store = mydex_connector::store::Store::open(&db, &SecretBox::new(Box::new([42u8; 32])))
            .unwrap();
        for chunk in ids.iter().zip(&keys).collect::<Vec<_>>().chunks(2000) {
            let batch: Vec<mydex_connector::store::NewMember> = chunk
                .iter()
                .map(|(c, k)| mydex_connector::store::NewMember {
                    uid: 1,
                    connection_id: c.to_string(),
                    mydexid: None,
                    email: None,
                    key: k.to_string(),
                    version: 1,
                    campaign: None,
                })
                .collect();
            store.import_members(batch).await.unwrap();
        }
        store.flush().await.unwrap();
    }
    let secrets = setup.dir.path().join("secrets");
    std::fs::write(secrets.join("new.key"), [9u8; 32]).unwrap();
    let new_key_arg = secrets.join("new.key").display().to_string();

    // Kill -9 after the k-th progress line, for several k.
    let mut midway = 0;
    for (round, after_lines) in [1usize, 3, 5, 8, 12].into_iter().enumerate() {
        let mut child = Proc(
            Command::new(bin())
                .args(["rotate-key", "--new-key-file", &new_key_arg, "--config"])
                .arg(&setup.config)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        while seen.len() < after_lines {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("re-sealed") => seen.push(l),
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        let _ = child.0.kill(); // SIGKILL
        let status = child.0.wait().unwrap();
        println!("round {round}: killed after {seen:?} ({status})");

        // The daemon refuses the half-rotated store, with either key. (The
        // first open after a kill -9 lets sled zero its log's torn tail;
        // from then on a refused start writes nothing.)
        let (code, err) = run_refused(&setup);
        let before = store_hashes(&db);
        if err.contains("unfinished key rotation") {
            midway += 1;
            assert_eq!(code, Some(78), "{err}");
            assert!(
                err.contains("rerun `mydex-connector rotate-key` with the same new key"),
                "{err}"
            );
            if round == 0 {
                setup.edit_config(
                    "key_file = \"secrets/store.key\"",
                    "key_file = \"secrets/new.key\"",
                );
                let (code, err) = run_refused(&setup);
                setup.edit_config(
                    "key_file = \"secrets/new.key\"",
                    "key_file = \"secrets/store.key\"",
                );
                assert_eq!(code, Some(78), "{err}");
                assert!(err.contains("unfinished key rotation"), "new key: {err}");
                // Another new key cannot take over the unfinished rotation.
                std::fs::write(secrets.join("other.key"), [11u8; 32]).unwrap();
                let other = secrets.join("other.key").display().to_string();
                let out = setup.cli(&["rotate-key", "--new-key-file", &other]);
                assert_eq!(out.status.code(), Some(78));
                assert!(
                    text(&out.stderr).contains("rerun with that key file"),
                    "{}",
                    text(&out.stderr)
                );
            }
        } else {
            println!("round {round}: the rotation had finished before the kill: {err}");
            break;
        }
        let (code, again) = run_refused(&setup);
        assert_eq!(code, Some(78), "{again}");
        assert_eq!(store_hashes(&db), before, "a refused start writes nothing");
    }
    assert!(midway >= 1, "at least one kill landed midway");

    let started = Instant::now();
    let out = setup.cli(&["rotate-key", "--new-key-file", &new_key_arg]);
    let stdout = text(&out.stdout);
    println!("rerun ({:.2?}): {stdout}", started.elapsed());
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("finished an interrupted rotation"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("({MEMBERS} members)")), "{stdout}");

    // Every key decrypts, under the new key only, to what was stored.
    for k in keys.iter().step_by(997) {
        assert!(
            contains_bytes(&db, k.as_bytes()).is_empty(),
            "plaintext key on disk"
        );
    }
    let store = mydex_connector::store::Store::open(&db, &SecretBox::new(Box::new([9u8; 32])))
        .expect("the new key opens the store");
    for (c, k) in ids.iter().zip(&keys) {
        let m = store.member(c).await.unwrap().unwrap();
        assert_eq!(
            store.sealer().open(&m.sealed_key, c.as_bytes()).unwrap(),
            k.as_bytes(),
            "{c}"
        );
    }
}
