//! `mydex-connector run`: the daemon, logging as its configuration says.

use std::path::PathBuf;
use std::process::ExitCode;

use mydex_connector::config::Settings;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[arg(long, short)]
    config: PathBuf,
}

/// Load the configuration, set up logging from it, and serve until stopped.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(&args.config)?;
    let log = mydex_connector::app::logging::init(&settings.log.level, settings.log.format);
    mydex_connector::app::service::run(settings, log).await?;
    Ok(ExitCode::SUCCESS)
}
