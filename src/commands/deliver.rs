//! `mydex-connector deliver`: check readings files (CSV with a header, or
//! JSON Lines) and place their good rows in `delivery.dir` atomically, with
//! a progress bar for large files; bad rows are printed as `FILE:LINE:
//! reason` and the command exits 1 when any was rejected. With `--wait`,
//! the daemon's verdict on each file is awaited and printed
//! (`intake_wait.rs`). With `--nats`, the good rows are published on
//! `{prefix}.readings` instead, one JSON message each (`nats_rows.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::commands::config_path::ConfigPath;
use mydex_connector::config::{ConfigError, Settings};
use mydex_connector::intake::Placed as PlacedFile;
use mydex_connector::intake::readings::{ReadingsError, deliver_file_placed};

use crate::commands::intake_wait::{self, Placed, WaitArgs};
use crate::commands::progress;

#[derive(clap::Args, Debug)]
pub struct DeliverArgs {
    /// Publish the good rows on `{prefix}.readings` (NATS JetStream, as
    /// `[nats]` says) instead of placing them in `delivery.dir`.
    #[arg(long, conflicts_with = "wait")]
    nats: bool,
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    wait: WaitArgs,
}

pub fn run(args: DeliverArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    let Some(delivery) = &settings.delivery else {
        return Err(ConfigError {
            file: config.path().display().to_string(),
            key: "delivery.dir".into(),
            message: "delivery is not configured: add a [delivery] section with dir".into(),
        }
        .into());
    };
    if args.nats {
        return crate::commands::nats_rows::deliver(&settings, &args.files);
    }
    if delivery.source == mydex_connector::config::IntakeSource::Nats {
        anyhow::bail!(
            "delivery.source is \"nats\": the daemon reads no readings directory; publish with `deliver --nats`"
        );
    }
    let (mut good, mut bad) = (0, 0);
    let mut placed = Vec::new();
    for f in &args.files {
        let p = deliver_one(&settings, f)?;
        eprintln!(
            "{}: {} readings placed, {} rejected",
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
    let dir = delivery.dir.display().to_string();
    eprintln!("placed {good} readings into {dir}; {bad} rows rejected");
    if args.wait.wait {
        return Ok(intake_wait::wait(&settings, &placed, &args.wait, &dir));
    }
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn deliver_one(settings: &Settings, f: &Path) -> Result<PlacedFile, ReadingsError> {
    let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    let bar = progress::bytes_bar(size, &f.display().to_string());
    let result = deliver_file_placed(
        settings,
        f,
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
    result
}
