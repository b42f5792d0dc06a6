//! The headline test of readings delivery, through the real binary against the
//! sandbox: `kill_9_during_delivery_lands_each_reading_once`. Connected
//! members (`DELIVERY_CRASH_MEMBERS`, default 20) × readings
//! (`DELIVERY_CRASH_READINGS`, default 100), 5% of API calls failing
//! (500, 503, 429, slow past the timeout, dropped, and `lost`: carried out,
//! answer dropped), access tokens expiring every 3 s, and the daemon killed
//! with SIGKILL at random moments during delivery (`DELIVERY_CRASH_KILLS`,
//! default 3; seed `DELIVERY_CRASH_SEED`, printed). Afterwards the sandbox
//! holds every reading exactly once (by `external_id`) and `status` and
//! `/metrics` count them all delivered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mydex_test_support::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_delivery_lands_each_reading_once() {
    let members_n: u64 = env_or("DELIVERY_CRASH_MEMBERS", 20);
    let readings_n: u64 = env_or("DELIVERY_CRASH_READINGS", 100);
    let kills: u32 = env_or("DELIVERY_CRASH_KILLS", 3);
    let seed: u64 = env_or("DELIVERY_CRASH_SEED", rand::random());
    eprintln!(
        "delivery crash test: seed {seed} (DELIVERY_CRASH_SEED), {members_n} members x {readings_n} readings, {kills} kills"
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let opts = Options {
        token_ttl: Duration::from_secs(3),
        extra_config: "\n[delivery]\ndir = \"readings\"\nbatch_size = 10\nconcurrency = 8\nrate = \"10/s\"\nsettle = \"10s\"\n".into(),
        ..Default::default()
    };
    let setup = setup(smtp.port, dir, opts).await;
    let members = seed_members(&setup, members_n, 1).await;
    setup
        .sandbox_settings(serde_json::json!({
            "fault_rate": 0.05,
            "faults": ["500", "503", "429", "slow", "drop", "lost"],
        }))
        .await;

    let file = setup.dir.path().join("readings.jsonl");
    let mut text = String::new();
    for m in &members {
        for j in 0..readings_n {
            text += &serde_json::json!({
                "connection_id": m["connection_id"],
                "external_id": format!("{}-r{j}", m["mydexid"].as_str().unwrap()),
                "kwh": format!("{}.{}", j, j % 10),
                "read_at": format!("2026-01-01T00:{:02}:00Z", j % 60),
            })
            .to_string();
            text.push('\n');
        }
    }
    std::fs::write(&file, text).unwrap();
    let mut daemon = setup.daemon();
    let out = setup.cli(&["deliver", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let total = members_n * readings_n;
    for k in 0..kills {
        // A random moment while delivery goes on.
        let wait = Duration::from_millis(rng.random_range(1500..5000));
        let start = Instant::now();
        while start.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(100));
        }
        let s = setup.status();
        eprintln!("kill {}: records {}", k + 1, s["records"]);
        assert_eq!(send_signal(daemon.0.id() as i32, "KILL"), 0);
        let _ = wait_exit(&mut daemon, Duration::from_secs(30));
        daemon = setup.daemon();
    }
    let s = setup.wait_status(
        |s| s["records"]["delivered"].as_u64() == Some(total) && s["records"]["queued"] == 0,
        Duration::from_secs(900),
    );
    assert_eq!(s["records"]["delivered"], total, "status: {}", s["records"]);
    assert_eq!(s["records"]["queued"], 0);
    assert_eq!(s["records"]["held"], 0);
    assert_eq!(s["records"]["failed"], 0);

    // Every reading exactly once at the sandbox.
    let http = reqwest::Client::new();
    for m in &members {
        let mydexid = m["mydexid"].as_str().unwrap();
        let pds: serde_json::Value = http
            .get(format!("{}/_sandbox/pds/{mydexid}", setup.sandbox.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = pds["datasets"]["ds_energy_readings"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut seen: HashMap<String, u32> = HashMap::new();
        for r in &rows {
            *seen
                .entry(r["external_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{mydexid}: delivered more than once: {twice:?}"
        );
        assert_eq!(
            seen.len() as u64,
            readings_n,
            "{mydexid}: {} of {readings_n} readings",
            seen.len()
        );
        let r0 = rows
            .iter()
            .find(|r| r["external_id"] == format!("{mydexid}-r7"))
            .unwrap();
        assert_eq!(r0["kwh"], "7.7", "fields are sent as given");
    }
    let metrics = setup.metrics().await;
    assert!(
        metrics.contains(&format!(
            "mydex_connector_records{{state=\"delivered\"}} {total}"
        )),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("records"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let state = setup.sandbox_state().await;
    eprintln!(
        "sandbox: {} creates, {} reads, {} rows, {} faults injected",
        state["counts"]["pds_create"],
        state["counts"]["pds_read"],
        state["counts"]["pds_rows"],
        state["counts"]["faults_injected"]
    );
    assert_eq!(
        state["counts"]["pds_rows"], total,
        "no row was created twice"
    );
    let log = setup.log();
    for m in &members {
        let key = m["key"].as_str().unwrap();
        assert!(!log.contains(key), "a member key is in the daemon log");
    }
    assert!(
        !log.contains("key="),
        "a URL query with key= is in the daemon log"
    );
    setup.keep_for_log_scan().await;
    drop(daemon);
}
