//! `mydex-connector suppressions list|add|remove --config PATH`: the
//! suppression list of the running daemon (people who get no more mail:
//! unsubscribed, bounced, complained, or added here). The list holds a keyed
//! hash of each address, never the address: `list` shows hash prefixes.

use std::process::ExitCode;

use crate::commands::config_path::ConfigPath;
use mydex_connector::admin_api::suppressions::{
    SuppressionAdded, SuppressionList, SuppressionRemoved, SuppressionRequest,
};

use super::admin_client::{AdminClient, parse, post};
use super::human::{counted, time_ms};
use super::table;

#[derive(clap::Subcommand, Debug)]
pub enum SuppressionsCommand {
    /// Everyone on the list: hash prefix, reason, source, date.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Put an address on the list (its open invitations fail).
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Take an address off the list (failed invitations stay failed).
    Remove {
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: SuppressionsCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    match command {
        SuppressionsCommand::List { json } => {
            let settings = config.load()?;
            let doc = AdminClient::new(&settings)?
                .get("/suppressions", &[])
                .await?;
            if json {
                println!("{doc}");
            } else {
                print_list(&parse(doc, "/suppressions")?);
            }
        }
        SuppressionsCommand::Add {
            email,
            reason,
            json,
        } => {
            let settings = config.load()?;
            let body = serde_json::to_value(SuppressionRequest { email, reason })?;
            let doc = post(&settings, "/suppressions", Some(body)).await?;
            if json {
                println!("{doc}");
            } else {
                let a: SuppressionAdded = parse(doc, "/suppressions")?;
                let was = if a.new { "added" } else { "was already there" };
                println!(
                    "person {} {was}; {} failed",
                    a.person,
                    counted(a.failed as u64, "open invitation", "open invitations")
                );
            }
        }
        SuppressionsCommand::Remove { email, json } => {
            let settings = config.load()?;
            let body = serde_json::to_value(SuppressionRequest {
                email,
                reason: None,
            })?;
            let doc = post(&settings, "/suppressions/remove", Some(body)).await?;
            if json {
                println!("{doc}");
            } else {
                let r: SuppressionRemoved = parse(doc, "/suppressions/remove")?;
                let was = if r.removed {
                    "taken off the list (failed invitations stay failed)"
                } else {
                    "was not on the list"
                };
                println!("person {} {was}", r.person);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(list: &SuppressionList) {
    let mut t = table::new(&["person", "source", "since", "reason"], &[]);
    for e in &list.entries {
        t.add_row(vec![
            e.person.clone(),
            format!("{:?}", e.source).to_lowercase(),
            time_ms(e.at_ms),
            e.reason.clone(),
        ]);
    }
    if !list.entries.is_empty() {
        println!("{}", table::render(&t, ""));
    }
    println!(
        "{}",
        counted(
            list.suppressed as u64,
            "person suppressed",
            "people suppressed"
        )
    );
}
