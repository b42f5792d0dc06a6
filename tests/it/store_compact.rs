//! `store compact` through the real binary, the sandbox, the real SMTP
//! server and a real sled: a store with connected members, readings and
//! people forgotten. Before the compaction, the store's files still hold a
//! forgotten person's address (in clear copies left by a store written
//! before sealing) and a forgotten member's MydexID (an index key); after
//! it, neither, while everything an operator sees reads the same and the
//! daemon starts on it and works. It is refused while the daemon runs; and
//! a `kill -9` at each of its steps leaves a store that opens with all its
//! records.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mydex_test_support::*;
use secrecy::SecretBox;

const DELIVERY: &str = "\n[delivery]\ndir = \"readings\"\nbatch_size = 7\nhold_for = \"1h\"\n";

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What an operator sees: counts, every invitation, every member with
/// their connection key.
fn views(setup: &Setup) -> (serde_json::Value, String, String) {
    let list = setup.cli(&["invitations", "list", "--json"]);
    assert!(list.status.success(), "{}", text(&list));
    let members = setup.cli(&["members", "export", "--format", "json", "--with-keys"]);
    assert!(members.status.success(), "{}", text(&members));
    let s = setup.status();
    let counts = serde_json::json!({
        "invitations": s["invitations"], "members": s["members"],
        "suppressed": s["suppressed"], "records": s["records"],
    });
    (
        counts,
        String::from_utf8_lossy(&list.stdout).into_owned(),
        String::from_utf8_lossy(&members.stdout).into_owned(),
    )
}

fn place(setup: &Setup, cmd: &str, name: &str, body: &str) {
    let file = setup.dir.path().join(name);
    std::fs::write(&file, body).unwrap();
    let out = setup.cli(&[cmd, file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Files of the store's directory (and any left beside it) holding `needle`.
fn in_store(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for d in ["db", "db.compact-new", "db.compact-old"] {
        if root.join(d).exists() {
            hits.extend(contains_bytes(&root.join(d), needle.as_bytes()));
        }
    }
    hits
}

/// A store with members connected by real journeys and readings; the
/// daemon running. `people` are (address, name, external ref, MydexID to
/// connect with, if any).
async fn populated(
    opts: Options,
    people: &[(&str, &str, &str, Option<&str>)],
) -> (Setup, Smtp, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, opts).await;
    setup.edit_config(
        "token_file = \"secrets/admin_token\"",
        "token_file = \"secrets/admin_token\"\nallow_key_export = true",
    );
    let daemon = setup.daemon();
    let mut csv = String::from("email,name,external_ref\n");
    let mut readings = String::from("external_ref,external_id,kwh\n");
    for (i, (email, name, r, _)) in people.iter().enumerate() {
        csv += &format!("{email},{name},{r}\n");
        readings += &format!("{r},r{i},{i}.5\n");
    }
    place(&setup, "enqueue", "people.csv", &csv);
    let paths = smtp.wait_for(people.len(), Duration::from_secs(120));
    assert_eq!(paths.len(), people.len(), "{}", setup.log());
    let mut members = 0;
    for p in &paths {
        let mail = read_mail(p);
        let who = people.iter().find(|w| w.0.eq_ignore_ascii_case(&mail.to));
        if let Some((_, _, _, Some(mydexid))) = who {
            let (status, body) = setup.journey(&mail.qr_link, mydexid, &mail.to).await;
            assert_eq!(status, 200, "{body}");
            members += 1;
        }
    }
    setup.wait_status(
        |s| s["invitations"]["connected"] == members,
        Duration::from_secs(120),
    );
    place(&setup, "deliver", "readings.csv", &readings);
    let n = people.len() as u64;
    let s = setup.wait_status(
        |s| {
            let r = &s["records"];
            r["held"].as_u64().unwrap_or(0) + r["delivered"].as_u64().unwrap_or(0) == n
        },
        Duration::from_secs(120),
    );
    assert_eq!(s["records"]["delivered"], members, "{s}");
    (setup, smtp, daemon)
}

/// Rewrite the stopped store's invitations, members and readings in clear,
/// as a release before sealing wrote them: the next open seals them again,
/// leaving the clear copies in sled's old segments.
fn unseal_as_before_sealing(db_dir: &Path) {
    let db = sled::open(db_dir).unwrap();
    let sealer = mydex_connector::store::Sealer::new(&SecretBox::new(Box::new([42u8; 32])));
    for tree in ["invitations", "members", "readings"] {
        let t = db.open_tree(tree).unwrap();
        for item in t.iter() {
            let (k, v) = item.unwrap();
            if !v.starts_with(b"xc1:") {
                continue;
            }
            let mut aad = format!("record/{tree}/").into_bytes();
            aad.extend_from_slice(&k);
            let clear = sealer.open(std::str::from_utf8(&v).unwrap(), &aad).unwrap();
            t.insert(&k, clear).unwrap();
        }
    }
    let meta = db.open_tree("meta").unwrap();
    meta.remove("sealed_v1").unwrap();
    meta.remove("sealed_log_v1").unwrap();
    db.flush().unwrap();
}

/// `store compact`, waiting while a daemon just stopped lets go of the store.
fn compact(setup: &Setup) -> std::process::Output {
    let start = std::time::Instant::now();
    loop {
        let out = setup.cli(&["store", "compact"]);
        if out.status.code() == Some(1)
            && text(&out).contains("in use")
            && start.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        return out;
    }
}

/// A figure of the command's output: the number before `word`.
fn figure(out: &str, word: &str) -> u64 {
    let at = out
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} in {out}"));
    let digits: String = out[..at]
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_erases_what_forgetting_left_and_keeps_the_rest() {
    let opts = Options {
        extra_config: DELIVERY.into(),
        ..Default::default()
    };
    let people = [
        (
            "Quintessa.Forgetwell@Example.com",
            "Quintessa Forgetwell",
            "QF-REF-9071",
            None,
        ),
        (
            "xavier.memberly@example.com",
            "Xavier Memberly",
            "XM-REF-5523",
            Some("xaviermem1"),
        ),
        (
            "keeper.stays@example.com",
            "Keeper Stays",
            "KS-REF-1101",
            Some("keeperst1"),
        ),
        (
            "bob.remains@example.com",
            "Bob Remains",
            "BR-REF-2202",
            None,
        ),
    ];
    let (setup, smtp, daemon) = populated(opts, &people).await;
    let root = setup.dir.path().to_path_buf();
    setup.stop(daemon);
    unseal_as_before_sealing(&root.join("db"));
    // The release that seals: its first open seals the clear records.
    let daemon = setup.daemon();
    for args in [
        vec!["--email", "quintessa.forgetwell@example.com"],
        vec!["--external-ref", "XM-REF-5523", "--disconnect"],
    ] {
        let mut all = vec!["people", "forget"];
        all.extend_from_slice(&args);
        let out = setup.cli(&all);
        assert!(out.status.success(), "{}", text(&out));
    }
    let before = views(&setup);
    assert_eq!(before.0["members"]["total"], 1, "{}", before.0);
    assert!(
        before.1.contains("keeper.stays@example.com"),
        "{}",
        before.1
    );
    assert!(before.2.contains("keeperst1"), "{}", before.2);

    // The daemon holds the store: refused, nothing changed.
    let busy = setup.cli(&["store", "compact"]);
    assert_eq!(busy.status.code(), Some(1), "{}", text(&busy));
    assert!(
        text(&busy).contains("in use by another process"),
        "{}",
        text(&busy)
    );
    assert!(!root.join("db.compact-new").exists() && !root.join("db.compact-old").exists());
    assert_eq!(views(&setup), before);
    setup.stop(daemon);

    // A wrong store key: refused (78), nothing changed.
    std::fs::write(root.join("secrets/other.key"), [7u8; 32]).unwrap();
    setup.edit_config("secrets/store.key", "secrets/other.key");
    let wrong = setup.cli(&["store", "compact"]);
    assert_eq!(wrong.status.code(), Some(78), "{}", text(&wrong));
    assert!(text(&wrong).contains("wrong key"), "{}", text(&wrong));
    setup.edit_config("secrets/other.key", "secrets/store.key");
    assert!(!root.join("db.compact-new").exists() && !root.join("db.compact-old").exists());

    // What forgetting could not reach: old segments.
    let address = in_store(&root, "Quintessa.Forgetwell@Example.com");
    let mydexid = in_store(&root, "xaviermem1");
    eprintln!(
        "before compaction: the forgotten address in {address:?}, the forgotten MydexID in {mydexid:?}"
    );
    // Before compaction the engine's old segments usually still hold a
    // clear copy (left by the store before sealing); whether they still do
    // depends on how much the engine has rewritten since, so it is shown,
    // not required: what counts is that none is left after.
    if address.is_empty() {
        eprintln!(
            "before compaction: the engine had already reused the segments holding the address"
        );
    }
    assert!(!mydexid.is_empty(), "an index key of the forgotten member");

    let out = compact(&setup);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{said}");
    let (records, was, is) = (
        figure(&said, "records in"),
        figure(&said, "bytes before"),
        figure(&said, "bytes after"),
    );
    assert!(records > 0 && was > 0 && is > 0, "{said}");
    for gone in [
        "Quintessa.Forgetwell@Example.com",
        "quintessa.forgetwell@example.com",
        "Quintessa Forgetwell",
        "QF-REF-9071",
        "xaviermem1",
        "xavier.memberly@example.com",
        // Kept, but sealed: no clear copy of anyone is left.
        "keeper.stays@example.com",
        "Bob Remains",
    ] {
        assert_eq!(in_store(&root, gone), Vec::<PathBuf>::new(), "{gone}");
    }
    assert!(!root.join("db.compact-new").exists() && !root.join("db.compact-old").exists());

    // Everything else reads the same, and the daemon works on it.
    let daemon = setup.daemon();
    assert_eq!(views(&setup), before);
    place(
        &setup,
        "enqueue",
        "late.csv",
        "email,name,external_ref\nlate.comer@example.com,Late Comer,LC-1\n",
    );
    let paths = smtp.wait_for(people.len() + 1, Duration::from_secs(120));
    let late = paths
        .iter()
        .map(|p| read_mail(p))
        .find(|m| m.to == "late.comer@example.com")
        .expect("the late invitation is mailed");
    let (status, body) = setup.journey(&late.qr_link, "latecomer1", &late.to).await;
    assert_eq!(status, 200, "{body}");
    let s = setup.wait_status(|s| s["members"]["total"] == 2, Duration::from_secs(120));
    assert_eq!(s["members"]["total"], 2, "{s}");
    let (_, list, members) = views(&setup);
    assert!(
        members.contains("latecomer1") && members.contains("keeperst1"),
        "{members}"
    );
    // A new invitation, not one of the old ids handed out again.
    let invitations: serde_json::Value = serde_json::from_str(&list).unwrap();
    let mut ids: Vec<u64> = invitations
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), n), (3, 3), "{list}");
    setup.stop(daemon);
    setup.keep_for_log_scan().await;
}

/// Run `store compact` stopped at `step` (the debug build's knob), then
/// `kill -9` it there.
fn kill_at(setup: &Setup, step: &str) {
    let mut child = Proc(
        Command::new(bin())
            .args(["store", "compact", "--config"])
            .arg(&setup.config)
            .env("MYDEX_CONNECTOR_COMPACT_STOP_AT", step)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen += &line;
            seen.push('\n');
            if line.contains("stopped at step") {
                let _ = tx.send(Ok(seen.clone()));
            }
        }
        let _ = tx.send(Err(seen));
    });
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(Ok(_)) => {}
        other => panic!("compact did not stop at {step}: {other:?}"),
    }
    assert_eq!(send_signal(child.0.id() as i32, "KILL"), 0);
    assert!(wait_exit(&mut child, Duration::from_secs(60)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_at_each_step_leaves_a_store_with_all_its_records() {
    let people = [
        ("ann.kill@example.com", "Ann Kill", "AK-1", Some("annkill1")),
        ("ben.kill@example.com", "Ben Kill", "BK-2", Some("benkill1")),
        ("cat.kill@example.com", "Cat Kill", "CK-3", None),
    ];
    let (setup, _smtp, daemon) = populated(
        Options {
            extra_config: DELIVERY.into(),
            ..Default::default()
        },
        &people,
    )
    .await;
    let before = views(&setup);
    setup.stop(daemon);
    let root = setup.dir.path().to_path_buf();
    let (store, new, old) = (
        root.join("db"),
        root.join("db.compact-new"),
        root.join("db.compact-old"),
    );
    // Where each step leaves the directories: (store, new, old).
    for (step, there) in [
        ("copying", (true, true, false)),
        ("verified", (true, true, false)),
        ("old-moved", (false, true, true)),
        ("new-moved", (true, false, true)),
        ("old-removing", (true, false, true)),
    ] {
        kill_at(&setup, step);
        assert_eq!(
            (store.exists(), new.exists(), old.exists()),
            there,
            "{step}"
        );
        if step == "old-moved" {
            // No store at store.path: `store compact` puts it back first.
            let out = compact(&setup);
            assert!(out.status.success(), "{step}: {}", text(&out));
            assert!(text(&out).contains("put back the store"), "{}", text(&out));
        }
        let daemon = setup.daemon();
        assert_eq!(views(&setup), before, "after a kill at {step}");
        setup.stop(daemon);
        assert!(
            store.join("db").is_file() && !new.exists() && !old.exists(),
            "{step}"
        );
    }
    setup.keep_for_log_scan().await;
}
