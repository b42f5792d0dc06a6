//! How the configuration file is chosen (the global `--config`, before or
//! after the command; `MYDEX_CONNECTOR_CONFIG`; the packaged default) and what
//! `check-config` says about a file with mistakes in it, driven through the
//! real binary.

use std::path::Path;
use std::process::{Command, Output};

use mydex_test_support::*;

const DEFAULT_CONFIG: &str = "/etc/mydex-connector/mydex-connector.toml";

/// A config as the other suites write it (the sandbox runs, nothing else).
async fn written() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    setup(free_port(), dir, Options::default()).await
}

/// The binary with `args`, no `MYDEX_CONNECTOR*` variable inherited.
fn cli(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("MYDEX_CONNECTOR") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_a_global_option_before_or_after_the_command() {
    let setup = written().await;
    let path = setup.config.to_str().unwrap();
    for args in [
        ["--config", path, "check-config"],
        ["check-config", "--config", path],
        ["-c", path, "check-config"],
    ] {
        let out = cli(&args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("configuration OK: {path}")),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_comes_from_the_environment_variable_and_the_flag_wins() {
    let setup = written().await;
    let path = setup.config.to_str().unwrap();

    let out = cli(
        &["check-config"],
        &[("MYDEX_CONNECTOR_CONFIG", &setup.config)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("configuration OK: {path}")),
        "{}",
        stderr(&out)
    );

    // The flag is preferred to the variable.
    let nowhere = setup.dir.path().join("nowhere.toml");
    let out = cli(
        &["check-config", "--config", path],
        &[("MYDEX_CONNECTOR_CONFIG", &nowhere)],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // A variable naming a missing file: exit 78, the path and where it came from.
    let out = cli(&["status"], &[("MYDEX_CONNECTOR_CONFIG", &nowhere)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(nowhere.to_str().unwrap()) && err.contains("MYDEX_CONNECTOR_CONFIG"),
        "{err}"
    );
    assert!(!err.contains("--config PATH"), "not the default: {err}");
}

#[test]
fn without_flag_or_variable_the_packaged_default_is_read() {
    let out = cli(&["check-config"], &[]);
    let err = stderr(&out);
    if Path::new(DEFAULT_CONFIG).exists() {
        // A machine with the package installed: that file is the one read.
        assert!(err.contains(DEFAULT_CONFIG), "{err}");
        return;
    }
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(DEFAULT_CONFIG)
            && err.contains("does not exist")
            && err.contains("--config PATH")
            && err.contains("MYDEX_CONNECTOR_CONFIG"),
        "names the default and how to choose another: {err}"
    );
    // Every command that reads a config says the same.
    let out = cli(&["status", "--json"], &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains(DEFAULT_CONFIG));
    // `--help` shows the default and the variable.
    let help = cli(&["status", "--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains(DEFAULT_CONFIG) && help.contains("MYDEX_CONNECTOR_CONFIG"),
        "{help}"
    );
}

#[test]
fn a_missing_file_named_by_the_flag_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml");
    let out = cli(
        &["check-config", "--config", missing.to_str().unwrap()],
        &[],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(missing.to_str().unwrap()) && err.contains("--config"),
        "{err}"
    );
}

/// The 1-based line of the first line of `text` that starts with `start`.
fn line_of(text: &str, start: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("{start:?} is in the config"))
        + 1
}

/// The setup's config with five different mistakes, and the report lines
/// each must give (`FILE:LINE: KEY: ...`).
fn five_mistakes(setup: &Setup) -> (std::path::PathBuf, Vec<String>) {
    let good = std::fs::read_to_string(&setup.config).unwrap();
    let bad = good
        .replace("client_id = ", "clinet_id = ")
        .replace(
            "from = \"Example Energy <connect@example.com>\"",
            "from = \"Example Energy, Ltd. <connect@example.com>\"",
        )
        .replace("concurrency = 16", "concurrency = \"many\"")
        .replace(
            "version_check = \"",
            "version_check = \"0 0 25 * * *\"\n#\"",
        )
        .replace("rate = \"unlimited\"", "rate = \"lots\"");
    let path = setup.dir.path().join("five.toml");
    std::fs::write(&path, &bad).unwrap();
    let p = path.display();
    let expect = vec![
        format!(
            "{p}:{}: `mydex.clinet_id`: unknown key; did you mean `client_id`?",
            line_of(&bad, "clinet_id")
        ),
        format!("{p}:{}: `smtp.from`: ", line_of(&bad, "from = ")),
        format!(
            "{p}:{}: `invitations.concurrency`: ",
            line_of(&bad, "concurrency = \"many\"")
        ),
        format!(
            "{p}:{}: `schedule.version_check`: \"0 0 25 * * *\" is not a valid cron expression: the hour field is 25, but hours run from 0 to 23",
            line_of(&bad, "version_check")
        ),
        format!(
            "{p}:{}: `campaign \"meters\".rate`: ",
            line_of(&bad, "rate = \"lots\"")
        ),
    ];
    (path, expect)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_mistakes_are_all_reported_with_key_file_and_line() {
    let setup = written().await;
    let (path, expect) = five_mistakes(&setup);
    for command in ["check-config", "run"] {
        let out = cli(&[command, "--config", path.to_str().unwrap()], &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{command}: {err}");
        assert!(err.contains("has 5 problems"), "{command}: {err}");
        for line in &expect {
            assert!(err.contains(line.as_str()), "{command}: {line:?} in {err}");
        }
        // Said in words, not by the libraries underneath.
        for never in [
            "expected one of",
            "Component error",
            "Invalid input",
            "campaign[0]",
            "is required but missing",
        ] {
            assert!(!err.contains(never), "{command}: {never:?} in {err}");
        }
        assert!(
            err.contains("\"Example Energy, Ltd.\" <connect@example.com>"),
            "the from error says how to write it: {err}"
        );
        // The problems come in the file's order.
        let at: Vec<usize> = expect
            .iter()
            .map(|l| err.find(l.as_str()).unwrap())
            .collect();
        let mut sorted = at.clone();
        sorted.sort();
        assert_eq!(at, sorted, "{err}");
    }
    // Nothing was started: no store was created.
    assert!(!setup.dir.path().join("db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_from_the_environment_is_blamed_on_its_variable() {
    let setup = written().await;
    let path = setup.config.to_str().unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config", path])
        .env("MYDEX_CONNECTOR__SMTP__FROM", "connect.example.com")
        .env("MYDEX_CONNECTOR__SCHEDULE__EXPIRY_CHECK", "0 61 * * * *")
        .env("MYDEX_CONNECTOR__MYDEX__CLIENT_IDD", "x")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    for line in [
        "environment variable MYDEX_CONNECTOR__SMTP__FROM: `smtp.from`: \"connect.example.com\" is not a mailbox: the address \"connect.example.com\" has no `@`",
        "environment variable MYDEX_CONNECTOR__SCHEDULE__EXPIRY_CHECK: `schedule.expiry_check`: \"0 61 * * * *\" is not a valid cron expression: the minute field is 61, but minutes run from 0 to 59",
        "environment variable MYDEX_CONNECTOR__MYDEX__CLIENT_IDD: `mydex.client_idd`: unknown key; did you mean `client_id`?",
    ] {
        assert!(err.contains(line), "{line:?} in {err}");
    }
    assert!(
        !err.contains(&format!("{path}:")),
        "nothing is blamed on the file: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_errors_name_their_lines() {
    let setup = written().await;
    let good = std::fs::read_to_string(&setup.config).unwrap();
    let bad = good.replace("[store]\n", "[store\n");
    let path = setup.dir.path().join("syntax.toml");
    std::fs::write(&path, &bad).unwrap();
    let out = cli(&["check-config", "--config", path.to_str().unwrap()], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    let line = line_of(&bad, "[store");
    assert!(
        err.contains(&format!(
            "{}:{line}: `(syntax)`: not valid TOML",
            path.display()
        )),
        "{err}"
    );
}

/// Whether `s` carries an ANSI escape.
fn coloured(s: &str) -> bool {
    s.contains('\u{1b}')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_only_on_a_terminal_and_never_with_no_color() {
    let setup = written().await;
    let (path, _) = five_mistakes(&setup);
    let path = path.to_str().unwrap();
    // Secrets readable by all: a warning is logged beside the report.
    let key = setup.dir.path().join("secrets/store.key");
    let all_read = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(&key, all_read).unwrap();
    let piped = cli(&["check-config", "--config", path], &[]);
    let err = stderr(&piped);
    assert!(
        err.contains("has 5 problems") && err.contains("WARN"),
        "{err}"
    );
    assert!(!coloured(&err), "no colour into a pipe: {err:?}");

    // A terminal (script(1) gives the command one): colour, unless NO_COLOR.
    let on_tty = |no_color: bool| {
        let mut cmd = Command::new("script");
        cmd.args(["-qec"])
            .arg(format!("{} check-config --config {path}", bin().display()))
            .arg("/dev/null")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env("TERM", "xterm-256color");
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        let out = cmd.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tty = on_tty(false);
    assert!(tty.contains("has 5 problems"), "{tty}");
    assert!(coloured(&tty), "colour on a terminal: {tty:?}");
    let tty = on_tty(true);
    assert!(tty.contains("has 5 problems"), "{tty}");
    assert!(!coloured(&tty), "NO_COLOR: {tty:?}");
}
