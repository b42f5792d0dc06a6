//! The command line: parse, dispatch, map the outcome to an exit code
//! (0 ok, 2 usage, 78 configuration error, 1 anything else).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// A local stand-in for the Mydex sandbox (OAuth2, /ftc/setup, /identify,
    /// /connection/status, one-time pages, callbacks).
    Sandbox(mydex_connector::sandbox::SandboxArgs),
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
        match cli.command {
            Command::Sandbox(args) => mydex_connector::sandbox::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
