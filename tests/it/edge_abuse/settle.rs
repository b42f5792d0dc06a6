//! Files copied into the watched directories by other tools, through the
//! real daemon, sandbox and SMTP server: a file still being written is not
//! read half-way (every row of a file written in two halves 6 s apart is
//! taken in), and a file that can never be read (a name that is not UTF-8,
//! too long or holding a control character, a FIFO, a directory, a link)
//! goes to `rejected/` once, with a reason and one log line, instead of an
//! error every poll. Nothing in `rejected/` is written through a link.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mydex_test_support::*;

async fn start(extra: &str) -> (Smtp, Setup) {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let opts = Options {
        extra_config: extra.into(),
        ..Default::default()
    };
    let setup = setup(smtp.port, dir, opts).await;
    (smtp, setup)
}

/// Write `first` to `path` (created in place), wait `gap`, write `second`.
/// `keep_open`: one open file throughout, as a slow copy does; else closed
/// and opened again for the second half.
fn write_in_halves(path: PathBuf, first: String, second: String, gap: Duration, keep_open: bool) {
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(first.as_bytes()).unwrap();
    f.sync_all().unwrap();
    if !keep_open {
        // Closed now, opened again for the second half.
        f = std::fs::File::open("/dev/null").unwrap();
    }
    std::thread::sleep(gap);
    if !keep_open {
        f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
    }
    f.write_all(second.as_bytes()).unwrap();
    f.sync_all().unwrap();
}

/// Lines of the daemon log that contain every one of `needles`.
fn log_lines(setup: &Setup, needles: &[&str]) -> usize {
    setup
        .log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Wait until the daemon watches its `what` directory (a copy begun
/// before is judged by the settle time alone, see `docs/book/src/watched-directories.md`).
fn wait_watching(setup: &Setup, what: &str) {
    let needle = format!("watching the {what} directory for files");
    wait_until(&needle, Duration::from_secs(60), || {
        log_lines(setup, &[&needle]) == 1
    });
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_file_written_in_two_halves_6s_apart_is_invited_whole() {
    // The default queue.settle (5s): the copy stalls longer than that, with
    // the file open, and still no row is missed.
    let (smtp, setup) = start("").await;
    let _daemon = setup.daemon();
    wait_watching(&setup, "queue");
    let rows = |r: std::ops::Range<u32>| -> String {
        r.map(|i| format!("half{i}@example.com,Person {i},MTR-{i:03}\n"))
            .collect()
    };
    let path = setup.dir.path().join("queue/copied.csv");
    let first = format!("email,name,external_ref\n{}", rows(0..20));
    let writer = std::thread::spawn(move || {
        write_in_halves(path, first, rows(20..40), Duration::from_secs(6), true)
    });
    writer.join().unwrap();
    let mails = smtp.wait_for(40, Duration::from_secs(180));
    assert_eq!(mails.len(), 40, "every row mailed: {}", setup.log());
    let mut to: Vec<String> = smtp.arrivals().into_iter().map(|(_, to)| to).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 40, "each person once: {to:?}");
    for i in 0..40 {
        assert!(
            to.iter()
                .any(|t| t.contains(&format!("half{i}@example.com"))),
            "half{i} mailed: {to:?}"
        );
    }
    let s = setup.status();
    assert_eq!(s["invitations"]["sent"], 40, "{s}");
    assert!(
        !setup
            .dir
            .path()
            .join("queue/rejected/copied.csv.rejected.txt")
            .exists(),
        "no row rejected"
    );
    assert_eq!(
        log_lines(
            &setup,
            &["copied.csv", "it is read once it has not changed"]
        ),
        1,
        "the wait is logged once: {}",
        setup.log()
    );
    assert_eq!(log_lines(&setup, &["copied.csv", "queue file ingested"]), 1);
    setup.keep_for_log_scan().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readings_file_written_in_two_halves_6s_apart_is_delivered_whole() {
    // Two copies 6 s apart: one held open (a stalled copy), one closed and
    // appended to (a script writing twice), which only the settle time
    // (delivery.file_settle, longer than the gap) can tell from a whole file.
    let extra = "\n[delivery]\ndir = \"readings\"\nfile_settle = \"15s\"\n";
    let (_smtp, setup) = start(extra).await;
    let members = seed_members(&setup, 2, 1).await;
    let _daemon = setup.daemon();
    wait_watching(&setup, "readings");
    let rows = |m: &serde_json::Value, r: std::ops::Range<u32>| -> String {
        r.map(|j| {
            format!(
                "{}\n",
                serde_json::json!({"mydexid": m["mydexid"], "external_id": format!("e{j}"), "kwh": j})
            )
        })
        .collect()
    };
    let mut writers = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let path = setup.dir.path().join(format!("readings/copy{i}.jsonl"));
        let (first, second) = (rows(m, 0..10), rows(m, 10..20));
        let keep_open = i == 0;
        writers.push(std::thread::spawn(move || {
            write_in_halves(path, first, second, Duration::from_secs(6), keep_open)
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    let s = setup.wait_status(
        |s| s["records"]["delivered"] == 40,
        Duration::from_secs(180),
    );
    assert_eq!(s["records"]["delivered"], 40, "{}", s["records"]);
    for m in &members {
        let v: serde_json::Value = reqwest::get(format!(
            "{}/_sandbox/pds/{}",
            setup.sandbox.url(),
            m["mydexid"].as_str().unwrap()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let got = v["datasets"]["ds_energy_readings"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(got, 20, "every reading of {} delivered", m["mydexid"]);
    }
    for i in 0..2 {
        let name = format!("copy{i}.jsonl");
        assert_eq!(
            log_lines(&setup, &[&name, "it is read once it has not changed"]),
            1,
            "{name}: the wait is logged once: {}",
            setup.log()
        );
        assert_eq!(log_lines(&setup, &[&name, "readings file ingested"]), 1);
    }
    setup.keep_for_log_scan().await;
}

/// The queue entries that cannot be read, made in `queue`: (name as the
/// log and report show it, what the report says).
fn unreadable_entries(root: &Path) -> Vec<(String, &'static str)> {
    let queue = root.join("queue");
    let good = "email\nnever@example.com\n";
    let not_utf8 = OsString::from_vec(b"latin1-\xe9t\xe9.csv".to_vec());
    std::fs::write(queue.join(&not_utf8), good).unwrap();
    let long = format!("{}.csv", "l".repeat(245));
    std::fs::write(queue.join(&long), good).unwrap();
    std::fs::write(queue.join("ctl\nline.csv"), good).unwrap();
    let fifo = queue.join("pipe.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::create_dir(queue.join("folder.jsonl")).unwrap();
    std::fs::write(root.join("outside.csv"), good).unwrap();
    std::os::unix::fs::symlink(root.join("outside.csv"), queue.join("link.csv")).unwrap();
    vec![
        ("latin1-".into(), "not valid UTF-8"),
        (long[..40].to_string(), "bytes long"),
        // Shown escaped: a newline in a name cannot forge a log line.
        ("ctl\\nline.csv".into(), "control character"),
        ("pipe.csv".into(), "a FIFO"),
        ("folder.jsonl".into(), "a directory"),
        ("link.csv".into(), "a symbolic link"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_cannot_be_read_go_to_rejected_once_and_links_are_not_followed() {
    let (smtp, setup) = start("").await;
    let root = setup.dir.path().to_path_buf();
    let _daemon = setup.daemon();
    // A link left where a report will go, pointing at a file of ours.
    let victim = root.join("victim.txt");
    std::fs::write(&victim, "not to be written\n").unwrap();
    let report = root.join("queue/rejected/people.csv.rejected.txt");
    std::os::unix::fs::symlink(&victim, &report).unwrap();

    let entries = unreadable_entries(&root);
    // A file with a bad row, placed whole (written aside, renamed in).
    let aside = root.join("people.csv");
    std::fs::write(&aside, "email\nok@example.com\nnot-an-address\n").unwrap();
    std::fs::rename(&aside, root.join("queue/people.csv")).unwrap();

    let queue = root.join("queue");
    let left = || {
        std::fs::read_dir(&queue)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| !["done", "rejected"].contains(&e.file_name().to_str().unwrap_or("")))
            .count()
    };
    wait_until(
        "every entry moved out of the queue",
        Duration::from_secs(120),
        || left() == 0,
    );
    assert_eq!(smtp.wait_for(1, Duration::from_secs(120)).len(), 1);
    // Many more polls (200 ms each): nothing more is logged.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        log_lines(&setup, &["file cannot be taken in"]),
        entries.len(),
        "{}",
        setup.log()
    );
    assert_eq!(log_lines(&setup, &["cannot take the file in"]), 0);
    let reports: Vec<(String, String)> = std::fs::read_dir(root.join("queue/rejected"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".rejected.txt"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    for (name, why) in &entries {
        let found = reports
            .iter()
            .any(|(_, text)| text.contains(name.as_str()) && text.contains(why));
        assert!(found, "{name}: a report saying {why:?}: {reports:?}");
        assert_eq!(
            log_lines(&setup, &["file cannot be taken in", why]),
            1,
            "{name} logged once"
        );
    }
    // The set-aside entries are in rejected/ as they were.
    let fifo = root.join("queue/rejected/pipe.csv");
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::symlink_metadata(&fifo).unwrap().file_type()
    ));
    assert!(
        std::fs::symlink_metadata(root.join("queue/rejected/link.csv"))
            .unwrap()
            .is_symlink()
    );
    // The link was not followed: the victim is untouched, the report is a file.
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "not to be written\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("outside.csv")).unwrap(),
        "email\nnever@example.com\n",
        "the link's target is left alone"
    );
    let meta = std::fs::symlink_metadata(&report).unwrap();
    assert!(meta.is_file(), "the report replaced the link");
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("people.csv:3:"), "{text}");
    assert_eq!(
        log_lines(
            &setup,
            &["symbolic link stood where a rejected-rows report goes"]
        ),
        1
    );
    let s = setup.status();
    assert_eq!(s["invitations"]["sent"], 1, "only ok@example.com: {s}");
    setup.keep_for_log_scan().await;
}
