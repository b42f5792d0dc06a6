//! `mydex-connector suppressions list|add|remove --config PATH`: the
//! suppression list of the running daemon (people who get no more mail:
//! unsubscribed, bounced, complained, or added here). The list holds a keyed
//! hash of each address, never the address: `list` shows hash prefixes.

use std::process::ExitCode;

use crate::commands::config_path::ConfigPath;

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
    },
    /// Take an address off the list (failed invitations stay failed).
    Remove {
        #[arg(long)]
        email: String,
    },
}

pub async fn run(command: SuppressionsCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    use crate::commands::admin_client::{AdminClient, post};
    match command {
        SuppressionsCommand::List { json } => {
            let settings = config.load()?;
            let doc = AdminClient::new(&settings)?
                .get("/suppressions", &[])
                .await?;
            if json {
                println!("{doc}");
            } else {
                println!("{:<14} {:<14} {:<14} REASON", "PERSON", "SOURCE", "AT_MS");
                for e in doc["entries"].as_array().into_iter().flatten() {
                    println!(
                        "{:<14} {:<14} {:<14} {}",
                        e["person"].as_str().unwrap_or("-"),
                        e["source"].as_str().unwrap_or("-"),
                        e["at_ms"],
                        e["reason"].as_str().unwrap_or("-")
                    );
                }
                println!("{} suppressed", doc["suppressed"]);
            }
        }
        SuppressionsCommand::Add { email, reason } => {
            let settings = config.load()?;
            let body = serde_json::json!({"email": email, "reason": reason});
            println!("{}", post(&settings, "/suppressions", Some(body)).await?);
        }
        SuppressionsCommand::Remove { email } => {
            let settings = config.load()?;
            let body = serde_json::json!({"email": email});
            println!(
                "{}",
                post(&settings, "/suppressions/remove", Some(body)).await?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
