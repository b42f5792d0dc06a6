//! A local stand-in for the Mydex sandbox, strict to `MYDEX-CONTRACT.md`.
//! (Being built on the `sandbox` branch; this is the agreed interface.)

use std::net::SocketAddr;

/// Flags of `mydex-connector sandbox`.
#[derive(clap::Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
}

/// Serve until SIGINT/SIGTERM.
pub async fn run(_args: SandboxArgs) -> anyhow::Result<()> {
    anyhow::bail!("the sandbox is not built yet")
}
