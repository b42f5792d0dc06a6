//! The demo's second act: once the members are connected, a
//! readings file goes through `deliver` as an operator would place it, the
//! daemon delivers three readings per member into their PDS, and the demo
//! prints them as the sandbox holds them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use mydex_connector::app::daemon::Daemon;

/// Readings per member.
const PER_MEMBER: usize = 3;

pub async fn deliver_sample(daemon: &Daemon, dir: &Path, sandbox_url: &str) -> anyhow::Result<()> {
    let mut members = Vec::new();
    daemon
        .store
        .each_member(|m| {
            if let Some(id) = m.mydexid {
                members.push(id.to_string());
            }
            std::ops::ControlFlow::Continue(())
        })
        .await?;
    let mut text = String::new();
    for id in &members {
        for day in 1..=PER_MEMBER {
            let row = serde_json::json!({
                "mydexid": id,
                "external_id": format!("{id}-2026-01-0{day}"),
                "read_at": format!("2026-01-0{day}T00:00:00Z"),
                "kwh": format!("{}.{}", 7 + day, day * 3),
            });
            text += &format!("{row}\n");
        }
    }
    let file = dir.join("readings.jsonl");
    std::fs::write(&file, text)?;
    let (good, _) = mydex_connector::intake::readings::deliver_file_with_progress(
        &daemon.settings,
        &file,
        &mut std::io::stderr(),
        &mut |_| {},
    )?;
    println!("\nplaced {good} readings for delivery ({})", file.display());
    let start = Instant::now();
    loop {
        let c = daemon.store.record_counts().await?;
        if c.delivered >= good {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!(
                "timed out: {} of {good} readings delivered ({c:?})",
                c.delivered
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{good} readings delivered into {} members' Personal Data Stores, as the sandbox holds them:",
        members.len()
    );
    let http = super::admin_client::loopback_client(Duration::from_secs(30))?;
    for id in &members {
        let pds: serde_json::Value = http
            .get(format!("{sandbox_url}/_sandbox/pds/{id}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for row in pds["datasets"]["ds_energy_readings"]
            .as_array()
            .into_iter()
            .flatten()
        {
            println!(
                "  {:<14} ds_energy_readings id {:<4} external_id {:<28} read_at {} kwh {}",
                id,
                row["id"].as_str().unwrap_or("?"),
                row["external_id"].as_str().unwrap_or("?"),
                row["read_at"].as_str().unwrap_or("?"),
                row["kwh"].as_str().unwrap_or("?"),
            );
        }
    }
    Ok(())
}
