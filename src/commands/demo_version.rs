//! The demo's last act: the Dedicated Connection moves to
//! version 2 and the members follow, as in production. The sandbox is told
//! its connection is at version 2, the operator's config says so too and
//! the daemon restarts on the same store; `POST /sweeps/version` (what
//! `sweep version` sends) finds every member outdated and mails each an
//! update invitation; each member follows the mailed link; the demo waits
//! until the daemon has stored the update callbacks and prints the members
//! at their new version.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mydex_connector::app::StartError;
use mydex_connector::app::daemon::Daemon;
use mydex_connector::config::Settings;
use mydex_connector::store::StoreError;
use mydex_connector::store::{Invitation, Kind, Member, State};

/// The version the connection moves to.
const NEXT: u32 = 2;
/// How long each wait may take on a loaded machine.
const LIMIT: Duration = Duration::from_secs(60);

/// Run the act on `daemon`; the daemon now running (restarted on the new
/// configuration, same store).
pub async fn version_two(
    daemon: Daemon,
    config_path: &Path,
    sandbox_url: &str,
    outbox: &Path,
) -> anyhow::Result<Daemon> {
    let http = super::admin_client::loopback_client(LIMIT)?;
    http.put(format!("{sandbox_url}/_sandbox/settings"))
        .json(&serde_json::json!({ "connection_version": NEXT }))
        .send()
        .await?
        .error_for_status()
        .context("moving the sandbox's connection to version 2")?;
    let daemon = restart_at_next_version(daemon, config_path).await?;
    println!(
        "\nthe connection moved to version {NEXT} (sandbox and config); daemon restarted on the same store"
    );

    let answer = super::admin_client::post(&daemon.settings, "/sweeps/version", None).await?;
    tracing::debug!(%answer, "version sweep asked for");
    let updates = poll("update invitations mailed", async || {
        let sent = update_invitations(&daemon, |s| s == State::Sent).await?;
        Ok((sent.len() >= member_count(&daemon).await?).then_some(sent))
    })
    .await
    .map(|mut u| {
        u.sort_by(|a, b| a.invitee.email.as_str().cmp(b.invitee.email.as_str()));
        u
    })?;
    println!(
        "version sweep: {} members on version 1, each mailed an update invitation:",
        updates.len()
    );
    for inv in &updates {
        let mail = mail_with_link(outbox, inv)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(not found)".into());
        println!(
            "  {:<24} link {}\n  {:<24} mail {mail}",
            inv.invitee.email.as_str(),
            inv.link.as_deref().unwrap_or("?"),
            ""
        );
    }

    complete_updates(&daemon, &http, sandbox_url, &updates).await?;
    let members = poll("update callbacks stored", async || {
        let all = members(&daemon).await?;
        Ok(all.iter().all(|m| m.version == NEXT).then_some(all))
    })
    .await?;
    sandbox_agrees(&http, sandbox_url, members.len()).await?;
    print_updated(&daemon, &members).await?;
    Ok(daemon)
}

/// Write `connection_version = 2` into the config, stop the daemon and
/// start it again on the same store, as an operator would.
async fn restart_at_next_version(daemon: Daemon, config_path: &Path) -> anyhow::Result<Daemon> {
    let text = std::fs::read_to_string(config_path)?;
    let from = "connection_version = 1\n";
    if !text.contains(from) {
        bail!("{} has no `{from}`", config_path.display());
    }
    std::fs::write(
        config_path,
        text.replacen(from, &format!("connection_version = {NEXT}\n"), 1),
    )?;
    daemon.shutdown().await?;
    // The old daemon's last tasks let go of the store as they end.
    let start = Instant::now();
    loop {
        let settings = Settings::load(config_path)?;
        match mydex_connector::app::daemon::start(settings).await {
            Err(StartError::OpenStore(_, StoreError::InUse { .. })) if start.elapsed() < LIMIT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Each member follows their update link (the sandbox plays the browser)
/// with the MydexID they registered.
async fn complete_updates(
    daemon: &Daemon,
    http: &reqwest::Client,
    sandbox_url: &str,
    updates: &[Invitation],
) -> anyhow::Result<()> {
    let members = members(daemon).await?;
    for inv in updates {
        let email = inv.invitee.email.as_str();
        let Some(mydexid) = members
            .iter()
            .find(|m| m.email.as_deref() == Some(email))
            .and_then(|m| m.mydexid.as_ref())
        else {
            bail!("no connected member with the email {email}");
        };
        super::demo_journey::complete(
            http,
            sandbox_url,
            inv.link.as_deref(),
            &mydexid.to_string(),
            email,
        )
        .await?;
    }
    Ok(())
}

/// The sandbox too holds `n` members, every one at the new version.
async fn sandbox_agrees(http: &reqwest::Client, sandbox_url: &str, n: usize) -> anyhow::Result<()> {
    let state: serde_json::Value = http
        .get(format!("{sandbox_url}/_sandbox/state"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let members = state["members"].as_array().cloned().unwrap_or_default();
    let at_next = members
        .iter()
        .filter(|m| m["version"] == u64::from(NEXT))
        .count();
    if members.len() != n || at_next != n {
        bail!(
            "the sandbox holds {} members, {at_next} at version {NEXT}; the daemon {n}",
            members.len()
        );
    }
    Ok(())
}

/// The summary: every member at the new version, and the status counts.
async fn print_updated(daemon: &Daemon, members: &[Member]) -> anyhow::Result<()> {
    println!(
        "\n{} members updated to version {NEXT} (update callbacks stored):",
        members.len()
    );
    for m in members {
        println!(
            "  {:<24} mydexid {:<14} connection_id {:<12} version {}",
            m.email.as_deref().unwrap_or("?"),
            m.mydexid
                .as_ref()
                .map(|x| x.to_string())
                .unwrap_or_default(),
            m.connection_id,
            m.version
        );
    }
    let status = mydex_connector::server::admin::status_json(
        &daemon.store,
        NEXT,
        &["meters-demo".into()],
        0,
    )
    .await?;
    let status: mydex_connector::admin_api::status::StatusDoc = serde_json::from_value(status)?;
    println!("\nstatus: {}", super::status::one_line(&status));
    Ok(())
}

/// Every member (the demo's few).
async fn members(daemon: &Daemon) -> anyhow::Result<Vec<Member>> {
    let mut all = Vec::new();
    daemon
        .store
        .each_member(|m| {
            all.push(m);
            ControlFlow::Continue(())
        })
        .await?;
    Ok(all)
}

async fn member_count(daemon: &Daemon) -> anyhow::Result<usize> {
    Ok(daemon.store.member_count().await?)
}

/// The update invitations (to version 2) whose state satisfies `pred`.
async fn update_invitations(
    daemon: &Daemon,
    pred: impl Fn(State) -> bool,
) -> anyhow::Result<Vec<Invitation>> {
    let mut out = Vec::new();
    daemon
        .store
        .each_invitation(|inv| {
            if matches!(inv.kind, Kind::Update { version } if version == NEXT) && pred(inv.state) {
                out.push(inv);
            }
            ControlFlow::Continue(())
        })
        .await?;
    Ok(out)
}

/// The mail in the outbox whose text carries the invitation's link.
fn mail_with_link(outbox: &Path, inv: &Invitation) -> Option<PathBuf> {
    let link = inv.link.as_deref()?;
    std::fs::read_dir(outbox)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("eml"))
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.lines().any(|l| l.trim_end() == link)))
}

/// Poll `check` every 100 ms until it gives a value, for at most `LIMIT`.
async fn poll<T>(
    what: &str,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if start.elapsed() > LIMIT {
            bail!("timed out after {LIMIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
