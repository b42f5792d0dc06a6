//! `mydex-connector deliver`: check readings files (CSV with a header, or
//! JSON Lines) and place their good rows in `delivery.dir` atomically, with
//! a progress bar for large files; bad rows are printed as `FILE:LINE:
//! reason` and the command exits 1 when any was rejected.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::commands::config_path::ConfigPath;
use mydex_connector::config::{ConfigError, Settings};
use mydex_connector::intake::readings::{ReadingsError, deliver_file_with_progress};

use crate::commands::progress;

#[derive(clap::Args, Debug)]
pub struct DeliverArgs {
    #[arg(required = true)]
    files: Vec<PathBuf>,
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
    let (mut good, mut bad) = (0, 0);
    for f in &args.files {
        let (g, b) = deliver_one(&settings, f)?;
        eprintln!("{}: {g} readings placed, {b} rejected", f.display());
        good += g;
        bad += b;
    }
    eprintln!(
        "placed {good} readings into {}; {bad} rows rejected",
        delivery.dir.display()
    );
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn deliver_one(settings: &Settings, f: &Path) -> Result<(u64, u64), ReadingsError> {
    let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    let bar = progress::bytes_bar(size, &f.display().to_string());
    let result = deliver_file_with_progress(
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
