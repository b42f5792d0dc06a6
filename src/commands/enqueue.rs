//! `mydex-connector enqueue`: validate invitee files and place their good
//! rows in the queue directory, with a progress bar for large files; exits
//! 1 when any row was rejected. When the daemon's admin API answers, the
//! suppression list is checked first (`POST /suppressions/check`, in
//! chunks) and suppressed people are reported, not placed. With `--wait`,
//! the daemon's verdict on each file is awaited and printed
//! (`intake_wait.rs`). With `--nats`, the good rows are published on
//! `{prefix}.invitees` instead, one JSON message each (`nats_rows.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::commands::config_path::ConfigPath;
use mydex_connector::config::Settings;

use crate::commands::intake_wait::{self, Placed, WaitArgs};
use crate::commands::progress;
use crate::commands::suppression_check::DaemonCheck;

#[derive(clap::Args, Debug)]
pub struct EnqueueArgs {
    /// Campaign for rows that name none (default: the first configured).
    #[arg(long)]
    campaign: Option<String>,
    /// Publish the good rows on `{prefix}.invitees` (NATS JetStream, as
    /// `[nats]` says) instead of placing them in the queue directory.
    #[arg(long, conflicts_with = "wait")]
    nats: bool,
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    wait: WaitArgs,
}

pub fn run(args: EnqueueArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    if args.nats {
        return crate::commands::nats_rows::enqueue(
            &settings,
            &args.files,
            args.campaign.as_deref(),
        );
    }
    if settings.queue.source == mydex_connector::config::IntakeSource::Nats {
        anyhow::bail!(
            "queue.source is \"nats\": the daemon reads no queue directory; publish with `enqueue --nats`"
        );
    }
    let (mut good, mut bad) = (0, 0);
    // A daemon that does not answer within CHECK_TIMEOUT is not waited
    // for: the file is placed unchecked (its intake still rejects).
    let mut check = DaemonCheck::new(&settings)?;
    let mut placed = Vec::new();
    for f in &args.files {
        let p = enqueue_one(&settings, f, args.campaign.as_deref(), &mut check)?;
        eprintln!(
            "{}: {} rows queued, {} rejected",
            f.display(),
            p.good,
            p.bad
        );
        good += p.good;
        bad += p.bad;
        if let Some(name) = p.name {
            placed.push(Placed {
                shown: f.display().to_string(),
                name,
            });
        }
    }
    let dir = settings.queue.dir.display().to_string();
    eprintln!("queued {good} invitees into {dir}; {bad} rows rejected");
    if args.wait.wait {
        return Ok(intake_wait::wait(&settings, &placed, &args.wait, &dir));
    }
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Enqueue one file: rows queued, rows rejected, where it was placed.
fn enqueue_one(
    settings: &Settings,
    f: &Path,
    campaign: Option<&str>,
    check: &mut DaemonCheck,
) -> anyhow::Result<mydex_connector::intake::Placed> {
    let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    let bar = progress::bytes_bar(size, &f.display().to_string());
    let result = mydex_connector::intake::enqueue_file_placed(
        settings,
        f,
        campaign,
        &mut progress::AboveBar(bar.as_ref()),
        &mut |n| {
            if let Some(b) = &bar {
                b.set_position(n)
            }
        },
        Some(check),
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    Ok(result?)
}
