//! Readings delivered per second end to end: a readings file
//! placed in `delivery.dir` → stored → batched → POSTed into each member's
//! PDS at the in-process sandbox over real HTTP, until `records.delivered`
//! counts them all; beside the sandbox's own limit in the same run (8
//! clients POSTing 50-row batches straight to it). Run with `cargo bench
//! --bench delivery` (release); knobs `BENCH_MEMBERS` (100),
//! `BENCH_READINGS` (1000 per member), `BENCH_CONCURRENCY` (8). Target: at
//! least 20,000 rows/s at `batch_size = 50`, printed as a share of the
//! sandbox's own limit, each with the load average before and after it (a
//! shared machine: the share is what compares across runs). Under `cargo
//! test --all-targets` it makes a small smoke run instead. Client, sandbox
//! and store share this machine's cores, so the figures are lower bounds.

#[path = "common/load.rs"]
mod load;

use std::time::{Duration, Instant};

use mydex_connector::store::{NewMember, Store};
use mydex_sandbox::{SandboxArgs, start};

const TOKEN: &str = "bench-connection-token-0123456789";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(sbx: &str, concurrency: u64) -> std::io::Result<String> {
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(format!(
        r#"[mydex]
api_url = "{sbx}"
token_url = "{sbx}/oauth2/token"
client_id = "sandbox-client"
client_secret_file = "secrets/client_secret"
connection_nid = "45678"
connection_token_file = "secrets/connection_token"

[callback]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1"

[admin]
listen = "127.0.0.1:{admin}"

[smtp]
url = "file:///tmp"
from = "Bench <bench@example.com>"

[store]
path = "db"
key_file = "secrets/store.key"

[queue]
dir = "queue"
poll_interval = "100ms"

[log]
level = "warn"

[delivery]
dir = "readings"
batch_size = 50
concurrency = {concurrency}

[[campaign]]
name = "bench"
"#
    ))
}

/// Seed members at the sandbox and in the store, with their grants.
async fn seed(sbx: &str, p: &std::path::Path, n: u64) -> anyhow::Result<Vec<serde_json::Value>> {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{sbx}/_sandbox/members/seed"))
        .json(&serde_json::json!({"count": n, "version": 1}))
        .send()
        .await?
        .json()
        .await?;
    let all = r["members"].as_array().cloned().unwrap_or_default();
    let store = Store::open(&p.join("db"), &secrecy::SecretBox::new(Box::new([7u8; 32])))?;
    let batch: Vec<NewMember> = all
        .iter()
        .map(|m| NewMember {
            uid: m["uid"].as_u64().unwrap_or(0),
            connection_id: m["connection_id"].as_str().unwrap_or("").into(),
            mydexid: None,
            email: None,
            key: m["key"].as_str().unwrap_or("").into(),
            version: 1,
            campaign: None,
        })
        .collect();
    store.import_members(batch).await?;
    for m in &all {
        let conn = m["connection_id"].as_str().unwrap_or("");
        store
            .set_member_permissions(conn, m["fields"].clone())
            .await?;
    }
    store.flush().await?;
    Ok(all)
}

/// One of the sandbox's call counters (`/_sandbox/state`).
async fn sandbox_count(sbx: &str, name: &str) -> anyhow::Result<u64> {
    let state: serde_json::Value = reqwest::get(format!("{sbx}/_sandbox/state"))
        .await?
        .json()
        .await?;
    Ok(state["counts"][name].as_u64().unwrap_or(0))
}

/// The sandbox's own limit: `clients` POSTing 50-row batches straight to it.
async fn sandbox_limit(
    sbx: &str,
    members: &[serde_json::Value],
    rows: u64,
    clients: u64,
) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let tok: serde_json::Value = http
        .post(format!("{sbx}/oauth2/token"))
        .basic_auth("sandbox-client", Some("sandbox-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "mydex:pdx")])
        .send()
        .await?
        .json()
        .await?;
    let token = tok["access_token"].as_str().unwrap_or("").to_string();
    let batches = rows / 50;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (http, token, sbx, members) = (
            http.clone(),
            token.clone(),
            sbx.to_string(),
            members.to_vec(),
        );
        tasks.spawn(async move {
            let mut b = c;
            while b < batches {
                let m = &members[(b as usize) % members.len()];
                let body = serde_json::json!({"ds_energy_readings": (0..50).map(|i| serde_json::json!({"external_id": format!("lim-{b}-{i}"), "kwh": "1.5"})).collect::<Vec<_>>()});
                let r = http
                    .post(format!("{sbx}/api/pds/transaction"))
                    .bearer_auth(&token)
                    .query(&[("uid", m["uid"].to_string()), ("con_id", m["connection_id"].as_str().unwrap_or("").to_string()), ("key", m["key"].as_str().unwrap_or("").to_string()), ("source_type", "connection".into()), ("instance", "0".into()), ("dataset", "ds_energy_readings".into())])
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "sandbox POST: {}", r.status());
                b += clients;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok((batches * 50) as f64 / started.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let members_n = env_num("BENCH_MEMBERS", if full { 100 } else { 10 });
    let per = env_num("BENCH_READINGS", if full { 1000 } else { 50 });
    let concurrency = env_num("BENCH_CONCURRENCY", 8);
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
        let members = seed(&sbx, p, members_n).await?;
        std::fs::create_dir_all(p.join("secrets"))?;
        std::fs::write(p.join("secrets/client_secret"), "sandbox-secret")?;
        std::fs::write(p.join("secrets/connection_token"), TOKEN)?;
        std::fs::write(p.join("secrets/store.key"), [7u8; 32])?;
        std::fs::write(p.join("config.toml"), config(&sbx, concurrency)?)?;
        let settings = mydex_connector::config::Settings::load(&p.join("config.toml"))?;
        let daemon = mydex_connector::app::daemon::start(settings).await?;
        let total = members_n * per;
        let mut text = String::with_capacity(total as usize * 100);
        for j in 0..per {
            for m in &members {
                text += &format!("{{\"connection_id\":{},\"external_id\":\"r{j}\",\"kwh\":\"{j}.5\",\"read_at\":\"2026-01-01T00:00:00Z\"}}\n", m["connection_id"]);
            }
        }
        std::fs::write(p.join("readings.jsonl.tmp"), text)?;
        let flushes_before = daemon.store.flushes();
        let span = load::Span::start();
        let started = Instant::now();
        std::fs::rename(p.join("readings.jsonl.tmp"), p.join("readings/bench.jsonl"))?;
        let mut stored_at = None;
        loop {
            let c = daemon.store.record_counts().await?;
            if stored_at.is_none() && p.join("readings/done/bench.jsonl").exists() {
                stored_at = Some(started.elapsed());
            }
            if c.delivered >= total {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "timed out: {c:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let end_to_end = total as f64 / elapsed.as_secs_f64();
        let flushes = daemon.store.flushes() - flushes_before;
        let posts = sandbox_count(&sbx, "pds_create").await?;
        daemon.shutdown().await?;
        let run_load = span.end();
        let stored_s = stored_at.unwrap_or(elapsed).as_secs_f64();
        println!(
            "delivery: where the time went: file stored (intake) after {stored_s:.2} s of {:.2} s; {posts} POSTs ({:.1} rows each on average); {flushes} store flushes",
            elapsed.as_secs_f64(),
            total as f64 / posts.max(1) as f64,
        );
        let span = load::Span::start();
        let limit = sandbox_limit(&sbx, &members, total, concurrency).await?;
        let limit_load = span.end();
        println!(
            "delivery: {total} readings ({members_n} members x {per}) in batches of 50, concurrency {concurrency}: {end_to_end:.0} rows/s end to end (file placed -> delivered; {run_load}); the sandbox alone takes {limit:.0} rows/s from {concurrency} clients ({limit_load}): {:.1}% of the sandbox's limit (target >= 20,000 rows/s)",
            end_to_end / limit.max(1e-9) * 100.0
        );
        sandbox.shutdown().await;
        Ok(())
    })
}
