//! Callbacks through NATS JetStream, measured through the real binaries and
//! a real `nats-server`, with the limits of the parts around them measured
//! in the same run:
//!
//! 1. JetStream's own publish rate (a bare client publishing sealed-size
//!    messages with a `Nats-Msg-Id`, each acknowledged);
//! 2. the daemon's direct callback rate (its own listener, each callback
//!    stored and flushed before the 200);
//! 3. end to end: callbacks POSTed to an edge (authenticated, sealed,
//!    published, 200 once acked) until the daemon has them all in sled
//!    (`status` shows every one), per second.
//!
//! Run: `cargo bench --bench nats`. Knobs: `BENCH_CALLBACKS` (default
//! 2000), `BENCH_SENDERS` (32). Under `cargo test --all-targets` it makes a
//! small smoke run instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mydex_test_support::nats::{Edge, Nats, keygen};
use mydex_test_support::*;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ftc(tag: &str, i: usize) -> serde_json::Value {
    serde_json::json!({
        "uid": 500_000 + i, "mydexid": format!("Bench{tag}{i}"),
        "key": format!("bench-key-{tag}-{i}-{:016x}", rand::random::<u64>()),
        "connection_id": format!("{}-45678", 500_000 + i), "fields": {},
        "linking_token": format!("lt_bench_{tag}_{i}")
    })
}

/// POST `n` callbacks to `url` from `senders` tasks; the seconds it took.
async fn post_all(url: &str, tag: &'static str, n: usize, senders: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let auth = contract::sha512_hex(TOKEN);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (next, url, auth) = (next.clone(), url.to_string(), auth.clone());
        set.spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                loop {
                    let r = http
                        .post(&url)
                        .header("Authentication", &auth)
                        .json(&ftc(tag, i))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status().is_success()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    start.elapsed().as_secs_f64()
}

/// The machine's 1-minute load average, as /proc/loadavg gives it.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let load_before = loadavg();
    let n = env_num("BENCH_CALLBACKS", if full { 2000 } else { 100 }) as usize;
    let senders = env_num("BENCH_SENDERS", 32) as usize;
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(nats_dir.path());
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("seal");
    std::fs::create_dir_all(&keys).unwrap();
    let (key, public) = keygen(&keys);
    let smtp = smtp(dir.path(), &[]);
    let section = format!("{}\nprefix = \"bench\"\n", nats.servers_toml());
    let opts = Options {
        extra_config: format!("\n[nats]\n{section}seal_key_file = {key:?}\n"),
        ..Default::default()
    };
    let setup = setup(smtp.port, dir, opts).await;
    let _daemon = setup.daemon();
    let edge = Edge::start(setup.dir.path(), "edge", &section, &public);
    edge.wait_ready(Duration::from_secs(60));

    // 1. JetStream alone: sealed-size messages, each acknowledged.
    let client = async_nats::connect(nats.urls()[0].as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH_RAW".into(),
        subjects: vec!["benchraw".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let payload = vec![7u8; 400];
    let start = Instant::now();
    // At most 1,000 acks awaited at once: the client holds a publish back
    // while 5,000 are pending, and these are only awaited afterwards.
    let mut acks: std::collections::VecDeque<async_nats::jetstream::context::PublishAckFuture> =
        std::collections::VecDeque::with_capacity(1000);
    for i in 0..n {
        if acks.len() == 1000
            && let Some(a) = acks.pop_front()
        {
            a.await.unwrap();
        }
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(payload.clone().into())
            .message_id(format!("raw-{i}"));
        acks.push_back(js.send_publish("benchraw", msg).await.unwrap());
    }
    for a in acks {
        a.await.unwrap();
    }
    let raw = n as f64 / start.elapsed().as_secs_f64();

    // 2. The daemon's own listener.
    let direct_s = post_all(&setup.callback_url(), "direct", n, senders).await;
    let direct = n as f64 / direct_s;

    // 3. Edge → JetStream → daemon → sled.
    let start = Instant::now();
    let edge_s = post_all(&edge.callback_url(), "edge", n, senders).await;
    let s = setup.wait_status(
        |s| s["callbacks"]["unmatched"] == (2 * n) as u64,
        Duration::from_secs(600),
    );
    let all_s = start.elapsed().as_secs_f64();
    assert_eq!(s["callbacks"]["unmatched"], (2 * n) as u64, "{s}");
    println!(
        "nats bench: {n} callbacks, {senders} senders, one nats-server; {} cores shared by the bench, the daemon, the edge and nats-server (load {load_before} → {})",
        std::thread::available_parallelism()
            .map(|c| c.get())
            .unwrap_or(1),
        loadavg()
    );
    println!("  JetStream publish+ack alone:          {raw:>8.0} msg/s");
    println!("  daemon's own listener (stored, 200):  {direct:>8.0} callbacks/s");
    println!(
        "  edge answered 200 (sealed, acked):    {:>8.0} callbacks/s",
        n as f64 / edge_s
    );
    println!(
        "  end to end edge → JetStream → sled:   {:>8.0} callbacks/s ({all_s:.1}s)",
        n as f64 / all_s
    );
}
