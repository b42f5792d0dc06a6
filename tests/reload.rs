//! SIGHUP through the real binary: a bad new configuration is refused with
//! its error logged and the running one keeps working; a good one changes
//! the templates of the next mails and the log level.

mod support;

use std::time::{Duration, Instant};

use support::*;

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
        if log.contains(needle) || start.elapsed() > Duration::from_secs(30) {
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
    let m = smtp.wait_for(1, Duration::from_secs(30));
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
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(setup.log().contains("levle"), "{}", setup.log());
    // (The good file back, for `enqueue`; the daemon is not told.)
    std::fs::write(&setup.config, &config).unwrap();
    enqueue(&setup, "second", "two@example.com");
    let m = smtp.wait_for(2, Duration::from_secs(30));
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
    let m = smtp.wait_for(3, Duration::from_secs(30));
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
