//! `mydex-connector nats setup`: create or update the JetStream streams and
//! the `connector` consumer (idempotent), printing each step; `nats keygen`:
//! the X25519 pair callbacks are sealed with (`seal.key` for the daemon,
//! `seal.pub` for the edges), and the fingerprint that names the pair in
//! messages, logs and `status`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use mydex_connector::broker::connect::FirstConnect;
use mydex_connector::broker::{Broker, SealKey};
use mydex_connector::config::NatsSettings;

use crate::commands::config_path::ConfigPath;

#[derive(clap::Subcommand, Debug)]
pub enum NatsCommand {
    /// Create or update the streams and the consumer (idempotent); print
    /// what was done.
    Setup,
    /// Write a new key pair into DIR: `seal.key` (mode 0600; the daemon's
    /// `nats.seal_key_file`) and `seal.pub` (the edges'
    /// `nats.seal_public_key_file`). Never replaces an existing `seal.key`.
    /// Prints the pair's fingerprint (as edges name it on each message,
    /// and the daemon's log, `/readyz` and `status` show it).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(command: NatsCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    match command {
        NatsCommand::Setup => setup(config).await,
        NatsCommand::Keygen { out } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let (key, public, fingerprint) = SealKey::write_new_pair(&out)?;
            println!(
                "wrote {} (private: the daemon's nats.seal_key_file; keep it secret)",
                key.display()
            );
            println!(
                "wrote {} (public: the edges' nats.seal_public_key_file)",
                public.display()
            );
            println!("fingerprint {fingerprint}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn setup(config: &ConfigPath) -> anyhow::Result<ExitCode> {
    config.check_exists()?;
    let settings = NatsSettings::load(config.path())?;
    let broker = Broker::connect(
        &settings,
        "mydex-connector nats setup",
        FirstConnect::Required,
    )
    .await?;
    let steps = broker.setup().await?;
    for step in &steps {
        println!("{step}");
    }
    Ok(ExitCode::SUCCESS)
}
