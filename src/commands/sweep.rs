//! `mydex-connector sweep version|expiry|confirm`: ask the running daemon to
//! sweep now (and with `--wait`, follow the run with a progress bar to its
//! result), or to release the version sweep's brake.

use std::process::ExitCode;
use std::time::Duration;

use mydex_connector::admin_api::lifecycle::{
    BrakeReleased, ErrorAnswer, SweepTrigger, SweepTriggered,
};
use mydex_connector::admin_api::status::{StatusDoc, SweepStatus};
use mydex_connector::config::Settings;
use mydex_connector::store::SweepRun;

use super::admin_client::parse;
use super::colour;
use super::human::{count, counted, words};
use super::status::fetch_doc;
use crate::commands::config_path::ConfigPath;

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    #[arg(value_enum)]
    job: SweepJob,
    /// Follow the sweep to its end (a progress bar on a terminal), then
    /// print its result.
    #[arg(long, conflicts_with = "json")]
    wait: bool,
    /// Print the daemon's JSON answer instead of a sentence.
    #[arg(long)]
    json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum SweepJob {
    Version,
    Expiry,
    Confirm,
}

pub async fn run(args: SweepArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    let (path, job) = match args.job {
        SweepJob::Version => ("/sweeps/version", "version"),
        SweepJob::Expiry => ("/sweeps/expiry", "expiry"),
        SweepJob::Confirm => ("/sweep/confirm", "confirm"),
    };
    let before = match args.wait {
        true => run_number(&fetch_doc(&settings).await?, job),
        false => 0,
    };
    let doc = super::admin_client::post(&settings, path, None).await?;
    if args.json {
        println!("{doc}");
        return Ok(ExitCode::SUCCESS);
    }
    if job == "confirm" {
        confirmed(doc)?;
        return Ok(ExitCode::SUCCESS);
    }
    let t: SweepTriggered = parse(doc, path)?;
    match (t.trigger, args.wait) {
        (SweepTrigger::ShuttingDown, _) => {
            println!("the daemon is shutting down: no {job} sweep was started");
            return Ok(ExitCode::from(1));
        }
        (SweepTrigger::Started, false) => println!(
            "{job} sweep started; follow it with `{} status --config {}`, or run `sweep {job} --wait`",
            exe(),
            settings.source.display()
        ),
        (SweepTrigger::AlreadyRunning, false) => {
            println!("a {job} sweep is already running; `sweep {job} --wait` follows it")
        }
        (trigger, true) => {
            // A run already under way is the one to follow.
            let after = if trigger == SweepTrigger::AlreadyRunning {
                before.saturating_sub(1)
            } else {
                before
            };
            let (run, doc) = follow(&settings, job, after).await?;
            println!("{}", result_line(job, &run, &doc, &settings.source));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The running executable, as a command that works as printed.
pub fn exe() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "mydex-connector".into())
}

fn sweep_of<'a>(doc: &'a StatusDoc, job: &str) -> Option<&'a SweepStatus> {
    doc.sweeps.as_ref().and_then(|s| s.get(job))
}

fn run_number(doc: &StatusDoc, job: &str) -> u64 {
    sweep_of(doc, job).map_or(0, |s| s.run)
}

/// Poll the status until a run after `after` has finished, drawing its
/// progress (checked of the members or invitations it goes through).
async fn follow(
    settings: &Settings,
    job: &str,
    after: u64,
) -> anyhow::Result<(SweepRun, StatusDoc)> {
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {human_pos}/{human_len} ({elapsed})",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(format!("{job} sweep"));
    loop {
        let doc = fetch_doc(settings).await?;
        let total = match job {
            "version" => doc.members.total,
            _ => doc.invitations.values().sum(),
        };
        let s = sweep_of(&doc, job);
        if let Some(last) = s.and_then(|s| s.last.as_ref()).filter(|r| r.run > after) {
            bar.set_length(total.max(last.checked));
            bar.set_position(last.checked);
            if s.is_some_and(|s| !s.running) && last.finished_ms.is_some() {
                bar.finish_and_clear();
                return Ok((last.clone(), doc));
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `version sweep run 3 finished in 2 seconds: 20 members checked, ...`.
pub fn result_line(job: &str, r: &SweepRun, doc: &StatusDoc, config: &std::path::Path) -> String {
    let how = match &r.stopped {
        Some(why) => format!("{} ({why})", colour::alert("stopped")),
        None => "finished".to_string(),
    };
    let mut line = format!(
        "{job} sweep run {} {how} in {}: {} checked, {} outdated, {} invited, {} disconnected, {} held by the brake, {}",
        r.run,
        words(Duration::from_millis(r.duration_ms)),
        count(r.checked),
        count(r.outdated),
        count(r.invited),
        count(r.disconnected),
        count(r.held),
        counted(r.errors, "error", "errors"),
    );
    let engaged = sweep_of(doc, job)
        .and_then(|s| s.brake.clone().flatten())
        .filter(|b| b.engaged);
    if let Some(b) = engaged {
        line.push_str(&format!(
            "\n{}: {} held; `{} sweep confirm --config {}` disconnects them",
            colour::alert("SWEEP BRAKE ENGAGED"),
            counted(b.held, "member", "members"),
            exe(),
            config.display()
        ));
    }
    line
}

/// `sweep confirm`'s answer: what was released, or why nothing was.
fn confirmed(doc: serde_json::Value) -> anyhow::Result<()> {
    if let Ok(e) = serde_json::from_value::<ErrorAnswer>(doc.clone()) {
        println!("nothing confirmed: {}", e.error);
        return Ok(());
    }
    let r: BrakeReleased = parse(doc, "/sweep/confirm")?;
    println!(
        "brake released: {} released, {} disconnected, {} invited again",
        counted(r.released, "member", "members"),
        count(r.disconnected),
        count(r.invited)
    );
    Ok(())
}
