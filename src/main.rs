//! The command line: parse, set up logging, dispatch to `commands/`, map the
//! outcome to an exit code (0 ok, 2 usage — clap's, and a command's own
//! `UsageError` — 78 configuration error — which
//! includes a store key that does not open the store, a key rotation left
//! unfinished, a key that `rotate-key` refuses, and a store written by a
//! newer release — 1 anything else).

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mydex_connector::config::{ConfigError, LogFormat};
use mydex_connector::store::StoreError;

use commands::{
    callbacks, campaign, check_config, deliver, enqueue, operator, records, rotate_key, run,
    status, sweep,
};

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
    Run(run::RunArgs),
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig(check_config::CheckConfigArgs),
    /// Validate invitee files (CSV with header, or JSON Lines) and place the
    /// good rows in the queue directory atomically; bad rows are reported.
    Enqueue(enqueue::EnqueueArgs),
    /// Validate readings files (CSV with header, or JSON Lines) and place the
    /// good rows in `delivery.dir` atomically; bad rows are reported.
    Deliver(deliver::DeliverArgs),
    /// Ask the running daemon for counts.
    Status(status::StatusArgs),
    /// Run a sweep now in the running daemon (unless one is running); or
    /// `confirm`: release the version sweep's brake, disconnecting the
    /// members it holds (re-inviting as configured).
    Sweep(sweep::SweepArgs),
    /// Pause or resume a campaign in the running daemon.
    Campaign(campaign::CampaignArgs),
    /// Find, inspect and retry invitations (through the running daemon).
    Invitations {
        #[command(subcommand)]
        command: operator::InvitationsCommand,
    },
    /// Callbacks Mydex sent, kept as they arrived; quarantined ones replayed
    /// after an upgrade or a config fix (through the running daemon).
    Callbacks {
        #[command(subcommand)]
        command: callbacks::CallbacksCommand,
    },
    /// Readings held for their member, or failed, with why (through the
    /// running daemon).
    Records {
        #[command(subcommand)]
        command: records::RecordsCommand,
    },
    /// The member mapping: external ref → MydexID, uid, connection id, version.
    Members {
        #[command(subcommand)]
        command: operator::MembersCommand,
    },
    /// Read one bounce (RFC 3464 DSN) or complaint (RFC 5965) from FILE or
    /// standard input and apply it in the running daemon (exit 65: not a
    /// report of ours; 75: daemon unreachable, try later).
    Bounce(commands::bounce::BounceArgs),
    /// The suppression list: people who get no more mail.
    Suppressions {
        #[command(subcommand)]
        command: commands::suppressions::SuppressionsCommand,
    },
    /// Forget a person (GDPR erasure) in the running daemon.
    People {
        #[command(subcommand)]
        command: commands::people::PeopleCommand,
    },
    /// The exact mail a campaign sends, without asking Mydex for a link:
    /// `preview` writes it to files, `test` sends it to one address.
    Mail {
        #[command(subcommand)]
        command: commands::mail::MailCommand,
    },
    /// Re-encrypt the store under a new key (the daemon must be stopped).
    /// Rerun it with the same new key if it was interrupted.
    RotateKey(rotate_key::RotateKeyArgs),
    /// The store itself, with the daemon stopped: `compact` rewrites its
    /// live records into a fresh store, old segments gone.
    Store {
        #[command(subcommand)]
        command: commands::store::StoreCommand,
    },
    /// A local stand-in for the Mydex sandbox.
    #[cfg(feature = "sandbox")]
    Sandbox(Box<mydex_sandbox::SandboxArgs>),
    /// The whole flow on this machine with no setup: sandbox, daemon, mail outbox.
    #[cfg(feature = "sandbox")]
    Demo(commands::demo::DemoArgs),
}

impl Command {
    /// The log level of a command that logs as text to stderr; `run` sets
    /// up its own logging from the configuration.
    fn log_level(&self) -> Option<&'static str> {
        match self {
            Command::Run(_) => None,
            #[cfg(feature = "sandbox")]
            Command::Sandbox(_) => Some("info"),
            _ => Some("warn"),
        }
    }

    async fn dispatch(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Run(args) => run::run(args).await,
            Command::CheckConfig(args) => check_config::run(args),
            Command::Enqueue(args) => enqueue::run(args),
            Command::Deliver(args) => deliver::run(args),
            Command::Status(args) => status::run(args).await,
            Command::Sweep(args) => sweep::run(args).await,
            Command::Campaign(args) => campaign::run(args).await,
            Command::Invitations { command } => operator::invitations(command).await,
            Command::Callbacks { command } => callbacks::run(command).await,
            Command::Members { command } => operator::members(command).await,
            Command::Records { command } => records::run(command).await,
            Command::Mail { command } => commands::mail::run(command).await,
            Command::RotateKey(args) => rotate_key::command(args).await,
            Command::Store { command } => commands::store::run(command).await,
            Command::Bounce(args) => commands::bounce::run(args).await,
            Command::Suppressions { command } => commands::suppressions::run(command).await,
            Command::People { command } => commands::people::run(command).await,
            #[cfg(feature = "sandbox")]
            Command::Sandbox(args) => commands::sandbox::run(*args).await,
            #[cfg(feature = "sandbox")]
            Command::Demo(args) => commands::demo::run(args).await,
        }
    }
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
    let result = runtime.block_on(async {
        if let Some(level) = cli.command.log_level() {
            mydex_connector::app::logging::init(level, LogFormat::Text);
        }
        cli.command.dispatch().await
    });
    exit_code(result)
}

/// The exit code of a command's outcome; an error is printed first.
fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    let e = match result {
        Ok(code) => return code,
        Err(e) => e,
    };
    eprintln!("error: {e:#}");
    let key_problem = e.chain().any(|c| {
        c.downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_config_problem)
    });
    let service = e.downcast_ref::<mydex_connector::app::service::ServiceError>();
    if e.downcast_ref::<commands::mail::UsageError>().is_some() {
        ExitCode::from(2)
    } else if key_problem
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
