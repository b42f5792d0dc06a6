//! `mydex-connector sweep version|expiry|confirm`: ask the running daemon to
//! sweep now, or to release the version sweep's brake.

use std::path::PathBuf;
use std::process::ExitCode;

use mydex_connector::config::Settings;

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    #[arg(long, short)]
    config: PathBuf,
    #[arg(value_enum)]
    job: SweepJob,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum SweepJob {
    Version,
    Expiry,
    Confirm,
}

pub async fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(&args.config)?;
    let path = match args.job {
        SweepJob::Version => "/sweeps/version",
        SweepJob::Expiry => "/sweeps/expiry",
        SweepJob::Confirm => "/sweep/confirm",
    };
    let doc = crate::commands::admin_client::post(&settings, path, None).await?;
    println!("{doc}");
    Ok(ExitCode::SUCCESS)
}
