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
