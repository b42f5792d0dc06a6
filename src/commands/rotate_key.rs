//! `mydex-connector rotate-key`: re-encrypt the store under a new key, with
//! the daemon stopped (see `store/rotation.rs` for how a crash midway is
//! finished by rerunning the command). Prints what it did and what the
//! operator does next; never prints or writes a key.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::commands::config_path::ConfigPath;
use mydex_connector::config::Settings;
use mydex_connector::store::{RotationReport, Store};
use secrecy::{ExposeSecret, SecretBox};

#[derive(clap::Args, Debug)]
pub struct RotateKeyArgs {
    /// The new 32-byte key (raw, or 64 hex characters), like store.key_file.
    #[arg(long)]
    new_key_file: PathBuf,
}

/// The subcommand: load the configuration, then rotate (the store's
/// facade runs the disk work off the async runtime).
pub async fn command(args: RotateKeyArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    run(&settings, &args.new_key_file).await?;
    Ok(ExitCode::SUCCESS)
}

/// Rotate the store of `settings` (its `store.key_file` is the current key)
/// to the key in `new_key_file`.
pub async fn run(settings: &Settings, new_key_file: &Path) -> anyhow::Result<RotationReport> {
    let new_key = settings.read_key_file("--new-key-file", new_key_file)?;
    let path = settings.store.path.clone();
    let tty = std::io::stderr().is_terminal();
    let mut last_shown = std::time::Instant::now();
    let old_key = SecretBox::new(Box::new(*settings.store.key.expose_secret()));
    let report = Store::rotate_key(path.clone(), old_key, new_key, move |done, total| {
        // A line per batch when logged, at most a few a second on a terminal.
        if !tty || last_shown.elapsed().as_millis() >= 250 || done == total {
            eprintln!("re-sealed {done} of {total} member keys");
            last_shown = std::time::Instant::now();
        }
    })
    .await
    .with_context(|| format!("key rotation of the store at {}", path.display()))?;
    tracing::info!(
        members = report.members_total,
        resealed = report.members_resealed,
        new_key = %report.new_key_fingerprint,
        "store key rotated"
    );
    println!(
        "{} the store at {} to the new key (fingerprint {}; the old key was {}):",
        if report.resumed {
            "finished an interrupted rotation of"
        } else {
            "rotated"
        },
        path.display(),
        report.new_key_fingerprint,
        report.old_key_fingerprint,
    );
    println!(
        "  {} member keys re-sealed, {} already under the new key or holding none ({} members), {} unmatched callbacks and {} stored callback bodies re-sealed, in {:.2} s",
        report.members_resealed,
        report.members_skipped,
        report.members_total,
        report.unmatched_resealed,
        report.raw_resealed,
        report.elapsed.as_secs_f64()
    );
    println!(
        "next: replace store.key_file ({}) with {} (the old key no longer opens the store), then start the daemon",
        settings.store.key_source.display(),
        new_key_file.display()
    );
    Ok(report)
}
