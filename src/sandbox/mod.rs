//! A local stand-in for the Mydex sandbox, strict to `MYDEX-CONTRACT.md`.
//! (Being built on the `sandbox` branch; this is the agreed interface.)

use std::net::SocketAddr;

/// Flags of `mydex-connector sandbox`.
#[derive(clap::Args, Debug, Clone)]
pub struct SandboxArgs {
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "45678")]
    pub nid: String,
    #[arg(long, default_value = "sandbox-connection-token")]
    pub connection_token: String,
    #[arg(long, default_value = "sandbox-client")]
    pub client_id: String,
    #[arg(long, default_value = "sandbox-secret")]
    pub client_secret: String,
    #[arg(long, default_value = "http://127.0.0.1:8080/mydex/callback")]
    pub callback_url: String,
}

impl Default for SandboxArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            nid: "45678".into(),
            connection_token: "sandbox-connection-token".into(),
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-secret".into(),
            callback_url: "http://127.0.0.1:8080/mydex/callback".into(),
        }
    }
}

pub struct Sandbox {
    pub addr: SocketAddr,
}

impl Sandbox {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub async fn shutdown(self) {}
}

pub async fn start(_args: SandboxArgs) -> anyhow::Result<Sandbox> {
    anyhow::bail!("the sandbox is not built yet")
}

/// Serve until SIGINT/SIGTERM.
pub async fn run(_args: SandboxArgs) -> anyhow::Result<()> {
    anyhow::bail!("the sandbox is not built yet")
}
