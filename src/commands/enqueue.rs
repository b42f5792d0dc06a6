//! `mydex-connector enqueue`: validate invitee files and place their good
//! rows in the queue directory, with a progress bar for large files; exits
//! 1 when any row was rejected.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mydex_connector::config::Settings;

use crate::commands::progress;

#[derive(clap::Args, Debug)]
pub struct EnqueueArgs {
    #[arg(long, short)]
    config: PathBuf,
    /// Campaign for rows that name none (default: the first configured).
    #[arg(long)]
    campaign: Option<String>,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(&args.config)?;
    let (mut good, mut bad) = (0, 0);
    for f in &args.files {
        let (g, b) = enqueue_one(&settings, f, args.campaign.as_deref())?;
        eprintln!("{}: {g} rows queued, {b} rejected", f.display());
        good += g;
        bad += b;
    }
    eprintln!(
        "queued {good} invitees into {}; {bad} rows rejected",
        settings.queue.dir.display()
    );
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Enqueue one file: (rows queued, rows rejected).
fn enqueue_one(
    settings: &Settings,
    f: &Path,
    campaign: Option<&str>,
) -> anyhow::Result<(u64, u64)> {
    let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    let bar = progress::bytes_bar(size, &f.display().to_string());
    let result = mydex_connector::intake::enqueue_file_with_progress(
        settings,
        f,
        campaign,
        &mut progress::AboveBar(bar.as_ref()),
        &mut |n| {
            if let Some(b) = &bar {
                b.set_position(n)
            }
        },
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    Ok(result?)
}
