//! `mydex-connector sweep version|expiry|confirm`: ask the running daemon to
//! sweep now, or to release the version sweep's brake.

use std::process::ExitCode;

use crate::commands::config_path::ConfigPath;

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    #[arg(value_enum)]
    job: SweepJob,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum SweepJob {
    Version,
    Expiry,
    Confirm,
}

pub async fn run(args: SweepArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    let path = match args.job {
        SweepJob::Version => "/sweeps/version",
        SweepJob::Expiry => "/sweeps/expiry",
        SweepJob::Confirm => "/sweep/confirm",
    };
    let doc = crate::commands::admin_client::post(&settings, path, None).await?;
    println!("{doc}");
    Ok(ExitCode::SUCCESS)
}
