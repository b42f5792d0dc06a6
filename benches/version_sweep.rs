//! Version checks per second over many members, against the in-process
//! sandbox over real HTTP, with the daemon (in process) mailing invitations
//! at the same time: it prints both rates, to show that a sweep does not
//! starve invitation sending. Run with `cargo bench --bench version_sweep`;
//! knobs: `BENCH_MEMBERS` (default 100000), `BENCH_INVITEES` (default 5000),
//! `BENCH_SWEEP_CONCURRENCY` (default 64). Target: >= 2,000 checks/s.
//!
//! Members are seeded straight into the sandbox (`/_sandbox/members/seed`)
//! and the store (`Store::import_members`) before the daemon starts; mail
//! goes to a `file://` outbox. Client, sandbox and store share this
//! machine's cores, so the figures are lower bounds.

use std::time::{Duration, Instant};

use mydex_connector::sandbox::{SandboxArgs, start};
use mydex_connector::store::{ImportMember, Store};

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

fn main() -> anyhow::Result<()> {
    let members = env_num("BENCH_MEMBERS", 100_000);
    let invitees = env_num("BENCH_INVITEES", 5_000);
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
                let batch: Vec<ImportMember> = chunk
                    .iter()
                    .map(|m| ImportMember {
                        uid: m["uid"].as_u64().unwrap_or(0),
                        connection_id: m["connection_id"].as_str().unwrap_or(""),
                        mydexid: m["mydexid"]
                            .as_str()
                            .and_then(|s| mydex_connector::domain::MydexId::parse(s).ok()),
                        email: None,
                        key: m["key"].as_str().unwrap_or(""),
                        version: 1,
                        campaign: Some("bench".into()),
                    })
                    .collect();
                store.import_members(&batch)?;
            }
            store.flush_blocking()?;
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
        let daemon = mydex_connector::daemon::start(settings).await?;

        // Invitations flowing...
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
        while count_files(&p.join("outbox")) < 20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let before_t = Instant::now();
        let before = count_files(&p.join("outbox"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let alone = (count_files(&p.join("outbox")) - before) as f64
            / before_t.elapsed().as_secs_f64();

        // ... while a sweep runs.
        let sent_at_start = count_files(&p.join("outbox"));
        let started = Instant::now();
        let r = http
            .post(format!("http://127.0.0.1:{admin_port}/sweeps/version"))
            .bearer_auth(ADMIN)
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 202, "sweep trigger: {}", r.status());
        let run = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(run) = daemon.store.sweep_run("version")?
                && !run.running()
            {
                break run;
            }
        };
        let secs = started.elapsed().as_secs_f64();
        let sent_during = count_files(&p.join("outbox")) - sent_at_start;
        println!(
            "version sweep: {} members checked in {secs:.1}s = {:.0} checks/s (target >= 2000/s); errors {}, outdated {}",
            run.checked,
            run.checked as f64 / secs,
            run.errors,
            run.outdated
        );
        println!("invitations mailed before the sweep: {alone:.0}/s");
        println!(
            "invitations mailed during the sweep: {sent_during} in {secs:.1}s = {:.0}/s{}",
            sent_during as f64 / secs,
            if sent_at_start + sent_during >= invitees as usize {
                " (all invitees were mailed before the sweep ended: raise BENCH_INVITEES)"
            } else {
                ""
            }
        );
        daemon.shutdown().await?;
        sandbox.shutdown().await;
        Ok(())
    })
}
