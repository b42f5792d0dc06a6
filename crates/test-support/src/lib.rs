//! The real parts the pipeline tests run against: a real SMTP server process
//! (aiosmtpd, `smtp_server.py`), the sandbox, the daemon as the real binary,
//! and a config written the way an operator would. One crate shared by the
//! integration tests (`tests/it`) and the benches; `contract` holds the
//! sandbox-only helpers of the contract tests.

pub mod contract;
pub mod nats;
pub mod smtp_sink;

use std::io::{BufRead, BufReader};

use mail_parser::MimeHeaders;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mydex_sandbox::{CallbackFormat, Sandbox, SandboxArgs};

/// The real `mydex-connector` binary. Cargo sets `CARGO_BIN_EXE_<name>` when
/// it runs the tests and benches of the package that has the binary; run by
/// hand, the test executable sits in `target/<profile>/deps/`, beside the
/// binary's directory.
pub fn bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_mydex-connector") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().expect("the test executable's directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target/<profile>");
    }
    dir.join("mydex-connector")
}

/// The repository's root (config/, docs/, tests/fixtures/ are read from
/// there): this crate lives in crates/test-support.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub const TOKEN: &str = "test-connection-token-0123456789";
pub const ADMIN_TOKEN: &str = "test-admin-token-abcdef0123456789";
pub const CLIENT_SECRET: &str = "sandbox-secret";

/// A port for a listener a test starts later: the daemon's (its config is
/// written before it runs), or an SMTP server stopped and started again on
/// the port it had. Binding port 0 and closing it is not enough: the port
/// then goes back to the kernel's ephemeral range, where any outgoing
/// connection or any bind to port 0 of a test running beside this one may
/// take it before our server binds it. So the port is drawn from below that
/// range (which neither ever uses), never handed out twice by this test
/// process, and checked free by binding it once.
pub fn free_port() -> u16 {
    use rand::Rng;
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let (low, high) = fixed_port_range();
    let mut rng = rand::rng();
    for _ in 0..10_000 {
        let port = rng.random_range(low..high);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.get_or_insert_with(HashSet::new).contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.get_or_insert_with(HashSet::new).insert(port);
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// Ports outside the kernel's ephemeral range (`ip_local_port_range`;
/// Linux's default is 32768-60999) and above the usual service ports.
fn fixed_port_range() -> (u16, u16) {
    let (eph_low, eph_high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if eph_low >= 12_000 {
        (10_000, eph_low)
    } else {
        (eph_high.saturating_add(1).max(10_000), u16::MAX)
    }
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Smtp {
    pub port: u16,
    pub outdir: PathBuf,
    _proc: Proc,
}

/// Start the real SMTP server; `extra` are its fault flags.
pub fn smtp(dir: &Path, extra: &[&str]) -> Smtp {
    smtp_at(dir, None, extra)
}

/// Start the real SMTP server on `port` (none: a port from `free_port`, so
/// the test may start it again on the same one), writing to `dir/mail`
/// (messages already there are kept and numbered after).
pub fn smtp_at(dir: &Path, port: Option<u16>, extra: &[&str]) -> Smtp {
    // A chosen port may still be taken by another process between the check
    // and the server's bind: then another one.
    for _ in 0..20 {
        let chosen = port.unwrap_or_else(free_port);
        if let Some(smtp) = try_smtp(dir, chosen, extra) {
            return smtp;
        }
        if port.is_some() {
            break;
        }
    }
    panic!("the SMTP server did not start (port {port:?})");
}

fn try_smtp(dir: &Path, port: u16, extra: &[&str]) -> Option<Smtp> {
    let outdir = dir.join("mail");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--outdir")
        .arg(&outdir)
        .arg("--port")
        .arg(port.to_string())
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with aiosmtpd is needed (pip install aiosmtpd; .ci/run installs it)");
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let Some(port) = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
    else {
        // It could not bind (its error is on stderr); reaped by `Proc`.
        drop(Proc(child));
        return None;
    };
    Some(Smtp {
        port,
        outdir,
        _proc: Proc(child),
    })
}

impl Smtp {
    pub fn messages(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.outdir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Arrival time (seconds since the epoch) and recipients of each message.
    pub fn arrivals(&self) -> Vec<(f64, String)> {
        self.messages()
            .iter()
            .map(|p| {
                let t = std::fs::read_to_string(p.with_extension("time")).unwrap();
                let mut lines = t.lines();
                let at: f64 = lines.next().unwrap().parse().unwrap();
                (at, lines.next().unwrap_or("").to_string())
            })
            .collect()
    }

    /// The envelope sender (MAIL FROM) of the message at `path`.
    pub fn mail_from(path: &Path) -> String {
        let t = std::fs::read_to_string(path.with_extension("time")).unwrap();
        t.lines().nth(2).unwrap_or("").to_string()
    }

    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<PathBuf> {
        let start = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n || start.elapsed() > limit {
                return m;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub sandbox: Sandbox,
    pub callback_port: u16,
    pub admin_port: u16,
}

pub struct Options {
    pub format: CallbackFormat,
    pub fault_rate: f64,
    pub token_ttl: Duration,
    /// Appended after the `[[campaign]]` "meters" (its keys, or more tables).
    pub extra_config: String,
    /// Lines of `[invitations]` (default: `concurrency = 16`).
    pub invitations: String,
    /// Lines of `[schedule]` (default: sweeps only when asked).
    pub schedule: String,
    /// The sandbox trusts only this CA file for https:// callbacks
    /// (`--ca-file`; default: the system's roots).
    pub sandbox_ca_file: Option<PathBuf>,
}

/// Cron that does not fire during a test (3am on the 1st of January).
pub const NEVER: &str = "0 0 3 1 1 *";

impl Default for Options {
    fn default() -> Self {
        Self {
            format: CallbackFormat::Json,
            fault_rate: 0.0,
            token_ttl: Duration::from_secs(3600),
            extra_config: String::new(),
            invitations: "concurrency = 16\n".into(),
            schedule: format!("version_check = \"{NEVER}\"\nexpiry_check = \"{NEVER}\"\n"),
            sandbox_ca_file: None,
        }
    }
}

/// Sandbox running, config written (not yet the daemon).
pub async fn setup(smtp_port: u16, dir: tempfile::TempDir, opts: Options) -> Setup {
    let callback_port = free_port();
    let admin_port = free_port();
    let args = SandboxArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        callback_url: format!("http://127.0.0.1:{callback_port}/mydex/callback"),
        connection_token: TOKEN.into(),
        callback_format: opts.format,
        fault_rate: opts.fault_rate,
        token_ttl: opts.token_ttl,
        slow_delay: Duration::from_secs(4),
        callback_retries: 5,
        ca_file: opts.sandbox_ca_file.clone(),
        ..Default::default()
    };
    let sandbox = mydex_sandbox::start(args).await.unwrap();
    let sbx = sandbox.url();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("client_secret"), "sandbox-secret\n").unwrap();
    std::fs::write(secrets.join("connection_token"), TOKEN).unwrap();
    std::fs::write(secrets.join("store.key"), [42u8; 32]).unwrap();
    std::fs::write(secrets.join("admin_token"), ADMIN_TOKEN).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[mydex]
api_url = "{sbx}"
token_url = "{sbx}/oauth2/token"
client_id = "sandbox-client"
client_secret_file = "secrets/client_secret"
connection_nid = "45678"
connection_token_file = "secrets/connection_token"
request_timeout = "2s"
max_attempts = 12

[callback]
listen = "127.0.0.1:{callback_port}"
public_url = "http://127.0.0.1:{callback_port}"

[admin]
listen = "127.0.0.1:{admin_port}"
token_file = "secrets/admin_token"

[smtp]
url = "smtp://127.0.0.1:{smtp_port}"
from = "Example Energy <connect@example.com>"

[store]
path = "db"
key_file = "secrets/store.key"

[queue]
dir = "queue"
poll_interval = "200ms"

[invitations]
{invitations}

[schedule]
{schedule}

[[campaign]]
name = "meters"
subject = "Connect meter {{{{ external_ref }}}}"
rate = "unlimited"
{extra}
"#,
            extra = opts.extra_config,
            invitations = opts.invitations,
            schedule = opts.schedule,
        ),
    )
    .unwrap();
    Setup {
        dir,
        config,
        sandbox,
        callback_port,
        admin_port,
    }
}

impl Setup {
    pub fn daemon(&self) -> Proc {
        self.daemon_with(|_| {})
    }

    /// The daemon with extra settings on its command (environment, ...).
    /// Its stderr is appended to `daemon.log` (restarts keep earlier lines).
    /// `MYDEX_TEST_RUST_LOG` sets its log filter (default `info`).
    pub fn daemon_with(&self, adjust: impl FnOnce(&mut Command)) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.args(["run", "--config"])
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("MYDEX_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log);
        adjust(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        // Ready once the admin API answers.
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("daemon exited with {status}: {}", self.log());
            }
            // Generous: a loaded machine, a large store to open.
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "daemon did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Proc(child)
    }

    /// The daemon with a clean stop (SIGTERM), waiting for it to exit.
    pub fn stop(&self, mut daemon: Proc) {
        let _ = Command::new("kill")
            .args(["-TERM", &daemon.0.id().to_string()])
            .status();
        let _ = daemon.0.wait();
    }

    /// Replace `from` by `to` in the config file.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "{from:?} is not in the config");
        std::fs::write(&self.config, text.replacen(from, to, 1)).unwrap();
    }

    pub async fn sandbox_state(&self) -> serde_json::Value {
        reqwest::get(format!("{}/_sandbox/state", self.sandbox.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn sandbox_settings(&self, patch: serde_json::Value) {
        let r = reqwest::Client::new()
            .put(format!("{}/_sandbox/settings", self.sandbox.url()))
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "sandbox settings {patch}");
    }

    /// Complete a one-time link in the sandbox; the answer (status, JSON).
    pub async fn journey(&self, url: &str, mydexid: &str, email: &str) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}/_sandbox/journeys", self.sandbox.url()))
            .json(&serde_json::json!({"url": url, "mydexid": mydexid, "email": email}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// Keep this test's daemon log and the member keys the sandbox handed
    /// out for the log scan of `.ci/run` (when `MYDEX_TEST_LOG_DIR` is set).
    pub async fn keep_for_log_scan(&self) {
        let Ok(dir) = std::env::var("MYDEX_TEST_LOG_DIR") else {
            return;
        };
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        // One test process runs every suite, and a port may be used again by
        // a later test: the counter keeps each daemon's log apart.
        static KEPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = KEPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}-{n}-{}", std::process::id(), self.admin_port);
        let state: serde_json::Value =
            reqwest::get(format!("{}/_sandbox/state", self.sandbox.url()))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let keys: Vec<String> = state["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["key"].as_str().map(str::to_string))
            .collect();
        std::fs::write(dir.join(format!("{tag}.secrets")), keys.join("\n")).unwrap();
        std::fs::copy(
            self.dir.path().join("daemon.log"),
            dir.join(format!("{tag}.log")),
        )
        .unwrap();
    }

    /// An HTTP client call to the admin API with the bearer token.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// The daemon's `/metrics`, as text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(bin())
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json prints only JSON")
    }

    pub fn wait_status(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
        limit: Duration,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let s = self.status();
            if pred(&s) || start.elapsed() > limit {
                return s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn callback_url(&self) -> String {
        format!("http://127.0.0.1:{}/mydex/callback", self.callback_port)
    }
}

/// Everything in a file tree, as bytes, for secret scans.
pub fn contains_bytes(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(p);
            }
        }
    }
    hits
}

/// A received message: recipient, the link in its text part, the link its QR decodes to.
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text_link: String,
    pub html: String,
    pub qr_link: String,
    pub message_id: String,
    pub has_date: bool,
}

pub fn read_mail(path: &Path) -> Mail {
    let raw = std::fs::read(path).unwrap();
    let msg = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("a parseable message");
    let to = msg
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap()
        .to_string();
    let text = msg.body_text(0).unwrap().to_string();
    let html = msg.body_html(0).unwrap().to_string();
    let text_link = text
        .split_whitespace()
        .find(|w| w.contains("/ftc/begin/"))
        .expect("link in the text part")
        .to_string();
    let png = msg
        .attachments()
        .find(|a| {
            a.content_type()
                .is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("png"))
        })
        .expect("an inline PNG");
    assert!(png.content_id().is_some(), "the QR image has a Content-ID");
    let cid = png.content_id().unwrap().to_string();
    assert!(
        html.contains(&format!("cid:{cid}")),
        "the HTML shows the inline QR image"
    );
    let img = image::load_from_memory(png.contents()).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    let (_, qr_link) = grids[0].decode().unwrap();
    Mail {
        to,
        subject: msg.subject().unwrap_or_default().to_string(),
        text_link,
        html,
        qr_link,
        message_id: msg.message_id().unwrap_or_default().to_string(),
        has_date: msg.date().is_some(),
    }
}

impl Drop for Setup {
    /// Every daemon log goes to the log scan of `.ci/run` (with
    /// `MYDEX_TEST_LOG_DIR` set), whether or not the test kept member keys.
    fn drop(&mut self) {
        let Ok(dir) = std::env::var("MYDEX_TEST_LOG_DIR") else {
            return;
        };
        let log = self.dir.path().join("daemon.log");
        if log.is_file() {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(
                &log,
                Path::new(&dir).join(format!("{}-{}.log", std::process::id(), self.admin_port)),
            );
        }
    }
}

/// `kill -SIG pid` through the real `kill` command; its exit code.
pub fn send_signal(pid: i32, sig: &str) -> i32 {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.code().unwrap_or(1))
        .unwrap_or(1)
}

/// Wait for a child to exit, at most `limit`.
pub fn wait_exit(p: &mut Proc, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(s)) = p.0.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Seed `n` connected members at `version` in the sandbox and in the store
/// (before the daemon starts: the daemon is the store's only owner).
pub async fn seed_members(setup: &Setup, n: u64, version: u32) -> Vec<serde_json::Value> {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/_sandbox/members/seed", setup.sandbox.url()))
        .json(&serde_json::json!({"count": n, "version": version}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let members = r["members"].as_array().unwrap().clone();
    let store = mydex_connector::store::Store::open(
        &setup.dir.path().join("db"),
        &secrecy::SecretBox::new(Box::new([42u8; 32])),
    )
    .unwrap();
    let batch: Vec<mydex_connector::store::NewMember> = members
        .iter()
        .map(|m| mydex_connector::store::NewMember {
            uid: m["uid"].as_u64().unwrap(),
            connection_id: m["connection_id"].as_str().unwrap().to_string(),
            mydexid: Some(
                mydex_connector::domain::MydexId::parse(m["mydexid"].as_str().unwrap()).unwrap(),
            ),
            email: Some(format!("{}@example.com", m["mydexid"].as_str().unwrap())),
            key: m["key"].as_str().unwrap().to_string(),
            version,
            campaign: Some("meters".into()),
        })
        .collect();
    assert_eq!(store.import_members(batch).await.unwrap(), n);
    // The grants the sandbox gave them (the `fields` of a callback).
    for m in &members {
        let conn = m["connection_id"].as_str().unwrap();
        store
            .set_member_permissions(conn, m["fields"].clone())
            .await
            .unwrap();
    }
    store.flush().await.unwrap();
    drop(store);
    members
}
