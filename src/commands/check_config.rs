//! `mydex-connector check-config`: load the configuration and the email
//! templates it names, and print it with secrets redacted; say what the
//! store's schema version means for the next start (a store written by a
//! newer release is refused, exit 78), without opening the store.

use std::process::ExitCode;

use crate::commands::config_path::ConfigPath;
use mydex_connector::config::ConfigErrors;
use mydex_connector::store::{OnDisk, SCHEMA_VERSION, schema_on_disk};

#[derive(clap::Args, Debug)]
pub struct CheckConfigArgs {}

pub fn run(_args: CheckConfigArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    mydex_connector::notify::email::Templates::load(
        &settings.campaigns,
        &settings.organisation,
        settings.invitations.link_ttl,
    )
    .map_err(|e| ConfigErrors::from(e.in_config(config.path())))?;
    let store = &settings.store.path;
    // A store newer than this binary fails the check; one this user may
    // not read (the daemon's own directory) is only mentioned.
    let version = match schema_on_disk(store) {
        Ok(v) => Some(v),
        Err(e) if e.is_config_problem() => return Err(e.into()),
        Err(e) => {
            eprintln!("store: schema version not checked: {e}");
            None
        }
    };
    print!("{}", settings.redacted());
    for warning in settings.organisation.warnings() {
        eprintln!("warning: {warning}");
    }
    eprintln!("configuration OK: {}", config.path().display());
    match version {
        None => {}
        Some(OnDisk::NoStore) => eprintln!(
            "store: none yet at {} (created at the first start)",
            store.display()
        ),
        Some(OnDisk::Unstamped) => eprintln!(
            "store: written by an earlier release (schema version 1); the next start upgrades it in place to version {SCHEMA_VERSION}"
        ),
        Some(OnDisk::Stamped(v)) if v < SCHEMA_VERSION => eprintln!(
            "store: schema version {v}; the next start upgrades it in place to version {SCHEMA_VERSION}"
        ),
        Some(OnDisk::Stamped(v)) => eprintln!("store: schema version {v}"),
    }
    Ok(ExitCode::SUCCESS)
}
