//! Real `nats-server` processes for the broker's tests and bench (Debian's
//! `nats-server` package): one server, or a JetStream cluster of three on
//! loopback ports, each node with its own store directory and log; a node
//! can be killed with SIGKILL and started again on the same ports and
//! store. Also `mydex-connector edge` as the real binary, with its own
//! config file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Proc, bin, free_port};

/// The `nats-server` binary (`MYDEX_TEST_NATS_SERVER`, else on `PATH`,
/// else Debian's `/usr/sbin/nats-server`).
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MYDEX_TEST_NATS_SERVER") {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("/usr/sbin/nats-server")
}

pub struct NatsNode {
    pub name: String,
    pub port: u16,
    pub cluster_port: u16,
    pub monitor_port: u16,
    pub store_dir: PathBuf,
    log: PathBuf,
    routes: Vec<u16>,
    proc: Option<Proc>,
}

/// One server or a cluster, stopped when dropped.
pub struct Nats {
    pub nodes: Vec<NatsNode>,
}

impl NatsNode {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(nats_server_bin());
        cmd.args(["-a", "127.0.0.1", "-n", &self.name, "-js"])
            .args(["-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .arg("-sd")
            .arg(&self.store_dir);
        if !self.routes.is_empty() {
            let routes: Vec<String> = self
                .routes
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            cmd.args(["--cluster_name", "mydex-test"])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", self.cluster_port),
                ])
                .args(["--routes", &routes.join(",")]);
        }
        cmd.stdout(Stdio::null()).stderr(log);
        self.proc = Some(Proc(
            cmd.spawn()
                .expect("start nats-server (apt-get install nats-server)"),
        ));
    }

    /// Whether the node's `/healthz` says JetStream is up.
    pub fn healthy(&self) -> bool {
        http_get(self.monitor_port, "/healthz").is_some_and(|(code, _)| code == 200)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// A GET on loopback: the status code and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}

impl Nats {
    /// One server with JetStream, its store under `dir`.
    pub fn single(dir: &Path) -> Nats {
        Self::start(dir, 1)
    }

    /// A JetStream cluster of `n` nodes on loopback.
    pub fn cluster(dir: &Path, n: usize) -> Nats {
        Self::start(dir, n)
    }

    fn start(dir: &Path, n: usize) -> Nats {
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut nodes: Vec<NatsNode> = (0..n)
            .map(|i| {
                let store_dir = dir.join(format!("nats-{i}"));
                std::fs::create_dir_all(&store_dir).unwrap();
                NatsNode {
                    name: format!("n{i}"),
                    port: free_port(),
                    cluster_port: cluster_ports[i],
                    monitor_port: free_port(),
                    log: dir.join(format!("nats-{i}.log")),
                    store_dir,
                    routes: if n > 1 {
                        cluster_ports
                            .iter()
                            .copied()
                            .filter(|p| *p != cluster_ports[i])
                            .collect()
                    } else {
                        Vec::new()
                    },
                    proc: None,
                }
            })
            .collect();
        for node in &mut nodes {
            node.start();
        }
        let nats = Nats { nodes };
        nats.wait_healthy(Duration::from_secs(120));
        nats
    }

    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsNode::url).collect()
    }

    /// The `servers = [...]` line of a `[nats]` section.
    pub fn servers_toml(&self) -> String {
        let quoted: Vec<String> = self.urls().iter().map(|u| format!("{u:?}")).collect();
        format!("servers = [{}]", quoted.join(", "))
    }

    /// Wait until every running node is healthy (JetStream up, in a cluster
    /// with a meta leader).
    pub fn wait_healthy(&self, limit: Duration) {
        let start = Instant::now();
        while !self
            .nodes
            .iter()
            .filter(|n| n.proc.is_some())
            .all(NatsNode::healthy)
        {
            assert!(
                start.elapsed() < limit,
                "nats-server did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kill -9` node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }

    /// Start node `i` again, on its ports and store.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start();
    }

    /// Every node's store directory (for scans of what it holds).
    pub fn store_dirs(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|n| n.store_dir.clone()).collect()
    }
}

/// `mydex-connector edge` with its own config file.
pub struct Edge {
    pub config: PathBuf,
    pub callback_port: u16,
    pub admin_port: u16,
    log: PathBuf,
    pub proc: Option<Proc>,
}

impl Edge {
    /// Write an edge's config into `dir` (its Connection Token, the
    /// daemon's public key file, the servers) and start it.
    pub fn start(dir: &Path, name: &str, nats_section: &str, seal_pub: &Path) -> Edge {
        let mut edge = Edge::configure(dir, name, nats_section, seal_pub);
        edge.run();
        edge
    }

    /// Write an edge's config into `dir`, on free ports, without starting it.
    pub fn configure(dir: &Path, name: &str, nats_section: &str, seal_pub: &Path) -> Edge {
        let secrets = dir.join(format!("{name}-secrets"));
        std::fs::create_dir_all(&secrets).unwrap();
        std::fs::write(secrets.join("connection_token"), crate::TOKEN).unwrap();
        let (callback_port, admin_port) = (free_port(), free_port());
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[mydex]\nconnection_token_file = {:?}\n\n[callback]\nlisten = \"127.0.0.1:{callback_port}\"\npublic_url = \"http://127.0.0.1:{callback_port}\"\n\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n[nats]\n{nats_section}\nseal_public_key_file = {:?}\n",
                secrets.join("connection_token"),
                seal_pub
            ),
        )
        .unwrap();
        Edge {
            config,
            callback_port,
            admin_port,
            log: dir.join(format!("{name}.log")),
            proc: None,
        }
    }

    /// Start (again), waiting until its admin listener answers.
    pub fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin())
            .args(["edge", "--config"])
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("MYDEX_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = Proc(child);
        let start = Instant::now();
        while http_get(self.admin_port, "/healthz").is_none() {
            if let Ok(Some(s)) = p.0.try_wait() {
                panic!("edge exited with {s}: {}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "edge did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.proc = Some(p);
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            crate::send_signal(p.0.id() as i32, "TERM");
            let _ = p.0.wait();
        }
    }

    pub fn callback_url(&self) -> String {
        format!("http://127.0.0.1:{}/mydex/callback", self.callback_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until `/readyz` says JetStream answers.
    pub fn wait_ready(&self, limit: Duration) {
        let start = Instant::now();
        while http_get(self.admin_port, "/readyz").is_none_or(|(c, _)| c != 200) {
            assert!(start.elapsed() < limit, "edge not ready: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `nats keygen --out DIR`: the paths of `seal.key` and `seal.pub`.
pub fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, public, _) = keygen_printing(dir);
    (key, public)
}

/// `nats keygen --out DIR`: the paths of `seal.key` and `seal.pub`, and
/// what the command printed.
pub fn keygen_printing(dir: &Path) -> (PathBuf, PathBuf, String) {
    let out = Command::new(bin())
        .args(["nats", "keygen", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    (dir.join("seal.key"), dir.join("seal.pub"), printed)
}
