//! `mydex-connector records list [--state queued|delivered|held|failed]
//! [--json]`: readings in any state (all by default) through the admin API
//! (`GET /records`): waiting (queued), in their member's PDS (delivered),
//! waiting for their member (held) or given up on (failed), with why.

use std::io::Write;
use std::process::ExitCode;

use mydex_connector::admin_api::records::{RecordPage, RecordView};

use crate::commands::admin_client::AdminClient;
use crate::commands::config_path::ConfigPath;

use super::human::{counted, time_ms};
use super::table;

/// Most readings one `records list` shows.
const MAX_LISTED: usize = 100_000;
const PAGE: usize = 1000;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListState {
    Queued,
    Delivered,
    Held,
    Failed,
}

impl ListState {
    fn as_str(self) -> &'static str {
        match self {
            ListState::Queued => "queued",
            ListState::Delivered => "delivered",
            ListState::Held => "held",
            ListState::Failed => "failed",
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum RecordsCommand {
    /// List readings (every state, or one) with the reason for held and
    /// failed ones.
    List {
        /// Only this state (default: all).
        #[arg(long, value_enum)]
        state: Option<ListState>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: RecordsCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let RecordsCommand::List { state, json } = command;
    let settings = config.load()?;
    let client = AdminClient::new(&settings)?;
    let states = match state {
        Some(s) => vec![s],
        None => vec![
            ListState::Queued,
            ListState::Held,
            ListState::Failed,
            ListState::Delivered,
        ],
    };
    let mut all = Vec::new();
    for s in &states {
        all.extend(list(&client, *s).await?);
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let shown = print_table(&mut out, &all)?;
    let what = match state {
        Some(s) => format!("{} readings", s.as_str()),
        None => "readings".to_string(),
    };
    let noun = what.trim_end_matches('s');
    writeln!(out, "{}", counted(shown as u64, noun, &what))?;
    Ok(ExitCode::SUCCESS)
}

/// Every reading in `state`, a page at a time.
async fn list(client: &AdminClient, state: ListState) -> anyhow::Result<Vec<RecordView>> {
    let mut all = Vec::new();
    let mut query = vec![
        ("state", state.as_str().to_string()),
        ("limit", PAGE.to_string()),
    ];
    loop {
        let page: RecordPage = client.get_as("/records", &query).await?;
        let full = page.records.len() == PAGE;
        all.extend(page.records);
        query.retain(|(k, _)| *k != "after" && *k != "cursor");
        match (page.next_cursor, page.next_after) {
            (Some(c), _) if all.len() < MAX_LISTED => query.push(("cursor", c)),
            (None, Some(after)) if full && all.len() < MAX_LISTED => {
                query.push(("after", after.to_string()))
            }
            _ => return Ok(all),
        }
    }
}

fn print_table(out: &mut impl Write, all: &[RecordView]) -> anyhow::Result<usize> {
    if all.is_empty() {
        return Ok(0);
    }
    let mut t = table::new(
        &[
            "id",
            "state",
            "member",
            "dataset",
            "external id",
            "since",
            "reason",
        ],
        &["id"],
    );
    for r in all {
        let member = r
            .member
            .iter()
            .next()
            .map(|(k, v)| format!("{}={v}", k.replace('_', " ")))
            .unwrap_or_default();
        t.add_row(vec![
            r.id.to_string(),
            r.state.replace('_', " "),
            member,
            r.dataset.clone(),
            r.external_id.clone(),
            r.since_ms.map(time_ms).unwrap_or_else(|| "-".into()),
            r.reason.clone().unwrap_or_default(),
        ]);
    }
    writeln!(out, "{}", table::render(&t, ""))?;
    Ok(all.len())
}
