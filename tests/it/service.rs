//! The daemon as a systemd service, through the real binary: the sample
//! config as installed passes `check-config`; a supervising process speaking
//! the sd_notify protocol (a Unix datagram socket in `NOTIFY_SOCKET`) sees
//! READY only once the listeners accept connections, WATCHDOG pings at half
//! of `WATCHDOG_USEC`, no pings while the main loop is stalled, STOPPING and
//! exit 0 on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mydex_test_support::*;

#[test]
fn the_sample_config_as_installed_passes_check_config() {
    let root = repo_root();
    let etc = tempfile::tempdir().unwrap();
    std::fs::copy(
        root.join("config/mydex-connector.toml"),
        etc.path().join("mydex-connector.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(etc.path().join("templates")).unwrap();
    for t in ["invite.txt", "invite.html", "reminder.txt", "reminder.html"] {
        std::fs::copy(
            root.join("config/templates").join(t),
            etc.path().join("templates").join(t),
        )
        .unwrap();
    }
    // What systemd's LoadCredential= hands the daemon.
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("client_secret"), "s3cret-client").unwrap();
    std::fs::write(creds.path().join("connection_token"), "s3cret-token").unwrap();
    std::fs::write(creds.path().join("store_key"), hex_key()).unwrap();
    std::fs::write(creds.path().join("admin_token"), "s3cret-admin-token-0123").unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(etc.path().join("mydex-connector.toml"))
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("[organisation]") && !stderr.contains("[organisation] is missing"),
        "{stdout}\n{stderr}"
    );
    for secret in ["s3cret-client", "s3cret-token", "s3cret-admin-token-0123"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    assert!(stdout.contains("/var/lib/mydex-connector/db"), "{stdout}");
    assert!(
        stdout.contains("/var/lib/mydex-connector/queue"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&creds.path().join("client_secret").display().to_string()),
        "secrets come from the credentials directory: {stdout}"
    );

    // Without credentials it is a configuration error (exit 78) naming the key.
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(etc.path().join("mydex-connector.toml"))
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("client_secret"));

    // Root's operator commands find the secrets in credentials/ beside the file.
    std::fs::create_dir_all(etc.path().join("credentials")).unwrap();
    for f in [
        "client_secret",
        "connection_token",
        "store_key",
        "admin_token",
    ] {
        std::fs::copy(creds.path().join(f), etc.path().join("credentials").join(f)).unwrap();
    }
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(etc.path().join("mydex-connector.toml"))
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hex_key() -> String {
    "ab".repeat(32)
}

/// The supervisor's end of the notify socket. A thread of its own reads it
/// all the time and stamps each message as it arrives (as systemd does), so
/// a test busy elsewhere (an HTTP request, a loaded machine) never stamps
/// late a message that waited in the socket: gaps between pings are the
/// daemon's, not the test's.
struct Supervisor {
    started: Instant,
    msgs: Arc<Mutex<Vec<(Duration, String)>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    fn new(path: &Path) -> Self {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let started = Instant::now();
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (msgs, stop) = (msgs.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        msgs.lock().unwrap().push((started.elapsed(), msg));
                    }
                }
            })
        };
        Self {
            started,
            msgs,
            stop,
            reader: Some(reader),
        }
    }

    /// Time since the supervisor started (the clock of the stamps).
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every message stamped at or after `from`.
    fn since(&self, from: Duration) -> Vec<(Duration, String)> {
        self.msgs
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t >= from)
            .cloned()
            .collect()
    }

    /// Wait for a message with a line starting with `needle` (at most `limit`).
    fn wait_for(&self, needle: &str, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        loop {
            let found = self
                .since(Duration::ZERO)
                .into_iter()
                .find(|(_, m)| m.lines().any(|l| l.starts_with(needle)));
            if let Some((_, m)) = found {
                return Some(m);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn pings(msgs: &[(Duration, String)]) -> Vec<Duration> {
    msgs.iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_ready_watchdog_stall_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let sock_path = setup.dir.path().join("notify.sock");
    let sup = Supervisor::new(&sock_path);
    // Pings every second; systemd would act on a gap of 2 s. (The ping
    // interval leaves a loaded machine a full second of slack.)
    const WATCHDOG_USEC: u64 = 2_000_000;
    const WATCHDOG: Duration = Duration::from_micros(WATCHDOG_USEC);

    let mut daemon = {
        let log = std::fs::File::create(setup.dir.path().join("daemon.log")).unwrap();
        // Spawned by hand: READY, not the admin port, says when it is up.
        Proc(
            Command::new(bin())
                .args(["run", "--config"])
                .arg(&setup.config)
                .env("RUST_LOG", "info")
                .env("NOTIFY_SOCKET", &sock_path)
                .env("WATCHDOG_USEC", WATCHDOG_USEC.to_string())
                .env("MYDEX_CONNECTOR_TEST_HOOKS", "1")
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };

    // READY=1, and by then both listeners accept connections.
    let ready = sup
        .wait_for("READY=1", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no READY=1; log:\n{}", setup.log()));
    println!("first notification: {ready:?}");
    assert!(ready.contains("STATUS="), "READY comes with a STATUS line");
    for port in [setup.admin_port, setup.callback_port] {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} not accepting at READY: {e}"));
    }
    let health = reqwest::get(setup.admin_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);

    // WATCHDOG=1 at half of WATCHDOG_USEC: every gap under WATCHDOG_USEC.
    let from = sup.now();
    std::thread::sleep(Duration::from_secs(6));
    let msgs = sup.since(from);
    let times = pings(&msgs);
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    println!(
        "WATCHDOG_USEC={WATCHDOG_USEC}: {} pings in 6 s, gaps (ms) {gaps:?}",
        times.len()
    );
    assert!(times.len() >= 4, "pings arrive: {msgs:?}");
    assert!(
        gaps.iter().all(|g| *g < WATCHDOG.as_millis()),
        "no gap reaches WATCHDOG_USEC: {gaps:?}"
    );
    let mut sorted = gaps.clone();
    sorted.sort();
    println!(
        "median gap {} ms (configured ping interval {} ms)",
        sorted[sorted.len() / 2],
        WATCHDOG_USEC / 2000
    );
    assert!(
        msgs.iter()
            .any(|(_, m)| m.contains("STATUS=") && m.contains("queued")),
        "STATUS lines with live counts: {msgs:?}"
    );

    // Stall the main loop for 6 s: the pings stop, then resume. Measured
    // as the gap between the last ping before the stall and the first after
    // it, not against the test's own clock (how long the request or the
    // loop took to pick it up is the machine's, not the daemon's).
    const STALL: Duration = Duration::from_secs(6);
    let http = reqwest::Client::new();
    let unauth = http
        .post(setup.admin_url("/debug/stall?seconds=6"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401, "the hook needs the bearer token");
    let before = sup.now();
    let resp = http
        .post(setup.admin_url("/debug/stall?seconds=6"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // The last ping before the request, and every one after it, until the
    // pings have resumed after the stall (at most 30 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (times, stall_gap) = loop {
        let all = pings(&sup.since(Duration::ZERO));
        let anchor = all.iter().rev().find(|t| **t <= before).copied();
        let times: Vec<Duration> = anchor
            .into_iter()
            .chain(all.iter().copied().filter(|t| *t > before))
            .collect();
        let stall_gap = times
            .windows(2)
            .map(|w| (w[0], w[1] - w[0]))
            .max_by_key(|(_, gap)| *gap);
        if stall_gap.is_some_and(|(_, gap)| gap >= STALL - WATCHDOG / 2)
            || Instant::now() >= deadline
        {
            break (times, stall_gap);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "stall requested at {} ms: pings at {:?} ms; longest gap {stall_gap:?}",
        before.as_millis(),
        times.iter().map(|t| t.as_millis()).collect::<Vec<_>>()
    );
    // No ping for (nearly) the whole stall; then pings again (a gap is
    // between two pings: the one that ends it came once the loop ran).
    // A ping already on its way when the stall began counts before it.
    let (gap_start, gap) = stall_gap.expect("pings around the stall");
    assert!(
        gap >= STALL - WATCHDOG / 2,
        "no pings while stalled, pings after: longest gap {gap:?} in {times:?}"
    );
    assert!(
        gap_start + WATCHDOG >= before,
        "the gap is the stall's, not one before it: {gap_start:?} vs {before:?}"
    );

    // SIGTERM: STOPPING=1 and exit 0.
    let pid = daemon.0.id() as i32;
    assert_eq!(send_signal(pid, "TERM"), 0);
    let stopping = sup.wait_for("STOPPING=1", Duration::from_secs(30));
    assert!(stopping.is_some(), "STOPPING=1 sent; log:\n{}", setup.log());
    let status = wait_exit(&mut daemon, Duration::from_secs(60));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "log:\n{}",
        setup.log()
    );
}

/// A system without CA certificates (a minimal Debian without the
/// ca-certificates package; here `SSL_CERT_FILE`/`SSL_CERT_DIR` name
/// nothing, which the TLS stack then reads instead of the system's): `run`
/// fails with an error naming the cause and exits 78, which the unit does
/// not restart (no restart loop), and `status` answers without a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ca_certificates_run_says_why_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let nothing = setup.dir.path().join("no-such-ca-bundle");
    let run = Command::new(bin())
        .args(["run", "--config"])
        .arg(&setup.config)
        .env("SSL_CERT_FILE", &nothing)
        .env("SSL_CERT_DIR", &nothing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("ca-certificates"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // No daemon is running: `status` says so (exit 1), it does not panic (101).
    let status = Command::new(bin())
        .args(["status", "--config"])
        .arg(&setup.config)
        .env("SSL_CERT_FILE", &nothing)
        .env("SSL_CERT_DIR", &nothing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach the daemon"), "{stderr}");
}
