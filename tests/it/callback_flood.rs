//! The callback endpoint under a flood, through the real binary: 64 tasks
//! send unauthenticated requests, wrong `Authentication` headers, oversized
//! bodies (a huge Content-Length, and chunked bodies that never end),
//! slow-loris partial requests, authenticated bodies that never arrive in
//! full and connections that send nothing, while real journeys in the
//! sandbox deliver legitimate callbacks. Those are all answered 2xx and
//! stored, the server closes the slow and idle connections, and the daemon's
//! memory stays bounded. Prints: hostile requests answered per second, the
//! legitimate callbacks' journey latency p50/p99 (and without a flood), peak
//! RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mydex_test_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FLOOD_TASKS: usize = 64;
const FLOOD_FOR: Duration = Duration::from_secs(15);
const LEGIT: usize = 40;
/// Journeys completed before the flood, for a baseline.
const QUIET: usize = 5;

#[derive(Default)]
struct Counts {
    answered: AtomicU64,
    closed_by_server: AtomicU64,
    loris_closed: AtomicU64,
    loris_max_held_ms: AtomicU64,
    slow_body_408: AtomicU64,
    idle_closed: AtomicU64,
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Write `head`, then whatever `body` produces, and read until the server
/// answers or closes; true when an HTTP answer came back.
async fn raw(addr: &str, head: String, body: &[u8], repeat_body: usize) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for _ in 0..repeat_body {
        if s.write_all(body).await.is_err() {
            break;
        }
    }
    let mut buf = [0u8; 512];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => buf.starts_with(b"HTTP/1.1 "),
        _ => false,
    }
}

async fn flood_task(i: usize, addr: String, path: String, stop: Arc<AtomicBool>, c: Arc<Counts>) {
    let http = reqwest::Client::new();
    let url = format!("http://{addr}{path}");
    let chunk = vec![b'x'; 64 * 1024];
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        // One task in eight holds slow-loris connections; the rest cycle
        // through the other kinds.
        let kind = if i % 8 == 4 {
            6
        } else if i % 16 == 8 {
            7
        } else if i.is_multiple_of(16) {
            4
        } else {
            [0, 1, 2, 3, 5][(i + n) % 5]
        };
        let answered = match kind {
            // No Authentication header.
            0 => http
                .post(&url)
                .json(&serde_json::json!({"uid": 1, "key": "k", "connection_id": "1-45678"}))
                .send()
                .await
                .is_ok_and(|r| r.status() == 401),
            // A wrong one.
            1 => http
                .post(&url)
                .header("Authentication", "0".repeat(128))
                .json(&serde_json::json!({"uid": 1, "key": "k", "connection_id": "1-45678"}))
                .send()
                .await
                .is_ok_and(|r| r.status() == 401),
            // A Content-Length far above the limit, with the right header.
            2 => {
                raw(
                    &addr,
                    format!(
                        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthentication: {}\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
                        mydex_connector::mydex::token_hash(TOKEN)
                    ),
                    &chunk,
                    32,
                )
                .await
            }
            // A chunked body that does not end (2 MiB of chunks, no end).
            3 => {
                let mut body = format!("{:x}\r\n", chunk.len()).into_bytes();
                body.extend_from_slice(&chunk);
                body.extend_from_slice(b"\r\n");
                raw(
                    &addr,
                    format!("PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"),
                    &body,
                    32,
                )
                .await
            }
            // Slow loris: a header line every 500 ms, never finished.
            4 => {
                let started = Instant::now();
                if let Ok(mut s) = TcpStream::connect(&addr).await {
                    let _ = s
                        .write_all(format!("POST {path} HTTP/1.1\r\nHost: x\r\n").as_bytes())
                        .await;
                    let mut k = 0;
                    while !stop.load(Ordering::Relaxed) {
                        k += 1;
                        if s.write_all(format!("X-Slow-{k}: y\r\n").as_bytes()).await.is_err() {
                            c.loris_closed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        let mut b = [0u8; 64];
                        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut b)).await {
                            Ok(Ok(_)) | Ok(Err(_)) => {
                                c.loris_closed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(_) => {}
                        }
                    }
                }
                c.loris_max_held_ms
                    .fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                false
            }
            // An authenticated request whose body never arrives in full.
            6 => {
                let mut got = false;
                if let Ok(mut s) = TcpStream::connect(&addr).await {
                    let head = format!(
                        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthentication: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"uid\": 1",
                        mydex_connector::mydex::token_hash(TOKEN)
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let mut b = [0u8; 64];
                    if let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_secs(30), s.read(&mut b)).await
                        && b[..n].starts_with(b"HTTP/1.1 408")
                    {
                        c.slow_body_408.fetch_add(1, Ordering::Relaxed);
                        got = true;
                    }
                }
                got
            }
            // A connection that sends nothing at all.
            7 => {
                if let Ok(mut s) = TcpStream::connect(&addr).await {
                    let mut b = [0u8; 64];
                    if let Ok(Ok(0)) =
                        tokio::time::timeout(Duration::from_secs(30), s.read(&mut b)).await
                    {
                        c.idle_closed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                false
            }
            // Garbage that is not HTTP.
            _ => raw(&addr, "\x16\x03\x01garbage\r\n\r\n".into(), b"", 0).await,
        };
        if answered {
            c.answered.fetch_add(1, Ordering::Relaxed);
        } else {
            c.closed_by_server.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_callbacks_are_answered_during_a_flood() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let daemon = setup.daemon();
    let pid = daemon.0.id();
    let file = setup.dir.path().join("people.csv");
    let mut csv = String::from("email,name,external_ref\n");
    for i in 0..LEGIT {
        csv += &format!("flood{i}@example.com,Flood {i},MTR-{i:03}\n");
    }
    std::fs::write(&file, csv).unwrap();
    assert!(
        setup
            .cli(&["enqueue", file.to_str().unwrap()])
            .status
            .success()
    );
    let paths = smtp.wait_for(LEGIT, Duration::from_secs(120));
    assert_eq!(paths.len(), LEGIT, "{}", setup.log());
    let mails: Vec<Mail> = paths.iter().map(|p| read_mail(p)).collect();
    // A baseline: the first few journeys with no flood.
    let mut quiet = Vec::new();
    for (i, m) in mails.iter().enumerate().take(QUIET) {
        let t = Instant::now();
        let (status, body) = setup
            .journey(&m.qr_link, &format!("flood{i}x"), &m.to)
            .await;
        quiet.push(t.elapsed());
        assert!(
            status < 300 && body["callback_status"] == 200,
            "{status} {body}"
        );
    }
    quiet.sort();
    let (rss_before, _) = rss_kib(pid);

    let addr = format!("127.0.0.1:{}", setup.callback_port);
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..FLOOD_TASKS {
        tasks.spawn(flood_task(
            i,
            addr.clone(),
            "/mydex/callback".into(),
            stop.clone(),
            counts.clone(),
        ));
    }
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid).0, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let flood_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Legitimate callbacks, through real journeys, while the flood goes on.
    let mut latencies = Vec::new();
    for (i, m) in mails.iter().enumerate().skip(QUIET) {
        let t = Instant::now();
        let (status, body) = setup
            .journey(&m.qr_link, &format!("flood{i}x"), &m.to)
            .await;
        latencies.push(t.elapsed());
        assert!(status < 300, "journey {i}: {status} {body}");
        assert_eq!(
            body["callback_status"], 200,
            "callback {i} answered 2xx: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let remaining = FLOOD_FOR.saturating_sub(flood_started.elapsed());
    tokio::time::sleep(remaining).await;
    stop.store(true, Ordering::Relaxed);
    let flood_secs = flood_started.elapsed().as_secs_f64();
    while tasks.join_next().await.is_some() {}
    let _ = sampler.await;

    let (rss_after, hwm) = rss_kib(pid);
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let answered = counts.answered.load(Ordering::Relaxed);
    println!(
        "flood: {FLOOD_TASKS} tasks for {flood_secs:.1} s, {answered} hostile requests answered ({:.0}/s), {} closed by the server",
        answered as f64 / flood_secs,
        counts.closed_by_server.load(Ordering::Relaxed)
    );
    println!(
        "slow loris: {} connections closed by the server, longest held {} ms",
        counts.loris_closed.load(Ordering::Relaxed),
        counts.loris_max_held_ms.load(Ordering::Relaxed)
    );
    let refusal_lines = setup
        .log()
        .lines()
        .filter(|l| l.contains("callback refused: missing or wrong Authentication"))
        .count();
    println!(
        "slow bodies: {} answered 408; idle connections: {} closed by the server; {refusal_lines} log lines for the refused requests",
        counts.slow_body_408.load(Ordering::Relaxed),
        counts.idle_closed.load(Ordering::Relaxed)
    );
    println!(
        "legitimate callbacks (journey round trip) during the flood: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.5),
        pct(0.99),
        latencies.last().unwrap()
    );
    println!(
        "the same before the flood: p50 {:?}, max {:?}",
        quiet[quiet.len() / 2],
        quiet.last().unwrap()
    );
    println!(
        "daemon RSS: {} MiB before, peak sampled {} MiB, after {} MiB, VmHWM {} MiB",
        rss_before / 1024,
        peak.load(Ordering::Relaxed) / 1024,
        rss_after / 1024,
        hwm / 1024
    );

    let s = setup.wait_status(
        |s| s["invitations"]["connected"] == LEGIT,
        Duration::from_secs(30),
    );
    assert_eq!(
        s["invitations"]["connected"], LEGIT,
        "every legitimate callback stored: {s}"
    );
    assert_eq!(s["members"]["total"], LEGIT, "{s}");
    assert!(answered > 0, "the flood was answered, not just dropped");
    assert!(
        counts.loris_closed.load(Ordering::Relaxed) > 0,
        "the server closes slow-loris connections"
    );
    assert!(
        counts.slow_body_408.load(Ordering::Relaxed) > 0,
        "a body that does not arrive gets 408"
    );
    assert!(
        counts.idle_closed.load(Ordering::Relaxed) > 0,
        "the server closes connections that send nothing"
    );
    assert!(
        refusal_lines as f64 <= flood_secs + 10.0,
        "refusals are logged at most once a second: {refusal_lines} lines"
    );
    assert!(
        hwm < 200 * 1024,
        "peak RSS {} MiB stays under 200 MiB",
        hwm / 1024
    );
    setup.keep_for_log_scan().await;
}
