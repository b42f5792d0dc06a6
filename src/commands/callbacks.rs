//! `mydex-connector callbacks list|show|replay`: the callbacks Mydex sent,
//! kept as they arrived, and the quarantined ones recovered after an upgrade
//! or a config fix — all through the admin API (`admin_client.rs`).

use std::io::Write;
use std::process::ExitCode;

use crate::commands::admin_client::{AdminClient, parse};
use crate::commands::config_path::ConfigPath;
use mydex_connector::admin_api::callbacks::{CallbackPage, CallbackView, Replayed};
use mydex_connector::config::Settings;

use super::human::{counted, time_ms};
use super::table;

#[derive(clap::Subcommand, Debug)]
pub enum CallbacksCommand {
    /// List stored callbacks and what became of each.
    List {
        /// Only the quarantined ones (kept without effect, with the reason).
        #[arg(long)]
        quarantined: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One stored callback, its body shown with any member key redacted.
    Show {
        id: u64,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Run stored callbacks through parsing and matching again (one by id,
    /// or every quarantined one with --all-quarantined).
    Replay {
        #[arg(
            required_unless_present = "all_quarantined",
            conflicts_with = "all_quarantined"
        )]
        id: Option<u64>,
        #[arg(long)]
        all_quarantined: bool,
    },
}

/// `callbacks list|show|replay`.
pub async fn run(command: CallbacksCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    match command {
        CallbacksCommand::List { quarantined, json } => {
            list(&config.load()?, quarantined, json).await?
        }
        CallbacksCommand::Show { id, json } => show(&config.load()?, id, json).await?,
        CallbacksCommand::Replay { id, .. } => replay(&config.load()?, id).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// What became of a callback: what it did, or why it was kept.
fn result(c: &CallbackView) -> String {
    c.reason
        .clone()
        .or_else(|| c.status.clone())
        .unwrap_or_else(|| "-".into())
}

pub async fn list(settings: &Settings, quarantined: bool, json: bool) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    let mut query = Vec::new();
    if quarantined {
        query.push(("quarantined", "true".to_string()));
    }
    let mut all = Vec::new();
    loop {
        let page: CallbackPage = client.get_as("/callbacks", &query).await?;
        all.extend(page.callbacks);
        match page.next_after {
            Some(after) => {
                query.retain(|(k, _)| *k != "after");
                query.push(("after", after.to_string()));
            }
            None => break,
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(());
    }
    let mut t = table::new(
        &["id", "method", "received", "kind", "state", "result"],
        &["id"],
    );
    for c in &all {
        t.add_row(vec![
            c.id.to_string(),
            c.method.clone(),
            time_ms(c.received_ms),
            c.kind.clone().unwrap_or_else(|| "-".into()),
            c.state.clone(),
            result(c),
        ]);
    }
    if !all.is_empty() {
        writeln!(out, "{}", table::render(&t, ""))?;
    }
    writeln!(
        out,
        "{}",
        counted(all.len() as u64, "callback", "callbacks")
    )?;
    Ok(())
}

/// One stored callback, its body shown with any member key redacted.
pub async fn show(settings: &Settings, id: u64, json: bool) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    let raw = client.get(&format!("/callbacks/{id}"), &[]).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(());
    }
    let c: CallbackView = parse(raw, "/callbacks")?;
    println!(
        "callback {} ({} {})",
        c.id,
        c.method,
        c.kind.as_deref().unwrap_or("not parsed")
    );
    println!("  received      {}", time_ms(c.received_ms));
    println!(
        "  content type  {}",
        c.content_type.as_deref().unwrap_or("-")
    );
    println!("  size          {}", counted(c.size, "byte", "bytes"));
    println!("  state         {}: {}", c.state, result(&c));
    for h in &c.history {
        println!(
            "  before a replay, until {}: {}",
            time_ms(h.until_ms),
            past(&h.outcome)
        );
    }
    if let Some(body) = &c.body {
        println!("body (any member key redacted)");
        for (k, v) in body_lines(body) {
            println!("  {k:<20} {v}");
        }
    }
    Ok(())
}

fn past(o: &mydex_connector::store::RawOutcome) -> String {
    use mydex_connector::store::RawOutcome;
    match o {
        RawOutcome::Pending => "pending".into(),
        RawOutcome::Applied { status } => format!("applied: {status}"),
        RawOutcome::Quarantined { reason } => format!("quarantined: {reason}"),
    }
}

/// The body's fields as lines: each key and its value as text (a value
/// that is itself a structure shown compactly).
fn body_lines(body: &serde_json::Value) -> Vec<(String, String)> {
    match body {
        serde_json::Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), value_text(v))).collect(),
        other => vec![("(text)".into(), value_text(other))],
    }
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Run one stored callback, or every quarantined one, through parsing and
/// matching again.
pub async fn replay(settings: &Settings, id: Option<u64>) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    let line = |c: &CallbackView| format!("callback {}: {} ({})", c.id, c.state, result(c));
    match id {
        Some(id) => {
            let c: CallbackView = parse(
                client.post(&format!("/callbacks/{id}/replay")).await?,
                "replay",
            )?;
            println!("{}", line(&c));
        }
        None => {
            let r: Replayed = parse(
                client.post("/callbacks/replay-quarantined").await?,
                "replay",
            )?;
            for c in &r.callbacks {
                println!("{}", line(c));
            }
            println!(
                "{} replayed: {} applied, {} still quarantined",
                counted(
                    r.replayed as u64,
                    "quarantined callback",
                    "quarantined callbacks"
                ),
                r.applied,
                r.quarantined
            );
        }
    }
    Ok(())
}
