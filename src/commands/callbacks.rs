//! `mydex-connector callbacks list|show|replay`: the callbacks Mydex sent,
//! kept as they arrived, and the quarantined ones recovered after an upgrade
//! or a config fix — all through the admin API (`admin_client.rs`).

use std::io::Write;
use std::process::ExitCode;

use crate::commands::admin_client::AdminClient;
use crate::commands::config_path::ConfigPath;
use mydex_connector::config::Settings;

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
    Show { id: u64 },
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
        CallbacksCommand::Show { id } => show(&config.load()?, id).await?,
        CallbacksCommand::Replay { id, .. } => replay(&config.load()?, id).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn list(settings: &Settings, quarantined: bool, json: bool) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    let mut query = Vec::new();
    if quarantined {
        query.push(("quarantined", "true".to_string()));
    }
    let mut all = Vec::new();
    loop {
        let page = client.get("/callbacks", &query).await?;
        if let Some(items) = page["callbacks"].as_array() {
            all.extend(items.iter().cloned());
        }
        match page["next_after"].as_u64() {
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
    writeln!(
        out,
        "{:<20} {:<6} {:<20} {:<12} {:<12} result",
        "id", "method", "received", "kind", "state"
    )?;
    for c in &all {
        let received = c["received_ms"]
            .as_u64()
            .map(|ms| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                )
                .to_string()
            })
            .unwrap_or_default();
        let result = if c["reason"].is_null() {
            s(&c["status"])
        } else {
            s(&c["reason"])
        };
        writeln!(
            out,
            "{:<20} {:<6} {:<20} {:<12} {:<12} {}",
            s(&c["id"]),
            s(&c["method"]),
            received,
            s(&c["kind"]),
            s(&c["state"]),
            result
        )?;
    }
    writeln!(out, "{} callbacks", all.len())?;
    Ok(())
}

/// One stored callback, its body shown with any member key redacted.
pub async fn show(settings: &Settings, id: u64) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    let cb = client.get(&format!("/callbacks/{id}"), &[]).await?;
    println!("{}", serde_json::to_string_pretty(&cb)?);
    Ok(())
}

/// Run one stored callback, or every quarantined one, through parsing and
/// matching again.
pub async fn replay(settings: &Settings, id: Option<u64>) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    let line = |c: &serde_json::Value| {
        let result = if c["reason"].is_null() {
            s(&c["status"])
        } else {
            s(&c["reason"])
        };
        format!("callback {}: {} ({result})", s(&c["id"]), s(&c["state"]))
    };
    match id {
        Some(id) => {
            let c = client.post(&format!("/callbacks/{id}/replay")).await?;
            println!("{}", line(&c));
        }
        None => {
            let r = client.post("/callbacks/replay-quarantined").await?;
            for c in r["callbacks"].as_array().into_iter().flatten() {
                println!("{}", line(c));
            }
            println!(
                "{} quarantined callbacks replayed: {} applied, {} still quarantined",
                r["replayed"].as_u64().unwrap_or(0),
                r["applied"].as_u64().unwrap_or(0),
                r["quarantined"].as_u64().unwrap_or(0)
            );
        }
    }
    Ok(())
}
