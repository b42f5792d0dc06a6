//! The kill -9 crash test, through the real
//! binary against the sandbox and a real SMTP server:
//!
//! * `kill_9_mid_campaign_loses_nothing`: a campaign (`CRASH_INVITEES`,
//!   default 2,000) whose journeys complete as mails arrive, the daemon
//!   killed with SIGKILL at random moments (`CRASH_KILLS`, default 20; seed
//!   `CRASH_SEED`, printed) and restarted on the same store each time. At
//!   the end every invitee is connected, every callback the daemon answered
//!   2xx is a stored member whose key decrypts to the key Mydex handed out,
//!   and mails sent twice are counted, printed and bounded.
//! * `kill_9_during_ingest_stores_each_row_once`: a large queue file
//!   (`CRASH_INGEST_ROWS`, default 50,000) killed mid-ingest
//!   (`CRASH_INGEST_KILLS`, default 5): every row stored exactly once.
//!
//! Run with `cargo test --release --test it crash:: -- --nocapture` for the figures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mydex_test_support::*;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CONCURRENCY: usize = 16;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid number")),
        Err(_) => default,
    }
}

fn seed() -> u64 {
    env_or(
        "CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    )
}

/// Recipient and link of a mail, from its text part (no QR decoding: fast).
fn to_and_link(path: &Path) -> Option<(String, String)> {
    let raw = std::fs::read(path).ok()?;
    let msg = mail_parser::MessageParser::default().parse(&raw)?;
    let to = msg.to()?.first()?.address()?.to_string();
    let text = msg.body_text(0)?.to_string();
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/ftc/begin/"))?
        .to_string();
    Some((to, link))
}

/// What one completed journey brought back from the sandbox.
#[derive(Debug, Clone)]
struct Journey {
    to: String,
    http: u16,
    uid: Option<u64>,
    connection_id: Option<String>,
    /// The daemon's last answer to the callback (None: never reached it).
    callback_status: Option<u64>,
    callback_attempts: u64,
}

/// Mails seen so far and the journeys they started.
#[derive(Default)]
struct Seen {
    files: HashSet<PathBuf>,
    per_recipient: BTreeMap<String, usize>,
    started: HashSet<String>,
    journeys: Vec<Journey>,
}

/// Watches the SMTP outdir and completes the journey of each recipient's
/// first mail, as a member would, several at a time: the sandbox then
/// posts the callback to the daemon, alive or not.
fn spawn_completer(
    outdir: PathBuf,
    sandbox: String,
    seen: Arc<Mutex<Seen>>,
    in_flight: Arc<AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = tokio::task::JoinSet::new();
        let mut n = 0usize;
        loop {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(&outdir)
                .map(|d| {
                    d.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                        .collect()
                })
                .unwrap_or_default();
            paths.sort();
            for p in paths {
                if seen.lock().files.contains(&p) {
                    continue;
                }
                // The server writes the .eml once complete (then its .time).
                let Some((to, link)) = to_and_link(&p) else {
                    continue;
                };
                let first = {
                    let mut s = seen.lock();
                    s.files.insert(p.clone());
                    *s.per_recipient.entry(to.clone()).or_default() += 1;
                    s.started.insert(to.clone())
                };
                if !first {
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                n += 1;
                let mydexid = format!("crash{n}x");
                let (http, sandbox, seen, in_flight) = (
                    http.clone(),
                    sandbox.clone(),
                    seen.clone(),
                    in_flight.clone(),
                );
                in_flight.fetch_add(1, Ordering::SeqCst);
                tasks.spawn(async move {
                    let r = http
                        .post(format!("{sandbox}/_sandbox/journeys"))
                        .json(&serde_json::json!({"url": link, "mydexid": mydexid, "email": to}))
                        .send()
                        .await;
                    let journey = match r {
                        Ok(r) => {
                            let http = r.status().as_u16();
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            Journey {
                                to,
                                http,
                                uid: body["uid"].as_u64(),
                                connection_id: body["connection_id"].as_str().map(str::to_string),
                                callback_status: body["callback_status"].as_u64(),
                                callback_attempts: body["callback_attempts"].as_u64().unwrap_or(0),
                            }
                        }
                        Err(_) => Journey {
                            to,
                            http: 0,
                            uid: None,
                            connection_id: None,
                            callback_status: None,
                            callback_attempts: 0,
                        },
                    };
                    seen.lock().journeys.push(journey);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                });
            }
            while tasks.try_join_next().is_some() {}
            if stop.is_cancelled() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while tasks.join_next().await.is_some() {}
    })
}

/// Allow `members export --with-keys` (set before the daemon starts).
fn allow_key_export(setup: &Setup) {
    setup.edit_config(
        "token_file = \"secrets/admin_token\"",
        "token_file = \"secrets/admin_token\"\nallow_key_export = true",
    );
}

fn run_ok(setup: &Setup, args: &[&str]) -> String {
    let out = setup.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// SIGKILL the daemon and wait for it to be gone.
fn kill_9(daemon: &mut Proc) {
    assert_eq!(send_signal(daemon.0.id() as i32, "KILL"), 0);
    assert!(
        wait_exit(daemon, Duration::from_secs(60)).is_some(),
        "the daemon outlived SIGKILL"
    );
}

/// True while a queue file is still waiting in (or being read from) the queue.
fn queue_has_files(queue: &Path) -> bool {
    std::fs::read_dir(queue)
        .map(|d| {
            d.flatten().any(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                !n.starts_with('.') && e.path().is_file()
            })
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_campaign_loses_nothing() {
    let n: usize = env_or("CRASH_INVITEES", 2000);
    let kills: usize = env_or("CRASH_KILLS", 20);
    // The longest a daemon lives between kills; the shortest is 200 ms.
    let max_gap_ms: u64 = env_or("CRASH_MAX_GAP_MS", 5000);
    let seed = seed();
    println!("crash test: {n} invitees, {kills} kills, seed {seed} (CRASH_SEED={seed} repeats it)");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    allow_key_export(&setup);
    // Mydex retries a callback it could not deliver (backing off to 3.2 s):
    // 30 retries cover ~86 s, longer than the daemon is ever down here even
    // on a loaded machine (a restart may take up to the 60 s `daemon()`
    // allows). A callback still undelivered after them is reported below.
    setup
        .sandbox_settings(serde_json::json!({"callback_retries": 30}))
        .await;
    let queue = setup.dir.path().join("queue");
    let started = Instant::now();
    let mut daemon = setup.daemon();

    let file = setup.dir.path().join("campaign.csv");
    let mut csv = String::from("email,name,external_ref\n");
    for i in 0..n {
        csv += &format!("c{i}@example.com,Person {i},MTR-{i:05}\n");
    }
    std::fs::write(&file, csv).unwrap();
    run_ok(&setup, &["enqueue", file.to_str().unwrap()]);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let completer = spawn_completer(
        smtp.outdir.clone(),
        setup.sandbox.url(),
        seen.clone(),
        in_flight.clone(),
        stop.clone(),
    );

    // Kill at random moments: the first soon after the file is queued (to
    // land in ingest), the rest spread over mailing and callbacks.
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut log_lines = Vec::new();
    let mut callbacks_in_flight_at_kills = 0;
    for k in 0..kills {
        let gap = if k == 0 {
            rng.random_range(20..300)
        } else {
            rng.random_range(200..max_gap_ms.max(201))
        };
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let mails = smtp.messages().len();
        let journeys = in_flight.load(Ordering::SeqCst);
        let phase = if queue_has_files(&queue) {
            "ingest"
        } else if mails < n {
            "mailing"
        } else {
            "callbacks"
        };
        *phases.entry(phase).or_default() += 1;
        callbacks_in_flight_at_kills += journeys;
        kill_9(&mut daemon);
        log_lines.push(format!(
            "kill {:>2} at {:>6.1} s after {gap:>4} ms up: {phase:<9} {mails:>5} mails out, {journeys:>2} journeys in flight",
            k + 1,
            started.elapsed().as_secs_f64()
        ));
        let down = rng.random_range(0..1000);
        tokio::time::sleep(Duration::from_millis(down)).await;
        daemon = setup.daemon();
    }
    for l in &log_lines {
        println!("{l}");
    }

    // Let the campaign finish: every invitation connected.
    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        let s = setup.status();
        if s["invitations"]["connected"] == n as u64 {
            break s;
        }
        if Instant::now() > deadline {
            let journeys = seen.lock().journeys.clone();
            let lost: Vec<&Journey> = journeys
                .iter()
                .filter(|j| !j.callback_status.is_some_and(|c| (200..300).contains(&c)))
                .collect();
            panic!(
                "not all connected: {s}\njourneys without a 2xx callback: {lost:?}\n{}",
                setup.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Let a late duplicate show up before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    completer.await.unwrap();
    let elapsed = started.elapsed();

    // Every invitation accounted for, each once.
    let total: u64 = [
        "queued",
        "link_issued",
        "sent",
        "connected",
        "expired",
        "failed",
    ]
    .iter()
    .map(|k| status["invitations"][k].as_u64().unwrap_or(0))
    .sum();
    assert_eq!(total, n as u64, "none lost, none added: {status}");
    assert_eq!(status["invitations"]["failed"], 0, "{status}");
    assert_eq!(status["members"]["total"], n as u64, "{status}");

    // Every callback the daemon answered 2xx is a stored member whose key
    // decrypts to the key the sandbox generated for that member.
    let state = setup.sandbox_state().await;
    let sandbox_keys: HashMap<String, String> = state["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            Some((
                m["connection_id"].as_str()?.to_string(),
                m["key"].as_str()?.to_string(),
            ))
        })
        .collect();
    let callbacks = state["callbacks"].as_array().unwrap();
    let answered_2xx = callbacks
        .iter()
        .filter(|c| c["type"] == "ftc" && c["status"].as_u64().is_some_and(|s| s < 300))
        .count();
    let retried = callbacks
        .iter()
        .filter(|c| c["attempts"].as_u64().unwrap_or(0) > 1)
        .count();
    let exported: serde_json::Value = serde_json::from_str(&run_ok(
        &setup,
        &["members", "export", "--format", "json", "--with-keys"],
    ))
    .unwrap();
    let exported: HashMap<String, (String, String)> = exported
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["connection_id"].as_str().unwrap().to_string(),
                (
                    m["key"].as_str().unwrap().to_string(),
                    m["email"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(exported.len(), n, "one member per invitee");
    let seen = std::mem::take(&mut *seen.lock());
    let journeys = &seen.journeys;
    assert_eq!(journeys.len(), n, "one journey per invitee");
    let mut answered = 0;
    for j in journeys {
        assert_eq!(j.http, 200, "journey for {} completed: {j:?}", j.to);
        assert!(
            j.callback_status.is_some_and(|c| (200..300).contains(&c)),
            "Mydex delivered the callback within its retries: {j:?}"
        );
        answered += 1;
        let conn = j.connection_id.as_deref().unwrap();
        let (key, email) = exported
            .get(conn)
            .unwrap_or_else(|| panic!("callback answered 2xx but no member stored: {j:?}"));
        assert_eq!(
            Some(key),
            sandbox_keys.get(conn),
            "the stored key of {conn} decrypts to the key Mydex handed out"
        );
        assert_eq!(email, &j.to, "member {conn} matched to the right invitee");
        assert!(j.uid.is_some());
    }
    for (conn, (key, _)) in &exported {
        assert_eq!(Some(key), sandbox_keys.get(conn), "key of {conn}");
    }

    // `callbacks list` agrees with `status`: one `connected` record per
    // member (also one judged again at a start after a kill that came
    // between its effects and its outcome), Mydex's retries `replay`.
    // (Every journey's callback was answered: none arrives meanwhile.)
    let after = setup.status();
    let listed: serde_json::Value =
        serde_json::from_str(&run_ok(&setup, &["callbacks", "list", "--json"])).unwrap();
    let listed = listed.as_array().unwrap();
    let by_status = |w: &str| listed.iter().filter(|c| c["status"] == w).count() as u64;
    let cb = &after["callbacks"];
    let events = cb["identify"].as_u64().unwrap() + cb["notification"].as_u64().unwrap();
    assert_eq!(by_status("connected"), n as u64, "callbacks list: {after}");
    assert_eq!(by_status("recorded"), events, "{after}");
    assert_eq!(
        listed.len() as u64,
        cb["stored"].as_u64().unwrap(),
        "{after}"
    );
    assert_eq!(
        by_status("connected") + by_status("recorded") + by_status("replay"),
        listed.len() as u64,
        "every other record a replay: {after}"
    );

    // Mails: every invitee mailed; only those in flight at a kill twice.
    let expected: HashSet<String> = (0..n).map(|i| format!("c{i}@example.com")).collect();
    let got: HashSet<String> = seen.per_recipient.keys().cloned().collect();
    assert_eq!(got, expected, "every invitee was mailed");
    let twice: Vec<(&String, &usize)> =
        seen.per_recipient.iter().filter(|(_, c)| **c > 1).collect();
    let mails: usize = seen.per_recipient.values().sum();
    let duplicates = mails - n;

    println!("+--------------------------------------+----------+");
    for (k, v) in [
        ("invitees", n.to_string()),
        ("kills (SIGKILL + restart)", kills.to_string()),
        (
            "  landed in ingest/mailing/callbacks",
            format!(
                "{}/{}/{}",
                phases.get("ingest").unwrap_or(&0),
                phases.get("mailing").unwrap_or(&0),
                phases.get("callbacks").unwrap_or(&0)
            ),
        ),
        (
            "  journeys in flight at kills",
            callbacks_in_flight_at_kills.to_string(),
        ),
        ("emails received", mails.to_string()),
        ("duplicate emails", duplicates.to_string()),
        ("invitees mailed twice or more", twice.len().to_string()),
        ("callbacks answered 2xx", answered_2xx.to_string()),
        ("  of which needed a retry", retried.to_string()),
        ("journeys with a 2xx callback", answered.to_string()),
        (
            "  most attempts for one callback",
            journeys
                .iter()
                .map(|j| j.callback_attempts)
                .max()
                .unwrap_or(0)
                .to_string(),
        ),
        ("members stored, keys match", exported.len().to_string()),
        ("connected", status["invitations"]["connected"].to_string()),
        ("time (s)", format!("{:.1}", elapsed.as_secs_f64())),
        ("seed", seed.to_string()),
    ] {
        println!("| {k:<36} | {v:>8} |");
    }
    println!("+--------------------------------------+----------+");
    println!("mailed more than once: {twice:?}");
    // The sandbox keeps its last 10,000 callbacks (`LOG_CAP`).
    assert!(
        answered_2xx >= n.min(10_000),
        "every journey's callback answered 2xx at least once"
    );
    assert!(
        duplicates <= kills * CONCURRENCY,
        "only invitations in flight at a kill (at most invitations.concurrency = {CONCURRENCY} each) may be mailed twice: {duplicates} duplicates after {kills} kills: {twice:?}"
    );
    setup.keep_for_log_scan().await;
    drop(daemon);
}

/// The daemon at the test's log level, but sled at `info`: at `trace` sled
/// logs every page it writes (over 600 MB for a 20,000-row ingest, which
/// filled the disk under `.ci/run`).
fn quiet_sled(setup: &Setup) -> Proc {
    let level = std::env::var("MYDEX_TEST_RUST_LOG").unwrap_or_else(|_| "info".into());
    setup.daemon_with(|c| {
        c.env("RUST_LOG", format!("{level},sled=info"));
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_stores_each_row_once() {
    let rows: usize = env_or("CRASH_INGEST_ROWS", 50_000);
    let kills: usize = env_or("CRASH_INGEST_KILLS", 5);
    let seed = seed();
    println!("ingest crash test: {rows} rows, {kills} kills, seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let queue = setup.dir.path().join("queue");
    let mut daemon = quiet_sled(&setup);

    // Ingest only: the campaign paused before anything is queued. The pause
    // is acknowledged only once on disk, so a kill right after keeps it.
    run_ok(&setup, &["campaign", "pause", "meters"]);
    kill_9(&mut daemon);
    daemon = quiet_sled(&setup);
    let s = setup.status();
    assert_eq!(
        s["campaigns"]["meters"]["paused"], true,
        "a pause acknowledged just before a kill -9 survives it: {s}"
    );

    // Dropped straight into the queue directory (written under a dot name,
    // then renamed), as an upstream system would: `enqueue` would first
    // validate every row itself, which takes as long as the ingest.
    let file = queue.join(".big.csv.tmp");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        writeln!(w, "email,name,external_ref").unwrap();
        for i in 0..rows {
            writeln!(w, "i{i}@example.com,Person {i},MTR-{i:07}").unwrap();
        }
    }
    let started = Instant::now();
    std::fs::rename(&file, queue.join("big.csv")).unwrap();

    // Kill while the file is still being read; each time note how far it got.
    let mut landed = 0;
    let mut lines = Vec::new();
    for k in 0..kills {
        let gap = rng.random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        if !queue_has_files(&queue) {
            lines.push(format!("kill {}: the file was already ingested", k + 1));
            break;
        }
        kill_9(&mut daemon);
        landed += 1;
        lines.push(format!(
            "kill {:>2} at {:>6.1} s, {gap:>4} ms up, the file still in the queue",
            k + 1,
            started.elapsed().as_secs_f64()
        ));
        daemon = quiet_sled(&setup);
        // `status` answers mid-ingest (it once scanned every invitation).
        let s = setup.status();
        lines.push(format!(
            "   restarted: {} rows stored so far",
            s["invitations"]["queued"]
        ));
    }
    for l in &lines {
        println!("{l}");
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    while queue_has_files(&queue) {
        assert!(
            Instant::now() < deadline,
            "ingest did not finish: {}",
            setup.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    let status_at = Instant::now();
    let s = setup.status();
    println!(
        "status with {rows} invitations answered in {:.1} s",
        status_at.elapsed().as_secs_f64()
    );
    println!(
        "ingested {rows} rows in {:.1} s with {landed} kills mid-file ({:.0} rows/s): {}",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64(),
        s["invitations"]
    );
    assert_eq!(
        landed, kills,
        "every kill landed mid-file (make CRASH_INGEST_ROWS larger)"
    );
    assert_eq!(s["invitations"]["queued"], rows as u64, "{s}");
    assert_eq!(s["campaigns"]["meters"]["paused"], true, "{s}");
    assert!(
        smtp.messages().is_empty(),
        "a paused campaign mails nothing"
    );
    // No row was even offered twice: the progress mark moves with the rows.
    let rejected: Vec<_> = std::fs::read_dir(queue.join("rejected"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .filter(|t| !t.trim().is_empty())
        .collect();
    assert!(rejected.is_empty(), "rows reported rejected: {rejected:?}");
    setup.keep_for_log_scan().await;

    // The store itself, read after a clean stop: each row exactly once.
    setup.stop(daemon);
    let key = secrecy::SecretBox::new(Box::new([42u8; 32]));
    let store = mydex_connector::store::Store::open(&setup.dir.path().join("db"), &key).unwrap();
    let mut emails = HashSet::new();
    let mut count = 0usize;
    store
        .each_invitation(|inv| {
            count += 1;
            assert!(
                emails.insert(inv.invitee.email.to_string()),
                "{} stored twice",
                inv.invitee.email
            );
            std::ops::ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(count, rows, "every row stored once");
    for i in 0..rows {
        assert!(
            emails.contains(&format!("i{i}@example.com")),
            "row {i} lost"
        );
    }
    println!("store holds {count} invitations, {} distinct", emails.len());
}
