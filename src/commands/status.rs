//! `mydex-connector status`: ask the running daemon's admin API for its
//! counts and print them as a table, or as the JSON document itself.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use crate::commands::config_path::ConfigPath;
use mydex_connector::config::Settings;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print the JSON document only.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: StatusArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    print(&settings, args.json).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn print(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let doc = fetch(settings).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    print_store(&doc);
    print_invitations(&doc);
    print_members(&doc);
    print_callbacks(&doc);
    print_sweeps(&doc);
    println!("connection version {}", doc["connection_version"]);
    Ok(())
}

/// The daemon's `/status` document.
async fn fetch(settings: &Settings) -> anyhow::Result<Value> {
    let url = format!("{}/status", super::admin_client::admin_base(settings));
    let doc: Value = super::admin_client::loopback_client(std::time::Duration::from_secs(10))?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon at {url} (is it running?)"))?
        .error_for_status()?
        .json()
        .await
        .context("the daemon's answer is not JSON")?;
    Ok(doc)
}

/// A store that cannot answer, first: the counts below are then the last
/// ones it gave.
fn print_store(doc: &Value) {
    if doc["store"]["ok"] == false {
        println!(
            "store cannot answer: {} (counts below as of {})",
            doc["store"]["error"].as_str().unwrap_or("unknown error"),
            doc["store"]["counts_as_of"].as_str().unwrap_or("unknown")
        );
    }
}

/// Invitations by state, then each campaign's progress.
fn print_invitations(doc: &Value) {
    println!("invitations");
    for state in [
        "queued",
        "link_issued",
        "sent",
        "connected",
        "expired",
        "failed",
    ] {
        println!(
            "  {state:<12} {:>10}",
            doc["invitations"][state].as_u64().unwrap_or(0)
        );
    }
    if let Some(campaigns) = doc["campaign_progress"].as_object() {
        println!(
            "campaigns{:>22} {:>8} {:>8} {:>10} {:>8} {:>8}  rate",
            "total", "queued", "sent", "connected", "expired", "failed"
        );
        for (name, c) in campaigns {
            let n = |s: &str| c["invitations"][s].as_u64().unwrap_or(0);
            let total = c["total"].as_u64().unwrap_or(0);
            let done = n("connected");
            println!(
                "  {name:<20} {total:>8} {:>8} {:>8} {:>10} {:>8} {:>8}  {}  ({}% connected)",
                n("queued") + n("link_issued"),
                n("sent"),
                done,
                n("expired"),
                n("failed"),
                c["rate"].as_str().unwrap_or("?"),
                (done * 100).checked_div(total).unwrap_or(0),
            );
        }
    }
}

fn print_members(doc: &Value) {
    println!("members");
    for k in ["total", "outdated", "disconnected"] {
        println!("  {k:<12} {:>10}", doc["members"][k].as_u64().unwrap_or(0));
    }
    if let Some(versions) = doc["members_by_version"].as_object() {
        for (v, n) in versions {
            println!("  version {v:<4} {:>10}", n.as_u64().unwrap_or(0));
        }
    }
}

fn print_callbacks(doc: &Value) {
    println!("callbacks");
    for k in ["unmatched", "identify", "notification"] {
        println!(
            "  {k:<12} {:>10}",
            doc["callbacks"][k].as_u64().unwrap_or(0)
        );
    }
    let quarantined = doc["callbacks"]["quarantined"].as_u64().unwrap_or(0);
    if quarantined > 0 {
        println!(
            "  {:<12} {quarantined:>10}  (kept without effect: `mydex-connector callbacks list --quarantined`)",
            "quarantined"
        );
    }
}

/// What the version sweep found: Mydex refusing us, or its brake.
fn print_sweeps(doc: &Value) {
    let version = &doc["sweeps"]["version"];
    if let Some(d) = version["connection_denied"].as_object() {
        println!(
            "MYDEX REFUSES OUR CONNECTION: {}",
            d.get("reason").and_then(|r| r.as_str()).unwrap_or("?")
        );
    }
    if let Some(b) = version["brake"].as_object() {
        let held = b.get("held").and_then(|h| h.as_u64()).unwrap_or(0);
        if b.get("engaged").and_then(|e| e.as_bool()) == Some(true) {
            println!(
                "SWEEP BRAKE ENGAGED: {held} members held ({}); `sweep confirm` disconnects them",
                b.get("reason").and_then(|r| r.as_str()).unwrap_or("?")
            );
        } else {
            println!("sweep: {held} members found revoked, held until the sweep has judged them");
        }
    }
}
