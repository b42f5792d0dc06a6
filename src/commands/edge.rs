//! `mydex-connector edge`: the public listeners without a store, sealing
//! and publishing to NATS JetStream, logging as its configuration says.

use std::process::ExitCode;

use mydex_connector::config::EdgeSettings;

use crate::commands::config_path::ConfigPath;

#[derive(clap::Args, Debug)]
pub struct EdgeArgs {}

pub async fn run(_args: EdgeArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    config.check_exists()?;
    let settings = EdgeSettings::load(config.path())?;
    let _log = mydex_connector::app::logging::init(&settings.log.level, settings.log.format);
    mydex_connector::app::edge::run(settings).await?;
    Ok(ExitCode::SUCCESS)
}
