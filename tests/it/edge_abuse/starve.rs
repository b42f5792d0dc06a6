//! Starving the callback listener, through the real binary, the sandbox's
//! journeys and the SMTP sink: requests that start a body and never send it
//! (`POST /unsubscribe/x`, `Content-Length: 1000`, then nothing), and
//! connections opened and left silent, reopened as they are closed, while
//! members finish their journeys and Mydex's callbacks come in. At least 59
//! of 60 callbacks must be stored with at most one retry each (the sandbox
//! is told to retry once), and no stalled request may hold its connection:
//! it gets 408 (or 503 when dropped to make room) or is closed. Each test
//! prints what was stored, retried, refused and evicted, and how long the
//! callbacks took.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mydex_test_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Callbacks delivered under each attack.
const CALLBACKS: usize = 60;
/// Of which at least this many must be stored.
const MUST_STORE: u64 = 59;
/// `callback.max_connections` when the config does not set it.
const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// One journey started this often: 60 over 15 s.
const PACE: Duration = Duration::from_millis(250);

/// A daemon at the default limits (plus `callback_extra` under
/// `[callback]`), 60 invitations mailed, the sandbox retrying a callback
/// once at most.
struct World {
    setup: Setup,
    _smtp: Smtp,
    _daemon: Proc,
    mails: Vec<Mail>,
}

async fn world(callback_extra: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    if !callback_extra.is_empty() {
        setup.edit_config("[callback]\n", &format!("[callback]\n{callback_extra}\n"));
    }
    setup
        .sandbox_settings(serde_json::json!({"callback_retries": 1}))
        .await;
    let daemon = setup.daemon();
    let file = setup.dir.path().join("people.csv");
    let mut csv = String::from("email,name,external_ref\n");
    for i in 0..CALLBACKS {
        csv += &format!("starve{i}@example.com,Starve {i},MTR-{i:03}\n");
    }
    std::fs::write(&file, csv).unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paths = smtp.wait_for(CALLBACKS, Duration::from_secs(180));
    assert_eq!(paths.len(), CALLBACKS, "{}", setup.log());
    let mails = paths.iter().map(|p| read_mail(p)).collect();
    World {
        setup,
        _smtp: smtp,
        _daemon: daemon,
        mails,
    }
}

/// How the callbacks fared, from the sandbox's side.
#[derive(Debug, Default)]
struct Delivered {
    first_try: u64,
    after_retry: u64,
    refused: u64,
    took: Duration,
}

/// Every member finishes their journey, one every `PACE` (so the callbacks
/// meet the attack in all its phases, over longer than
/// `callback.read_timeout`); the sandbox sends each callback, retrying once
/// on a reset, a refusal or a 5xx.
async fn deliver_callbacks(w: &World) -> Delivered {
    let started = Instant::now();
    let answers: Vec<(u16, serde_json::Value)> =
        futures_util::future::join_all(w.mails.iter().enumerate().map(|(i, m)| async move {
            tokio::time::sleep(PACE * i as u32).await;
            let mydexid = format!("starve{i}x");
            w.setup.journey(&m.qr_link, &mydexid, &m.to).await
        }))
        .await;
    let mut d = Delivered {
        took: started.elapsed(),
        ..Default::default()
    };
    for (status, body) in answers {
        assert!(status < 300, "journey: {status} {body}");
        let ok = body["callback_status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s));
        match (ok, body["callback_attempts"].as_u64()) {
            (true, Some(1)) => d.first_try += 1,
            (true, _) => d.after_retry += 1,
            (false, _) => d.refused += 1,
        }
    }
    d
}

/// Members connected, once every callback answered 2xx is (or after a
/// generous wait).
fn stored(w: &World, delivered: &Delivered) -> u64 {
    let want = delivered.first_try + delivered.after_retry;
    let s = w.setup.wait_status(
        |s| s["invitations"]["connected"].as_u64() >= Some(want),
        Duration::from_secs(60),
    );
    s["invitations"]["connected"].as_u64().unwrap_or(0)
}

/// The callback listener's counters in `/metrics`, as `event=count`.
async fn listener_metrics(setup: &Setup) -> String {
    let text = setup.metrics().await;
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("mydex_connector_callback_listener_events_total{event=\"")?;
            let (event, value) = rest.split_once("\"} ")?;
            Some(format!("{event}={value}"))
        })
        .collect();
    out.sort();
    out.join(" ")
}

/// One listener event's count from `listener_metrics`' answer.
fn event(metrics: &str, name: &str) -> u64 {
    metrics
        .split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What the stalled requests got.
#[derive(Default)]
struct Stalls {
    opened: AtomicU64,
    got_408: AtomicU64,
    got_503: AtomicU64,
    closed: AtomicU64,
    /// Any other answer (there must be none).
    other: AtomicU64,
    /// Still unanswered after `HUNG` (the bug: over a minute with no answer).
    hung: AtomicU64,
    /// Still waiting when the test stopped.
    open_at_stop: AtomicU64,
    longest_ms: AtomicU64,
}

/// Longer than any stalled request may be held without an answer.
const HUNG: Duration = Duration::from_secs(90);

/// Keep one stalled `POST /unsubscribe/x` open: its head and a
/// `Content-Length` of 1000, then nothing. When the server answers or
/// closes, note how, wait a second and start another.
async fn stall_one(addr: String, stop: Arc<AtomicBool>, c: Arc<Stalls>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let head = "POST /unsubscribe/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            c.closed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        c.opened.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(HUNG, async {
            loop {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                match tokio::time::timeout(Duration::from_millis(250), s.read(&mut buf)).await {
                    Err(_) => continue,
                    Ok(r) => return Some(r),
                }
            }
        })
        .await;
        let counter = match read {
            Err(_) => &c.hung,
            Ok(None) => &c.open_at_stop,
            Ok(Some(Ok(n))) if n > 0 && buf.starts_with(b"HTTP/1.1 408") => &c.got_408,
            Ok(Some(Ok(n))) if n > 0 && buf.starts_with(b"HTTP/1.1 503") => &c.got_503,
            Ok(Some(Ok(0))) | Ok(Some(Err(_))) => &c.closed,
            Ok(Some(Ok(_))) => &c.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if !std::ptr::eq(counter, &c.open_at_stop) {
            c.longest_ms
                .fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `stalled` stalled bodies held open (each restarted a second after it
/// ends) while 60 callbacks arrive; the figures printed and checked.
/// With `expect_408`, some stalled bodies must have reached their deadline
/// (at a small cap they are all evicted first, as the listener fills).
async fn stalled_bodies_while_callbacks_arrive(
    w: World,
    stalled: usize,
    label: &str,
    expect_408: bool,
) {
    let addr = format!("127.0.0.1:{}", w.setup.callback_port);
    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(Stalls::default());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..stalled {
        tasks.spawn(stall_one(addr.clone(), stop.clone(), c.clone()));
    }
    let t = Instant::now();
    while c.opened.load(Ordering::Relaxed) < stalled as u64 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "only {} stalled requests opened",
            c.opened.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = deliver_callbacks(&w).await;
    // Long enough for the first stalled bodies to reach their deadline.
    let rest = Duration::from_secs(12).saturating_sub(t.elapsed());
    tokio::time::sleep(rest).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let stored = stored(&w, &delivered);
    let metrics = listener_metrics(&w.setup).await;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "{label}: {stalled} stalled POST /unsubscribe/x bodies held (opened {} in all): {stored} of {CALLBACKS} callbacks stored ({} on the first try, {} after one retry, {} refused) in {:.1} s",
        n(&c.opened),
        delivered.first_try,
        delivered.after_retry,
        delivered.refused,
        delivered.took.as_secs_f64()
    );
    println!(
        "{label}: the stalled requests got 408 {}, 503 {} (evicted), closed {}, other {}, unanswered after {HUNG:?} {}, still open at the end {}; longest held {} ms; listener events: {metrics}",
        n(&c.got_408),
        n(&c.got_503),
        n(&c.closed),
        n(&c.other),
        n(&c.hung),
        n(&c.open_at_stop),
        n(&c.longest_ms)
    );
    assert!(
        stored >= MUST_STORE,
        "{stored} of {CALLBACKS} stored: {delivered:?}"
    );
    assert_eq!(n(&c.hung), 0, "a stalled body held its connection");
    assert_eq!(
        n(&c.other),
        0,
        "a stalled body got an answer other than 408/503"
    );
    assert!(
        n(&c.got_408) + n(&c.got_503) + n(&c.closed) > 0,
        "the stalled requests were answered or closed"
    );
    assert!(
        !expect_408 || (n(&c.got_408) > 0 && event(&metrics, "body_timeout") > 0),
        "a body that does not arrive within callback.read_timeout gets 408, counted: {metrics}"
    );
    assert!(
        event(&metrics, "evicted_incomplete") + event(&metrics, "body_timeout")
            >= n(&c.got_503) + n(&c.got_408),
        "every stalled body answered 408 or 503 is counted: {metrics}"
    );
    w.setup.keep_for_log_scan().await;
}

/// The starvation as first reproduced: a listener of 32 and 32 stalled unsubscribe
/// bodies (the rest of the limits at their defaults).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_unsubscribe_bodies_filling_32_connections_do_not_starve_callbacks() {
    let w = world("max_connections = 32").await;
    stalled_bodies_while_callbacks_arrive(w, 32, "max_connections 32", false).await;
}

/// At the default limits the listener holds 256: as many stalled bodies
/// as that fill it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_unsubscribe_bodies_at_the_default_limits_do_not_starve_callbacks() {
    let w = world("").await;
    stalled_bodies_while_callbacks_arrive(w, DEFAULT_MAX_CONNECTIONS, "defaults", true).await;
}

/// What the idle flood did.
#[derive(Default)]
struct Flood {
    opened: AtomicU64,
    /// Connections the server closed (evicted, or idle past the deadline).
    closed_by_server: AtomicU64,
    /// Connects that failed.
    refused: AtomicU64,
    live: AtomicU64,
}

/// Connections opened at `per_second` and left silent, each held until the
/// server closes it, at most `max_live` at once.
async fn idle_flood(
    addr: String,
    per_second: u64,
    max_live: u64,
    stop: Arc<AtomicBool>,
    f: Arc<Flood>,
) {
    idle_flood_from(None, addr, per_second, max_live, stop, f).await
}

/// A connection to `addr`, from the loopback address `from` when given.
async fn connect_from(from: Option<std::net::Ipv4Addr>, addr: &str) -> std::io::Result<TcpStream> {
    let Some(from) = from else {
        return TcpStream::connect(addr).await;
    };
    let to: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    socket.connect(to).await
}

/// `idle_flood`, its connections made from `from`.
async fn idle_flood_from(
    from: Option<std::net::Ipv4Addr>,
    addr: String,
    per_second: u64,
    max_live: u64,
    stop: Arc<AtomicBool>,
    f: Arc<Flood>,
) {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if f.live.load(Ordering::Relaxed) >= max_live {
            continue;
        }
        let (addr, stop, f) = (addr.clone(), stop.clone(), f.clone());
        f.live.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            match connect_from(from, &addr).await {
                Err(_) => {
                    f.refused.fetch_add(1, Ordering::Relaxed);
                }
                Ok(mut s) => {
                    f.opened.fetch_add(1, Ordering::Relaxed);
                    let mut b = [0u8; 64];
                    while !stop.load(Ordering::Relaxed) {
                        match tokio::time::timeout(Duration::from_millis(250), s.read(&mut b)).await
                        {
                            Err(_) => continue,
                            Ok(_) => {
                                f.closed_by_server.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            }
            f.live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Idle connections opened at 200 a second (26 a second once starved the listener) and kept
/// until the server closes them, while 60 callbacks arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_flood_does_not_starve_callbacks() {
    const RATE: u64 = 200;
    let w = world("").await;
    let addr = format!("127.0.0.1:{}", w.setup.callback_port);
    let stop = Arc::new(AtomicBool::new(false));
    let f = Arc::new(Flood::default());
    let flood = tokio::spawn(idle_flood(
        addr,
        RATE,
        4 * DEFAULT_MAX_CONNECTIONS as u64,
        stop.clone(),
        f.clone(),
    ));
    let t = Instant::now();
    // Until the listener is full: the server closes connections.
    while f.opened.load(Ordering::Relaxed) <= DEFAULT_MAX_CONNECTIONS as u64
        || f.closed_by_server.load(Ordering::Relaxed) == 0
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the flood never filled the listener: {} opened",
            f.opened.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered = deliver_callbacks(&w).await;
    stop.store(true, Ordering::Relaxed);
    let flood_secs = t.elapsed().as_secs_f64();
    let _ = flood.await;
    let stored = stored(&w, &delivered);
    let metrics = listener_metrics(&w.setup).await;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let log_lines = w
        .setup
        .log()
        .lines()
        .filter(|l| l.contains("callback listener under load"))
        .count();
    println!(
        "idle flood: {} connections opened in {flood_secs:.1} s ({:.0}/s), {} closed by the server, {} connects failed: {stored} of {CALLBACKS} callbacks stored ({} on the first try, {} after one retry, {} refused) in {:.1} s; listener events: {metrics}; {log_lines} log lines about it",
        n(&f.opened),
        n(&f.opened) as f64 / flood_secs,
        n(&f.closed_by_server),
        n(&f.refused),
        delivered.first_try,
        delivered.after_retry,
        delivered.refused,
        delivered.took.as_secs_f64()
    );
    assert!(
        stored >= MUST_STORE,
        "{stored} of {CALLBACKS} stored: {delivered:?}"
    );
    assert!(
        event(&metrics, "evicted_incomplete") > 0,
        "silent connections were evicted: {metrics}"
    );
    assert!(
        (log_lines as f64) <= flood_secs / 10.0 + 2.0,
        "evictions are logged in summary, not per connection: {log_lines} lines"
    );
    w.setup.keep_for_log_scan().await;
}

/// The connections the callback listener holds now (its gauge in
/// `/metrics`).
async fn connections_open(setup: &Setup) -> u64 {
    let text = setup.metrics().await;
    open_in(&text)
}

/// The open-connections gauge in a `/metrics` answer.
fn open_in(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("mydex_connector_callback_connections_open "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// One client address opening silent connections as fast as it can (from
/// 127.0.0.2, with no address trusted as a proxy) holds no more than its
/// share of the listener (a quarter: 64 of 256, and up to as many again
/// evicted but not yet closed), so the others' places are never taken, and
/// every callback (from 127.0.0.1) gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_flooding_holds_no_more_than_its_share() {
    const RATE: u64 = 1000;
    const SHARE: u64 = DEFAULT_MAX_CONNECTIONS as u64 / 4;
    let w = world("trusted_proxies = []").await;
    let addr = format!("127.0.0.1:{}", w.setup.callback_port);
    let stop = Arc::new(AtomicBool::new(false));
    let f = Arc::new(Flood::default());
    let flood = tokio::spawn(idle_flood_from(
        Some(std::net::Ipv4Addr::new(127, 0, 0, 2)),
        addr,
        RATE,
        4 * DEFAULT_MAX_CONNECTIONS as u64,
        stop.clone(),
        f.clone(),
    ));
    let t = Instant::now();
    while f.closed_by_server.load(Ordering::Relaxed) < 4 * SHARE {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the flood never reached its share: {} opened, {} closed",
            f.opened.load(Ordering::Relaxed),
            f.closed_by_server.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let watch = {
        let (setup_admin, stop) = (w.setup.admin_url("/metrics"), stop.clone());
        tokio::spawn(async move {
            let mut most = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = reqwest::get(&setup_admin).await
                    && let Ok(text) = r.text().await
                {
                    most = most.max(open_in(&text));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            most
        })
    };
    let delivered = deliver_callbacks(&w).await;
    stop.store(true, Ordering::Relaxed);
    let flood_secs = t.elapsed().as_secs_f64();
    let _ = flood.await;
    let most_open = watch.await.unwrap_or(0);
    let stored = stored(&w, &delivered);
    let metrics = listener_metrics(&w.setup).await;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "one address flooding: {} connections opened from 127.0.0.2 in {flood_secs:.1} s ({:.0}/s), {} closed by the server, {} connects failed; at most {most_open} connections held at once (share {SHARE} of {DEFAULT_MAX_CONNECTIONS}); {stored} of {CALLBACKS} callbacks stored ({} on the first try, {} after one retry, {} refused); listener events: {metrics}; open now {}",
        n(&f.opened),
        n(&f.opened) as f64 / flood_secs,
        n(&f.closed_by_server),
        n(&f.refused),
        delivered.first_try,
        delivered.after_retry,
        delivered.refused,
        connections_open(&w.setup).await,
    );
    assert!(
        stored >= MUST_STORE,
        "{stored} of {CALLBACKS} stored: {delivered:?}"
    );
    // The flood's own (its share, and as many evicted not yet closed), and
    // the few callbacks in flight at once.
    assert!(
        most_open <= 2 * SHARE + 16,
        "one address held {most_open} connections"
    );
    w.setup.keep_for_log_scan().await;
}

/// The status line the server answers on `s` (empty when it closes first),
/// then whether it closes the connection; within `HUNG` each.
async fn answer_then_close(s: &mut TcpStream) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + HUNG;
    let mut status = String::new();
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (status, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (status, true),
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if status.is_empty()
                    && let Some(end) = got.windows(2).position(|w| w == b"\r\n")
                {
                    status = String::from_utf8_lossy(&got[..end]).into_owned();
                }
            }
        }
    }
}

/// Every route of the public listener: a body that never arrives gets 408
/// where the route reads one (unsubscribe, the callback with its
/// `Authentication`), an immediate answer where it does not (a path we do
/// not serve, the callback without `Authentication`), and the connection
/// is closed either way; a keep-alive connection left idle after its
/// answer is closed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_closes_a_stalled_body_and_idle_keep_alive_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let _daemon = setup.daemon();
    let addr = format!("127.0.0.1:{}", setup.callback_port);
    let auth = format!(
        "Authentication: {}\r\n",
        mydex_connector::mydex::token_hash(TOKEN)
    );
    let cases = [
        ("POST /unsubscribe/x", String::new(), "HTTP/1.1 408"),
        ("POST /mydex/callback", auth, "HTTP/1.1 408"),
        ("POST /mydex/callback", String::new(), "HTTP/1.1 401"),
        ("POST /nowhere", String::new(), "HTTP/1.1 404"),
        ("PUT /unsubscribe/x", String::new(), "HTTP/1.1 405"),
    ];
    let runs = cases.iter().map(|(line, extra, want)| {
        let addr = addr.clone();
        async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "{line} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"a\""
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let (status, closed) = answer_then_close(&mut s).await;
            println!("stalled body, {line}: {status:?}, closed {closed}");
            assert!(status.starts_with(want), "{line}: {status:?}, want {want}");
            assert!(closed, "{line}: the connection is closed after {status:?}");
        }
    });
    futures_util::future::join_all(runs).await;

    // A complete request on a keep-alive connection, then silence.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /unsubscribe/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (status, closed) = answer_then_close(&mut s).await;
    println!("idle keep-alive after {status:?}: closed {closed}");
    assert!(status.starts_with("HTTP/1.1 404"), "{status:?}");
    assert!(closed, "an idle keep-alive connection is closed");
    let metrics = listener_metrics(&setup).await;
    assert_eq!(event(&metrics, "body_timeout"), 2, "{metrics}");
    setup.keep_for_log_scan().await;
}
