//! The command line: parse, set up logging, dispatch to `commands/`, map the
//! outcome to an exit code (0 ok, 2 usage — clap's, and a command's own
//! `UsageError` — 78 configuration error — which
//! includes a store key that does not open the store, a key rotation left
//! unfinished, a key that `rotate-key` refuses, a store written by a
//! newer release, and a listen address of `run` or `edge` that cannot be
//! bound — 1 anything else).

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mydex_connector::config::{ConfigError, ConfigErrors, LogFormat};
use mydex_connector::store::StoreError;

use commands::config_path::{CONFIG_ENV, ConfigPath, DEFAULT_CONFIG};
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
    /// The configuration file, for every command that reads one (given
    /// before or after the command).
    #[arg(
        long,
        short,
        global = true,
        value_name = "PATH",
        env = CONFIG_ENV,
        default_value = DEFAULT_CONFIG
    )]
    config: PathBuf,
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
    /// Rows rejected by `enqueue`, `deliver` or the daemon's intake, with
    /// the operator's own file and line (through the running daemon).
    Rejects {
        #[command(subcommand)]
        command: commands::rejects::RejectsCommand,
    },
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
    /// The public listeners without a store: authenticated callbacks and
    /// one-click unsubscribes sealed to the daemon's key and published to
    /// NATS JetStream (answered 2xx once JetStream has them).
    Edge(commands::edge::EdgeArgs),
    /// NATS JetStream: `setup` the streams and consumer, `keygen` the
    /// sealing key pair.
    Nats {
        #[command(subcommand)]
        command: commands::nats::NatsCommand,
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
    /// Print a shell completion script (bash, zsh, fish, ...) to standard
    /// output; the Debian package installs the bash, zsh and fish ones.
    Completions(commands::completions::CompletionsArgs),
    /// Write the man pages (mydex-connector.1 and one per command) into a
    /// directory; the Debian package installs them.
    Manpage(commands::manpage::ManpageArgs),
}

impl Command {
    /// The log level of a command that logs as text to stderr; `run` sets
    /// up its own logging from the configuration.
    fn log_level(&self) -> Option<&'static str> {
        match self {
            Command::Run(_) | Command::Edge(_) => None,
            #[cfg(feature = "sandbox")]
            Command::Sandbox(_) => Some("info"),
            _ => Some("warn"),
        }
    }

    /// Run the command; `config` is the global `--config` (commands that
    /// read no configuration ignore it).
    async fn dispatch(self, config: &ConfigPath) -> anyhow::Result<ExitCode> {
        match self {
            Command::Run(args) => run::run(args, config).await,
            Command::CheckConfig(args) => check_config::run(args, config),
            Command::Enqueue(args) => enqueue::run(args, config),
            Command::Deliver(args) => deliver::run(args, config),
            Command::Status(args) => status::run(args, config).await,
            Command::Sweep(args) => sweep::run(args, config).await,
            Command::Campaign(args) => campaign::run(args, config).await,
            Command::Invitations { command } => operator::invitations(command, config).await,
            Command::Callbacks { command } => callbacks::run(command, config).await,
            Command::Members { command } => operator::members(command, config).await,
            Command::Records { command } => records::run(command, config).await,
            Command::Edge(args) => commands::edge::run(args, config).await,
            Command::Nats { command } => commands::nats::run(command, config).await,
            Command::Mail { command } => commands::mail::run(command, config).await,
            Command::RotateKey(args) => rotate_key::command(args, config).await,
            Command::Store { command } => commands::store::run(command, config).await,
            Command::Bounce(args) => commands::bounce::run(args, config).await,
            Command::Suppressions { command } => commands::suppressions::run(command, config).await,
            Command::Rejects { command } => commands::rejects::run(command, config).await,
            Command::People { command } => commands::people::run(command, config).await,
            #[cfg(feature = "sandbox")]
            Command::Sandbox(mut args) => {
                // The sandbox's `--config` is its own TOML file, read only
                // when named on its command line: neither the connector's
                // default path nor MYDEX_CONNECTOR_CONFIG is one.
                if config.origin() != commands::config_path::Origin::Flag {
                    args.config = None;
                }
                commands::sandbox::run(*args).await
            }
            #[cfg(feature = "sandbox")]
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Completions(args) => commands::completions::run(args, Cli::command()),
            Command::Manpage(args) => commands::manpage::run(args, Cli::command()),
        }
    }
}

/// The command line parsed, with where `--config`'s value came from (the
/// flag, the environment or the default) for a missing file's error.
fn parse() -> (Cli, ConfigPath) {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let config = ConfigPath::new(cli.config.clone(), matches.value_source("config"));
    (cli, config)
}

/// A command whose reader goes away (`rejects list | head`) ends quietly,
/// as Unix tools do, instead of panicking on a closed pipe. Not for the
/// long-running ones (`run`, `edge`, the sandbox and the demo): a log
/// stream closed under them must not kill them.
fn end_quietly_on_closed_pipe(command: &Command) {
    let long_running = match command {
        Command::Run(_) | Command::Edge(_) => true,
        #[cfg(feature = "sandbox")]
        Command::Sandbox(_) | Command::Demo(_) => true,
        _ => false,
    };
    if !long_running {
        // SAFETY: called before any thread is started; setting a signal's
        // disposition to its default has no other precondition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}

fn main() -> ExitCode {
    let (cli, config) = parse();
    end_quietly_on_closed_pipe(&cli.command);
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
        cli.command.dispatch(&config).await
    });
    exit_code(result)
}

/// The exit code of a command's outcome; an error is printed first.
fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    let e = match result {
        Ok(code) => return code,
        Err(e) => e,
    };
    if let Some(report) = e.downcast_ref::<ConfigErrors>() {
        commands::config_report::print(report);
        return ExitCode::from(78);
    }
    eprintln!("error: {e:#}");
    let key_problem = e.chain().any(|c| {
        c.downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_config_problem)
    });
    let service = e.downcast_ref::<mydex_connector::app::service::ServiceError>();
    let edge = e.downcast_ref::<mydex_connector::app::edge::EdgeError>();
    if e.downcast_ref::<commands::mail::UsageError>().is_some() {
        ExitCode::from(2)
    } else if key_problem
        || e.downcast_ref::<ConfigError>().is_some()
        || service.is_some_and(|s| s.is_config_problem())
        || edge.is_some_and(|s| s.is_config_problem())
    {
        ExitCode::from(78)
    } else if service.is_some_and(|s| s.is_store_failed()) {
        ExitCode::from(mydex_connector::store::EXIT_STORE_FAILED)
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        // Catches, among others, a subcommand defining its own `--config`
        // beside the global one.
        Cli::command().debug_assert();
    }

    #[test]
    fn config_is_global_before_or_after_the_command() {
        for argv in [
            ["mydex-connector", "--config", "/x.toml", "status"],
            ["mydex-connector", "status", "--config", "/x.toml"],
        ] {
            let matches = Cli::command().get_matches_from(argv);
            let cli = Cli::from_arg_matches(&matches).expect("parses");
            assert_eq!(cli.config, PathBuf::from("/x.toml"));
            let path = ConfigPath::new(cli.config, matches.value_source("config"));
            assert_eq!(path.origin(), commands::config_path::Origin::Flag);
        }
    }
}
