//! `enqueue --nats`: each file checked exactly as `enqueue` checks it for
//! the queue directory (bad rows reported the same way, the suppression
//! list asked when the daemon answers), then its good rows published on
//! `{prefix}.invitees`, one JSON message each, with `Nats-Msg-Id` = the
//! file's hash and the row's line (so publishing it again within
//! `nats.dedup_window` stores nothing twice). The streams are created
//! first when missing, as `nats setup` does, so rows may be published
//! while the daemon is down. JetStream unreachable: an error and exit 1;
//! what was published before stays.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use mydex_connector::broker::connect::FirstConnect;
use mydex_connector::broker::{Broker, RowsPublished, Topic, file_id};
use mydex_connector::config::{ConfigError, Settings};

use crate::commands::enqueue::DaemonCheck;

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
    let subject = broker.subject(Topic::Invitees);
    let mut check = DaemonCheck::new(settings)?;
    let (mut total, mut bad) = (RowsPublished::default(), 0u64);
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let (good, refused) = mydex_connector::intake::checked_rows(
            settings,
            f,
            campaign,
            &mut std::io::stderr(),
            &mut |_| {},
            Some(&mut check),
        )?;
        bad += refused.len() as u64;
        let id = file_id(
            &bytes,
            &format!("invitees campaign={}", campaign.unwrap_or("")),
        );
        let rows = good
            .into_iter()
            .map(|(line, row)| Ok((line, serde_json::to_vec(&row)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let done = block(broker.publish_rows(Topic::Invitees, &id, rows, &mut |_| {}))
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
        "published {} invitees on {subject} ({} already published); {bad} rows rejected",
        total.published, total.duplicates
    );
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
