//! `mydex-connector rejects list [--since] [--json]`: every row rejected by
//! `enqueue`, `deliver` or the daemon's intake, with its file as the
//! operator named it, their own line number, the reason and when (through
//! the running daemon, which keeps them for 30 days, at most 100,000).

use std::process::ExitCode;
use std::time::SystemTime;

use mydex_connector::domain::{RejectedRow, RejectsPage, parse_since};

use crate::commands::admin_client::AdminClient;
use crate::commands::config_path::ConfigPath;

/// Rows asked per request.
const PAGE: usize = 1_000;

#[derive(clap::Subcommand, Debug)]
pub enum RejectsCommand {
    /// The rejected rows, oldest first: when, file:line, reason.
    List {
        /// Only rows rejected since then: a duration back from now ("2h",
        /// "7d") or a moment ("2026-12-07T09:00:00Z").
        #[arg(long)]
        since: Option<String>,
        /// An array of {"file", "line", "reason", "at"}.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: RejectsCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let RejectsCommand::List { since, json } = command;
    let settings = config.load()?;
    let since_ms = match &since {
        Some(s) => parse_since(s, SystemTime::now())?,
        None => 0,
    };
    let client = AdminClient::new(&settings)?;
    let mut rows: Vec<RejectedRow> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("since", since_ms.to_string()), ("limit", PAGE.to_string())];
        if let Some(a) = &after {
            query.push(("after", a.clone()));
        }
        let page: RejectsPage = serde_json::from_value(client.get("/rejects", &query).await?)?;
        rows.extend(page.rejects);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = SystemTime::now();
    for r in &rows {
        println!("{}  {}:{}  {}", when(&r.at, now), r.file, r.line, r.reason);
    }
    let since_text = since.map(|s| format!(" since {s}")).unwrap_or_default();
    match rows.len() {
        1 => println!("1 rejected row{since_text}"),
        n => println!("{n} rejected rows{since_text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-12-07 09:12:03 UTC (3 min ago)` from RFC 3339.
fn when(at: &str, now: SystemTime) -> String {
    let Ok(t) = humantime::parse_rfc3339_weak(at) else {
        return at.to_string();
    };
    let shown = at.get(..19).unwrap_or(at).replace('T', " ");
    let ago = now
        .duration_since(t)
        .map(|d| std::time::Duration::from_secs(d.as_secs()))
        .unwrap_or_default();
    let ago = match ago.as_secs() {
        0..=59 => "just now".to_string(),
        s => {
            let rounded = std::time::Duration::from_secs(if s < 3600 {
                s / 60 * 60
            } else {
                s / 3600 * 3600
            });
            format!("{} ago", humantime::format_duration(rounded))
        }
    };
    format!("{shown} UTC ({ago})")
}
