//! `mydex-connector edge`: the public listeners without a store, sealing
//! and publishing to NATS JetStream, logging as its configuration says.

use std::path::PathBuf;
use std::process::ExitCode;

use mydex_connector::config::EdgeSettings;

#[derive(clap::Args, Debug)]
pub struct EdgeArgs {
    #[arg(long, short)]
    config: PathBuf,
}

pub async fn run(args: EdgeArgs) -> anyhow::Result<ExitCode> {
    let settings = EdgeSettings::load(&args.config)?;
    let _log = mydex_connector::app::logging::init(&settings.log.level, settings.log.format);
    mydex_connector::app::edge::run(settings).await?;
    Ok(ExitCode::SUCCESS)
}
