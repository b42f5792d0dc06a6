//! `mydex-connector invitations list|show|retry` and `members export`: what
//! an operator runs to find and fix a problem, printed as a table or JSON,
//! all through the admin API (`admin_client.rs`).

use std::io::Write;
use std::process::ExitCode;

use crate::commands::admin_client::{AdminClient, parse};
use crate::commands::config_path::ConfigPath;
use mydex_connector::admin_api::invitations::{InvitationPage, InvitationView, Retried};
use mydex_connector::config::Settings;

use super::human::{counted, time_ms};
use super::table;

#[derive(clap::Subcommand, Debug)]
pub enum InvitationsCommand {
    /// List invitations, with the reason for failed ones.
    List {
        /// queued, link_issued, sent, connected, expired or failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        campaign: Option<String>,
        #[arg(long)]
        external_ref: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one invitation, with its history.
    Show {
        id: u64,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Queue failed invitations again (one by id, or all with --all-failed).
    Retry {
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        id: Option<u64>,
        #[arg(long)]
        all_failed: bool,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum MembersCommand {
    /// Print the mapping external ref → MydexID/uid/connection_id/version.
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Include member connection keys (needs admin.allow_key_export = true).
        #[arg(long)]
        with_keys: bool,
    },
}

/// `invitations list|show|retry`.
pub async fn invitations(
    command: InvitationsCommand,
    config: &ConfigPath,
) -> anyhow::Result<ExitCode> {
    match command {
        InvitationsCommand::List {
            state,
            campaign,
            external_ref,
            json,
        } => {
            let settings = config.load()?;
            let args = ListArgs {
                state,
                campaign,
                external_ref,
                json,
            };
            list(&settings, args).await?
        }
        InvitationsCommand::Show { id, json } => show(&config.load()?, id, json).await?,
        InvitationsCommand::Retry { id, .. } => retry(&config.load()?, id).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `members export`.
pub async fn members(command: MembersCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    match command {
        MembersCommand::Export { format, with_keys } => {
            export_members(&config.load()?, format, with_keys).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Default)]
pub struct ListArgs {
    pub state: Option<String>,
    pub campaign: Option<String>,
    pub external_ref: Option<String>,
    pub json: bool,
}

fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn list(settings: &Settings, args: ListArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    let mut query = Vec::new();
    for (k, v) in [
        ("state", &args.state),
        ("campaign", &args.campaign),
        ("external_ref", &args.external_ref),
    ] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    let mut all = Vec::new();
    loop {
        let page: InvitationPage = client.get_as("/invitations", &query).await?;
        all.extend(page.invitations);
        match page.next_after {
            Some(after) => {
                query.retain(|(k, _)| *k != "after");
                query.push(("after", after.to_string()));
            }
            None => break,
        }
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(());
    }
    if !all.is_empty() {
        writeln!(out, "{}", table::render(&invitation_table(&all), ""))?;
    }
    writeln!(
        out,
        "{}",
        counted(all.len() as u64, "invitation", "invitations")
    )?;
    Ok(())
}

/// Kind `connect`, or `update to version N`.
fn kind(i: &InvitationView) -> String {
    match i.kind.as_str() {
        "update" => format!("update to v{}", i.version),
        other => other.to_string(),
    }
}

fn invitation_table(all: &[InvitationView]) -> comfy_table::Table {
    let mut t = table::new(
        &[
            "id",
            "campaign",
            "kind",
            "state",
            "email",
            "external ref",
            "updated",
            "reason",
        ],
        &["id"],
    );
    for i in all {
        t.add_row(vec![
            i.id.to_string(),
            i.campaign.clone(),
            kind(i),
            i.state.replace('_', " "),
            i.email.clone(),
            i.external_ref.clone().unwrap_or_else(|| "-".into()),
            time_ms(i.updated_ms),
            i.reason.clone().unwrap_or_default(),
        ]);
    }
    t
}

pub async fn show(settings: &Settings, id: u64, json: bool) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    let raw = client.get(&format!("/invitations/{id}"), &[]).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(());
    }
    let inv: InvitationView = parse(raw, "/invitations")?;
    print!("{}", render_invitation(&inv));
    Ok(())
}

/// One invitation for a person: who, where it stands, its history.
fn render_invitation(i: &InvitationView) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(
        o,
        "invitation {} ({}, campaign {})",
        i.id,
        kind(i),
        i.campaign
    );
    let _ = writeln!(o, "  state         {}", i.state.replace('_', " "));
    if let Some(r) = &i.reason {
        let _ = writeln!(o, "  reason        {r}");
    }
    let _ = writeln!(o, "  email         {}", i.email);
    let _ = writeln!(o, "  name          {}", dash(&i.name));
    let _ = writeln!(o, "  external ref  {}", dash(&i.external_ref));
    let _ = writeln!(o, "  MydexID       {}", dash(&i.mydexid));
    let _ = writeln!(o, "  connection    {}", dash(&i.connection_id));
    let _ = writeln!(
        o,
        "  attempts      {}, reminders {}",
        i.attempts, i.reminders
    );
    let _ = writeln!(o, "  created       {}", time_ms(i.created_ms));
    let _ = writeln!(o, "  updated       {}", time_ms(i.updated_ms));
    match (&i.link, &i.withheld) {
        (Some(Some(link)), _) => {
            let _ = writeln!(o, "  link          {link}");
        }
        (_, Some(why)) => {
            let _ = writeln!(o, "  link          ({why})");
        }
        _ => {}
    }
    for (k, v) in i.vars.iter().flatten() {
        let _ = writeln!(o, "  {k:<13} {v}");
    }
    if let Some(history) = &i.history {
        let _ = writeln!(o, "history");
        for h in history {
            let note = h
                .note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  {}  {}{note}",
                time_ms(h.at_ms),
                h.state.as_str().replace('_', " ")
            );
        }
    }
    o
}

/// Retry one failed invitation, or all of them.
pub async fn retry(settings: &Settings, id: Option<u64>) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    match id {
        Some(id) => {
            let inv: InvitationView = parse(
                client.post(&format!("/invitations/{id}/retry")).await?,
                "retry",
            )?;
            println!("invitation {id} is {} again", inv.state.replace('_', " "));
        }
        None => {
            let r: Retried = parse(client.post("/invitations/retry-failed").await?, "retry")?;
            println!(
                "{} queued again",
                counted(
                    r.retried.len() as u64,
                    "failed invitation",
                    "failed invitations"
                )
            );
            for refused in &r.refused {
                eprintln!("not retried: invitation {}: {}", refused.id, refused.error);
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

pub async fn export_members(
    settings: &Settings,
    format: ExportFormat,
    with_keys: bool,
) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    let query = if with_keys {
        vec![("with_keys", "true".to_string())]
    } else {
        vec![]
    };
    let doc = client.get("/members", &query).await?;
    let members = doc["members"].as_array().cloned().unwrap_or_default();
    let out = std::io::stdout().lock();
    match format {
        ExportFormat::Json => {
            let mut out = out;
            writeln!(out, "{}", serde_json::to_string_pretty(&members)?)?;
        }
        ExportFormat::Csv => {
            let mut columns = vec![
                "external_ref",
                "mydexid",
                "uid",
                "connection_id",
                "version",
                "status",
                "campaign",
                "email",
            ];
            if with_keys {
                columns.push("key");
            }
            let mut w = csv::Writer::from_writer(out);
            w.write_record(&columns)?;
            for m in &members {
                let row: Vec<String> = columns
                    .iter()
                    .map(|c| match &m[*c] {
                        serde_json::Value::Null => String::new(),
                        v => s(v),
                    })
                    .collect();
                w.write_record(&row)?;
            }
            w.flush()?;
        }
    }
    eprintln!("{} members exported", members.len());
    Ok(())
}
