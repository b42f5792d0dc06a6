//! Counters an operator watches (`/metrics`): Mydex calls by endpoint and
//! status with latency histograms, emails by result, callbacks by type and
//! result. Exposition is the `prometheus-client` crate's text encoder; the
//! gauges read from the store at scrape time (invitations by state and
//! campaign, members, queue depth) are handed in as a `Snapshot`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0])
}

pub struct Metrics {
    pub emails_sent: AtomicU64,
    pub emails_failed: AtomicU64,
    pub emails_deferred: AtomicU64,
    mydex_calls: Family<Labels, Counter>,
    mydex_latency: Family<Labels, Histogram, fn() -> Histogram>,
    callbacks: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            emails_sent: AtomicU64::new(0),
            emails_failed: AtomicU64::new(0),
            emails_deferred: AtomicU64::new(0),
            mydex_calls: Family::default(),
            mydex_latency: Family::new_with_constructor(latency_histogram),
            callbacks: Family::default(),
        }
    }
}

/// What the store says at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// (campaign, state, count)
    pub invitations: Vec<(String, String, u64)>,
    pub members_total: u64,
    pub members_outdated: u64,
    pub members_disconnected: u64,
    pub unmatched_callbacks: u64,
    /// Stored callbacks quarantined now (kept, without effect).
    pub callbacks_quarantined: u64,
    /// Authenticated callbacks kept as they arrived.
    pub callbacks_stored: u64,
    /// Invitee files waiting in the queue directory.
    pub queue_files: u64,
    /// Invitations the dispatcher still has to work on (queued + link_issued).
    pub queue_depth: u64,
    pub uptime_seconds: u64,
    /// Flushes of the store to disk by the group commit since start: each
    /// makes every callback waiting at that moment durable at once.
    pub store_flushes: u64,
    /// Per sweep job (`version`, `expiry`): running now, and its current or
    /// last run's number, members checked and errors.
    pub sweeps: Vec<SweepProgress>,
    /// Members the version sweep found revoked and holds (the brake).
    pub sweep_held: u64,
    /// Whether the version sweep's brake is engaged.
    pub sweep_brake: bool,
    /// Whether Mydex refused our connection on the last status check.
    pub mydex_connection_denied: bool,
    /// People on the suppression list.
    pub suppressed: u64,
    /// (campaign, hard|soft|complaint, count)
    pub bounces: Vec<(String, String, u64)>,
}

#[derive(Debug, Clone)]
pub struct SweepProgress {
    pub job: String,
    pub running: bool,
    pub run: u64,
    pub checked: u64,
    pub errors: u64,
}

impl Metrics {
    pub fn mydex_call(&self, endpoint: &str, status: &str, elapsed: Duration) {
        self.mydex_calls
            .get_or_create(&labels(&[("endpoint", endpoint), ("status", status)]))
            .inc();
        self.mydex_latency
            .get_or_create(&labels(&[("endpoint", endpoint)]))
            .observe(elapsed.as_secs_f64());
    }

    pub fn callback(&self, kind: &str, result: &str) {
        self.callbacks
            .get_or_create(&labels(&[("type", kind), ("result", result)]))
            .inc();
    }

    /// The Prometheus text exposition of what this process counted plus `snap`.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut reg = Registry::with_prefix("mydex_connector");
        self.register_counted(&mut reg);
        register_records(&mut reg, snap);
        register_gauges(&mut reg, snap);
        register_sweeps(&mut reg, snap);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }

    /// What this process counted: emails, Mydex calls, callbacks.
    fn register_counted(&self, reg: &mut Registry) {
        let emails: Family<Labels, Counter> = Family::default();
        for (result, v) in [
            ("sent", &self.emails_sent),
            ("failed", &self.emails_failed),
            ("deferred", &self.emails_deferred),
        ] {
            emails
                .get_or_create(&labels(&[("result", result)]))
                .inc_by(v.load(Ordering::Relaxed));
        }
        reg.register(
            "emails",
            "Emails handed to SMTP, by result (deferred = a 4xx or connection problem, retried)",
            emails,
        );
        reg.register(
            "mydex_calls",
            "Mydex API calls by endpoint and status (HTTP status, ok, or transient:kind)",
            self.mydex_calls.clone(),
        );
        reg.register(
            "mydex_call_duration_seconds",
            "Latency of Mydex API calls by endpoint",
            self.mydex_latency.clone(),
        );
        reg.register(
            "callbacks",
            "Callbacks received by type and result",
            self.callbacks.clone(),
        );
    }
}

/// From the store: invitations by campaign and state, members, flushes.
fn register_records(reg: &mut Registry, snap: &Snapshot) {
    let invitations: Family<Labels, Gauge> = Family::default();
    for (campaign, state, n) in &snap.invitations {
        invitations
            .get_or_create(&labels(&[("campaign", campaign), ("state", state)]))
            .set(*n as i64);
    }
    reg.register(
        "invitations",
        "Invitations by campaign and state",
        invitations,
    );
    let members: Family<Labels, Gauge> = Family::default();
    for (kind, n) in [
        ("total", snap.members_total),
        ("outdated", snap.members_outdated),
        ("disconnected", snap.members_disconnected),
    ] {
        members
            .get_or_create(&labels(&[("kind", kind)]))
            .set(n as i64);
    }
    reg.register("members", "Connected members", members);
    let bounces: Family<Labels, Gauge> = Family::default();
    for (campaign, kind, n) in &snap.bounces {
        bounces
            .get_or_create(&labels(&[("campaign", campaign), ("type", kind)]))
            .set(*n as i64);
    }
    reg.register(
        "bounces",
        "Bounces and complaints recorded, by campaign and type",
        bounces,
    );
    let flushes: Counter = Counter::default();
    flushes.inc_by(snap.store_flushes);
    reg.register(
        "store_flushes",
        "Group-commit flushes of the store to disk since start",
        flushes,
    );
}

/// One gauge each, from `snap`.
fn register_gauges(reg: &mut Registry, snap: &Snapshot) {
    for (name, help, v) in [
        (
            "queue_depth",
            "Invitations waiting for the dispatcher (queued or link_issued)",
            snap.queue_depth,
        ),
        (
            "queue_files",
            "Invitee files waiting in the queue directory",
            snap.queue_files,
        ),
        (
            "suppressed",
            "People on the suppression list (unsubscribed, bounced, complained, or added by an operator)",
            snap.suppressed,
        ),
        (
            "unmatched_callbacks",
            "Callbacks kept because they matched no invitation",
            snap.unmatched_callbacks,
        ),
        (
            "callbacks_quarantined",
            "Callbacks kept without effect because they did not parse or match our connection (see `callbacks list --quarantined`)",
            snap.callbacks_quarantined,
        ),
        (
            "callbacks_stored",
            "Authenticated callbacks kept as they arrived",
            snap.callbacks_stored,
        ),
        (
            "uptime_seconds",
            "Seconds since the daemon started",
            snap.uptime_seconds,
        ),
        (
            "sweep_held_members",
            "Members the version sweep found revoked and holds instead of disconnecting",
            snap.sweep_held,
        ),
        (
            "sweep_brake_engaged",
            "1 while the version sweep's brake holds revoked members (until sweep confirm)",
            u64::from(snap.sweep_brake),
        ),
        (
            "mydex_connection_denied",
            "1 while Mydex refuses our connection on status checks (wrong NID or token)",
            u64::from(snap.mydex_connection_denied),
        ),
    ] {
        let g: Gauge = Gauge::default();
        g.set(v as i64);
        reg.register(name, help, g);
    }
}

/// The sweep jobs' progress, by job.
fn register_sweeps(reg: &mut Registry, snap: &Snapshot) {
    let sweep_running: Family<Labels, Gauge> = Family::default();
    let sweep_run: Family<Labels, Gauge> = Family::default();
    let sweep_checked: Family<Labels, Gauge> = Family::default();
    let sweep_errors: Family<Labels, Gauge> = Family::default();
    for p in &snap.sweeps {
        let l = labels(&[("job", &p.job)]);
        sweep_running.get_or_create(&l).set(i64::from(p.running));
        sweep_run.get_or_create(&l).set(p.run as i64);
        sweep_checked.get_or_create(&l).set(p.checked as i64);
        sweep_errors.get_or_create(&l).set(p.errors as i64);
    }
    reg.register("sweep_running", "1 while a sweep job runs", sweep_running);
    reg.register(
        "sweep_run",
        "Number of the sweep job's current or last run",
        sweep_run,
    );
    reg.register(
        "sweep_checked",
        "Members checked so far in the current or last run (progress against members total)",
        sweep_checked,
    );
    reg.register(
        "sweep_errors",
        "Errors in the current or last run",
        sweep_errors,
    );
}
