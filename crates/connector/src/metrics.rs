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
    /// Bounces, complaints and unsubscribe mails naming no mail of ours.
    bounces_ignored: AtomicU64,
    mydex_calls: Family<Labels, Counter>,
    mydex_latency: Family<Labels, Histogram, fn() -> Histogram>,
    callbacks: Family<Labels, Counter>,
    /// Admin API requests refused, by reason.
    admin_refused: Family<Labels, Counter>,
    /// Readings delivered, and their latency from intake to delivery.
    readings_delivered: Counter,
    delivery_latency: Histogram,
    delivery_batches: Family<Labels, Counter>,
    /// The callback listener under load (`server/shed_log.rs`), by event.
    callback_listener: Family<Labels, Counter>,
    /// Connections the callback listener holds now.
    callback_connections_open: Gauge,
    /// Tries of held reading groups, by what made them due.
    held_retries: Family<Labels, Counter>,
    /// NATS (`broker/`): messages published and acknowledged, by subject.
    nats_published: Family<Labels, Counter>,
    /// NATS: publishes not acknowledged, by subject and reason.
    nats_publish_failures: Family<Labels, Counter>,
    /// NATS: messages the daemon took from a stream, by outcome.
    nats_consumed: Family<Labels, Counter>,
    /// NATS: messages waiting for the daemon, by stream.
    nats_lag: Family<Labels, Gauge>,
    /// NATS: messages held in the stream (sealed to a key the daemon does
    /// not hold), by stream.
    nats_held: Family<Labels, Gauge>,
    /// The same, read back for `/status`.
    nats_lags: parking_lot::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self::empty();
        // The edge's counters start at 0 for every label, so that they are
        // exported (and `increase()` over them works) before the first event.
        for event in [
            "evicted_incomplete",
            "evicted_idle",
            "refused_full",
            "body_timeout",
        ] {
            metrics
                .callback_listener
                .get_or_create(&labels(&[("event", event)]))
                .inc_by(0);
        }
        for reason in [
            "wrong_token",
            "missing_token",
            "no_token_configured",
            "misdirected",
        ] {
            metrics
                .admin_refused
                .get_or_create(&labels(&[("reason", reason)]))
                .inc_by(0);
        }
        for cause in ["member_changed", "backoff"] {
            metrics
                .held_retries
                .get_or_create(&labels(&[("cause", cause)]))
                .inc_by(0);
        }
        metrics
    }
}

impl Metrics {
    fn empty() -> Self {
        Self {
            emails_sent: AtomicU64::new(0),
            emails_failed: AtomicU64::new(0),
            emails_deferred: AtomicU64::new(0),
            bounces_ignored: AtomicU64::new(0),
            mydex_calls: Family::default(),
            mydex_latency: Family::new_with_constructor(latency_histogram),
            callbacks: Family::default(),
            admin_refused: Family::default(),
            readings_delivered: Counter::default(),
            delivery_latency: Histogram::new([
                0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0,
            ]),
            delivery_batches: Family::default(),
            callback_listener: Family::default(),
            callback_connections_open: Gauge::default(),
            held_retries: Family::default(),
            nats_published: Family::default(),
            nats_publish_failures: Family::default(),
            nats_consumed: Family::default(),
            nats_lag: Family::default(),
            nats_held: Family::default(),
            nats_lags: Default::default(),
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
    /// The callback certificate's `notAfter` (Unix seconds), with HTTPS.
    pub callback_tls_cert_expiry: Option<i64>,
    /// Per campaign: configured rate and pauses.
    pub campaigns: Vec<CampaignGauge>,
    /// Whether the store has stopped taking writes (see `/readyz`).
    pub store_write_failed: bool,
    /// Whether the Mydex API has been failing lately (see `/readyz`).
    pub mydex_api_failing: bool,
    /// Readings by state (queued, in_flight, unknown, delivered, held, failed).
    pub records: Vec<(&'static str, u64)>,
    /// People on the suppression list.
    pub suppressed: u64,
    /// Rows rejected on their way in, kept now (`rejects list`).
    pub rejected: u64,
    /// (campaign, hard|soft|complaint, count)
    pub bounces: Vec<(String, String, u64)>,
}

/// One campaign's configuration and pause, for dashboards and alerts.
#[derive(Debug, Clone)]
pub struct CampaignGauge {
    pub campaign: String,
    /// The configured rate in mails per second; none when unlimited.
    pub rate_per_second: Option<f64>,
    pub paused: bool,
    pub paused_by_threshold: bool,
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

    /// One admin API request refused: `wrong_token`, `missing_token`,
    /// `no_token_configured`, or `misdirected` (a `Host` not naming the
    /// listener).
    pub fn admin_refused(&self, reason: &str) {
        self.admin_refused
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// One bounce, complaint or unsubscribe mail that named no mail of ours.
    pub fn bounce_ignored(&self) {
        self.bounces_ignored.fetch_add(1, Ordering::Relaxed);
    }

    /// Bounces ignored since start (`status`'s `bounces.ignored`).
    pub fn bounces_ignored(&self) -> u64 {
        self.bounces_ignored.load(Ordering::Relaxed)
    }

    /// The callback listener dropped a connection or a request under load:
    /// `evicted_incomplete`, `evicted_idle`, `refused_full`, `body_timeout`.
    pub fn callback_listener(&self, event: &str) {
        self.callback_listener
            .get_or_create(&labels(&[("event", event)]))
            .inc();
    }

    /// The gauge of connections the callback listener holds, moved by the
    /// listener as they open and close.
    pub fn callback_connections_open(&self) -> Gauge {
        self.callback_connections_open.clone()
    }

    /// One reading delivered, `latency` after it was stored.
    pub fn reading_delivered(&self, latency: Duration) {
        self.readings_delivered.inc();
        self.delivery_latency.observe(latency.as_secs_f64());
    }

    /// One reading batch settled, by result (delivered, unknown, held, ...).
    pub fn delivery_batch(&self, result: &str) {
        self.delivery_batches
            .get_or_create(&labels(&[("result", result)]))
            .inc();
    }

    /// One try of a held member and dataset (a batch POSTed after a refused
    /// one), by `cause`: `member_changed` or `backoff`.
    pub fn held_retry(&self, cause: &str) {
        self.held_retries
            .get_or_create(&labels(&[("cause", cause)]))
            .inc();
    }

    /// A message published to `subject` and acknowledged by JetStream.
    pub fn nats_published(&self, subject: &str) {
        self.nats_published
            .get_or_create(&labels(&[("subject", subject)]))
            .inc();
    }

    /// A publish to `subject` not acknowledged (`timeout` or `error`).
    pub fn nats_publish_failed(&self, subject: &str, reason: &str) {
        self.nats_publish_failures
            .get_or_create(&labels(&[("subject", subject), ("reason", reason)]))
            .inc();
    }

    /// A message taken from `stream`: `done`, `rejected` or `retried`.
    pub fn nats_consumed(&self, stream: &str, outcome: &str) {
        self.nats_consumed
            .get_or_create(&labels(&[("stream", stream), ("outcome", outcome)]))
            .inc();
    }

    /// Messages waiting for the daemon on `stream`.
    pub fn nats_lag(&self, stream: &str, n: u64) {
        self.nats_lag
            .get_or_create(&labels(&[("stream", stream)]))
            .set(n.min(i64::MAX as u64) as i64);
        self.nats_lags.lock().insert(stream.to_string(), n);
    }

    /// Messages held lately in `stream` (`broker/held.rs`).
    pub fn nats_held(&self, stream: &str, n: u64) {
        self.nats_held
            .get_or_create(&labels(&[("stream", stream)]))
            .set(n.min(i64::MAX as u64) as i64);
    }

    /// The last lag read, summed over the streams; None before the first.
    pub fn nats_lag_total(&self) -> Option<u64> {
        let lags = self.nats_lags.lock();
        (!lags.is_empty()).then(|| lags.values().sum())
    }

    /// What an edge exposes on `/metrics`: the callbacks it took, its
    /// listener under load, and its publishes (an edge has no store).
    pub fn render_edge(&self) -> String {
        let mut reg = Registry::with_prefix("mydex_connector");
        reg.register(
            "callbacks",
            "Callbacks received by type and result",
            self.callbacks.clone(),
        );
        self.register_edge(&mut reg);
        self.register_nats(&mut reg);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }

    fn register_nats(&self, reg: &mut Registry) {
        reg.register(
            "nats_published",
            "Messages published to NATS JetStream and acknowledged, by subject",
            self.nats_published.clone(),
        );
        reg.register(
            "nats_publish_failures",
            "Publishes to NATS JetStream not acknowledged, by subject and reason (timeout: no ack within 5 s, answered 503)",
            self.nats_publish_failures.clone(),
        );
        reg.register(
            "nats_consumed",
            "Messages the daemon took from a NATS stream, by outcome (done: durable and acknowledged; rejected: not ours, terminated; retried: delivered again later; held: sealed to a key this daemon does not hold, left in the stream)",
            self.nats_consumed.clone(),
        );
        reg.register(
            "nats_lag",
            "Messages waiting for the daemon in each NATS stream (not yet delivered, or delivered and not acknowledged)",
            self.nats_lag.clone(),
        );
        reg.register(
            "nats_held_messages",
            "Messages the daemon holds in a NATS stream because they are sealed to a key it does not hold (delivered again every 30 s, never terminated; see /readyz)",
            self.nats_held.clone(),
        );
    }

    /// The Prometheus text exposition of what this process counted plus `snap`.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut reg = Registry::with_prefix("mydex_connector");
        self.register_counted(&mut reg, snap);
        register_records(&mut reg, snap);
        register_gauges(&mut reg, snap);
        register_sweeps(&mut reg, snap);
        register_health(&mut reg, snap);
        if let Some(t) = snap.callback_tls_cert_expiry {
            let g: Gauge = Gauge::default();
            g.set(t);
            reg.register(
                "callback_tls_cert_expiry_seconds",
                "When the callback listener's certificate expires (Unix seconds; only with HTTPS)",
                g,
            );
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }

    /// What this process counted: emails, Mydex calls, callbacks.
    fn register_counted(&self, reg: &mut Registry, snap: &Snapshot) {
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
        let ignored: Counter = Counter::default();
        ignored.inc_by(self.bounces_ignored());
        reg.register(
            "bounces_ignored",
            "Bounces, complaints and unsubscribe mails ignored because they named no mail of ours (nothing changed)",
            ignored,
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
        self.register_edge(reg);
        self.register_nats(reg);
        reg.register(
            "readings_delivered",
            "Readings delivered into members' PDS by this process",
            self.readings_delivered.clone(),
        );
        reg.register(
            "delivery_latency_seconds",
            "Time from a reading's intake to its delivery",
            self.delivery_latency.clone(),
        );
        reg.register(
            "delivery_batches",
            "Reading batches settled, by result",
            self.delivery_batches.clone(),
        );
        reg.register(
            "held_retries",
            "Tries of a member's dataset after Mydex refused it, by cause (member_changed: their callback, update or a status check; backoff: a minute doubling to an hour)",
            self.held_retries.clone(),
        );
        let records: Family<Labels, Gauge> = Family::default();
        for (state, n) in &snap.records {
            records
                .get_or_create(&labels(&[("state", state)]))
                .set(*n as i64);
        }
        reg.register("records", "Readings by state", records);
    }

    /// What the public edge turned away: admin refusals, the callback
    /// listener's evictions and timeouts.
    fn register_edge(&self, reg: &mut Registry) {
        reg.register(
            "admin_refused",
            "Admin API requests refused, by reason (wrong_token, missing_token, no_token_configured, misdirected)",
            self.admin_refused.clone(),
        );
        reg.register(
            "callback_listener_events",
            "The callback listener under load, by event: evicted_incomplete (a connection that had not sent a complete request, dropped to make room), evicted_idle (a keep-alive connection between requests, dropped to make room), refused_full (a new connection closed: every one held was being answered), body_timeout (a body not in within callback.read_timeout, answered 408)",
            self.callback_listener.clone(),
        );
        reg.register(
            "callback_connections_open",
            "Connections the callback listener holds now (at most callback.max_connections)",
            self.callback_connections_open.clone(),
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
            "rejected_rows",
            "Rows rejected by enqueue, deliver or the daemon's intake, kept for `rejects list` (30 days, at most 100,000)",
            snap.rejected,
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

/// Campaigns' rates and pauses, and the store's and Mydex API's health.
fn register_health(reg: &mut Registry, snap: &Snapshot) {
    let rate: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
    let paused: Family<Labels, Gauge> = Family::default();
    let by_threshold: Family<Labels, Gauge> = Family::default();
    for c in &snap.campaigns {
        let l = labels(&[("campaign", &c.campaign)]);
        if let Some(r) = c.rate_per_second {
            rate.get_or_create(&l).set(r);
        }
        paused.get_or_create(&l).set(i64::from(c.paused));
        by_threshold
            .get_or_create(&l)
            .set(i64::from(c.paused_by_threshold));
    }
    reg.register(
        "campaign_rate_limit_per_second",
        "The campaign's configured rate in mails per second (absent when unlimited)",
        rate,
    );
    reg.register("campaign_paused", "1 while the campaign is paused", paused);
    reg.register(
        "campaign_paused_by_threshold",
        "1 while the campaign is paused by its error_threshold",
        by_threshold,
    );
    for (name, help, v) in [
        (
            "store_write_failed",
            "1 once the store has stopped taking writes (the daemon exits 75 when the disk takes writes again)",
            snap.store_write_failed,
        ),
        (
            "mydex_api_failing",
            "1 while a quarter or more of the last 30 s of Mydex API calls failed",
            snap.mydex_api_failing,
        ),
    ] {
        let g: Gauge = Gauge::default();
        g.set(i64::from(v));
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
