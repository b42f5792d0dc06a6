//! The ingest bench: a CSV of `rows` invitations placed in the queue of the
//! real daemon (release binary), and every figure of a national rollout
//! printed beside sled's own limit measured in the same run on the same
//! machine, each with the load average before and after it:
//!
//! - rows/s, beside a bare sled tree's ordered inserts/s for as many keys
//!   with values the size of our records (`sled_limit`);
//! - the daemon's peak RSS, beside that bare sled's;
//! - bytes on disk per invitation once the daemon stopped, beside the bare
//!   sled's bytes per key;
//! - READY after SIGTERM (and SIGKILL), beside sled alone opening a copy of
//!   the same store;
//! - `GET /status` p50/p99 while it ingests and after, beside `GET /healthz`
//!   (`probe`);
//! - idle work with the campaign paused, at `rows` queued and at a small
//!   queue, so the ratio shows whether it grows with the queue (`idle`);
//! - with `BENCH_SWEEP_MEMBERS` (default 100,000 at 10,000,000 rows, none
//!   otherwise), a version sweep's checks per second over members kept
//!   beside the invitations (`sweep`); a sweep that does not finish within
//!   its deadline is reported with its progress, and the other figures stand.
//!
//! Nothing here holds a list of the rows: the CSV is written streaming and
//! the store read through sled's iterators, so 10,000,000 rows fit.

mod idle;
mod probe;
mod sled_limit;
mod sweep;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mydex_test_support as support;

use crate::load::Span;
use crate::{admin_status, count, mib, rss_kib};

pub use sled_limit::child_if_asked;

/// What a run measures, and how long it waits for each part.
pub struct Knobs {
    pub rows: u64,
    /// The small queue the idle work is compared with.
    pub small: u64,
    pub idle_window: Duration,
    /// `GET /status` and `GET /healthz` requests after the ingest (each).
    pub after_requests: usize,
    pub sweep_members: u64,
}

/// The figures the summary sets beside their limits.
struct Big {
    rows: u64,
    rows_per_s: f64,
    ingest_load: String,
    peak_kib: u64,
    on_disk: u64,
    ready_term: Duration,
    ready_load: String,
    sled_open: Option<Duration>,
    record: Option<(String, usize)>,
    status_during: probe::Samples,
    status_after: probe::Samples,
    healthz: probe::Samples,
    idle: idle::IdleWork,
}

fn write_csv(path: &Path, rows: u64) -> anyhow::Result<u64> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "email,name,external_ref,tariff")?;
    for i in 0..rows {
        writeln!(f, "customer{i}@example.com,Customer {i},MTR-{i:09},green")?;
    }
    f.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// A config for intake alone: the campaign may send one invitation an
/// hour, sweeps run only when asked, at full speed.
async fn prepared(dir: tempfile::TempDir) -> anyhow::Result<(support::Setup, impl Sized)> {
    let (smtp_port, sink) = support::smtp_sink::start().await?;
    let schedule = format!(
        "version_check = \"{n}\"\nexpiry_check = \"{n}\"\nsweep_concurrency = 64\nsweep_rate = \"unlimited\"\n",
        n = support::NEVER
    );
    let opts = support::Options {
        schedule,
        ..Default::default()
    };
    let setup = support::setup(smtp_port, dir, opts).await;
    // The campaign's own `rate` line: `sweep_rate` above it ends the same way.
    setup.edit_config("\nrate = \"unlimited\"", "\nrate = \"1/h\"");
    Ok((setup, sink))
}

/// Place `csv` and wait for `done/`; the peak RSS seen on the way and how
/// long it took.
async fn wait_ingested(
    setup: &support::Setup,
    pid: u32,
    csv: &Path,
) -> anyhow::Result<(u64, Duration)> {
    let queue = setup.dir.path().join("queue");
    let done = queue
        .join("done")
        .join(csv.file_name().context("csv name")?);
    let started = Instant::now();
    crate::place(&queue, csv)?;
    let (mut peak, mut last) = (0, Instant::now());
    while !done.exists() {
        let (hwm, rss) = rss_kib(pid).context("daemon gone during ingest")?;
        peak = peak.max(hwm);
        if last.elapsed() > Duration::from_secs(10) {
            let s = admin_status(setup.admin_port).unwrap_or_default();
            println!(
                "  ... {:.0} s: {} stored, RSS {:.1} MiB, load {:.2}",
                started.elapsed().as_secs_f64(),
                count(&s, "queued") + count(&s, "link_issued") + count(&s, "sent"),
                mib(rss),
                crate::load::now()
            );
            last = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(4 * 3600) {
            bail!("ingest did not finish in 4 hours");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    Ok((peak.max(rss_kib(pid).context("daemon gone")?.0), took))
}

/// Idle work with `rows` queued and the campaign paused, on a daemon of its
/// own.
async fn idle_at(rows: u64, window: Duration) -> anyhow::Result<idle::IdleWork> {
    let (setup, _sink) = prepared(tempfile::tempdir()?).await?;
    let csv = setup.dir.path().join("small.csv");
    write_csv(&csv, rows)?;
    let daemon = setup.daemon();
    let pid = daemon.0.id();
    wait_ingested(&setup, pid, &csv).await?;
    idle::pause(setup.admin_port, "meters", support::ADMIN_TOKEN)?;
    tokio::time::sleep(settle(window)).await;
    let w = idle::measure(pid, &setup.dir.path().join("db"), rows, window).await?;
    println!("idle work: {}", w.line());
    stop(daemon);
    Ok(w)
}

/// The pause before an idle window: what the daemon does just after an
/// ingest or a pause is not idle work.
fn settle(window: Duration) -> Duration {
    (window / 6).max(Duration::from_secs(1))
}

pub async fn run(k: Knobs) -> anyhow::Result<()> {
    println!(
        "\n== ingest: {} rows (idle work compared with {} queued) ==",
        k.rows, k.small
    );
    let small = idle_at(k.small, k.idle_window).await?;
    let scratch = tempfile::tempdir()?;
    let big = big(&k, scratch.path()).await?;
    let bare = match big.record.as_ref() {
        Some((_, len)) => sled_limit::bare(scratch.path(), big.rows, *len)?,
        None => None,
    };
    if let Some(b) = &bare {
        println!(
            "limit: bare sled, {} ordered keys of {} B values: {:.0} inserts/s, peak RSS {:.1} MiB, {:.0} bytes per key on disk ({})",
            b.keys,
            b.value_len,
            b.inserts_per_s,
            mib(b.peak_kib),
            b.bytes_per_key,
            b.load
        );
    }
    summary(&big, bare.as_ref(), &small);
    Ok(())
}

/// The big run: ingest, status, idle work, restarts, and the sweep.
async fn big(k: &Knobs, scratch: &Path) -> anyhow::Result<Big> {
    let (setup, _sink) = prepared(tempfile::tempdir_in(scratch)?).await?;
    let csv = setup.dir.path().join("invitees.csv");
    let started = Instant::now();
    let size = write_csv(&csv, k.rows)?;
    println!(
        "wrote {} ({:.1} MiB) in {:.1} s",
        csv.display(),
        size as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    let daemon = setup.daemon();
    let pid = daemon.0.id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, idle_rss) = rss_kib(pid).context("daemon gone")?;
    println!("daemon started, empty store: RSS {:.1} MiB", mib(idle_rss));

    let span = Span::start();
    let poller = probe::Poller::start(setup.admin_port, "/status", Duration::from_millis(100));
    let (peak_kib, took) = wait_ingested(&setup, pid, &csv).await?;
    let status_during = poller.finish();
    let ingest_load = span.end();
    let stored = stored(setup.admin_port);
    let rows_per_s = k.rows as f64 / took.as_secs_f64();
    println!(
        "ingest: {stored} of {} rows stored in {:.1} s = {rows_per_s:.0} rows/s; peak RSS {:.1} MiB ({ingest_load})",
        k.rows,
        took.as_secs_f64(),
        mib(peak_kib)
    );
    println!("GET /status while ingesting: {}", status_during.summary());

    let span = Span::start();
    let gap = Duration::from_millis(20);
    let status_after = probe::sample(setup.admin_port, "/status", k.after_requests, gap);
    let healthz = probe::sample(setup.admin_port, "/healthz", k.after_requests, gap);
    let load = span.end();
    println!(
        "GET /status after the ingest: {} ({load})",
        status_after.summary()
    );
    println!(
        "GET /healthz after the ingest: {} ({load})",
        healthz.summary()
    );

    idle::pause(setup.admin_port, "meters", support::ADMIN_TOKEN)?;
    tokio::time::sleep(settle(k.idle_window)).await;
    let db = setup.dir.path().join("db");
    let idle = idle::measure(pid, &db, stored, k.idle_window).await?;
    println!("idle work: {}", idle.line());

    let mut r = restarts(&setup, daemon, stored).await?;
    if k.sweep_members > 0 {
        r.daemon = swept(&setup, r.daemon, k.sweep_members).await?;
    }
    stop(r.daemon);
    crate::disk_copy_limit(&setup.dir.path().join("queue/done/invitees.csv"), k.rows)?;
    Ok(Big {
        rows: k.rows,
        rows_per_s,
        ingest_load,
        peak_kib,
        on_disk: r.on_disk,
        ready_term: r.ready_term,
        ready_load: r.ready_load,
        sled_open: r.sled_open,
        record: r.record,
        status_during,
        status_after,
        healthz,
        idle,
    })
}

/// A clean stop (SIGTERM), waited for up to two minutes, then a kill.
fn stop(mut daemon: support::Proc) {
    support::send_signal(daemon.0.id() as i32, "TERM");
    if support::wait_exit(&mut daemon, Duration::from_secs(120)).is_none() {
        println!("  (the daemon did not stop within 2 minutes of SIGTERM: killed)");
    }
}

fn stored(admin_port: u16) -> u64 {
    let s = admin_status(admin_port).unwrap_or_default();
    count(&s, "queued") + count(&s, "link_issued") + count(&s, "sent")
}

/// What the restarts leave: the running daemon and the figures.
struct Restarts {
    daemon: support::Proc,
    on_disk: u64,
    ready_term: Duration,
    ready_load: String,
    sled_open: Option<Duration>,
    record: Option<(String, usize)>,
}

/// Time to READY with the invitations stored: after a clean stop (SIGTERM)
/// that follows the ingest, and after a crash (SIGKILL) a little later.
/// sled writes its recovery snapshot when it opens a store and replays the
/// log written since, so each is printed beside sled alone opening a copy
/// of the same store (the limit). The store's size is read once the daemon
/// has stopped.
async fn restarts(
    setup: &support::Setup,
    daemon: support::Proc,
    stored: u64,
) -> anyhow::Result<Restarts> {
    let db = setup.dir.path().join("db");
    let mut now = Some(daemon);
    let mut out = (0, Duration::ZERO, String::new(), None, None);
    for (how, sig) in [("SIGTERM", "TERM"), ("SIGKILL", "KILL")] {
        let mut daemon = now.take().context("daemon")?;
        support::send_signal(daemon.0.id() as i32, sig);
        support::wait_exit(&mut daemon, Duration::from_secs(600)).context("daemon did not stop")?;
        drop(daemon);
        let span = Span::start();
        let copy = sled_limit::open_copy(&db)?;
        let (restarted, ready) = crate::start_until_ready(setup)?;
        let load = span.end();
        let alone = copy.as_ref().map(|c| c.0);
        println!(
            "restart after {how} with {stored} invitations stored: READY in {:.2} s (target ≤ 1 s); limit: sled alone opens a copy of the store in {} ({load})",
            ready.as_secs_f64(),
            alone.map_or("(not measured)".into(), |d| format!(
                "{:.2} s",
                d.as_secs_f64()
            ))
        );
        if sig == "TERM" {
            let on_disk = crate::walk_size(&db);
            let shape = copy.map(|c| c.1).unwrap_or_default();
            print_shape(on_disk, stored, &shape);
            out = (on_disk, ready, load, alone, sled_limit::record_len(&shape));
        }
        now = Some(restarted);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let daemon = now.context("daemon")?;
    let (_, rss) = rss_kib(daemon.0.id()).context("daemon gone")?;
    // The open index is loaded after READY; what it leaves behind for the
    // allocator to hand back goes within a few seconds.
    let mut settled = rss;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, now) = rss_kib(daemon.0.id()).context("daemon gone")?;
        let steady = now.abs_diff(settled) < 1024;
        settled = now;
        if steady {
            break;
        }
    }
    println!(
        "idle daemon holding {stored} invitations: RSS {:.1} MiB 2 s after READY, {:.1} MiB once steady",
        mib(rss),
        mib(settled)
    );
    Ok(Restarts {
        daemon,
        on_disk: out.0,
        ready_term: out.1,
        ready_load: out.2,
        sled_open: out.3,
        record: out.4,
    })
}

fn print_shape(on_disk: u64, rows: u64, shape: &[sled_limit::TreeShape]) {
    let per = |n: u64| n as f64 / rows.max(1) as f64;
    println!(
        "store on disk, daemon stopped: {:.1} MiB ({:.0} bytes per invitation)",
        on_disk as f64 / 1048576.0,
        per(on_disk)
    );
    for t in shape.iter().filter(|t| t.keys > 0) {
        println!(
            "  tree {:<24} {:>10} keys ({:.2} per invitation), keys {:.0} B and values {:.0} B per invitation, mean value {} B",
            t.name,
            t.keys,
            per(t.keys),
            per(t.key_bytes),
            per(t.value_bytes),
            t.value_bytes / t.keys
        );
    }
}

/// Members imported beside the invitations (daemon stopped), then one
/// version sweep; the daemon left running.
async fn swept(
    setup: &support::Setup,
    daemon: support::Proc,
    members: u64,
) -> anyhow::Result<support::Proc> {
    stop(daemon);
    let started = Instant::now();
    sweep::seed(setup, members).await?;
    println!(
        "sweep: {members} members seeded at the sandbox and imported into the store in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let daemon = setup.daemon();
    let span = Span::start();
    let deadline = Duration::from_secs(120 + members / 100);
    match sweep::run(setup.admin_port, deadline).await {
        Ok((checked, secs, errors)) => println!(
            "version sweep beside the queued invitations: {checked} members checked in {secs:.1} s = {:.0} checks/s, {errors} errors (target ≥ 2,000/s; {})",
            checked as f64 / secs.max(1e-9),
            span.end()
        ),
        // A figure missing is reported, not fatal: the others stand.
        Err(e) => println!("version sweep: no figure: {e:#} ({})", span.end()),
    }
    Ok(daemon)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.1}%", a / b * 100.0)
    } else {
        "-".into()
    }
}

/// Every figure beside its limit, one line each.
fn summary(b: &Big, bare: Option<&sled_limit::Bare>, small: &idle::IdleWork) {
    let per = |n: u64| n as f64 / b.rows.max(1) as f64;
    println!(
        "\n== {} invitations: figures beside their limits ==",
        b.rows
    );
    if let (Some(bare), Some((tree, _))) = (bare, b.record.as_ref()) {
        println!(
            "rows/s: {:.0} (target ≥ 50,000); bare sled, {} ordered keys with {} B values (mean of `{tree}`), apply_batch of 1,000 + flush: {:.0} inserts/s; daemon at {} of that ({} / {})",
            b.rows_per_s,
            bare.keys,
            bare.value_len,
            bare.inserts_per_s,
            ratio(b.rows_per_s, bare.inserts_per_s),
            b.ingest_load,
            bare.load
        );
        println!(
            "peak RSS: {:.1} MiB (target ≤ 100 MiB at 1M, ≤ 512 MiB at 10M); bare sled doing that insert: {:.1} MiB",
            mib(b.peak_kib),
            mib(bare.peak_kib)
        );
        println!(
            "bytes on disk per invitation: {:.0} (target ≤ 600); bare sled: {:.0} per key",
            per(b.on_disk),
            bare.bytes_per_key
        );
    } else {
        println!("(no bare sled limit: the store could not be read, or no room on disk)");
    }
    println!(
        "READY after SIGTERM: {:.2} s (target ≤ 1 s at 1M, ≤ 5 s at 10M); sled alone opening the same store: {} ({})",
        b.ready_term.as_secs_f64(),
        b.sled_open
            .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        b.ready_load
    );
    println!(
        "GET /status p50/p99: {:.1}/{:.1} ms while ingesting, {:.1}/{:.1} ms after (target p99 ≤ 100 ms); GET /healthz p99 {:.1} ms (the listener's floor)",
        b.status_during.ms(0.5),
        b.status_during.ms(0.99),
        b.status_after.ms(0.5),
        b.status_after.ms(0.99),
        b.healthz.ms(0.99)
    );
    let q = b.idle.queued as f64 / small.queued.max(1) as f64;
    println!(
        "idle work, campaign paused ({:.0}× the queue): CPU {:.2} s vs {:.2} s ({:.1}×), write_bytes {:.1} vs {:.1} KiB, syscr {} vs {} (over {:.0} s; flat means not proportional to the queue)",
        q,
        b.idle.cpu_s,
        small.cpu_s,
        b.idle.cpu_s / small.cpu_s.max(0.01),
        b.idle.write_bytes as f64 / 1024.0,
        small.write_bytes as f64 / 1024.0,
        b.idle.syscr,
        small.syscr,
        b.idle.window.as_secs_f64()
    );
}
