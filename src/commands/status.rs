//! `mydex-connector status`: ask the running daemon's admin API for its
//! status and print it for a person (each campaign's state and progress,
//! readings, suppressions, rejected rows, the last sweeps), or as the JSON
//! document itself with `--json`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::commands::config_path::ConfigPath;
use mydex_connector::admin_api::status::{
    BrakeStatus, CampaignProgress, CampaignStatus, Campaigns, StatusDoc, SweepStatus,
};
use mydex_connector::config::Settings;
use mydex_connector::store::PausedBy;

use super::colour;
use super::human::{count, counted, percent, time_ms, words};
use super::table;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print the JSON document only.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: StatusArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    print(&settings, args.json).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn print(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let raw = fetch(settings).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(());
    }
    let doc: StatusDoc = super::admin_client::parse(raw, "/status")?;
    print!("{}", render(&doc));
    Ok(())
}

/// The whole status for a person.
pub fn render(doc: &StatusDoc) -> String {
    let mut out = String::new();
    store_line(&mut out, doc);
    campaigns(&mut out, doc);
    invitations(&mut out, doc);
    members(&mut out, doc);
    readings(&mut out, doc);
    callbacks(&mut out, doc);
    sweeps(&mut out, doc);
    let _ = writeln!(
        out,
        "\nconnection version {}, up {}",
        doc.connection_version,
        words(Duration::from_secs(doc.uptime_seconds))
    );
    out
}

/// The counts in one line, for the demo: `5 of 5 invitations connected,
/// 0 failed; 5 members (0 on an older version, 0 disconnected)`.
#[cfg(feature = "sandbox")]
pub fn one_line(doc: &StatusDoc) -> String {
    let n = |s: &str| doc.invitations.get(s).copied().unwrap_or(0);
    let total: u64 = doc.invitations.values().sum();
    format!(
        "{} of {} connected, {} failed; {} ({} on an older version, {} disconnected)",
        count(n("connected")),
        counted(total, "invitation", "invitations"),
        count(n("failed")),
        counted(doc.members.total, "member", "members"),
        count(doc.members.outdated),
        count(doc.members.disconnected)
    )
}

/// The daemon's `/status` document, read as its type.
pub async fn fetch_doc(settings: &Settings) -> anyhow::Result<StatusDoc> {
    super::admin_client::parse(fetch(settings).await?, "/status")
}

/// The daemon's `/status` document.
async fn fetch(settings: &Settings) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}/status", super::admin_client::admin_base(settings));
    let doc = super::admin_client::loopback_client(Duration::from_secs(10))?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon at {url} (is it running?)"))?
        .error_for_status()?
        .json()
        .await
        .context("the daemon's answer is not JSON")?;
    Ok(doc)
}

/// A store that cannot answer, first: the counts below are then the last
/// ones it gave.
fn store_line(out: &mut String, doc: &StatusDoc) {
    if let Some(s) = doc.store.as_ref().filter(|s| !s.ok) {
        let _ = writeln!(
            out,
            "{}: {} (counts below as of {})\n",
            colour::alert("STORE CANNOT ANSWER"),
            s.error.as_deref().unwrap_or("unknown error"),
            s.counts_as_of.as_deref().unwrap_or("unknown")
        );
    }
}

/// Each campaign's state in words, then its progress as a table.
fn campaigns(out: &mut String, doc: &StatusDoc) {
    let states = match &doc.campaigns {
        Campaigns::States(s) => Some(s),
        Campaigns::Names(_) => None,
    };
    let progress = doc.campaign_progress.clone().unwrap_or_default();
    if progress.is_empty() && states.is_none_or(|s| s.is_empty()) {
        return;
    }
    let _ = writeln!(out, "{}", colour::heading("Campaigns"));
    if let Some(states) = states {
        for (name, c) in states {
            let _ = writeln!(out, "  {name}: {}", campaign_state(name, c));
        }
    }
    let mut t = table::new(
        &[
            "campaign",
            "state",
            "total",
            "queued",
            "sent",
            "connected",
            "expired",
            "failed",
            "done",
            "rate",
        ],
        &[
            "total",
            "queued",
            "sent",
            "connected",
            "expired",
            "failed",
            "done",
        ],
    );
    for (name, p) in &progress {
        let state = states
            .and_then(|s| s.get(name))
            .map(|c| short_state(c))
            .unwrap_or("-");
        t.add_row(progress_row(name, state, p));
    }
    let _ = writeln!(out, "{}\n", table::render(&t, "  "));
}

fn progress_row(name: &str, state: &str, p: &CampaignProgress) -> Vec<String> {
    let n = |s: &str| p.invitations.get(s).copied().unwrap_or(0);
    vec![
        name.to_string(),
        state.to_string(),
        count(p.total),
        count(n("queued") + n("link_issued")),
        count(n("sent")),
        count(n("connected")),
        count(n("expired")),
        count(n("failed")),
        percent(n("connected"), p.total),
        p.rate.replace('/', " per "),
    ]
}

fn short_state(c: &CampaignStatus) -> &'static str {
    match c.state.as_str() {
        "paused" => "PAUSED",
        "outside_send_window" => "waiting",
        _ => "active",
    }
}

/// `PAUSED by an operator 3 minutes ago: mailbox full`, `outside its send
/// window ... opens ...`, `active, 14 sent`.
fn campaign_state(name: &str, c: &CampaignStatus) -> String {
    if c.paused {
        let who = match c.paused_by {
            Some(PausedBy::Operator) => "by an operator",
            Some(PausedBy::ErrorThreshold) => "by its error threshold",
            Some(PausedBy::BounceThreshold) => "by its bounce threshold",
            None => "",
        };
        let when = c
            .paused_at_ms
            .map(|ms| format!(" since {}", time_ms(ms)))
            .unwrap_or_default();
        return format!(
            "{} {who}{when}: {}\n    resume with: mydex-connector campaign resume {name}",
            colour::alert("PAUSED"),
            c.pause_reason.as_deref().unwrap_or("no reason given")
        );
    }
    let sent = format!(
        "{} sent, {} failed since the daemon started",
        count(c.sent),
        count(c.failed)
    );
    if c.state == "outside_send_window" {
        let opens = c
            .window_opens_ms
            .map(|ms| format!(", opens {}", time_ms(ms)))
            .unwrap_or_default();
        return format!(
            "{} ({}){opens}; {sent}",
            colour::waiting("outside its send window"),
            c.send_window.as_deref().unwrap_or("-")
        );
    }
    let rate = c
        .rate
        .as_deref()
        .map(|r| format!(", at most {}", r.replace('/', " per ")))
        .unwrap_or_default();
    format!("{}{rate}; {sent}", colour::good("active"))
}

/// Invitations by state.
fn invitations(out: &mut String, doc: &StatusDoc) {
    let _ = writeln!(out, "{}", colour::heading("Invitations"));
    let mut t = table::new(&["state", "count"], &["count"]);
    for state in [
        "queued",
        "link_issued",
        "sent",
        "connected",
        "expired",
        "failed",
    ] {
        let n = doc.invitations.get(state).copied().unwrap_or(0);
        t.add_row(vec![state.replace('_', " "), count(n)]);
    }
    let _ = writeln!(out, "{}", table::render(&t, "  "));
    let _ = writeln!(
        out,
        "  {} (they get no mail)",
        counted(doc.suppressed, "person suppressed", "people suppressed")
    );
    if let Some(n) = doc.rejected {
        let _ = writeln!(
            out,
            "  {} (`mydex-connector rejects list`)",
            counted(n, "row rejected", "rows rejected")
        );
    }
    out.push('\n');
}

fn members(out: &mut String, doc: &StatusDoc) {
    let m = &doc.members;
    let _ = writeln!(
        out,
        "{}\n  {} connected: {} on an older version, {} disconnected",
        colour::heading("Members"),
        count(m.total),
        count(m.outdated),
        count(m.disconnected)
    );
    for (v, n) in doc.members_by_version.iter().flatten() {
        let _ = writeln!(out, "  version {v}: {}", count(*n));
    }
    out.push('\n');
}

/// Readings by state.
fn readings(out: &mut String, doc: &StatusDoc) {
    let r = &doc.records;
    let _ = writeln!(out, "{}", colour::heading("Readings"));
    let mut t = table::new(&["state", "count"], &["count"]);
    for (state, n) in [
        ("queued", r.queued),
        ("delivered", r.delivered),
        ("held", r.held),
        ("failed", r.failed),
    ] {
        t.add_row(vec![state.to_string(), count(n)]);
    }
    let _ = writeln!(out, "{}\n", table::render(&t, "  "));
}

fn callbacks(out: &mut String, doc: &StatusDoc) {
    let c = &doc.callbacks;
    let _ = writeln!(
        out,
        "{}\n  {} stored: {} unmatched, {} identify, {} notifications",
        colour::heading("Callbacks"),
        count(c.stored),
        count(c.unmatched),
        count(c.identify),
        count(c.notification)
    );
    if c.quarantined > 0 {
        let _ = writeln!(
            out,
            "  {} {} (kept without effect: `mydex-connector callbacks list --quarantined`)",
            count(c.quarantined),
            colour::alert("quarantined")
        );
    }
    out.push('\n');
}

/// Each sweep's last run, and what the version sweep found: Mydex
/// refusing us, or its brake.
fn sweeps(out: &mut String, doc: &StatusDoc) {
    let Some(sweeps) = &doc.sweeps else {
        return;
    };
    let _ = writeln!(out, "{}", colour::heading("Sweeps"));
    let mut t = table::new(
        &[
            "sweep", "run", "state", "started", "took", "checked", "outdated", "invited",
            "disconn.", "held", "errors",
        ],
        &[
            "run", "checked", "outdated", "invited", "disconn.", "held", "errors",
        ],
    );
    for (job, s) in sweeps {
        t.add_row(sweep_row(job, s));
    }
    let _ = writeln!(out, "{}", table::render(&t, "  "));
    if let Some(version) = sweeps.get("version") {
        sweep_warnings(out, version);
    }
}

fn sweep_row(job: &str, s: &SweepStatus) -> Vec<String> {
    let Some(r) = &s.last else {
        return vec![job.to_string(), "-".into(), "never run".into()];
    };
    let state = if s.running {
        "running".to_string()
    } else if let Some(why) = &r.stopped {
        format!("stopped: {why}")
    } else {
        "finished".to_string()
    };
    vec![
        job.to_string(),
        count(r.run),
        state,
        time_ms(r.started_ms),
        words(Duration::from_millis(r.duration_ms)),
        count(r.checked),
        count(r.outdated),
        count(r.invited),
        count(r.disconnected),
        count(r.held),
        count(r.errors),
    ]
}

fn sweep_warnings(out: &mut String, version: &SweepStatus) {
    if let Some(Some(d)) = &version.connection_denied {
        let _ = writeln!(
            out,
            "  {}: {} (since {})",
            colour::alert("MYDEX REFUSES OUR CONNECTION"),
            d.reason,
            time_ms(d.since_ms)
        );
    }
    match &version.brake {
        Some(Some(BrakeStatus {
            engaged: true,
            held,
            brake,
        })) => {
            let _ = writeln!(
                out,
                "  {}: {held} members held ({}); `mydex-connector sweep confirm` disconnects them",
                colour::alert("SWEEP BRAKE ENGAGED"),
                brake.as_ref().map(|b| b.reason.as_str()).unwrap_or("?")
            );
        }
        Some(Some(b)) => {
            let _ = writeln!(
                out,
                "  {} found revoked, held until the sweep has judged them",
                counted(b.held, "member", "members")
            );
        }
        _ => {}
    }
}
