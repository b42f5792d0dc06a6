//! Bad input of every kind gets a clear error naming what was wrong, and
//! nothing stored is lost or changed: configs, invitee files, callbacks.

use std::process::Command;

use mydex_test_support::*;

async fn base() -> (Smtp, Setup) {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    (smtp, setup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_the_key_and_file_and_exit_78() {
    let (_smtp, setup) = base().await;
    let good = std::fs::read_to_string(&setup.config).unwrap();

    let out = setup.cli(&["check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("redacted"));
    assert!(
        printed.contains("max_disconnect_share = \"5%\""),
        "the brake's default is shown: {printed}"
    );
    assert!(
        !printed.contains(TOKEN) && !printed.contains("sandbox-secret"),
        "secrets never printed"
    );

    let required = [
        ("client_id = ", "mydex.client_id"),
        ("client_secret_file = ", "mydex.client_secret_file"),
        ("connection_nid = ", "mydex.connection_nid"),
        ("connection_token_file = ", "mydex.connection_token_file"),
        ("public_url = ", "callback.public_url"),
        ("url = \"smtp", "smtp.url"),
        ("from = ", "smtp.from"),
        ("path = \"db\"", "store.path"),
        ("key_file = ", "store.key_file"),
        ("dir = \"queue\"", "queue.dir"),
    ];
    for (line, key) in required {
        let cut: String = good
            .lines()
            .filter(|l| !l.starts_with(line))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(cut, good, "{line} is in the config");
        let path = setup.dir.path().join(format!("missing-{key}.toml"));
        std::fs::write(&path, cut).unwrap();
        let out = Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{key}: {err}");
        assert!(
            err.contains(key) && err.contains(path.to_str().unwrap()),
            "{key}: error names key and file: {err}"
        );
    }

    let cases = [
        (
            "no campaign",
            good.split("[[campaign]]").next().unwrap().to_string(),
            "campaign",
        ),
        (
            "unknown key",
            good.replace("[invitations]", "[invitations]\nconcurency = 4"),
            "concurency",
        ),
        (
            "wrong type",
            good.replace("concurrency = 16", "concurrency = \"many\""),
            "invitations.concurrency",
        ),
        (
            "bad rate",
            good.replace("rate = \"unlimited\"", "rate = \"lots\""),
            "campaign \"meters\".rate",
        ),
        (
            "bad url",
            good.replace("url = \"smtp://", "url = \"ftp://"),
            "smtp.url",
        ),
        (
            "password in url",
            good.replace("url = \"smtp://", "url = \"smtp://user:pw@"),
            "smtp.url",
        ),
        (
            "ttl over 24h",
            good.replace("[invitations]", "[invitations]\nlink_ttl = \"48h\""),
            "invitations.link_ttl",
        ),
        (
            "cron without seconds",
            good.replace("[schedule]", "[schedule]\nexpiry_check = \"*/5 * * * *\"")
                .replace(&format!("expiry_check = \"{NEVER}\"\n"), ""),
            "schedule.expiry_check",
        ),
        (
            "cron out of range",
            good.replace(
                &format!("version_check = \"{NEVER}\""),
                "version_check = \"0 0 25 * * *\"",
            ),
            "schedule.version_check",
        ),
        (
            "bad sweep rate",
            good.replace("[schedule]", "[schedule]\nsweep_rate = \"fast\""),
            "schedule.sweep_rate",
        ),
        (
            "disconnect share over 100%",
            good.replace("[schedule]", "[schedule]\nmax_disconnect_share = \"150%\""),
            "schedule.max_disconnect_share",
        ),
        (
            "disconnect share not a share",
            good.replace("[schedule]", "[schedule]\nmax_disconnect_share = \"lots\""),
            "schedule.max_disconnect_share",
        ),
        (
            "bad send window",
            good.replace(
                "rate = \"unlimited\"",
                "rate = \"unlimited\"\nsend_window = \"weekdays 9-5\"",
            ),
            "campaign \"meters\".send_window",
        ),
        (
            "unknown time zone",
            good.replace(
                "rate = \"unlimited\"",
                "rate = \"unlimited\"\nsend_window = \"Mon-Fri 09:00-18:00\"\ntime_zone = \"Europe/Atlantis\"",
            ),
            "campaign \"meters\".time_zone",
        ),
        (
            "zero error threshold",
            good.replace("rate = \"unlimited\"", "rate = \"unlimited\"\nerror_threshold = 0"),
            "campaign \"meters\".error_threshold",
        ),
        (
            "delivery without dir",
            format!("{good}\n[delivery]\nbatch_size = 50\n"),
            "delivery.dir",
        ),
        (
            "delivery batch_size 0",
            format!("{good}\n[delivery]\ndir = \"r\"\nbatch_size = 0\n"),
            "delivery.batch_size",
        ),
        (
            "delivery batch_size over 500",
            format!("{good}\n[delivery]\ndir = \"r\"\nbatch_size = 5000\n"),
            "delivery.batch_size",
        ),
        (
            "delivery bad dataset",
            format!("{good}\n[delivery]\ndir = \"r\"\ndataset = \"energy\"\n"),
            "delivery.dataset",
        ),
        (
            "delivery bad rate",
            format!("{good}\n[delivery]\ndir = \"r\"\nrate = \"fast\"\n"),
            "delivery.rate",
        ),
        (
            "delivery hold_for too long",
            format!("{good}\n[delivery]\ndir = \"r\"\nhold_for = \"400days\"\n"),
            "delivery.hold_for",
        ),
        (
            "delivery unknown key",
            format!("{good}\n[delivery]\ndir = \"r\"\nbatchsize = 5\n"),
            "batchsize",
        ),
        (
            "bounce threshold not a share",
            good.replace("rate = \"unlimited\"", "rate = \"unlimited\"\nbounce_threshold = \"lots\""),
            "campaign \"meters\".bounce_threshold",
        ),
        (
            "public_url with a query",
            good.replace("public_url = \"http://", "public_url = \"ftp://"),
            "callback.public_url",
        ),
        (
            "return_path without {token}",
            good.replace("[smtp]\n", "[smtp]\nreturn_path = \"bounces@example.com\"\n"),
            "smtp.return_path",
        ),
        (
            "return_path {token} in the domain",
            good.replace("[smtp]\n", "[smtp]\nreturn_path = \"bounces@{token}.example.com\"\n"),
            "smtp.return_path",
        ),
        (
            "max_soft_bounces 0",
            good.replace("[smtp]\n", "[smtp]\nmax_soft_bounces = 0\n"),
            "smtp.max_soft_bounces",
        ),
        (
            "unsubscribe_mailto not an address",
            good.replace("[smtp]\n", "[smtp]\nunsubscribe_mailto = \"nobody\"\n"),
            "smtp.unsubscribe_mailto",
        ),
        (
            "callback.path under /unsubscribe/",
            good.replace("[callback]\n", "[callback]\npath = \"/unsubscribe/x\"\n"),
            "callback.path",
        ),
    ];
    for (what, text, key) in cases {
        let path = setup.dir.path().join("case.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{what}: {err}");
        assert!(err.contains(key), "{what}: names {key}: {err}");
    }

    // A short store key is refused, naming the key file.
    std::fs::write(setup.dir.path().join("secrets/store.key"), b"short").unwrap();
    let out = setup.cli(&["check-config"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("store.key_file"));

    // Environment overrides reach every key.
    std::fs::write(setup.dir.path().join("secrets/store.key"), [42u8; 32]).unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&setup.config)
        .env("MYDEX_CONNECTOR__INVITATIONS__CONCURRENCY", "3")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("concurrency = 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitee_files_report_bad_rows_and_queue_the_good() {
    let (smtp, setup) = base().await;
    let file = setup.dir.path().join("people.csv");
    let long = "x".repeat(10 * 1024 * 1024);
    std::fs::write(
        &file,
        format!(
            "email,name,mydexid,external_ref\n\
             good1@example.com,Good One,,M1\n\
             not-an-email,Bad Email,,M2\n\
             good2@example.com,Bad Id,12345,M3\n\
             good3@example.com,Bad Id,a_b,M4\n\
             good4@example.com,{long},,M5\n\
             good5@example.com,Dup,,M6\n\
             good5@example.com,Dup,,M6\n\
             good6@example.com,\"Quoted, Name\",RBFish123,M7\n"
        ),
    )
    .unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "bad rows make enqueue exit 1: {err}"
    );
    assert!(
        err.contains("people.csv:3:") && err.contains("not a valid address"),
        "{err}"
    );
    assert!(
        err.contains("people.csv:4:") && err.contains("numbers"),
        "{err}"
    );
    assert!(
        err.contains("people.csv:5:") && err.contains("alphanumeric"),
        "{err}"
    );
    assert!(
        err.contains("people.csv:6:") && err.contains("longer than"),
        "{err}"
    );
    assert!(err.contains("4 rows queued, 4 rejected"), "{err}");

    // A file without the email column is refused whole; nothing placed.
    let nocol = setup.dir.path().join("nocol.csv");
    std::fs::write(&nocol, "name\nAnn\n").unwrap();
    let out = setup.cli(&["enqueue", nocol.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `email` column"));
    // JSON Lines: a row naming a key twice is refused with the key named
    // (serde_json alone would keep the last `email` silently).
    let twice = setup.dir.path().join("twice.jsonl");
    std::fs::write(
        &twice,
        "{\"email\":\"j1@example.com\",\"email\":\"j2@example.com\"}\n",
    )
    .unwrap();
    let out = setup.cli(&["enqueue", twice.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("twice.jsonl:1: not valid JSON: key \"email\" is repeated"),
        "{err}"
    );
    assert!(err.contains("0 rows queued, 1 rejected"), "{err}");
    let queued: Vec<String> = std::fs::read_dir(setup.dir.path().join("queue"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // The file with no good row is placed too (as empty lines, with a note
    // naming it), so the daemon keeps its refused row for `rejects list`.
    let notes = queued.iter().filter(|n| n.ends_with(".origin")).count();
    assert_eq!(
        queued.len(),
        4,
        "two files placed and their notes: {queued:?}"
    );
    assert_eq!(notes, 2, "no temp files left: {queued:?}");

    // The daemon stores the good rows once; the duplicate goes to rejected/.
    let _daemon = setup.daemon();
    let status = setup.wait_status(
        |s| s["invitations"]["sent"] == 3,
        std::time::Duration::from_secs(30),
    );
    assert_eq!(
        status["invitations"]["sent"],
        3,
        "{status}\n{}",
        setup.log()
    );
    let rejected = std::fs::read_dir(setup.dir.path().join("queue/rejected"))
        .unwrap()
        .flatten()
        .next()
        .expect("a rejected report");
    let report = std::fs::read_to_string(rejected.path()).unwrap();
    assert!(
        report.contains("duplicate") && report.contains(":8:"),
        "{report}"
    );
    // Both placed files end in done/ (the one of no good row too).
    let done = setup.dir.path().join("queue/done");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_dir(&done).unwrap().count() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_dir(&done).unwrap().count(), 2);
    assert_eq!(
        smtp.wait_for(3, std::time::Duration::from_secs(10)).len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_callbacks_are_refused_or_quarantined_and_change_nothing() {
    let (_smtp, setup) = base().await;
    let _daemon = setup.daemon();
    let http = reqwest::Client::new();
    let url = setup.callback_url();
    let auth = mydex_connector::mydex::token_hash(TOKEN);
    let ftc = serde_json::json!({"uid": 1001, "mydexid": "RBFish123", "key": "member-secret-key-1", "connection_id": "1001-45678", "fields": {"a": 1}, "linking_token": "lt_unknown"});

    let r = http.post(&url).json(&ftc).send().await.unwrap();
    assert_eq!(r.status(), 401, "no Authentication header");
    let r = http
        .post(&url)
        .header("Authentication", "0".repeat(128))
        .json(&ftc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "wrong Authentication header");
    // Authenticated but of a type, shape or field type we do not read:
    // kept as quarantined (answered 200, nothing applied), never refused.
    let mut quarantined = 0;
    for (ctype, body, why) in [
        ("text/plain", b"uid=1".to_vec(), ""),
        ("application/json", b"{\"uid\": ".to_vec(), ""),
        (
            "application/json",
            serde_json::to_vec(
                &serde_json::json!({"uid": ["abc"], "key": "k", "connection_id": "1-45678"}),
            )
            .unwrap(),
            "uid",
        ),
    ] {
        let r = http
            .post(&url)
            .header("Authentication", &auth)
            .header("Content-Type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let answer: serde_json::Value = r.json().await.unwrap();
        // The parser may learn to read a shape; what it cannot read is quarantined.
        assert!(status.is_success(), "{ctype}: {status} {answer}");
        if answer["status"] == "quarantined" {
            quarantined += 1;
            let id = answer["id"].as_u64().unwrap();
            let shown = setup.cli(&["callbacks", "show", &id.to_string(), "--json"]);
            assert!(shown.status.success(), "{shown:?}");
            let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
            assert_eq!(shown["state"], "quarantined", "{shown}");
            assert!(shown["reason"].as_str().unwrap().contains(why), "{shown}");
        }
    }
    assert_eq!(quarantined, 3);
    let r = http
        .post(&url)
        .header("Authentication", &auth)
        .header("Content-Type", "application/json")
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    let s = setup.status();
    assert_eq!(s["members"]["total"], 0);
    assert_eq!(
        s["callbacks"]["unmatched"], 0,
        "nothing applied by malformed callbacks"
    );
    assert_eq!(s["callbacks"]["quarantined"], quarantined);
    assert_eq!(
        s["callbacks"]["stored"], 3,
        "the 401s and the 413 are not stored"
    );

    // Unknown linking_token: kept as unmatched, answered 200; a replay changes nothing.
    let r = http
        .post(&url)
        .header("Authentication", &auth)
        .json(&ftc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "unmatched"
    );
    let r = http
        .post(&url)
        .header("Authentication", &auth)
        .json(&ftc)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "replay"
    );
    let s = setup.status();
    assert_eq!(s["callbacks"]["unmatched"], 1);
    assert_eq!(s["members"]["total"], 0);

    // Form-encoded, and the notification and identify types, are read too.
    let form = "type=notification&uid=4020&message=changed&dataset=ds_events&connection_id=4020-45678&action=create&updated_id=1";
    let r = http
        .post(&url)
        .header("Authentication", &auth)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http.post(&url).header("Authentication", &auth).json(&serde_json::json!({"type": "identify", "mydexid": "johncitizen", "linking_token": "lt_x"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let s = setup.status();
    assert_eq!(s["callbacks"]["notification"], 1);
    assert_eq!(s["callbacks"]["identify"], 1);

    // The member key reached the disk only sealed.
    drop(_daemon);
    assert!(contains_bytes(&setup.dir.path().join("db"), b"member-secret-key-1").is_empty());
    assert!(
        !setup.log().contains("member-secret-key-1"),
        "the key is never logged"
    );
}

/// `check-config` (and `run`) on `config`: exit 78 and the error line.
fn refused(config: &std::path::Path, command: &str) -> String {
    let out = Command::new(bin())
        .args([command, "--config"])
        .arg(config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(78), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_pair_errors_name_the_key_and_exit_78() {
    use crate::callback_tls::{DAY, TLS_KEYS, TestCa, put, write_pair};
    let (_smtp, setup) = base().await;
    let ca = TestCa::new();
    let dir = setup.dir.path();
    let good_leaf = ca.leaf(1, 90 * DAY);
    let (cert, key) = write_pair(dir, &good_leaf);
    let good = std::fs::read_to_string(&setup.config).unwrap();
    let with_tls = good.replacen("[callback]\n", TLS_KEYS, 1);
    let config = dir.join("tls.toml");
    std::fs::write(&config, &with_tls).unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        shown.contains("serial 10:01") && shown.contains("<redacted, read from"),
        "{shown}"
    );
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");

    // One of the two.
    let cert_line = "tls_cert_file = \"tls/fullchain.pem\"\n";
    let key_line = "tls_key_file = \"tls/privkey.pem\"\n";
    for (text, names) in [
        (with_tls.replace(key_line, ""), "callback.tls_key_file"),
        (with_tls.replace(cert_line, ""), "callback.tls_cert_file"),
        (
            with_tls.replace("tls/fullchain.pem", "tls/missing.pem"),
            "callback.tls_cert_file",
        ),
        (
            with_tls.replace("tls/privkey.pem", "tls"),
            "callback.tls_key_file",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let err = refused(&config, "check-config");
        assert!(err.contains(names), "names {names}: {err}");
    }

    // Wrong, empty, hostile and oversized contents.
    let other = ca.leaf(2, 90 * DAY);
    let reversed = {
        let mut blocks: Vec<&str> = good_leaf
            .0
            .split_inclusive("-----END CERTIFICATE-----\n")
            .collect();
        blocks.reverse();
        blocks.concat()
    };
    let garbage_der = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
    let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
    let garbage_key = "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n";
    let huge = format!("{}{}", good_leaf.0, "#".repeat(70 * 1024));
    std::fs::write(&config, &with_tls).unwrap();
    let cases: Vec<(&str, String, String, &str, &str)> = vec![
        (
            "empty cert",
            String::new(),
            good_leaf.1.clone(),
            "callback.tls_cert_file",
            "no PEM certificate",
        ),
        (
            "binary cert",
            "\u{0}\u{1}\u{fffd}binary".into(),
            good_leaf.1.clone(),
            "callback.tls_cert_file",
            "no PEM certificate",
        ),
        (
            "key as cert",
            good_leaf.1.clone(),
            good_leaf.1.clone(),
            "callback.tls_cert_file",
            "no PEM certificate",
        ),
        (
            "bad base64",
            bad_base64.into(),
            good_leaf.1.clone(),
            "callback.tls_cert_file",
            "PEM",
        ),
        (
            "not a certificate",
            garbage_der.into(),
            good_leaf.1.clone(),
            "callback.tls_cert_file",
            "cannot be read",
        ),
        (
            "oversized",
            huge,
            good_leaf.1.clone(),
            "callback.tls_cert_file",
            "larger than",
        ),
        (
            "cert as key",
            good_leaf.0.clone(),
            good_leaf.0.clone(),
            "callback.tls_key_file",
            "no PEM private key",
        ),
        (
            "empty key",
            good_leaf.0.clone(),
            String::new(),
            "callback.tls_key_file",
            "no PEM private key",
        ),
        (
            "garbage key",
            good_leaf.0.clone(),
            garbage_key.into(),
            "callback.tls_key_file",
            "cannot be used",
        ),
        (
            "other key",
            good_leaf.0.clone(),
            other.1.clone(),
            "callback.tls_key_file",
            "does not match",
        ),
        (
            "intermediate first",
            reversed,
            good_leaf.1.clone(),
            "callback.tls_key_file",
            "does not match",
        ),
    ];
    for (what, c, k, names, says) in cases {
        put(&cert, &c);
        put(&key, &k);
        let err = refused(&config, "check-config");
        assert!(err.contains(names) && err.contains(says), "{what}: {err}");
        assert!(
            !err.contains("PRIVATE KEY"),
            "{what}: no key material: {err}"
        );
    }
    // `run` refuses the same way, before binding anything.
    put(&cert, &good_leaf.0);
    put(&key, &other.1);
    let err = refused(&config, "run");
    assert!(err.contains("callback.tls_key_file"), "{err}");

    // The systemd credentials: one alone names the other key.
    put(&key, &good_leaf.1);
    let creds = dir.join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("tls_cert"), &good_leaf.0).unwrap();
    std::fs::write(&config, &good).unwrap();
    let err = refused(&config, "check-config");
    assert!(err.contains("callback.tls_key_file"), "{err}");
    std::fs::write(creds.join("tls_key"), &good_leaf.1).unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("credentials/tls_cert"));
}
