//! `mydex-connector campaign pause|resume NAME`: pause (with a reason) or
//! resume a campaign in the running daemon.

use std::process::ExitCode;

use crate::commands::config_path::ConfigPath;

#[derive(clap::Args, Debug)]
pub struct CampaignArgs {
    #[arg(value_enum)]
    action: CampaignAction,
    name: String,
    /// Why (kept with the pause, shown in status).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CampaignAction {
    Pause,
    Resume,
}

pub async fn run(args: CampaignArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    let (verb, body) = match args.action {
        CampaignAction::Pause => ("pause", Some(serde_json::json!({ "reason": args.reason }))),
        CampaignAction::Resume => ("resume", None),
    };
    let path = format!(
        "/campaigns/{}/{verb}",
        percent_encoding::utf8_percent_encode(&args.name, percent_encoding::NON_ALPHANUMERIC)
    );
    let doc = crate::commands::admin_client::post(&settings, &path, body).await?;
    println!("{doc}");
    Ok(ExitCode::SUCCESS)
}
