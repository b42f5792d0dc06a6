//! Configuration mistakes that the daemon used to accept and then break on:
//! a `callback.path` the router cannot take (a panic at `run`, exit 101, a
//! restart loop under systemd), `queue.dir` and `delivery.dir` (or the
//! store) sharing a directory (readings taken as invitee files), and a
//! password in a URL printed by `check-config`. Each error is exit 78 naming
//! the key, from `check-config` and from `run` alike.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mydex_test_support::*;

/// `mydex-connector COMMAND --config path`: exit code and stderr. `run`
/// is given generous time to exit (a loaded machine); a daemon that
/// starts instead is killed and reported.
fn exit_of(command: &str, config: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(bin())
        .args([command, "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command} with {} did not exit", config.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err)
}

/// Both commands refuse `text` with exit 78 and an error naming `key`.
fn refused(setup: &Setup, what: &str, text: &str, key: &str) {
    let path = setup.dir.path().join("case.toml");
    std::fs::write(&path, text).unwrap();
    for command in ["check-config", "run"] {
        let (code, err) = exit_of(command, &path);
        assert_eq!(code, Some(78), "{what}: {command} exits 78: {err}");
        assert!(
            err.contains(&format!("`{key}`")),
            "{what}: {command} names {key}: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {command}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_path_the_router_cannot_take_is_exit_78_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let setup = setup(1, dir, Options::default()).await;
    let good = std::fs::read_to_string(&setup.config).unwrap();
    for path in [
        "/mydex/{",
        "/mydex/{id}",
        "/mydex/}",
        "mydex/callback",
        "/:id",
        "/x/*rest",
        "/a%20b",
        "/x/../y",
    ] {
        let text = good.replace("[callback]\n", &format!("[callback]\npath = {path:?}\n"));
        refused(&setup, path, &text, "callback.path");
    }
    // A literal path that is fine still passes.
    let path = setup.dir.path().join("ok.toml");
    let text = good.replace("[callback]\n", "[callback]\npath = \"/mydex/cb-v2\"\n");
    std::fs::write(&path, text).unwrap();
    let (code, err) = exit_of("check-config", &path);
    assert_eq!(code, Some(0), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_that_overlap_are_exit_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let setup = setup(1, dir, Options::default()).await;
    let good = std::fs::read_to_string(&setup.config).unwrap();
    let root = setup.dir.path();
    std::fs::create_dir_all(root.join("queue")).unwrap();
    std::os::unix::fs::symlink(root.join("queue"), root.join("queue-link")).unwrap();
    let delivery = |dir: &str| format!("{good}\n[delivery]\ndir = {dir:?}\n");
    let cases = [
        (
            "delivery.dir = queue.dir",
            delivery("queue"),
            "delivery.dir",
        ),
        (
            "delivery.dir spelt otherwise",
            delivery("./readings/../queue/"),
            "delivery.dir",
        ),
        (
            "delivery.dir a link to queue.dir",
            delivery("queue-link"),
            "delivery.dir",
        ),
        (
            "delivery.dir inside queue.dir",
            delivery("queue/readings"),
            "delivery.dir",
        ),
        (
            "delivery.dir holding queue.dir",
            good.replace("dir = \"queue\"", "dir = \"in/queue\"") + "\n[delivery]\ndir = \"in\"\n",
            "delivery.dir",
        ),
        (
            "queue.dir inside the store",
            good.replace("dir = \"queue\"", "dir = \"db/queue\""),
            "queue.dir",
        ),
        (
            "queue.dir = store.path",
            good.replace("dir = \"queue\"", "dir = \"db\""),
            "queue.dir",
        ),
    ];
    for (what, text, key) in cases {
        refused(&setup, what, &text, key);
    }
    // Apart, they pass.
    let path = root.join("apart.toml");
    std::fs::write(&path, delivery("readings")).unwrap();
    let (code, err) = exit_of("check-config", &path);
    assert_eq!(code, Some(0), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_a_url_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let setup = setup(1, dir, Options::default()).await;
    let good = std::fs::read_to_string(&setup.config).unwrap();
    let sbx = setup.sandbox.url();
    let host = sbx.trim_start_matches("http://");
    let text = good
        .replace(
            &format!("api_url = \"{sbx}\""),
            &format!("api_url = \"http://api-user:pw-in-api-url@{host}\""),
        )
        .replace(
            &format!("token_url = \"{sbx}/oauth2/token\""),
            &format!("token_url = \"http://tok-user-secret@{host}/oauth2/token\""),
        )
        .replace(
            "[smtp]\n",
            "[notifications]\nwebhook_url = \"https://hook:pw-in-webhook@hooks.example.com/x\"\n\n[smtp]\n",
        );
    assert!(text.contains("pw-in-api-url") && text.contains("tok-user-secret"));
    let path = setup.dir.path().join("userinfo.toml");
    std::fs::write(&path, &text).unwrap();
    let out = setup_cli(&path);
    let shown = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for secret in [
        "pw-in-api-url",
        "api-user",
        "tok-user-secret",
        "pw-in-webhook",
    ] {
        assert!(
            !shown.contains(secret) && !err.contains(secret),
            "{secret} printed: {shown}"
        );
    }
    assert!(
        shown.contains(&format!("api_url = \"http://<redacted>@{host}/\"")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("ftc_url = \"http://<redacted>@{host}/ftc/setup\"")),
        "{shown}"
    );
    assert!(
        shown.contains("webhook_url = \"https://<redacted>@hooks.example.com/x\""),
        "{shown}"
    );
    // The settle time of files copied into the queue is shown with its default.
    let queue = &shown[shown.find("[queue]").unwrap()..];
    assert!(queue.contains("\nsettle = \"5s\"\n"), "{shown}");
    // A URL that is refused is quoted without its password.
    let bad = good.replace(
        &format!("api_url = \"{sbx}\""),
        "api_url = \"ftp://api-user:pw-in-api-url@example.com\"",
    );
    std::fs::write(&path, &bad).unwrap();
    for command in ["check-config", "run"] {
        let (code, err) = exit_of(command, &path);
        assert_eq!(code, Some(78), "{command}: {err}");
        assert!(err.contains("`mydex.api_url`"), "{command}: {err}");
        assert!(!err.contains("pw-in-api-url"), "{command}: {err}");
        assert!(err.contains("<redacted>@example.com"), "{command}: {err}");
    }
}

fn setup_cli(config: &Path) -> std::process::Output {
    Command::new(bin())
        .args(["check-config", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// `delivery.settle` is how long a thing must stay quiet before it is taken
/// as finished: a readings file copied in, and a POST Mydex did not answer
/// (never read back sooner than `mydex.request_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_settle_sets_the_files_and_the_requests_settle_time() {
    let dir = tempfile::tempdir().unwrap();
    let setup = setup(1, dir, Options::default()).await;
    let good = std::fs::read_to_string(&setup.config).unwrap();
    let path = setup.dir.path().join("settle.toml");
    let delivery = |extra: &str| {
        let section = &format!("\n[delivery]\ndir = \"readings\"\n{extra}");
        std::fs::write(&path, format!("{good}{section}")).unwrap();
        let out = setup_cli(&path);
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let at = shown.find("[delivery]").expect("a [delivery] section");
        shown[at..].to_string()
    };
    // Below the request timeout (2 s in the tests' config): the files take
    // it as it is, the read-back waits for Mydex's timeout.
    let shown = delivery("settle = \"1s\"\n");
    assert!(shown.contains("\nfile_settle = \"1s\"\n"), "{shown}");
    assert!(shown.contains("\nsettle = \"2s\"\n"), "{shown}");
    // Above it: both as written.
    let shown = delivery("settle = \"30s\"\n");
    assert!(shown.contains("\nfile_settle = \"30s\"\n"), "{shown}");
    assert!(shown.contains("\nsettle = \"30s\"\n"), "{shown}");
    // `file_settle` for the files alone; neither: the queue's and the default.
    let shown = delivery("settle = \"30s\"\nfile_settle = \"3s\"\n");
    assert!(shown.contains("\nfile_settle = \"3s\"\n"), "{shown}");
    assert!(shown.contains("\nsettle = \"30s\"\n"), "{shown}");
    let shown = delivery("");
    assert!(shown.contains("\nfile_settle = \"5s\"\n"), "{shown}");
    assert!(shown.contains("\nsettle = \"5s\"\n"), "{shown}");
    // Over an hour is refused, naming the key.
    std::fs::write(
        &path,
        format!("{good}\n[delivery]\ndir = \"readings\"\nsettle = \"2h\"\n"),
    )
    .unwrap();
    let (code, err) = exit_of("check-config", &path);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("delivery.settle"), "{err}");
}
