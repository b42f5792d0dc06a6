//! The NATS JetStream path through the real binaries and real `nats-server`
//! processes (Debian's package): edges seal and publish callbacks, the
//! daemon takes them with its durable consumer and keeps them as its own
//! listener would.
//!
//! - `callbacks_survive_kills_through_a_cluster`: member callbacks sent
//!   through two edges into a 3-node cluster (`stream_replicas = 3`) while
//!   the daemon is `kill -9`ed twice, a NATS node is `kill -9`ed and an edge
//!   is restarted: every key stored exactly once, anything not answered 2xx
//!   was answered 503 and succeeded on retry, `callbacks list` and `status`
//!   agree, and no NATS store directory holds a key in clear. Size:
//!   `MYDEX_TEST_NATS_CALLBACKS` (default 2000, as `docs/book/src/nats.md`
//!   "How it is tested" gives it) offered at
//!   `MYDEX_TEST_NATS_RATE` a second (default 100).
//! - `a_listen_address_that_cannot_be_bound_exits_78`: `edge` and `run`
//!   exit 78 (a configuration error) for an address in use or not this
//!   machine's, as for a missing file.
//! - `hostile_messages_change_nothing`: a forged callback at an edge is
//!   refused and never published; garbage, a box sealed to another key, and
//!   one sealed to ours without the Connection Token, put straight on
//!   `{prefix}.callbacks`, are rejected with a log line, the consumer goes
//!   on, and nothing we hold changes.
//! - `a_daemon_with_the_wrong_seal_key_holds_callbacks`: an edge seals to
//!   key A, the daemon holds key B: every callback is answered 200 and held
//!   in the stream (none kept, `/readyz` 503 naming both fingerprints, the
//!   held gauge, one error line), a message naming another key without our
//!   edges' MAC is still rejected; restarted with key A the daemon keeps
//!   each callback once and is ready. Then a rotation to key C with A as
//!   `previous_seal_key_file`: callbacks sealed to A and then to C are kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mydex_test_support::nats::{Edge, Nats, keygen};
use mydex_test_support::*;

/// A `[nats]` section (without the seal keys) for `nats`.
pub(crate) fn nats_section(nats: &Nats, replicas: usize) -> String {
    format!(
        "{}\nprefix = \"mydextest\"\nstream_replicas = {replicas}\nretention = \"1h\"\n",
        nats.servers_toml()
    )
}

/// The daemon's setup with `[nats]` (its private key) appended.
pub(crate) async fn nats_setup(nats: &Nats, replicas: usize) -> (Setup, Smtp, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("seal");
    std::fs::create_dir_all(&keys).unwrap();
    let (key, public) = keygen(&keys);
    let smtp = smtp(dir.path(), &[]);
    let opts = Options {
        extra_config: format!(
            "\n[nats]\n{}seal_key_file = {key:?}\n",
            nats_section(nats, replicas)
        ),
        ..Default::default()
    };
    let setup = setup(smtp.port, dir, opts).await;
    (setup, smtp, public)
}

fn ftc_body(i: usize, key: &str) -> serde_json::Value {
    serde_json::json!({
        "uid": 100_000 + i, "mydexid": format!("NatsMember{i}"), "key": key,
        "connection_id": format!("{}-45678", 100_000 + i), "fields": {"a": 1},
        "linking_token": format!("lt_nats_{i}")
    })
}

/// Tasks sending callbacks at once.
const SENDERS: usize = 16;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    answered_503: AtomicU64,
    unreachable: AtomicU64,
}

/// POST callback `i` to the edges (starting with `i % 2`) until one
/// answers 2xx; a 503 and an unreachable edge are retried, any other
/// answer fails the test.
async fn send(http: &reqwest::Client, urls: &[String], i: usize, key: &str, tally: &Tally) {
    let auth = contract::sha512_hex(TOKEN);
    let body = ftc_body(i, key);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut at = i % urls.len();
    loop {
        assert!(Instant::now() < deadline, "callback {i} never taken");
        let r = http
            .post(&urls[at])
            .header("Authentication", &auth)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) if r.status() == 503 => {
                assert_eq!(
                    r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                    Some("5")
                );
                tally.answered_503.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => panic!("callback {i}: answered {}", r.status()),
            Err(_) => {
                tally.unreachable.fetch_add(1, Ordering::Relaxed);
            }
        }
        at = (at + 1) % urls.len();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many `unmatched` records each connection has in `items` (from
/// `callbacks list`), read from each record's body as `GET /callbacks/{id}`
/// shows it (`{"as": "json", "body": {...}}`, the key redacted).
async fn first_keepings(
    setup: &Setup,
    items: &[serde_json::Value],
) -> std::collections::BTreeMap<String, usize> {
    let http = reqwest::Client::new();
    let mut firsts = std::collections::BTreeMap::new();
    for c in items.iter().filter(|c| c["status"] == "unmatched") {
        let id = c["id"].as_u64().unwrap();
        let shown: serde_json::Value = http
            .get(setup.admin_url(&format!("/callbacks/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let conn = shown["body"]["body"]["connection_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{shown}"));
        *firsts.entry(conn.to_string()).or_default() += 1;
    }
    firsts
}

/// The daemon's `kill -9`, then a start again.
fn kill9_and_restart(setup: &Setup, daemon: &mut Option<Proc>) {
    if let Some(mut d) = daemon.take() {
        let _ = d.0.kill();
        let _ = d.0.wait();
    }
    std::thread::sleep(Duration::from_millis(500));
    *daemon = Some(setup.daemon());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbacks_survive_kills_through_a_cluster() {
    let n: usize = std::env::var("MYDEX_TEST_NATS_CALLBACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    // Callbacks a second offered (so the faults fall while they are sent).
    let rate: f64 = std::env::var("MYDEX_TEST_NATS_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0);
    let nats_dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::cluster(nats_dir.path(), 3);
    let (setup, _smtp, public) = nats_setup(&nats, 3).await;
    let setup = Arc::new(setup);
    let out = setup.cli(&["nats", "setup"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        printed.contains("stream MYDEXTEST_CALLBACKS (mydextest.callbacks): created"),
        "{printed}"
    );
    let again = setup.cli(&["nats", "setup"]);
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains("MYDEXTEST_CALLBACKS (mydextest.callbacks): unchanged")
    );
    let section = nats_section(&nats, 3);
    let mut edges = vec![
        Edge::start(setup.dir.path(), "edge-a", &section, &public),
        Edge::start(setup.dir.path(), "edge-b", &section, &public),
    ];
    for e in &edges {
        e.wait_ready(Duration::from_secs(120));
    }
    let urls: Vec<String> = edges.iter().map(Edge::callback_url).collect();
    let mut daemon = Some(setup.daemon());

    let keys: Vec<String> = (0..n)
        .map(|i| format!("nats-member-key-{i}-{:016x}", rand::random::<u64>()))
        .collect();
    let tally = Arc::new(Tally::default());
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..SENDERS {
        let (urls, keys, tally, sent, next) = (
            urls.clone(),
            keys.clone(),
            tally.clone(),
            sent.clone(),
            next.clone(),
        );
        senders.spawn(async move {
            let http = reqwest::Client::new();
            let pause = Duration::from_secs_f64(SENDERS as f64 / rate);
            loop {
                tokio::time::sleep(pause).await;
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= keys.len() {
                    return;
                }
                send(&http, &urls, i, &keys[i], &tally).await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // The faults, each once a share of the callbacks is in.
    let wait_for = |share: f64| {
        let sent = sent.clone();
        async move {
            while (sent.load(Ordering::Relaxed) as f64) < share * n as f64 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(0.15).await;
    let s2 = setup.clone();
    daemon = tokio::task::spawn_blocking(move || {
        kill9_and_restart(&s2, &mut daemon);
        daemon
    })
    .await
    .unwrap();
    println!("daemon kill -9 #1 at {} sent", sent.load(Ordering::Relaxed));
    wait_for(0.3).await;
    nats.kill9(2);
    println!(
        "NATS node n2 kill -9 at {} sent",
        sent.load(Ordering::Relaxed)
    );
    wait_for(0.45).await;
    edges[0].stop();
    edges[0].run();
    println!("edge-a restarted at {} sent", sent.load(Ordering::Relaxed));
    wait_for(0.6).await;
    let s2 = setup.clone();
    daemon = tokio::task::spawn_blocking(move || {
        kill9_and_restart(&s2, &mut daemon);
        daemon
    })
    .await
    .unwrap();
    println!("daemon kill -9 #2 at {} sent", sent.load(Ordering::Relaxed));
    wait_for(0.75).await;
    nats.restart(2);
    while senders.join_next().await.is_some() {}
    let sending = started.elapsed();

    // Everything taken by the daemon: the consumer drained.
    let s2 = setup.clone();
    let status = tokio::task::spawn_blocking(move || {
        s2.wait_status(
            |s| s["callbacks"]["unmatched"] == n as u64 && s["nats"]["pending"] == 0,
            Duration::from_secs(240),
        )
    })
    .await
    .unwrap();
    let all = started.elapsed();
    assert_eq!(status["callbacks"]["unmatched"], n as u64, "{status}");
    assert_eq!(status["nats"]["connected"], true, "{status}");
    assert_eq!(status["nats"]["pending"], 0, "{status}");
    assert_eq!(status["callbacks"]["quarantined"], 0, "{status}");
    assert_eq!(tally.ok.load(Ordering::Relaxed), n as u64);

    // `callbacks list` agrees: each key kept as unmatched once; a
    // redelivery or a retry is a replay.
    let list = setup.cli(&["callbacks", "list", "--json"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let items = list["callbacks"]
        .as_array()
        .or(list.as_array())
        .cloned()
        .unwrap_or_default();
    let count = |s: &str| items.iter().filter(|c| c["status"] == s).count();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for c in &items {
        *seen
            .entry(format!("{}/{}", c["state"], c["status"]))
            .or_default() += 1;
    }
    println!(
        "callbacks list by state/status: {seen:?}; stored {}",
        status["callbacks"]["stored"]
    );
    // Each record is one arrival: the first of each key `unmatched`, a
    // redelivery or retry `replay`. A record left pending by a kill -9
    // after the group commit that held its effects is judged again at the
    // next start and finds its own effects: still its key's `unmatched`.
    // So the list and the status counters agree.
    assert_eq!(
        count("unmatched") as u64,
        status["callbacks"]["unmatched"].as_u64().unwrap(),
        "callbacks list: {seen:?}"
    );
    assert_eq!(count("unmatched"), n, "callbacks list: {seen:?}");
    assert_eq!(
        items.len() as u64,
        status["callbacks"]["stored"].as_u64().unwrap()
    );
    let quarantined = items.iter().filter(|c| c["state"] == "quarantined").count();
    assert_eq!(
        quarantined as u64,
        status["callbacks"]["quarantined"].as_u64().unwrap()
    );
    let events = status["callbacks"]["identify"].as_u64().unwrap()
        + status["callbacks"]["notification"].as_u64().unwrap();
    assert_eq!(count("recorded") as u64, events, "callbacks list: {seen:?}");
    assert_eq!(
        count("unmatched") + count("replay"),
        items.len(),
        "{seen:?}"
    );
    // Per key: exactly one `unmatched` record, and it carried that key's
    // connection.
    let firsts = first_keepings(&setup, &items).await;
    let expected: std::collections::BTreeMap<String, usize> = (0..n)
        .map(|i| (format!("{}-45678", 100_000 + i), 1))
        .collect();
    assert_eq!(firsts, expected, "one unmatched record per key");

    // No key in clear in any NATS store (nor in the daemon's).
    for k in &keys {
        for d in nats.store_dirs() {
            assert!(
                contains_bytes(&d, k.as_bytes()).is_empty(),
                "a key in clear under {}",
                d.display()
            );
        }
    }
    assert!(contains_bytes(&setup.dir.path().join("db"), keys[0].as_bytes()).is_empty());
    println!(
        "{n} callbacks through 2 edges into a 3-node cluster: sent in {:.1}s, all kept after {:.1}s; 503 answers retried {}, unreachable edge retried {}, replays recorded {}",
        sending.as_secs_f64(),
        all.as_secs_f64(),
        tally.answered_503.load(Ordering::Relaxed),
        tally.unreachable.load(Ordering::Relaxed),
        count("replay"),
    );
    for e in &mut edges {
        e.stop();
    }
    setup.keep_for_log_scan().await;
    drop(daemon);
}

/// `edge` (and `run`) with a listen address that cannot be bound, or a
/// file it needs missing: exit 78 naming the key, which a unit does not
/// restart in a loop. No NATS server is needed to get that far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_address_that_cannot_be_bound_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("seal");
    std::fs::create_dir_all(&keys).unwrap();
    let (_, public) = keygen(&keys);
    let section = format!("servers = [\"nats://127.0.0.1:{}\"]\n", free_port());
    let edge = Edge::configure(dir.path(), "edge", &section, &public);
    let exits = |config: &std::path::Path, command: &str| {
        let out = std::process::Command::new(bin())
            .args([command, "--config"])
            .arg(config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr)
    };
    // In use by another process.
    let taken = std::net::TcpListener::bind(("127.0.0.1", edge.callback_port)).unwrap();
    let (code, stderr) = exits(&edge.config, "edge");
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("callback.listen") && stderr.contains("cannot bind"),
        "{stderr}"
    );
    drop(taken);
    // Not an address of this machine (TEST-NET-1).
    let text = std::fs::read_to_string(&edge.config).unwrap();
    let elsewhere = format!("listen = \"127.0.0.1:{}\"", edge.admin_port);
    assert!(text.contains(&elsewhere));
    let other = dir.path().join("elsewhere.toml");
    std::fs::write(
        &other,
        text.replace(&elsewhere, "listen = \"192.0.2.1:8081\""),
    )
    .unwrap();
    let (code, stderr) = exits(&other, "edge");
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("admin.listen 192.0.2.1:8081"), "{stderr}");
    // A file it needs, missing.
    std::fs::remove_file(&public).unwrap();
    let (code, stderr) = exits(&edge.config, "edge");
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("nats.seal_public_key_file"), "{stderr}");

    // `run` alike: its admin address in use.
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, tempfile::tempdir().unwrap(), Options::default()).await;
    let taken = std::net::TcpListener::bind(("127.0.0.1", setup.admin_port)).unwrap();
    let (code, stderr) = exits(&setup.config, "run");
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("admin.listen") && stderr.contains("cannot bind"),
        "{stderr}"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_change_nothing() {
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(nats_dir.path());
    let (setup, _smtp, public) = nats_setup(&nats, 1).await;
    let edge = Edge::start(setup.dir.path(), "edge", &nats_section(&nats, 1), &public);
    edge.wait_ready(Duration::from_secs(60));
    let _daemon = setup.daemon();
    let http = reqwest::Client::new();

    // A forged callback at the edge: 401, never published.
    let key = format!("hostile-key-{:016x}", rand::random::<u64>());
    let r = http
        .post(edge.callback_url())
        .header("Authentication", "0".repeat(128))
        .json(&ftc_body(1, &key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let metrics = nats::http_get(edge.admin_port, "/metrics").unwrap().1;
    assert!(
        !metrics.contains("mydex_connector_nats_published_total{"),
        "{metrics}"
    );

    // Straight onto the stream: garbage, sealed to another key, sealed to
    // ours without the Connection Token.
    let client = async_nats::connect(nats.urls()[0].as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let other = mydex_connector::broker::SealKey::generate().public_key();
    let ours = mydex_connector::broker::SealPublicKey::from_bytes(
        hex::decode(std::fs::read_to_string(&public).unwrap().trim())
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let forged = mydex_connector::broker::ReceivedCallback {
        method: "POST".into(),
        content_type: Some("application/json".into()),
        authentication: "0".repeat(128),
        body: serde_json::to_vec(&ftc_body(2, &key)).unwrap(),
        arrived_ms: 1,
    };
    let mut forged_right_auth_other_key = forged.clone();
    forged_right_auth_other_key.authentication = contract::sha512_hex(TOKEN);
    let payloads: Vec<Vec<u8>> = vec![
        b"not a sealed box".to_vec(),
        Vec::new(),
        other.seal(&forged_right_auth_other_key.to_plain()).unwrap(),
        ours.seal(&forged.to_plain()).unwrap(),
        ours.seal(b"{\"kind\":\"callback\"}").unwrap(),
    ];
    let hostile = payloads.len();
    for p in payloads {
        js.publish("mydextest.callbacks", p.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Then a real one through the edge: taken after them, so once it is
    // kept, they were handled.
    let good = format!("good-key-{:016x}", rand::random::<u64>());
    let r = http
        .post(edge.callback_url())
        .header("Authentication", contract::sha512_hex(TOKEN))
        .json(&ftc_body(3, &good))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = setup.wait_status(
        |s| s["callbacks"]["unmatched"] == 1 && s["nats"]["pending"] == 0,
        Duration::from_secs(120),
    );
    assert_eq!(s["callbacks"]["unmatched"], 1, "{s}");
    assert_eq!(
        s["callbacks"]["stored"], 1,
        "only the real one is kept: {s}"
    );
    assert_eq!(s["callbacks"]["quarantined"], 0, "{s}");
    assert_eq!(
        s["nats"]["pending"], 0,
        "the rejected ones are not delivered again: {s}"
    );
    let log = setup.log();
    assert_eq!(
        log.matches("NATS message rejected").count(),
        hostile,
        "{log}"
    );
    assert!(log.contains("does not match our Connection Token"));
    assert!(log.contains("not sealed to this daemon's key"));
    for d in nats.store_dirs() {
        assert!(contains_bytes(&d, good.as_bytes()).is_empty());
    }
    setup.keep_for_log_scan().await;
}

/// `nats keygen --out DIR` as an operator runs it: the key's path, the
/// public key's path and the fingerprint it printed (checked against the
/// library's).
fn keygen_printed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let (seal_key, public, printed) = mydex_test_support::nats::keygen_printing(dir);
    let fingerprint = printed
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .unwrap_or_else(|| panic!("keygen printed no fingerprint: {printed}"))
        .trim()
        .to_string();
    let key = mydex_connector::broker::SealPublicKey::from_bytes(
        hex::decode(std::fs::read_to_string(&public).unwrap().trim())
            .unwrap()
            .try_into()
            .unwrap(),
    );
    assert_eq!(key.fingerprint(), fingerprint);
    (seal_key, public, fingerprint)
}

/// The daemon's `/readyz`: status code and document.
async fn daemon_readyz(setup: &Setup) -> (u16, serde_json::Value) {
    let r = reqwest::get(setup.admin_url("/readyz")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A sample of the daemon's `/metrics` (the line that starts with `series`).
async fn daemon_metric(setup: &Setup, series: &str) -> Option<f64> {
    let text = setup.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Send callbacks `range` through `url`, each answered 200 (a 503 retried).
async fn send_all(url: &str, range: std::ops::Range<usize>, keys: &mut Vec<String>) {
    let (http, tally) = (reqwest::Client::new(), Tally::default());
    for i in range {
        let key = format!("held-member-key-{i}-{:016x}", rand::random::<u64>());
        send(&http, &[url.to_string()], i, &key, &tally).await;
        keys.push(key);
    }
}

/// Poll `status` (off the runtime's threads) until `pred` holds.
async fn status_when(
    setup: &Arc<Setup>,
    pred: impl Fn(&serde_json::Value) -> bool + Send + 'static,
) -> serde_json::Value {
    let s = setup.clone();
    tokio::task::spawn_blocking(move || s.wait_status(pred, Duration::from_secs(240)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_with_the_wrong_seal_key_holds_callbacks() {
    const N: usize = 30;
    const HELD_LINE: &str = "sealed to a key this daemon does not hold";
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = Nats::single(nats_dir.path());
    let (setup, _smtp, public_b) = nats_setup(&nats, 1).await;
    let setup = Arc::new(setup);
    let key_b = setup.dir.path().join("seal").join("seal.key");
    let fp_b = mydex_connector::broker::SealPublicKey::from_bytes(
        hex::decode(std::fs::read_to_string(&public_b).unwrap().trim())
            .unwrap()
            .try_into()
            .unwrap(),
    )
    .fingerprint();
    let dir_a = setup.dir.path().join("seal-a");
    std::fs::create_dir_all(&dir_a).unwrap();
    let (key_a, public_a, fp_a) = keygen_printed(&dir_a);
    assert_ne!(fp_a, fp_b);
    let mut edge = Edge::start(setup.dir.path(), "edge", &nats_section(&nats, 1), &public_a);
    edge.wait_ready(Duration::from_secs(60));
    let daemon = setup.daemon();

    // Every callback answered 200 by the edge, then held by the daemon.
    let mut keys = Vec::new();
    send_all(&edge.callback_url(), 0..N, &mut keys).await;
    let held = "mydex_connector_nats_held_messages{stream=\"MYDEXTEST_CALLBACKS\"}";
    let deadline = Instant::now() + Duration::from_secs(180);
    while daemon_metric(&setup, held).await != Some(N as f64) {
        assert!(Instant::now() < deadline, "not all held: {}", setup.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A message naming another key without our edges' MAC: rejected.
    let client = async_nats::connect(nats.urls()[0].as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Mydex-Seal-Key", "0123456789abcdef");
    headers.insert("Mydex-Seal-Mac", "00".repeat(32).as_str());
    js.publish_with_headers("mydextest.callbacks", headers, "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !setup.log().contains("without our edges' Mydex-Seal-Mac") {
        assert!(Instant::now() < deadline, "not rejected: {}", setup.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (code, ready) = daemon_readyz(&setup).await;
    assert_eq!(code, 503, "{ready}");
    let check = &ready["checks"]["nats_seal_key"];
    assert_eq!(check["ok"], false, "{ready}");
    assert_eq!(check["seal_key"], fp_b.as_str(), "{ready}");
    let why = check["error"].as_str().unwrap();
    assert!(
        why.contains("waiting in NATS") && why.contains(&format!("{N} sealed to {fp_a}")),
        "{why}"
    );
    assert!(why.contains(&fp_b), "{why}");
    assert!(!why.contains("0123456789abcdef"), "{why}");
    // The forged one's termination lands a moment after its log line.
    let status = status_when(&setup, |s| s["nats"]["pending"] == N as u64).await;
    assert_eq!(status["callbacks"]["stored"], 0, "none kept: {status}");
    assert_eq!(status["nats"]["pending"], N as u64, "{status}");
    assert_eq!(status["nats"]["held"], N as u64, "{status}");
    assert_eq!(status["nats"]["seal_key"], fp_b.as_str(), "{status}");
    let log = setup.log();
    assert_eq!(log.matches(HELD_LINE).count(), 1, "one line per key: {log}");
    let line = log.lines().find(|l| l.contains(HELD_LINE)).unwrap();
    assert!(line.contains(&fp_a) && line.contains(&fp_b), "{line}");
    assert_eq!(
        log.matches("NATS message rejected").count(),
        1,
        "only the forged one: {log}"
    );

    // The right key: every held callback kept once, and ready.
    setup.stop(daemon);
    setup.edit_config(&format!("{key_b:?}"), &format!("{key_a:?}"));
    let daemon = setup.daemon();
    let status = status_when(&setup, move |s| {
        s["callbacks"]["unmatched"] == N as u64 && s["nats"]["pending"] == 0
    })
    .await;
    assert_eq!(status["callbacks"]["unmatched"], N as u64, "{status}");
    assert_eq!(
        status["callbacks"]["stored"], N as u64,
        "each once: {status}"
    );
    assert_eq!(status["callbacks"]["quarantined"], 0, "{status}");
    assert_eq!(status["nats"]["held"], 0, "{status}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = loop {
        let (code, doc) = daemon_readyz(&setup).await;
        if code == 200 || Instant::now() > deadline {
            break doc;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["checks"]["nats_seal_key"]["ok"], true, "{ready}");

    // A rotation, daemon first: key C, with A kept as the previous key.
    let dir_c = setup.dir.path().join("seal-c");
    std::fs::create_dir_all(&dir_c).unwrap();
    let (key_c, public_c, fp_c) = keygen_printed(&dir_c);
    setup.stop(daemon);
    setup.edit_config(
        &format!("seal_key_file = {key_a:?}"),
        &format!("seal_key_file = {key_c:?}\nprevious_seal_key_file = {key_a:?}"),
    );
    let daemon = setup.daemon();
    send_all(&edge.callback_url(), N..N + 5, &mut keys).await;
    let status = status_when(&setup, move |s| {
        s["callbacks"]["unmatched"] == (N + 5) as u64
    })
    .await;
    assert_eq!(
        status["callbacks"]["unmatched"],
        (N + 5) as u64,
        "opened with the previous key: {status}"
    );
    assert_eq!(status["nats"]["seal_key"], fp_c.as_str(), "{status}");
    assert_eq!(
        status["nats"]["previous_seal_key"],
        fp_a.as_str(),
        "{status}"
    );
    // Then the edge: sealing to C.
    edge.stop();
    let text = std::fs::read_to_string(&edge.config).unwrap();
    std::fs::write(
        &edge.config,
        text.replace(&format!("{public_a:?}"), &format!("{public_c:?}")),
    )
    .unwrap();
    edge.run();
    edge.wait_ready(Duration::from_secs(60));
    assert!(
        edge.log().contains(&fp_c),
        "the edge names its key: {}",
        edge.log()
    );
    send_all(&edge.callback_url(), N + 5..N + 10, &mut keys).await;
    let status = status_when(&setup, move |s| {
        s["callbacks"]["unmatched"] == (N + 10) as u64 && s["nats"]["pending"] == 0
    })
    .await;
    assert_eq!(status["callbacks"]["stored"], (N + 10) as u64, "{status}");
    assert_eq!(status["nats"]["held"], 0, "{status}");
    let log = setup.log();
    assert_eq!(
        log.matches(HELD_LINE).count(),
        1,
        "nothing held in the rotation: {log}"
    );
    for k in &keys {
        for d in nats.store_dirs() {
            assert!(contains_bytes(&d, k.as_bytes()).is_empty());
        }
    }
    edge.stop();
    setup.keep_for_log_scan().await;
    drop(daemon);
}
