//! `mydex-connector records list --state held|failed [--json]`: readings
//! waiting for their member (held) or given up on (failed), with why,
//! through the admin API (`GET /records`).

use std::io::Write;
use std::process::ExitCode;

use crate::commands::admin_client::AdminClient;
use crate::commands::config_path::ConfigPath;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ListState {
    Held,
    Failed,
}

#[derive(clap::Subcommand, Debug)]
pub enum RecordsCommand {
    /// List held or failed readings with the reason.
    List {
        #[arg(long, value_enum)]
        state: ListState,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: RecordsCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let RecordsCommand::List { state, json } = command;
    let settings = config.load()?;
    let client = AdminClient::new(&settings)?;
    let state = match state {
        ListState::Held => "held",
        ListState::Failed => "failed",
    };
    let mut all = Vec::new();
    let mut query = vec![("state", state.to_string()), ("limit", "1000".into())];
    loop {
        let page = client.get("/records", &query).await?;
        let items = page["records"].as_array().cloned().unwrap_or_default();
        all.extend(items);
        match page["next_after"].as_u64() {
            Some(after)
                if all.len() < 100_000
                    && page["records"].as_array().is_some_and(|a| a.len() == 1000) =>
            {
                query.retain(|(k, _)| *k != "after");
                query.push(("after", after.to_string()));
            }
            _ => break,
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    writeln!(
        out,
        "{:<20} {:<28} {:<22} {:<20} REASON",
        "ID", "MEMBER", "DATASET", "EXTERNAL_ID"
    )?;
    for r in &all {
        let member = r["member"]
            .as_object()
            .and_then(|m| m.iter().next())
            .map(|(k, v)| format!("{k}={}", s(v)))
            .unwrap_or_default();
        writeln!(
            out,
            "{:<20} {:<28} {:<22} {:<20} {}",
            s(&r["id"]),
            member,
            s(&r["dataset"]),
            s(&r["external_id"]),
            s(&r["reason"])
        )?;
    }
    writeln!(out, "{} {state} readings", all.len())?;
    Ok(ExitCode::SUCCESS)
}
