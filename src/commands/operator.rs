//! `mydex-connector invitations list|show|retry` and `members export`: what
//! an operator runs to find and fix a problem, printed as a table or JSON,
//! all through the admin API (`admin_client.rs`).

use std::io::Write;
use std::process::ExitCode;

use crate::commands::admin_client::AdminClient;
use crate::commands::config_path::ConfigPath;
use mydex_connector::config::Settings;

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
    Show { id: u64 },
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
        InvitationsCommand::Show { id } => show(&config.load()?, id).await?,
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
        let page = client.get("/invitations", &query).await?;
        if let Some(items) = page["invitations"].as_array() {
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
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<20} {:<16} {:<12} {:<32} {:<16} reason",
        "id", "campaign", "state", "email", "external_ref"
    )?;
    for i in &all {
        writeln!(
            out,
            "{:<20} {:<16} {:<12} {:<32} {:<16} {}",
            s(&i["id"]),
            s(&i["campaign"]),
            s(&i["state"]),
            s(&i["email"]),
            s(&i["external_ref"]),
            if i["reason"].is_null() {
                String::new()
            } else {
                s(&i["reason"])
            }
        )?;
    }
    writeln!(out, "{} invitations", all.len())?;
    Ok(())
}

pub async fn show(settings: &Settings, id: u64) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    let inv = client.get(&format!("/invitations/{id}"), &[]).await?;
    println!("{}", serde_json::to_string_pretty(&inv)?);
    Ok(())
}

/// Retry one failed invitation, or all of them.
pub async fn retry(settings: &Settings, id: Option<u64>) -> anyhow::Result<()> {
    let client = AdminClient::new(settings)?;
    match id {
        Some(id) => {
            let inv = client.post(&format!("/invitations/{id}/retry")).await?;
            println!("invitation {id} is {} again", s(&inv["state"]));
        }
        None => {
            let r = client.post("/invitations/retry-failed").await?;
            let retried = r["retried"].as_array().map(Vec::len).unwrap_or(0);
            println!("{retried} failed invitations queued again");
            for refused in r["refused"].as_array().into_iter().flatten() {
                eprintln!("not retried: {}", s(&refused["error"]));
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
