//! `mydex-connector run`: the daemon, logging as its configuration says.

use std::process::ExitCode;

use crate::commands::config_path::ConfigPath;

#[derive(clap::Args, Debug)]
pub struct RunArgs {}

/// Load the configuration, set up logging from it, and serve until stopped.
pub async fn run(_args: RunArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    let log = mydex_connector::app::logging::init(&settings.log.level, settings.log.format);
    mydex_connector::app::service::run(settings, log).await?;
    Ok(ExitCode::SUCCESS)
}
