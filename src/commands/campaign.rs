//! `mydex-connector campaign pause|resume NAME`: pause (with a reason) or
//! resume a campaign in the running daemon.

use std::process::ExitCode;

use mydex_connector::admin_api::lifecycle::{PauseBody, Paused, Resumed};

use super::admin_client::parse;
use super::colour;
use crate::commands::config_path::ConfigPath;

#[derive(clap::Args, Debug)]
pub struct CampaignArgs {
    #[arg(value_enum)]
    action: CampaignAction,
    name: String,
    /// Why (kept with the pause, shown in status).
    #[arg(long)]
    reason: Option<String>,
    /// Print the daemon's JSON answer instead of a sentence.
    #[arg(long)]
    json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CampaignAction {
    Pause,
    Resume,
}

pub async fn run(args: CampaignArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    let (verb, body) = match args.action {
        CampaignAction::Pause => (
            "pause",
            Some(serde_json::to_value(PauseBody {
                reason: args.reason.clone(),
            })?),
        ),
        CampaignAction::Resume => ("resume", None),
    };
    let path = format!(
        "/campaigns/{}/{verb}",
        percent_encoding::utf8_percent_encode(&args.name, percent_encoding::NON_ALPHANUMERIC)
    );
    let doc = crate::commands::admin_client::post(&settings, &path, body).await?;
    if args.json {
        println!("{doc}");
        return Ok(ExitCode::SUCCESS);
    }
    match args.action {
        CampaignAction::Pause => {
            let p: Paused = parse(doc, &path)?;
            println!(
                "campaign {} {}: {}\nit sends nothing until `mydex-connector campaign resume {}`",
                p.campaign,
                colour::alert("PAUSED"),
                p.reason,
                p.campaign
            );
        }
        CampaignAction::Resume => {
            let r: Resumed = parse(doc, &path)?;
            let was = if r.was_paused {
                "resumed: it sends again"
            } else {
                "was not paused: nothing changed"
            };
            println!("campaign {} {was}", r.campaign);
        }
    }
    Ok(ExitCode::SUCCESS)
}
