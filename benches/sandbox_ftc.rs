//! Throughput of `POST /ftc/setup` (the call every invitation makes), over
//! real HTTP with concurrent reqwest clients. Run with
//! `cargo bench --bench sandbox_ftc`; knobs: `BENCH_SECS` (default 5),
//! `BENCH_CONCURRENCY` (default 64), `SANDBOX_URL` (bench a sandbox that is
//! already running, e.g. the release binary, instead of an in-process one).
//!
//! The client and the server share this machine's cores, so the figure is a
//! lower bound for the sandbox alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mydex_sandbox::{SandboxArgs, qr_data_uri, qr_modules, start};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn qr_cost() {
    let url = "http://127.0.0.1:8090/ftc/begin/AbCdEfGhIjKlMnOpQrStUvWxYz012345";
    let n = 2000;
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += qr_data_uri(url).map(|s| s.len()).unwrap_or(0);
    }
    let per = started.elapsed() / n;
    let started = Instant::now();
    for _ in 0..n {
        let _ = std::hint::black_box(qr_modules(url.as_bytes()));
    }
    println!("qr: {:?} of it is the QR matrix", started.elapsed() / n);
    println!(
        "qr: {per:?} per QR data URI ({} bytes each), one core",
        bytes / n as usize
    );
}

fn main() -> anyhow::Result<()> {
    let secs = env_num("BENCH_SECS", 5);
    let concurrency = env_num("BENCH_CONCURRENCY", 64) as usize;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    qr_cost();

    // The server gets its own runtime (as in the real binary).
    let external = std::env::var("SANDBOX_URL").ok();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (base, sandbox) = match external {
        Some(url) => (url.trim_end_matches('/').to_owned(), None),
        None => {
            let sb = server_rt.block_on(start(SandboxArgs {
                listen: "127.0.0.1:0".parse()?,
                ..Default::default()
            }))?;
            (sb.url(), Some(sb))
        }
    };

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (count, errors, mut lat) = client_rt.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()?;
        let token: Value = http
            .post(format!("{base}/oauth2/token"))
            .basic_auth("sandbox-client", Some("sandbox-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", "mydex:pdx")])
            .send()
            .await?
            .json()
            .await?;
        let token = token["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let body = Arc::new(serde_json::to_vec(&json!({
            "connection_nid": "45678",
            "connection_token_hash": hex::encode(Sha512::digest(b"sandbox-connection-token")),
            "return_to": "https://sbx-my.mydex.org",
            "linking_token": "bench",
        }))?);
        let url = format!("{base}/ftc/setup");
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let started = Instant::now();
        for _ in 0..concurrency {
            let (http, url, token, body, stop) = (
                http.clone(),
                url.clone(),
                token.clone(),
                body.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let resp = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("Content-Type", "application/json")
                        .body(body.as_ref().clone())
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status().as_u16() == 201 => {
                            if r.bytes().await.is_ok() {
                                lat.push(t.elapsed());
                            } else {
                                errors += 1;
                            }
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await?;
            all.extend(l);
            errors += e;
        }
        let elapsed = started.elapsed();
        anyhow::Ok(((all.len() as f64 / elapsed.as_secs_f64()), errors, all))
    })?;
    lat.sort();
    println!(
        "ftc/setup: {count:.0} requests/s over {secs}s with {concurrency} concurrent clients \
         ({} ok, {errors} errors); latency p50 {:?}, p99 {:?}",
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
    );
    let where_ = if sandbox.is_some() {
        "the sandbox in this process"
    } else {
        "the sandbox at SANDBOX_URL (if on this machine)"
    };
    println!(
        "note: {cores} cores, shared by the reqwest clients and {where_}; \
         the sandbox alone serves more than this figure"
    );
    if let Some(sb) = sandbox {
        server_rt.block_on(sb.shutdown());
    }
    Ok(())
}
