//! SIGHUP through the real binary: a bad new configuration is refused with
//! its error logged and the running one keeps working; a good one changes
//! the templates of the next mails and the log level.

use std::time::{Duration, Instant};

use mydex_test_support::*;

fn enqueue(setup: &Setup, name: &str, email: &str) {
    let file = setup.dir.path().join(format!("{name}.csv"));
    std::fs::write(&file, format!("email,external_ref\n{email},{name}\n")).unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_log(setup: &Setup, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let log = setup.log();
        if log.contains(needle) || start.elapsed() > Duration::from_secs(120) {
            return log;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_templates(setup: &Setup, marker: &str) {
    let t = setup.dir.path().join("tpl");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(
        t.join("invite.txt"),
        format!("{marker}\n\n{{{{ link }}}}\n"),
    )
    .unwrap();
    std::fs::write(
        t.join("invite.html"),
        format!("<p>{marker}</p><p><a href=\"{{{{ link }}}}\">{{{{ link }}}}</a><img src=\"{{{{ qr_src }}}}\"></p>\n"),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_templates_and_log_level_and_refuses_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    // The campaign takes its templates from tpl/; the level from [log].
    let base = std::fs::read_to_string(&setup.config).unwrap().replace(
        "rate = \"unlimited\"",
        "rate = \"unlimited\"\ntext_template = \"tpl/invite.txt\"\nhtml_template = \"tpl/invite.html\"",
    );
    let config = format!("[log]\nlevel = \"info\"\n\n{base}");
    std::fs::write(&setup.config, &config).unwrap();
    write_templates(&setup, "VERSION-ONE");
    let mut daemon = setup.daemon_with(|c| {
        c.env_remove("RUST_LOG");
    });
    let pid = daemon.0.id() as i32;

    enqueue(&setup, "first", "one@example.com");
    let m = smtp.wait_for(1, Duration::from_secs(120));
    assert_eq!(m.len(), 1, "{}", setup.log());
    assert!(
        std::fs::read_to_string(&m[0])
            .unwrap()
            .contains("VERSION-ONE")
    );
    assert!(!setup.log().contains("DEBUG"), "info level at start");

    // A template that does not parse: refused, the old one stays.
    std::fs::write(setup.dir.path().join("tpl/invite.txt"), "{{ link ").unwrap();
    assert_eq!(send_signal(pid, "HUP"), 0);
    let log = wait_log(&setup, "reload refused");
    assert!(log.contains("reload refused"), "{log}");
    let refused = log.lines().find(|l| l.contains("reload refused")).unwrap();
    println!("{refused}");
    assert!(
        refused.contains("text_template"),
        "the error names the key: {refused}"
    );
    // An unknown key: refused too.
    std::fs::write(
        &setup.config,
        config.replace("[log]\n", "[log]\nlevle = \"debug\"\n"),
    )
    .unwrap();
    assert_eq!(send_signal(pid, "HUP"), 0);
    let start = Instant::now();
    while setup.log().matches("reload refused").count() < 2
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(setup.log().contains("levle"), "{}", setup.log());
    // (The good file back, for `enqueue`; the daemon is not told.)
    std::fs::write(&setup.config, &config).unwrap();
    enqueue(&setup, "second", "two@example.com");
    let m = smtp.wait_for(2, Duration::from_secs(120));
    assert_eq!(m.len(), 2, "{}", setup.log());
    assert!(
        std::fs::read_to_string(&m[1])
            .unwrap()
            .contains("VERSION-ONE"),
        "old templates still in force"
    );
    assert!(!setup.log().contains("DEBUG"));

    // A good new configuration: new templates, debug level.
    write_templates(&setup, "VERSION-TWO");
    std::fs::write(
        &setup.config,
        config.replace("level = \"info\"", "level = \"debug\""),
    )
    .unwrap();
    assert_eq!(send_signal(pid, "HUP"), 0);
    let log = wait_log(&setup, "configuration reloaded");
    assert!(log.contains("configuration reloaded"), "{log}");
    enqueue(&setup, "third", "three@example.com");
    let m = smtp.wait_for(3, Duration::from_secs(120));
    assert_eq!(m.len(), 3, "{}", setup.log());
    assert!(
        std::fs::read_to_string(&m[2])
            .unwrap()
            .contains("VERSION-TWO"),
        "new templates"
    );
    let log = wait_log(&setup, "DEBUG");
    assert!(log.contains("DEBUG"), "debug lines after the reload: {log}");

    // Still a clean stop.
    assert_eq!(send_signal(pid, "TERM"), 0);
    let status = wait_exit(&mut daemon, Duration::from_secs(60));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    setup.keep_for_log_scan().await;
}

/// A weekday that is not today (in UTC), for a send window that is closed now.
fn another_day() -> &'static str {
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // 1970-01-01 was a Thursday (index 3).
    days[((secs / 86400 + 3 + 3) % 7) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_campaign_settings_and_keeps_them_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let base = std::fs::read_to_string(&setup.config).unwrap();
    let closed = base.replace(
        "rate = \"unlimited\"",
        &format!(
            "rate = \"unlimited\"\nsend_window = \"{} 00:00-00:01\"\ntime_zone = \"UTC\"",
            another_day()
        ),
    );
    std::fs::write(&setup.config, &closed).unwrap();
    let mut daemon = setup.daemon();
    let pid = daemon.0.id() as i32;

    // Outside its send window the campaign mails nothing.
    enqueue(&setup, "held", "held@example.com");
    let s = setup.wait_status(
        |s| s["invitations"]["queued"] == 1,
        Duration::from_secs(120),
    );
    assert_eq!(s["invitations"]["queued"], 1, "{s}");
    assert_eq!(
        s["campaigns"]["meters"]["state"], "outside_send_window",
        "{s}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(smtp.messages().len(), 0);

    // A bad window in the new file: refused, naming the key; still held.
    std::fs::write(&setup.config, closed.replace("00:00-00:01", "09:00-25:00")).unwrap();
    assert_eq!(send_signal(pid, "HUP"), 0);
    let log = wait_log(&setup, "reload refused");
    let refused = log
        .lines()
        .find(|l| l.contains("reload refused"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(refused.contains("send_window"), "{refused}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(smtp.messages().len(), 0, "the old window still holds");

    // The window gone and a new rate: the held invitation goes out, and the
    // status shows the campaign's new settings.
    std::fs::write(
        &setup.config,
        base.replace("rate = \"unlimited\"", "rate = \"7/1min\""),
    )
    .unwrap();
    assert_eq!(send_signal(pid, "HUP"), 0);
    wait_log(&setup, "configuration reloaded");
    let m = smtp.wait_for(1, Duration::from_secs(120));
    assert_eq!(m.len(), 1, "{}", setup.log());
    let s = setup.status();
    assert_eq!(s["campaigns"]["meters"]["state"], "active", "{s}");
    assert_eq!(s["campaigns"]["meters"]["rate"], "7/1m", "{s}");
    assert_eq!(s["campaign_progress"]["meters"]["rate"], "7/1m", "{s}");
    assert_eq!(
        s["campaigns"]["meters"]["send_window"],
        serde_json::Value::Null
    );

    assert_eq!(send_signal(pid, "TERM"), 0);
    let status = wait_exit(&mut daemon, Duration::from_secs(60));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    setup.keep_for_log_scan().await;
}
