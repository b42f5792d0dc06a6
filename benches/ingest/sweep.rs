//! A version sweep over members kept in the same store as the queued
//! invitations: its checks per second against the in-process sandbox,
//! driven as `benches/version_sweep.rs` drives it (members seeded at the
//! sandbox and imported into the store while the daemon is stopped, then
//! `POST /sweeps/version`), and read from `GET /status` like an operator.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use mydex_connector::store::{NewMember, Store};
use mydex_test_support as support;

/// Members seeded per request to the sandbox and per import batch.
const CHUNK: u64 = 20_000;

/// Seed `n` members at the sandbox and in the (closed) store, chunk by
/// chunk, so no list of them all is ever held.
pub async fn seed(setup: &support::Setup, n: u64) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let store = Store::open(
        &setup.dir.path().join("db"),
        &secrecy::SecretBox::new(Box::new([42u8; 32])),
    )?;
    let mut left = n;
    while left > 0 {
        let count = left.min(CHUNK);
        let r: serde_json::Value = http
            .post(format!("{}/_sandbox/members/seed", setup.sandbox.url()))
            .json(&serde_json::json!({"count": count, "version": 1}))
            .send()
            .await?
            .json()
            .await?;
        let members = r["members"].as_array().context("seeded members")?;
        let batch: Vec<NewMember> = members
            .iter()
            .map(|m| NewMember {
                uid: m["uid"].as_u64().unwrap_or(0),
                connection_id: m["connection_id"].as_str().unwrap_or("").into(),
                mydexid: None,
                email: None,
                key: m["key"].as_str().unwrap_or("").into(),
                version: 1,
                campaign: Some("meters".into()),
            })
            .collect();
        store.import_members(batch).await?;
        left -= count;
    }
    store.flush().await?;
    drop(store);
    // The engine's threads may hold the lock a moment after the drop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

fn trigger(admin_port: u16) -> anyhow::Result<()> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin_port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "POST /sweeps/version HTTP/1.1\r\nHost: 127.0.0.1:{admin_port}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        support::ADMIN_TOKEN
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    ensure!(
        out.starts_with("HTTP/1.1 202"),
        "sweep refused: {}",
        out.lines().next().unwrap_or("")
    );
    Ok(())
}

/// One sweep on the running daemon: (members checked, seconds the daemon
/// says it took, errors).
pub async fn run(admin_port: u16, deadline: Duration) -> anyhow::Result<(u64, f64, u64)> {
    let version = |s: &serde_json::Value| s["sweeps"]["version"].clone();
    let before = version(&crate::admin_status(admin_port).unwrap_or_default())["run"]
        .as_u64()
        .unwrap_or(0);
    trigger(admin_port)?;
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let v = version(&crate::admin_status(admin_port).unwrap_or_default());
        if v["run"].as_u64().unwrap_or(0) > before && v["running"] == false {
            let last = &v["last"];
            let checked = last["checked"].as_u64().unwrap_or(0);
            let ms = last["duration_ms"]
                .as_u64()
                .unwrap_or_else(|| started.elapsed().as_millis() as u64);
            return Ok((
                checked,
                ms as f64 / 1000.0,
                last["errors"].as_u64().unwrap_or(0),
            ));
        }
        if started.elapsed() > deadline {
            bail!("the version sweep did not finish in {deadline:?}: {v}");
        }
    }
}
