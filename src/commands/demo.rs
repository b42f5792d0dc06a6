//! `mydex-connector demo`: the whole flow on one machine, no config, no
//! network. It starts the sandbox, writes a config whose mail goes to a
//! directory outbox, starts the daemon, enqueues a few invitees, completes
//! their journeys through the sandbox and prints what happened.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use mydex_connector::app::daemon::Daemon;
use mydex_connector::config::Settings;
use mydex_connector::store::{Invitation, State};

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Leave everything running, with a fresh link to open in a browser.
    #[arg(long)]
    pub keep_running: bool,
    /// Where to put the demo's files (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const SAMPLE: &str = "email,name,external_ref,tariff\n\
ada@example.com,Ada Lovelace,MTR-0001,green\n\
alan@example.com,Alan Turing,MTR-0002,standard\n\
grace@example.com,Grace Hopper,MTR-0003,green\n\
katherine@example.com,Katherine Johnson,MTR-0004,economy7\n\
tim@example.com,Tim Berners-Lee,MTR-0005,standard\n";

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = demo_dir(args.dir)?;
    println!("mydex-connector demo: working in {}", dir.display());

    // 1. The Mydex stand-in.
    let ports = Ports {
        callback: free_port()?,
        admin: free_port()?,
    };
    let (sandbox, facts) = start_sandbox(ports.callback).await?;
    println!("sandbox (local Mydex stand-in): {}", facts.url);

    // 2. A config of our own, secrets in files as in production.
    let outbox = dir.join("outbox");
    let config_path = write_config(&dir, &facts, ports, &outbox)?;
    let settings = Settings::load(&config_path)?;

    // 3. The daemon, in this process.
    let daemon = mydex_connector::app::daemon::start(settings).await?;
    println!(
        "daemon: callback on {}, admin API on http://{}",
        daemon.callback_addr, daemon.admin_addr
    );

    // 4. Invitees, through the queue as an operator would.
    let good = enqueue_sample(&daemon, &dir)?;
    let sent = wait_for(
        &daemon.store,
        good,
        |s| s == State::Sent,
        Duration::from_secs(60),
    )
    .await?;
    print_mailed(&sent, &outbox);

    // 5. Each member follows their link (the sandbox plays the browser).
    complete_journeys(&facts.url, &sent).await?;
    print_connected(&daemon, good).await?;

    // 6. Readings into each member's PDS.
    super::demo_readings::deliver_sample(&daemon, &dir, &facts.url).await?;

    // 7. The connection moves to version 2; members update.
    let daemon =
        super::demo_version::version_two(daemon, &config_path, &facts.url, &outbox).await?;

    if args.keep_running {
        // Each member has two invitations by now: connect and update.
        keep_running(&daemon, &dir, 2 * good, &config_path).await?;
    }
    daemon.shutdown().await?;
    sandbox.shutdown().await;
    println!("\ndemo finished; files kept in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The directory asked for (created), or a new temporary one that is kept.
fn demo_dir(asked: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match asked {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            d
        }
        None => tempfile::Builder::new()
            .prefix("mydex-connector-demo-")
            .tempdir()?
            .keep(),
    })
}

/// The daemon's ports, chosen before either server starts.
#[derive(Clone, Copy)]
struct Ports {
    callback: u16,
    admin: u16,
}

/// What the daemon's configuration needs from the sandbox.
struct SandboxFacts {
    url: String,
    client_id: String,
    client_secret: String,
    nid: String,
}

const CONNECTION_TOKEN: &str = "demo-connection-token";

/// Start the sandbox on a free port, calling back to `cb_port`.
async fn start_sandbox(cb_port: u16) -> anyhow::Result<(mydex_sandbox::Sandbox, SandboxFacts)> {
    let sandbox_args = mydex_sandbox::SandboxArgs {
        listen: "127.0.0.1:0".parse()?,
        callback_url: format!("http://127.0.0.1:{cb_port}/mydex/callback"),
        connection_token: CONNECTION_TOKEN.into(),
        ..Default::default()
    };
    let client_id = sandbox_args.client_id.clone();
    let client_secret = sandbox_args.client_secret.clone();
    let nid = sandbox_args.nid.clone();
    let sandbox = mydex_sandbox::start(sandbox_args)
        .await
        .context("starting the sandbox")?;
    let facts = SandboxFacts {
        url: sandbox.url(),
        client_id,
        client_secret,
        nid,
    };
    Ok((sandbox, facts))
}

/// Write the secrets and `mydex-connector.toml` into `dir`; the config's
/// path.
fn write_config(
    dir: &Path,
    facts: &SandboxFacts,
    ports: Ports,
    outbox: &Path,
) -> anyhow::Result<PathBuf> {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    write_secret(&secrets.join("client_secret"), &facts.client_secret)?;
    write_secret(&secrets.join("connection_token"), CONNECTION_TOKEN)?;
    let mut admin_token = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut admin_token);
    write_secret(&secrets.join("admin_token"), &hex::encode(admin_token))?;
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    write_secret(&secrets.join("store.key"), &hex::encode(key))?;
    let config_path = dir.join("mydex-connector.toml");
    let (sbx, client_id, nid) = (&facts.url, &facts.client_id, &facts.nid);
    let (cb_port, admin_port) = (ports.callback, ports.admin);
    std::fs::write(
        &config_path,
        format!(
            r#"# Written by `mydex-connector demo`.
[mydex]
environment = "sandbox"
api_url = "{sbx}"
token_url = "{sbx}/oauth2/token"
client_id = "{client_id}"
client_secret_file = "secrets/client_secret"
connection_nid = "{nid}"
connection_token_file = "secrets/connection_token"
# The sandbox serves this page (a stand-in of my.mydex.org), so a journey
# in a browser ends on a confirmation, offline.
return_to = "{sbx}/my"
connection_version = 1

[callback]
listen = "127.0.0.1:{cb_port}"
public_url = "http://127.0.0.1:{cb_port}"
path = "/mydex/callback"

[admin]
listen = "127.0.0.1:{admin_port}"
token_file = "secrets/admin_token"

[smtp]
url = "file://{outbox}"
from = "Example Energy <connect@example.com>"

[store]
path = "db"
key_file = "secrets/store.key"

[queue]
dir = "queue"
poll_interval = "200ms"

[invitations]
concurrency = 8

[delivery]
dir = "readings"

[organisation]
name = "Example Energy"
website = "https://example.com"
contact = "help@example.com"
privacy_url = "https://example.com/privacy"

[[campaign]]
name = "meters-demo"
subject = "Connect your smart meter {{{{ external_ref }}}} to your Personal Data Store"
rate = "unlimited"
"#,
            outbox = outbox.display()
        ),
    )?;
    Ok(config_path)
}

/// Put the sample invitees through the queue; how many were good.
fn enqueue_sample(daemon: &Daemon, dir: &Path) -> anyhow::Result<usize> {
    let csv = dir.join("invitees.csv");
    std::fs::write(&csv, SAMPLE)?;
    let (good, bad) = mydex_connector::intake::enqueue_file(
        &daemon.settings,
        &csv,
        None,
        &mut std::io::stderr(),
    )?;
    println!(
        "enqueued {good} invitees from {} ({bad} rejected)",
        csv.display()
    );
    Ok(good as usize)
}

fn print_mailed(sent: &[Invitation], outbox: &Path) {
    println!("\n{} invitations mailed:", sent.len());
    for inv in sent {
        let file = find_mail(outbox, inv.invitee.email.as_str())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(not found)".into());
        println!(
            "  {:<24} link {}\n  {:<24} mail {}",
            inv.invitee.email.as_str(),
            inv.link.as_deref().unwrap_or("?"),
            "",
            file
        );
    }
}

/// Each invitee registers and consents through the sandbox's shortcut.
async fn complete_journeys(sbx: &str, sent: &[Invitation]) -> anyhow::Result<()> {
    let http = super::admin_client::loopback_client(std::time::Duration::from_secs(60))?;
    for (i, inv) in sent.iter().enumerate() {
        let mydexid = format!("demomember{}", i + 1);
        super::demo_journey::complete(
            &http,
            sbx,
            inv.link.as_deref(),
            &mydexid,
            inv.invitee.email.as_str(),
        )
        .await?;
    }
    Ok(())
}

/// Wait for `good` members to connect, then print them and the status counts.
async fn print_connected(daemon: &Daemon, good: usize) -> anyhow::Result<()> {
    let connected = wait_for(
        &daemon.store,
        good,
        |s| s == State::Connected,
        Duration::from_secs(60),
    )
    .await?;
    println!(
        "\n{} members connected and stored (connection keys encrypted at rest):",
        connected.len()
    );
    daemon
        .store
        .each_member(|m| {
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
            ControlFlow::Continue(())
        })
        .await?;
    let status =
        mydex_connector::server::admin::status_json(&daemon.store, 1, &["meters-demo".into()], 0)
            .await?;
    let status: mydex_connector::admin_api::status::StatusDoc = serde_json::from_value(status)?;
    println!("\nstatus: {}", super::status::one_line(&status));
    Ok(())
}

/// `--keep-running`: invite "you" (`before` invitations are sent or
/// connected already), print your link, and wait for a signal.
async fn keep_running(
    daemon: &Daemon,
    dir: &Path,
    before: usize,
    config_path: &Path,
) -> anyhow::Result<()> {
    let extra = dir.join("you.csv");
    std::fs::write(
        &extra,
        "email,name,external_ref\nyou@example.com,,MTR-YOURS\n",
    )?;
    mydex_connector::intake::enqueue_file(&daemon.settings, &extra, None, &mut std::io::stderr())?;
    let all = wait_for(
        &daemon.store,
        before + 1,
        |s| s == State::Sent || s == State::Connected,
        Duration::from_secs(60),
    )
    .await?;
    if let Some(inv) = all
        .iter()
        .find(|i| i.invitee.email.as_str() == "you@example.com")
    {
        println!(
            "\nStill running. Open this one-time link in a browser to register and connect as a member:\n\n  {}\n",
            inv.link.as_deref().unwrap_or("?")
        );
        // The mail that carries it, like the others' (its QR code too).
        let mail = find_mail(&dir.join("outbox"), "you@example.com");
        println!(
            "  mail {}\n",
            mail.map(|p| p.display().to_string())
                .unwrap_or_else(|| "(not found in the outbox)".into())
        );
    }
    // The binary as it runs (after `cargo run` it is not on PATH), so the
    // hint works as printed.
    let exe = shell_word(&super::sweep::exe());
    let config = shell_word(&config_path.display().to_string());
    println!("config: {config}\nstatus: {exe} status --config {config}\nCtrl-C to stop.");
    tokio::select! {
        _ = mydex_connector::app::daemon::wait_for_signal() => return Ok(()),
        seen = watch_connect(&daemon.store, "you@example.com") => seen?,
    }
    mydex_connector::app::daemon::wait_for_signal().await;
    Ok(())
}

/// Wait until the invitation to `email` is connected (the member went
/// through the journey in the browser), then say so.
async fn watch_connect(store: &mydex_connector::store::Store, email: &str) -> anyhow::Result<()> {
    loop {
        let mut connected = None;
        store
            .each_invitation(|inv| {
                if inv.invitee.email.as_str() == email && inv.state == State::Connected {
                    connected = Some(inv);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })
            .await?;
        if let Some(inv) = connected {
            println!(
                "\n{email} connected in the browser: connection {} (its key is stored, encrypted). Still running; Ctrl-C to stop.",
                inv.connection_id.as_deref().unwrap_or("?")
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn write_secret(path: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Wait until at least `n` invitations satisfy `pred`; return those.
async fn wait_for(
    store: &mydex_connector::store::Store,
    n: usize,
    pred: impl Fn(State) -> bool,
    limit: Duration,
) -> anyhow::Result<Vec<mydex_connector::store::Invitation>> {
    let start = Instant::now();
    loop {
        let mut matching = Vec::new();
        store
            .each_invitation(|inv| {
                if pred(inv.state) {
                    matching.push(inv);
                }
                ControlFlow::Continue(())
            })
            .await?;
        if matching.len() >= n {
            return Ok(matching);
        }
        if start.elapsed() > limit {
            let mut states = Vec::new();
            store
                .each_invitation(|inv| {
                    states.push(format!(
                        "{} {}{}",
                        inv.invitee.email,
                        inv.state.as_str(),
                        inv.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                    ));
                    ControlFlow::Continue(())
                })
                .await?;
            bail!(
                "timed out: {} of {n} invitations reached the expected state: {}",
                matching.len(),
                states.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn find_mail(outbox: &Path, to: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(outbox).ok()? {
        let path = entry.ok()?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("eml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        if text
            .lines()
            .take_while(|l| !l.is_empty())
            .any(|l| l.starts_with("To:") && l.contains(to))
        {
            return Some(path);
        }
    }
    None
}

/// `word` as one shell word: as it is when it needs no quoting, else in
/// single quotes.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
