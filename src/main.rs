//! The command line: parse, dispatch, map the outcome to an exit code
//! (0 ok, 2 usage, 78 configuration error — which includes a store key that
//! does not open the store, a key rotation left unfinished, and a key that
//! `rotate-key` refuses — 1 anything else).

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mydex_connector::config::{ConfigError, LogFormat, Settings};
use mydex_connector::store::StoreError;

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
    /// Run a sweep now in the running daemon (unless one is running); or
    /// `confirm`: release the version sweep's brake, disconnecting the
    /// members it holds (re-inviting as configured).
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
    /// Find, inspect and retry invitations (through the running daemon).
    Invitations {
        #[command(subcommand)]
        command: InvitationsCommand,
    },
    /// Callbacks Mydex sent, kept as they arrived; quarantined ones replayed
    /// after an upgrade or a config fix (through the running daemon).
    Callbacks {
        #[command(subcommand)]
        command: CallbacksCommand,
    },
    /// The member mapping: external ref → MydexID, uid, connection id, version.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Re-encrypt the store under a new key (the daemon must be stopped).
    /// Rerun it with the same new key if it was interrupted.
    RotateKey {
        #[arg(long, short)]
        config: PathBuf,
        /// The new 32-byte key (raw, or 64 hex characters), like store.key_file.
        #[arg(long)]
        new_key_file: PathBuf,
    },
    /// A local stand-in for the Mydex sandbox.
    #[cfg(feature = "sandbox")]
    Sandbox(Box<mydex_sandbox::SandboxArgs>),
    /// The whole flow on this machine with no setup: sandbox, daemon, mail outbox.
    #[cfg(feature = "sandbox")]
    Demo(crate::commands::demo::DemoArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SweepJob {
    Version,
    Expiry,
    Confirm,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CampaignAction {
    Pause,
    Resume,
}

#[derive(Subcommand, Debug)]
enum InvitationsCommand {
    /// List invitations, with the reason for failed ones.
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// queued, link_issued, sent, connected, expired or failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        campaign: Option<String>,
        #[arg(long)]
        external_ref: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one invitation, with its history.
    Show {
        #[arg(long, short)]
        config: PathBuf,
        id: u64,
    },
    /// Queue failed invitations again (one by id, or all with --all-failed).
    Retry {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        id: Option<u64>,
        #[arg(long)]
        all_failed: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CallbacksCommand {
    /// List stored callbacks and what became of each.
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// Only the quarantined ones (kept without effect, with the reason).
        #[arg(long)]
        quarantined: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One stored callback, its body shown with any member key redacted.
    Show {
        #[arg(long, short)]
        config: PathBuf,
        id: u64,
    },
    /// Run stored callbacks through parsing and matching again (one by id,
    /// or every quarantined one with --all-quarantined).
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(
            required_unless_present = "all_quarantined",
            conflicts_with = "all_quarantined"
        )]
        id: Option<u64>,
        #[arg(long)]
        all_quarantined: bool,
    },
}

#[derive(Subcommand, Debug)]
enum MembersCommand {
    /// Print the mapping external ref → MydexID/uid/connection_id/version.
    Export {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "csv")]
        format: crate::commands::operator::ExportFormat,
        /// Include member connection keys (needs admin.allow_key_export = true).
        #[arg(long)]
        with_keys: bool,
    },
}

fn init_logging(
    level: &str,
    format: LogFormat,
) -> Option<mydex_connector::app::logging::LogControl> {
    mydex_connector::app::logging::init(level, format)
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
                let settings = load(&config)?;
                let log = init_logging(&settings.log.level, settings.log.format);
                mydex_connector::app::service::run(settings, log).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::CheckConfig { config } => {
                init_logging("warn", LogFormat::Text);
                let settings = load(&config)?;
                mydex_connector::notify::email::Templates::load(&settings.campaigns)
                    .map_err(|e| e.in_config(&config))?;
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
                    let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
                    let bar = crate::commands::progress::bytes_bar(size, &f.display().to_string());
                    let result = mydex_connector::intake::enqueue_file_with_progress(
                        &settings,
                        f,
                        campaign.as_deref(),
                        &mut crate::commands::progress::AboveBar(bar.as_ref()),
                        &mut |n| {
                            if let Some(b) = &bar {
                                b.set_position(n)
                            }
                        },
                    );
                    if let Some(b) = &bar {
                        b.finish_and_clear();
                    }
                    let (g, b) = result?;
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
                crate::commands::status::print(&settings, json).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Sweep { config, job } => {
                init_logging("warn", LogFormat::Text);
                let settings = load(&config)?;
                let path = match job {
                    SweepJob::Version => "/sweeps/version",
                    SweepJob::Expiry => "/sweeps/expiry",
                    SweepJob::Confirm => "/sweep/confirm",
                };
                let doc = crate::commands::admin_client::post(&settings, path, None).await?;
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
                let doc = crate::commands::admin_client::post(&settings, &path, body).await?;
                println!("{doc}");
                Ok(ExitCode::SUCCESS)
            }
            Command::Invitations { command } => {
                init_logging("warn", LogFormat::Text);
                use crate::commands::operator as op;
                match command {
                    InvitationsCommand::List {
                        config,
                        state,
                        campaign,
                        external_ref,
                        json,
                    } => {
                        let settings = load(&config)?;
                        op::list(
                            &settings,
                            op::ListArgs {
                                state,
                                campaign,
                                external_ref,
                                json,
                            },
                        )
                        .await?
                    }
                    InvitationsCommand::Show { config, id } => {
                        op::show(&load(&config)?, id).await?
                    }
                    InvitationsCommand::Retry { config, id, .. } => {
                        op::retry(&load(&config)?, id).await?
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Callbacks { command } => {
                init_logging("warn", LogFormat::Text);
                use crate::commands::callbacks as cb;
                match command {
                    CallbacksCommand::List {
                        config,
                        quarantined,
                        json,
                    } => cb::list(&load(&config)?, quarantined, json).await?,
                    CallbacksCommand::Show { config, id } => cb::show(&load(&config)?, id).await?,
                    CallbacksCommand::Replay { config, id, .. } => {
                        cb::replay(&load(&config)?, id).await?
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Members { command } => {
                init_logging("warn", LogFormat::Text);
                match command {
                    MembersCommand::Export {
                        config,
                        format,
                        with_keys,
                    } => {
                        let settings = load(&config)?;
                        crate::commands::operator::export_members(&settings, format, with_keys)
                            .await?
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::RotateKey {
                config,
                new_key_file,
            } => {
                init_logging("warn", LogFormat::Text);
                let settings = load(&config)?;
                tokio::task::spawn_blocking(move || {
                    crate::commands::rotate_key::run(&settings, &new_key_file)
                })
                .await??;
                Ok(ExitCode::SUCCESS)
            }
            #[cfg(feature = "sandbox")]
            Command::Sandbox(args) => {
                init_logging("info", LogFormat::Text);
                mydex_sandbox::run(*args).await?;
                Ok(ExitCode::SUCCESS)
            }
            #[cfg(feature = "sandbox")]
            Command::Demo(args) => {
                init_logging("warn", LogFormat::Text);
                crate::commands::demo::run(args).await?;
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let key_problem = e.chain().any(|c| {
                c.downcast_ref::<StoreError>()
                    .is_some_and(StoreError::is_key_problem)
            });
            let service = e.downcast_ref::<mydex_connector::app::service::ServiceError>();
            if key_problem
                || e.downcast_ref::<ConfigError>().is_some()
                || service.is_some_and(|s| s.is_config_problem())
            {
                ExitCode::from(78)
            } else if service.is_some_and(|s| s.is_store_failed()) {
                ExitCode::from(mydex_connector::store::EXIT_STORE_FAILED)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
