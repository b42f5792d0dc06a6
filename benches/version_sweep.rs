//! Version checks per second over many members, against the in-process
//! sandbox over real HTTP, with the daemon (in process) mailing invitations
//! at the same time: it prints both rates, to show that a sweep does not
//! starve invitation sending. Run with `cargo bench --bench version_sweep`;
//! knobs: `BENCH_MEMBERS` (default 100000), `BENCH_INVITEES` (default 5000),
//! `BENCH_SWEEP_CONCURRENCY` (default 64). Target: >= 2,000 checks/s.
//! Under `cargo test --all-targets` it makes a small smoke run instead.
//!
//! Members are seeded straight into the sandbox (`/_sandbox/members/seed`)
//! and the store (`Store::import_members`) before the daemon starts; mail
//! goes to a `file://` outbox. Client, sandbox and store share this
//! machine's cores, so the figures are lower bounds.

use std::time::{Duration, Instant};

use mydex_connector::store::{NewMember, Store};
use mydex_sandbox::{SandboxArgs, start};

const TOKEN: &str = "bench-connection-token-0123456789";
const ADMIN: &str = "bench-admin-token-0123456789";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .count()
        })
        .unwrap_or(0)
}

/// Trigger a version sweep and wait for it; with an outbox, also count the
/// mail sent while it ran (until it ended or every invitee was mailed).
async fn sweep(
    http: &reqwest::Client,
    admin_port: u16,
    daemon: &mydex_connector::app::daemon::Daemon,
    outbox: Option<(&std::path::Path, usize)>,
) -> anyhow::Result<(mydex_connector::store::SweepRun, f64, usize, f64)> {
    let sent_at_start = outbox.map(|(d, _)| count_files(d)).unwrap_or(0);
    let previous = daemon
        .store
        .sweep_run("version")
        .await?
        .map(|r| r.run)
        .unwrap_or(0);
    let started = Instant::now();
    let r = http
        .post(format!("http://127.0.0.1:{admin_port}/sweeps/version"))
        .bearer_auth(ADMIN)
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 202, "sweep trigger: {}", r.status());
    let mut overlap = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some((dir, total)) = outbox
            && overlap.is_none()
        {
            let sent = count_files(dir);
            if sent >= total {
                overlap = Some((sent - sent_at_start, started.elapsed().as_secs_f64()));
            }
        }
        if let Some(run) = daemon.store.sweep_run("version").await?
            && run.run > previous
            && !run.running()
        {
            let secs = started.elapsed().as_secs_f64();
            let (mails, both) = overlap.unwrap_or((
                outbox.map(|(d, _)| count_files(d)).unwrap_or(0) - sent_at_start,
                secs,
            ));
            return Ok((run, secs, mails, both));
        }
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // too, without it, and then a small smoke run is enough.
    let full = std::env::args().any(|a| a == "--bench");
    let members = env_num("BENCH_MEMBERS", if full { 100_000 } else { 300 });
    let invitees = env_num("BENCH_INVITEES", if full { 60_000 } else { 200 });
    let concurrency = env_num("BENCH_SWEEP_CONCURRENCY", 64);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let dir = tempfile::tempdir()?;
        let p = dir.path();
        let sandbox = start(SandboxArgs {
            listen: "127.0.0.1:0".parse()?,
            connection_token: TOKEN.into(),
            ..Default::default()
        })
        .await?;
        let sbx = sandbox.url();

        // Seed members at Mydex and in our store.
        let seeded = Instant::now();
        let http = reqwest::Client::new();
        let mut all = Vec::new();
        let mut left = members;
        while left > 0 {
            let n = left.min(20_000);
            let r: serde_json::Value = http
                .post(format!("{sbx}/_sandbox/members/seed"))
                .json(&serde_json::json!({"count": n, "version": 1}))
                .send()
                .await?
                .json()
                .await?;
            all.extend(r["members"].as_array().cloned().unwrap_or_default());
            left -= n;
        }
        std::fs::create_dir_all(p.join("secrets"))?;
        std::fs::write(p.join("secrets/client_secret"), "sandbox-secret")?;
        std::fs::write(p.join("secrets/connection_token"), TOKEN)?;
        std::fs::write(p.join("secrets/store.key"), [7u8; 32])?;
        std::fs::write(p.join("secrets/admin_token"), ADMIN)?;
        {
            let store = Store::open(
                &p.join("db"),
                &secrecy::SecretBox::new(Box::new([7u8; 32])),
            )?;
            for chunk in all.chunks(2000) {
                let batch: Vec<NewMember> = chunk
                    .iter()
                    .map(|m| NewMember {
                        uid: m["uid"].as_u64().unwrap_or(0),
                        connection_id: m["connection_id"].as_str().unwrap_or("").into(),
                        mydexid: m["mydexid"]
                            .as_str()
                            .and_then(|s| mydex_connector::domain::MydexId::parse(s).ok()),
                        email: None,
                        key: m["key"].as_str().unwrap_or("").into(),
                        version: 1,
                        campaign: Some("bench".into()),
                    })
                    .collect();
                store.import_members(batch).await?;
            }
            store.flush().await?;
        }
        println!(
            "seeded {} members in {:.1}s",
            all.len(),
            seeded.elapsed().as_secs_f64()
        );

        let admin_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = p.join("config.toml");
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

[callback]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:8080"

[admin]
listen = "127.0.0.1:{admin_port}"
token_file = "secrets/admin_token"

[smtp]
url = "file://{outbox}"
from = "Bench <bench@example.com>"

[store]
path = "db"
key_file = "secrets/store.key"

[queue]
dir = "queue"
poll_interval = "100ms"

[invitations]
concurrency = 8

[schedule]
version_check = "0 0 3 1 1 *"
expiry_check = "0 0 3 1 1 *"
sweep_concurrency = {concurrency}
sweep_rate = "unlimited"

[log]
level = "warn"

[[campaign]]
name = "bench"
rate = "unlimited"
"#,
                outbox = p.join("outbox").display()
            ),
        )?;
        std::fs::create_dir_all(p.join("outbox"))?;
        let settings = mydex_connector::config::Settings::load(&config)?;
        let daemon = mydex_connector::app::daemon::start(settings).await?;

        // 1. The sweep alone.
        let first = sweep(&http, admin_port, &daemon, None).await?;
        println!(
            "version sweep alone: {} members checked in {:.1}s = {:.0} checks/s (target >= 2000/s); errors {}",
            first.0.checked,
            first.1,
            first.0.checked as f64 / first.1,
            first.0.errors
        );

        // 2. Invitations flowing...
        let mut csv = String::from("email,name\n");
        for i in 0..invitees {
            csv += &format!("invitee{i}@example.com,Invitee {i}\n");
        }
        std::fs::write(p.join("invitees.csv"), csv)?;
        mydex_connector::intake::enqueue_file(
            &mydex_connector::config::Settings::load(&config)?,
            &p.join("invitees.csv"),
            None,
            &mut std::io::sink(),
        )?;
        let outbox = p.join("outbox");
        while count_files(&outbox) < (invitees / 10).clamp(1, 200) as usize {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let before_t = Instant::now();
        let before = count_files(&outbox);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let alone =
            (count_files(&outbox) - before) as f64 / before_t.elapsed().as_secs_f64();
        println!("invitations mailed, no sweep running: {alone:.0}/s");

        // ... and a second sweep at the same time.
        let (run, secs, mails, both_secs) =
            sweep(&http, admin_port, &daemon, Some((&outbox, invitees as usize))).await?;
        println!(
            "version sweep with invitations flowing: {} checks in {secs:.1}s = {:.0} checks/s",
            run.checked,
            run.checked as f64 / secs
        );
        println!(
            "invitations mailed while it ran: {mails} in {both_secs:.1}s = {:.0}/s{}",
            mails as f64 / both_secs,
            if both_secs < secs {
                " (every invitee was mailed before the sweep ended)"
            } else {
                ""
            }
        );
        daemon.shutdown().await?;
        sandbox.shutdown().await;
        Ok(())
    })
}
