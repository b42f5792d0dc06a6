//! `mydex-connector store compact --config PATH`, with the daemon stopped:
//! the store's live records rewritten into a fresh store swapped in for it,
//! so that the engine's old log segments (clear copies left by stores written
//! before sealing, traces of people forgotten) are gone from the disk (see
//! `store/compact.rs`). Prints the sizes before and after and the records
//! copied; never a record.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::commands::config_path::ConfigPath;
use mydex_connector::config::Settings;
use mydex_connector::store::{CompactReport, CompactStep, Recovery, Store};

/// Debug builds only (tests): the step (`CompactStep::name`) at which the
/// command stops and waits to be killed, to show a kill there is safe.
const STOP_AT: &str = "MYDEX_CONNECTOR_COMPACT_STOP_AT";

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Rewrite the store's live records into a fresh store and swap it in
    /// (the daemon must be stopped): old segments, with clear copies left
    /// by releases before sealing and traces of forgotten people, are gone.
    /// Safe to kill at any moment: the next open finishes or undoes it.
    Compact {},
}

pub async fn run(command: StoreCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Compact {} => {
            let settings = config.load()?;
            compact(&settings).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Compact the store of `settings`, showing progress on stderr and what
/// was done on stdout.
async fn compact(settings: &Settings) -> anyhow::Result<CompactReport> {
    let path = settings.store.path.clone();
    let stop_at = std::env::var(STOP_AT)
        .ok()
        .filter(|_| cfg!(debug_assertions));
    let tty = std::io::stderr().is_terminal();
    let mut last_shown = Instant::now();
    let key = secrecy::SecretBox::new(Box::new(*settings.store.key.expose_secret()));
    let report = Store::compact(path.clone(), key, move |step| {
        if let CompactStep::Copying { records } = step {
            // A line per batch when logged, a few a second on a terminal.
            if !tty || last_shown.elapsed() >= Duration::from_millis(250) {
                eprintln!("copied {records} records");
                last_shown = Instant::now();
            }
        }
        if stop_at.as_deref() == Some(step.name()) {
            eprintln!("store compact: stopped at step {} ({STOP_AT})", step.name());
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    })
    .await
    .with_context(|| format!("compaction of the store at {}", path.display()))?;
    show(&path, &report);
    Ok(report)
}

fn show(path: &std::path::Path, r: &CompactReport) {
    let earlier = match r.recovered {
        Recovery::Clean => None,
        Recovery::Discarded => Some("removed the copy an interrupted compaction left"),
        Recovery::RolledBack => Some("put back the store an interrupted compaction had moved"),
        Recovery::Finished => Some("removed the old store an interrupted compaction left"),
    };
    if let Some(what) = earlier {
        println!("first {what}");
    }
    println!(
        "compacted the store at {}: {} records in {} trees copied and verified, in {:.2} s",
        path.display(),
        r.records,
        r.trees.len(),
        r.elapsed.as_secs_f64()
    );
    println!(
        "  on disk: {} bytes before, {} bytes after ({:.1} MiB, then {:.1} MiB)",
        r.bytes_before,
        r.bytes_after,
        mib(r.bytes_before),
        mib(r.bytes_after)
    );
    let trees: Vec<String> = r.trees.iter().map(|(n, c)| format!("{n} {c}")).collect();
    println!("  records per tree: {}", trees.join(", "));
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
