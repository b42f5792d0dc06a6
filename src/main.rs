//! The command line: parse, dispatch, map the outcome to an exit code
//! (0 ok, 2 usage, 78 configuration error, 1 anything else).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mydex_connector::config::{ConfigError, LogFormat, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "mydex-connector",
    version,
    about = "Connect people's Mydex Personal Data Stores, headless"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate invitee files (CSV with header, or JSON Lines) and place the
    /// good rows in the queue directory atomically; bad rows are reported.
    Enqueue {
        #[arg(long, short)]
        config: PathBuf,
        /// Campaign for rows that name none (default: the first configured).
        #[arg(long)]
        campaign: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Ask the running daemon for counts.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// Print the JSON document only.
        #[arg(long)]
        json: bool,
    },
    /// Run a sweep now in the running daemon (unless one is running).
    Sweep {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(value_enum)]
        job: SweepJob,
    },
    /// Pause or resume a campaign in the running daemon.
    Campaign {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(value_enum)]
        action: CampaignAction,
        name: String,
        /// Why (kept with the pause, shown in status).
        #[arg(long)]
        reason: Option<String>,
    },
    /// A local stand-in for the Mydex sandbox.
    Sandbox(Box<mydex_connector::sandbox::SandboxArgs>),
    /// The whole flow on this machine with no setup: sandbox, daemon, mail outbox.
    Demo(mydex_connector::demo::DemoArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SweepJob {
    Version,
    Expiry,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CampaignAction {
    Pause,
    Resume,
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn load(path: &std::path::Path) -> anyhow::Result<Settings> {
    Ok(Settings::load(path)?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result: anyhow::Result<ExitCode> = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => {
                init_logging("info", LogFormat::Text);
                let settings = load(&config)?;
                init_logging(&settings.log.level, settings.log.format);
                mydex_connector::daemon::run(settings).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::CheckConfig { config } => {
                init_logging("warn", LogFormat::Text);
                let settings = load(&config)?;
                mydex_connector::mail::Templates::load(&settings.campaigns).map_err(|e| {
                    ConfigError {
                        file: config.display().to_string(),
                        key: format!("campaign {:?}.{}", e.campaign, e.key),
                        message: e.message.clone(),
                    }
                })?;
                print!("{}", settings.redacted());
                eprintln!("configuration OK: {}", config.display());
                Ok(ExitCode::SUCCESS)
            }
            Command::Enqueue {
                config,
                campaign,
                files,
            } => {
                init_logging("warn", LogFormat::Text);
                let settings = load(&config)?;
                let (mut good, mut bad) = (0, 0);
                for f in &files {
                    let (g, b) = mydex_connector::intake::enqueue_file(
                        &settings,
                        f,
                        campaign.as_deref(),
                        &mut std::io::stderr(),
                    )?;
                    eprintln!("{}: {g} rows queued, {b} rejected", f.display());
                    good += g;
                    bad += b;
                }
                eprintln!(
                    "queued {good} invitees into {}; {bad} rows rejected",
                    settings.queue.dir.display()
                );
                Ok(if bad > 0 {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                })
            }
            Command::Status { config, json } => {
                init_logging("warn", LogFormat::Text);
                let settings = load(&config)?;
                mydex_connector::status::print(&settings, json).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Sweep { config, job } => {
                init_logging("warn", LogFormat::Text);
                let settings = load(&config)?;
                let name = match job {
                    SweepJob::Version => "version",
                    SweepJob::Expiry => "expiry",
                };
                let doc = mydex_connector::admin_client::post(
                    &settings,
                    &format!("/sweeps/{name}"),
                    None,
                )
                .await?;
                println!("{doc}");
                Ok(ExitCode::SUCCESS)
            }
            Command::Campaign {
                config,
                action,
                name,
                reason,
            } => {
                init_logging("warn", LogFormat::Text);
                let settings = load(&config)?;
                let (verb, body) = match action {
                    CampaignAction::Pause => {
                        ("pause", Some(serde_json::json!({ "reason": reason })))
                    }
                    CampaignAction::Resume => ("resume", None),
                };
                let path = format!(
                    "/campaigns/{}/{verb}",
                    percent_encoding::utf8_percent_encode(
                        &name,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                );
                let doc = mydex_connector::admin_client::post(&settings, &path, body).await?;
                println!("{doc}");
                Ok(ExitCode::SUCCESS)
            }
            Command::Sandbox(args) => {
                init_logging("info", LogFormat::Text);
                mydex_connector::sandbox::run(*args).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Demo(args) => {
                init_logging("warn", LogFormat::Text);
                mydex_connector::demo::run(args).await?;
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(78)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
