//! `enqueue --nats` and `deliver --nats`: each file checked exactly as
//! `enqueue` / `deliver` check it for their directory (bad rows reported
//! the same way; for invitees, the suppression list asked when the daemon
//! answers), then its good rows published on `{prefix}.invitees` /
//! `{prefix}.readings`, one JSON message each, with `Nats-Msg-Id` = the
//! file's hash and the row's line (so publishing it again within
//! `nats.dedup_window` stores nothing twice). The streams are created
//! first when missing, as `nats setup` does, so rows may be published
//! while the daemon is down. JetStream unreachable: an error and exit 1;
//! what was published before stays.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use mydex_connector::broker::connect::FirstConnect;
use mydex_connector::broker::{Broker, RowsPublished, Topic, file_id};
use mydex_connector::config::{ConfigError, Settings};
use mydex_connector::intake::readings::checked_readings;
use mydex_connector::intake::{CheckedRow, Refused, checked_rows};

use crate::commands::suppression_check::DaemonCheck;

/// Run `fut` to its end from this synchronous command.
fn block<F: std::future::Future>(fut: F) -> F::Output {
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| handle.block_on(fut))
}

/// The broker `[nats]` names, connected, with its streams set up.
fn broker(settings: &Settings, name: &str) -> anyhow::Result<Broker> {
    let Some(nats) = &settings.nats else {
        return Err(ConfigError {
            file: settings.source.display().to_string(),
            key: "nats".into(),
            message: "--nats needs a [nats] section (the broker to publish to)".into(),
        }
        .into());
    };
    let broker = block(Broker::connect(nats, name, FirstConnect::Required))?;
    block(broker.setup()).context("setting up the NATS streams")?;
    Ok(broker)
}

/// `enqueue --nats FILE...`.
pub fn enqueue(
    settings: &Settings,
    files: &[PathBuf],
    campaign: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let broker = broker(settings, "mydex-connector enqueue")?;
    let mut check = DaemonCheck::new(settings)?;
    let check_file = |f: &Path| -> anyhow::Result<(Vec<CheckedRow>, Vec<Refused>)> {
        let errors = &mut std::io::stderr();
        let got = checked_rows(settings, f, campaign, errors, &mut |_| {}, Some(&mut check))?;
        Ok(got)
    };
    let context = format!("invitees campaign={}", campaign.unwrap_or(""));
    let run = Run {
        broker: &broker,
        topic: Topic::Invitees,
        context: &context,
        what: "invitees",
    };
    run.publish_files(files, check_file)
}

/// `deliver --nats FILE...`.
pub fn deliver(settings: &Settings, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let broker = broker(settings, "mydex-connector deliver")?;
    let check_file = |f: &Path| -> anyhow::Result<(Vec<CheckedRow>, Vec<Refused>)> {
        Ok(checked_readings(f, &mut std::io::stderr())?)
    };
    let run = Run {
        broker: &broker,
        topic: Topic::Readings,
        context: "readings",
        what: "readings",
    };
    run.publish_files(files, check_file)
}

/// Where a run publishes, and how its rows and files are named.
struct Run<'a> {
    broker: &'a Broker,
    topic: Topic,
    /// Hashed with each file's bytes into its id.
    context: &'a str,
    what: &'a str,
}

impl Run<'_> {
    /// Each file checked by `check_file`, its good rows published; the
    /// totals printed; exit 1 when any row was refused.
    fn publish_files(
        &self,
        files: &[PathBuf],
        mut check_file: impl FnMut(&Path) -> anyhow::Result<(Vec<CheckedRow>, Vec<Refused>)>,
    ) -> anyhow::Result<ExitCode> {
        let subject = self.broker.subject(self.topic);
        let (mut total, mut bad) = (RowsPublished::default(), 0u64);
        for f in files {
            let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            let (good, refused) = check_file(f)?;
            bad += refused.len() as u64;
            let id = file_id(&bytes, self.context);
            let rows = good
                .into_iter()
                .map(|(line, row)| Ok((line, serde_json::to_vec(&row)?)))
                .collect::<Result<Vec<_>, serde_json::Error>>()?;
            let done = block(self.broker.publish_rows(self.topic, &id, rows, &mut |_| {}))
                .with_context(|| format!("{}: publishing on {subject}", f.display()))?;
            eprintln!(
                "{}: {} rows published, {} already published, {} rejected",
                f.display(),
                done.published,
                done.duplicates,
                refused.len()
            );
            total.published += done.published;
            total.duplicates += done.duplicates;
        }
        println!(
            "published {} {} on {subject} ({} already published); {bad} rows rejected",
            total.published, self.what, total.duplicates
        );
        Ok(if bad > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }
}
