//! `mydex-connector check-config`: load the configuration and the email
//! templates it names, and print it with secrets redacted.

use std::path::PathBuf;
use std::process::ExitCode;

use mydex_connector::config::Settings;

#[derive(clap::Args, Debug)]
pub struct CheckConfigArgs {
    #[arg(long, short)]
    config: PathBuf,
}

pub fn run(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let config = args.config;
    let settings = Settings::load(&config)?;
    mydex_connector::notify::email::Templates::load(&settings.campaigns)
        .map_err(|e| e.in_config(&config))?;
    print!("{}", settings.redacted());
    eprintln!("configuration OK: {}", config.display());
    Ok(ExitCode::SUCCESS)
}
