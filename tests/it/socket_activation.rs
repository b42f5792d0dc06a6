//! Socket activation through the real binary, the test playing systemd's
//! part: it holds the two listening sockets and passes them by the
//! `sd_listen_fds` protocol (descriptors 3 and 4, `LISTEN_FDNAMES`, and
//! `LISTEN_PID` set by the shell that execs the daemon). A callback is
//! served on the passed socket although the config names another address
//! (the socket wins, with a warning); across a SIGTERM and a new daemon on
//! the same sockets, callbacks keep arriving and every one is answered and
//! stored once, including those sent while no daemon ran (they wait in the
//! socket's backlog): none refused or reset. A passed descriptor that is not
//! a listening TCP socket stops the daemon with exit 78. The shipped socket
//! units listen where the shipped config says.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mydex_test_support::*;

/// The daemon with `fds` passed as 3, 4, … named `names` (`a:b`), as
/// systemd starts it from its socket units.
fn daemon_with_sockets<const N: usize>(setup: &Setup, names: &str, fds: [RawFd; N]) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(setup.dir.path().join("daemon.log"))
        .unwrap();
    let mut cmd = Command::new("/bin/sh");
    // The shell's PID is the daemon's once it execs: LISTEN_PID names it.
    cmd.args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#])
        .arg(bin())
        .args(["run", "--config"])
        .arg(&setup.config)
        .env("LISTEN_FDS", N.to_string())
        .env("LISTEN_FDNAMES", names)
        .env(
            "RUST_LOG",
            std::env::var("MYDEX_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: between fork and exec only fcntl and dup2 run (both
    // async-signal-safe), on stack values; nothing allocates.
    unsafe {
        cmd.pre_exec(move || {
            // Copies above 3+N first, so a source at 3 or 4 is not
            // overwritten before it is moved; dup2 clears FD_CLOEXEC.
            let mut high = [0; N];
            for (h, fd) in high.iter_mut().zip(fds) {
                *h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 16);
                if *h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, h) in high.iter().enumerate() {
                if libc::dup2(*h, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Proc(cmd.spawn().unwrap())
}

/// Until the daemon answers `/healthz` on the admin socket (the test holds
/// the socket, so a connection always succeeds; the answer is the sign).
async fn wait_healthy(setup: &Setup, admin: &str, daemon: &mut Proc) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("http://{admin}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = daemon.0.try_wait() {
            panic!("daemon exited with {status}: {}", setup.log());
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "daemon did not answer: {}",
            setup.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An authenticated FTC callback whose linking token matches nothing: kept
/// as unmatched, one stored callback each.
async fn callback(http: &reqwest::Client, url: &str, n: u64) -> Result<(u16, String), String> {
    let body = serde_json::json!({
        "uid": 700_000 + n, "mydexid": format!("sockmember{n}"),
        "key": format!("socket-test-member-key-{n:06}"),
        "connection_id": format!("{}-45678", 700_000 + n), "fields": {"a": 1},
        "linking_token": format!("lt_socket_activation_{n}"),
    });
    let r = http
        .post(url)
        .header("Authentication", mydex_connector::mydex::token_hash(TOKEN))
        .header("Connection", "close")
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    let answer: serde_json::Value = r.json().await.map_err(|e| format!("{e:?}"))?;
    Ok((
        status,
        answer["status"].as_str().unwrap_or_default().to_owned(),
    ))
}

#[derive(Default)]
struct Load {
    sent: AtomicU64,
    sent_while_down: AtomicU64,
    down: AtomicBool,
    stop: AtomicBool,
}

/// Callbacks every 20 ms, each on its own connection, until `stop`; the
/// outcome of each.
async fn load(url: String, load: Arc<Load>) -> Vec<Result<(u16, String), String>> {
    // No pooled connection: a restart must not be hidden by a retry on
    // another one. Generous timeout: a callback waits out a restart.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while !load.stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let n = load.sent.fetch_add(1, Ordering::SeqCst) + 1;
        if load.down.load(Ordering::SeqCst) {
            load.sent_while_down.fetch_add(1, Ordering::SeqCst);
        }
        let (http, url) = (http.clone(), url.clone());
        tasks.spawn(async move { callback(&http, &url, n).await });
    }
    tasks.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_served_on_the_passed_socket_and_wait_out_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    // The "socket units": callback on another port than callback.listen
    // (the socket wins), admin on admin.listen.
    let cb_sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_sock = std::net::TcpListener::bind(("127.0.0.1", setup.admin_port)).unwrap();
    let cb_addr = cb_sock.local_addr().unwrap();
    let admin_addr = admin_sock.local_addr().unwrap().to_string();
    let fds = [cb_sock.as_raw_fd(), admin_sock.as_raw_fd()];
    let mut daemon = daemon_with_sockets(&setup, "callback:admin", fds);
    wait_healthy(&setup, &admin_addr, &mut daemon).await;

    let url = format!("http://{cb_addr}/mydex/callback");
    let http = reqwest::Client::new();
    assert_eq!(
        callback(&http, &url, 0).await.unwrap(),
        (200, "unmatched".into())
    );
    let log = setup.log();
    assert!(
        log.contains(&format!(
            "callback.listen is 127.0.0.1:{} but the service manager passed a socket on {cb_addr}",
            setup.callback_port
        )),
        "{log}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", setup.callback_port)).is_err(),
        "the daemon did not bind callback.listen as well"
    );
    assert!(
        log.contains("listening on the socket passed by the service manager"),
        "{log}"
    );

    // Callbacks keep coming while the daemon stops, while none runs, and
    // while the next one starts on the same sockets.
    let state = Arc::new(Load::default());
    let sender = tokio::spawn(load(url.clone(), state.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    setup.stop(daemon);
    state.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    state.down.store(false, Ordering::SeqCst);
    let mut daemon = daemon_with_sockets(&setup, "callback:admin", fds);
    wait_healthy(&setup, &admin_addr, &mut daemon).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    state.stop.store(true, Ordering::SeqCst);
    let outcomes = sender.await.unwrap();

    let sent = state.sent.load(Ordering::SeqCst);
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| o.as_ref().map(|a| a.0 != 200).unwrap_or(true))
        .collect();
    let replays = outcomes
        .iter()
        .filter(|o| matches!(o, Ok((_, s)) if s != "unmatched"))
        .count();
    eprintln!(
        "socket activation: {sent} callbacks across a restart ({} sent while no daemon ran): {} failed, {replays} not answered unmatched",
        state.sent_while_down.load(Ordering::SeqCst),
        failed.len()
    );
    assert!(failed.is_empty(), "refused, reset or not 200: {failed:?}");
    assert_eq!(replays, 0, "{outcomes:?}");
    assert!(
        state.sent_while_down.load(Ordering::SeqCst) > 0,
        "no callback was sent while no daemon ran"
    );
    let s = setup.status();
    assert_eq!(s["callbacks"]["stored"], sent + 1, "each stored once: {s}");
    assert_eq!(s["callbacks"]["unmatched"], sent + 1, "{s}");
    setup.stop(daemon);
    setup.keep_for_log_scan().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_descriptor_that_is_not_a_listening_tcp_socket_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let setup = setup(free_port(), dir, Options::default()).await;
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let admin_sock = std::net::TcpListener::bind(("127.0.0.1", setup.admin_port)).unwrap();
    let mut daemon = daemon_with_sockets(
        &setup,
        "callback:admin",
        [udp.as_raw_fd(), admin_sock.as_raw_fd()],
    );
    let status = wait_exit(&mut daemon, Duration::from_secs(120)).expect("the daemon exits");
    let log = setup.log();
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(
        log.contains("fd 3 (name \"callback\") is not a listening TCP socket: not a stream socket"),
        "{log}"
    );
}

/// The value of `key` in the `[section]` of a TOML or unit file.
fn value_in(text: &str, section: &str, key: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == section;
        } else if inside && let Some((k, v)) = line.split_once('=') {
            let v = v.split('#').next().unwrap_or_default().trim();
            if k.trim() == key && !v.is_empty() {
                return Some(v.trim_matches('"').to_owned());
            }
        }
    }
    None
}

#[test]
fn the_socket_units_listen_where_the_shipped_config_says() {
    let root = repo_root();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let config = read("config/mydex-connector.toml");
    for (unit, section, name) in [
        ("systemd/mydex-connector.socket", "[callback]", "callback"),
        ("systemd/mydex-connector-admin.socket", "[admin]", "admin"),
    ] {
        let text = read(unit);
        assert_eq!(
            value_in(&text, "[Socket]", "ListenStream"),
            value_in(&config, section, "listen"),
            "{unit}"
        );
        assert_eq!(
            value_in(&text, "[Socket]", "FileDescriptorName").as_deref(),
            Some(name)
        );
        assert_eq!(
            value_in(&text, "[Socket]", "Service").as_deref(),
            Some("mydex-connector.service")
        );
    }
    let service = read("systemd/mydex-connector.service");
    assert_eq!(
        value_in(&service, "[Service]", "Sockets").as_deref(),
        Some("mydex-connector.socket mydex-connector-admin.socket")
    );
}
