//! `people forget` through the real binary, the sandbox, the real
//! SMTP server and a real sled: invited people and connected members with
//! names, extra columns and readings; one forgotten by address, one member
//! by external ref (refused without `--disconnect`, nothing changed; then
//! erased with it). Afterwards no file under the store, the queue or the
//! delivery directory holds their address, name, extra column or ref in any
//! case form (a planted string proves the scan finds what is there), the
//! others are still there, re-enqueueing the address is refused with the
//! reason, a second forget is "no such person", and hostile requests are
//! clear errors that change nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mydex_test_support::*;

const DELIVERY: &str = "\n[delivery]\ndir = \"readings\"\nbatch_size = 7\nhold_for = \"1h\"\n";

/// Files under `dirs` holding `needle` in any of its case forms.
fn scan(dirs: &[PathBuf], needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for form in [
        needle.to_string(),
        needle.to_lowercase(),
        needle.to_uppercase(),
    ] {
        for d in dirs {
            hits.extend(contains_bytes(d, form.as_bytes()));
        }
    }
    hits.sort();
    hits.dedup();
    hits
}

fn forget(setup: &Setup, args: &[&str]) -> std::process::Output {
    let mut all = vec!["people", "forget", "--json"];
    all.extend_from_slice(args);
    setup.cli(&all)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok_json(out: std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What an operator sees (a positive control that the others survive).
fn views(setup: &Setup) -> (serde_json::Value, String, String) {
    let list = setup.cli(&["invitations", "list", "--json"]);
    assert!(list.status.success(), "{}", text(&list));
    let members = setup.cli(&["members", "export", "--format", "json"]);
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

fn done_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("done"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_people_leave_nothing_in_our_files() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let opts = Options {
        extra_config: DELIVERY.into(),
        ..Default::default()
    };
    let setup = setup(smtp.port, dir, opts).await;
    let daemon = setup.daemon();
    place(
        &setup,
        "enqueue",
        "people.csv",
        "email,name,external_ref,tariff\n\
         Quintessa.Forgetwell@Example.com,Quintessa Forgetwell,QF-REF-9071,Zephyrwind Saver\n\
         xavier.memberly@example.com,Xavier Memberly,XM-REF-5523,Obsidian Flex\n\
         keeper.stays@example.com,Keeper Stays,KS-REF-1101,Plain Fixed\n\
         bob.remains@example.com,Bob Remains,BR-REF-2202,Plain Fixed\n",
    );
    let paths = smtp.wait_for(4, Duration::from_secs(120));
    assert_eq!(paths.len(), 4, "{}", setup.log());
    for p in &paths {
        let mail = read_mail(p);
        let id = match mail.to.as_str() {
            "xavier.memberly@example.com" => "xaviermem1",
            "keeper.stays@example.com" => "keeperst1",
            _ => continue,
        };
        let (status, body) = setup.journey(&mail.qr_link, id, &mail.to).await;
        assert_eq!(status, 200, "{body}");
    }
    setup.wait_status(
        |s| s["invitations"]["connected"] == 2,
        Duration::from_secs(60),
    );
    place(
        &setup,
        "deliver",
        "r.csv",
        "external_ref,external_id,kwh\nQF-REF-9071,q1,1.5\nXM-REF-5523,x1,2.5\nKS-REF-1101,k1,3.5\nBR-REF-2202,b1,4.5\n",
    );
    let s = setup.wait_status(
        |s| {
            let r = &s["records"];
            r["held"].as_u64().unwrap_or(0) + r["delivered"].as_u64().unwrap_or(0) == 4
        },
        Duration::from_secs(120),
    );
    assert_eq!(s["records"]["queued"], 0, "{}", s["records"]);
    let root = setup.dir.path().to_path_buf();
    let start = std::time::Instant::now();
    while (done_files(&root.join("queue")) == 0 || done_files(&root.join("readings")) == 0)
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(100));
    }

    // An invitee, by address (any case).
    let f = ok_json(forget(
        &setup,
        &["--email", "QUINTESSA.forgetwell@example.com"],
    ));
    assert_eq!(f["invitations"], 1, "{f}");
    assert_eq!(f["members"], 0, "{f}");
    assert_eq!(f["readings"], 1, "{f}");
    assert!(
        f["lines"].as_u64().unwrap() >= 2,
        "queue and readings lines: {f}"
    );

    // A connected member by external ref: refused, nothing changed.
    let before = views(&setup);
    let out = forget(&setup, &["--external-ref", "XM-REF-5523"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--disconnect"), "{}", text(&out));
    assert_eq!(views(&setup), before, "a refusal changes nothing");
    // Hostile and wrong requests: clear errors, nothing changed.
    for (args, code, says) in [
        (vec![], 2, "required"),
        (
            vec!["--email", "a@example.com", "--external-ref", "X"],
            2,
            "cannot be used with",
        ),
        (vec!["--email", ""], 1, "email is empty"),
        (vec!["--email", "not-an-address"], 1, "not a valid address"),
        (vec!["--external-ref", ""], 1, "external_ref is empty"),
        (vec!["--external-ref", "x\u{7}y"], 1, "control characters"),
        (
            vec!["--email", "nobody.here@example.com"],
            1,
            "no such person",
        ),
    ] {
        let out = forget(&setup, &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    let long = "R".repeat(5000);
    let out = forget(&setup, &["--external-ref", &long]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("longer than"), "{}", text(&out));
    let http = reqwest::Client::new();
    let url = setup.admin_url("/people/forget");
    // Three times the 16 KiB limit: read to its end before the 413.
    let huge = format!("{{\"external_ref\": \"{}\"}}", "R".repeat(48_000));
    for (token, body, want) in [
        (Some(ADMIN_TOKEN), huge, 413),
        (
            None,
            r#"{"email": "xavier.memberly@example.com", "disconnect": true}"#.into(),
            401,
        ),
        (
            Some("wrong-token-000000000000"),
            r#"{"email": "xavier.memberly@example.com", "disconnect": true}"#.into(),
            401,
        ),
        (Some(ADMIN_TOKEN), "\u{0}\u{ff}not json".into(), 400),
        (
            Some(ADMIN_TOKEN),
            r#"{"email": "x@example.com", "extra": 1}"#.into(),
            400,
        ),
    ] {
        let mut req = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), want);
    }
    assert_eq!(views(&setup), before, "hostile requests change nothing");

    // With --disconnect: the member, their key and callbacks go too.
    let f = ok_json(forget(
        &setup,
        &["--external-ref", "XM-REF-5523", "--disconnect"],
    ));
    assert_eq!(
        (f["invitations"].as_u64(), f["members"].as_u64()),
        (Some(1), Some(1)),
        "{f}"
    );
    assert!(f["raw_callbacks"].as_u64().unwrap() >= 1, "{f}");
    // A second time: no such person, not a crash.
    let out = forget(&setup, &["--external-ref", "XM-REF-5523", "--disconnect"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no such person"), "{}", text(&out));

    let (s, list, members) = views(&setup);
    assert_eq!(s["suppressed"], 2, "{s}");
    assert_eq!(s["members"]["total"], 1, "{s}");
    assert!(
        list.contains("Bob Remains") && list.contains("KS-REF-1101"),
        "{list}"
    );
    assert!(members.contains("keeperst1"), "{members}");
    let log = setup.log();
    let line = log
        .lines()
        .filter(|l| l.contains("person forgotten"))
        .collect::<Vec<_>>();
    assert_eq!(line.len(), 2, "{log}");
    setup.stop(daemon);

    // Every file we keep: the store, the queue's and the readings' files.
    let dirs = [root.join("db"), root.join("queue"), root.join("readings")];
    let gone = [
        "Quintessa.Forgetwell@Example.com",
        "Quintessa Forgetwell",
        "Forgetwell",
        "QF-REF-9071",
        "Zephyrwind",
        "xavier.memberly@example.com",
        "Xavier Memberly",
        "XM-REF-5523",
        "Obsidian Flex",
    ];
    for g in gone {
        assert_eq!(scan(&dirs, g), Vec::<PathBuf>::new(), "{g} is still held");
        for l in &line {
            assert!(!l.to_lowercase().contains(&g.to_lowercase()), "{l}");
        }
    }
    // The scan finds what is there: the others' rows kept in done/, and a
    // planted string in the store's directory.
    assert!(!scan(&dirs, "bob.remains@example.com").is_empty());
    assert!(!scan(&dirs, "KS-REF-1101").is_empty());
    let planted = root.join("db").join("planted.bin");
    std::fs::write(&planted, b"..QUINTESSA FORGETWELL..").unwrap();
    assert_eq!(scan(&dirs, "Quintessa Forgetwell"), vec![planted.clone()]);
    std::fs::remove_file(&planted).unwrap();

    // The store opens again; the address is refused with the reason.
    let _daemon = setup.daemon();
    // `enqueue` checks the suppression list first and reports the row.
    let again = setup.dir.path().join("again.csv");
    std::fs::write(&again, "email,name\nquintessa.forgetwell@example.com,Q\n").unwrap();
    let out = setup.cli(&["enqueue", again.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("again.csv:2: suppressed: forgotten"),
        "{}",
        text(&out)
    );
    let (s, list, _) = views(&setup);
    assert_eq!(s["suppressed"], 2, "{s}");
    assert!(list.contains("Bob Remains"), "{list}");
    setup.keep_for_log_scan().await;
}
