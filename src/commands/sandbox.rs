//! `mydex-connector sandbox`: the local Mydex stand-in (`mydex_sandbox`),
//! served until SIGINT/SIGTERM.

use std::process::ExitCode;

pub async fn run(args: mydex_sandbox::SandboxArgs) -> anyhow::Result<ExitCode> {
    mydex_sandbox::run(args).await?;
    Ok(ExitCode::SUCCESS)
}
