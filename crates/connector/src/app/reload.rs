//! SIGHUP: re-read the configuration file and apply what can change while
//! the daemon runs — the log level, and each running campaign's settings:
//! subject and templates, `[organisation]` (the mails and the unsubscribe
//! page), rate, send window and time zone, reminder policy,
//! error threshold, `reconnect_on_revoke`. The new file is validated in full
//! first; a bad one is refused with its error logged and the running
//! configuration stays in force. Work in flight is not dropped: each step
//! reads the campaign's settings when it starts. Campaigns added or removed
//! in the file wait for a restart (they are logged); pauses stay. The
//! callback listener's certificate pair is re-read and, when valid, served
//! to new handshakes (a renewal applies without a restart); a bad pair makes
//! the whole reload refused, so the pair served stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::app::logging::LogControl;
use crate::config::{Campaign, ConfigError, ConfigErrors, Settings, Swap};
use crate::notify::email::Templates;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Load(#[from] ConfigErrors),
    #[error("{0}")]
    Log(#[from] crate::app::logging::LogError),
}

/// What a reload can reach.
pub struct Reloader {
    pub config_path: PathBuf,
    /// The campaigns the daemon started with (their names stay; their
    /// templates and subjects may change).
    pub campaigns: Vec<Campaign>,
    pub templates: Arc<Swap<Templates>>,
    /// `invitations.link_ttl` as the daemon started with it.
    pub link_ttl: std::time::Duration,
    pub control: Arc<crate::pipeline::campaign_control::CampaignControl>,
    /// The callback listener's certificate, when it serves HTTPS.
    pub tls: Option<Arc<crate::server::tls::CallbackTls>>,
    pub log: Option<LogControl>,
}

/// What a reload changed, for the log.
#[derive(Debug, Default)]
pub struct Applied {
    pub log_level: Option<String>,
    pub templates_reloaded: usize,
    pub ignored_campaigns: Vec<String>,
    /// What became of the callback listener's certificate.
    pub tls: TlsApplied,
}

/// The certificate part of a reload.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum TlsApplied {
    /// Plain HTTP before and after.
    #[default]
    None,
    /// The pair in the file is served to new handshakes.
    Replaced {
        old_serial: String,
        new_serial: String,
        not_after: i64,
    },
    /// HTTPS switched on or off in the file: the listener keeps what it
    /// started with until a restart.
    NeedsRestart(&'static str),
}

impl Reloader {
    /// Validate the file at `config_path` and apply it; on any error nothing
    /// changes.
    pub fn reload(&self) -> Result<Applied, ReloadError> {
        let new = Settings::load(&self.config_path)?;
        // The running campaigns as the last reload left them.
        let running: Vec<Campaign> = self
            .campaigns
            .iter()
            .map(|c| self.control.campaign(&c.name).unwrap_or_else(|| c.clone()))
            .collect();
        let merged = merge_campaigns(&running, &new.campaigns);
        // The link lasts what the running daemon keeps it (link_ttl waits
        // for a restart), so the mails say that.
        let templates = Templates::load(&merged, &new.organisation, self.link_ttl)
            .map_err(|e| e.in_config(&self.config_path))?;
        // Check the level before changing anything.
        if tracing_subscriber::EnvFilter::try_new(&new.log.level).is_err() {
            return Err(crate::app::logging::LogError::BadLevel(new.log.level.clone()).into());
        }
        let log_level = match &self.log {
            Some(control) => Some(control.set_level(&new.log.level)?),
            None => None,
        };
        self.templates.set(templates);
        let templates_reloaded = merged.len();
        self.control.replace_campaigns(merged);
        let tls = self.apply_tls(&new);
        let ignored_campaigns = new
            .campaigns
            .iter()
            .filter(|c| !self.campaigns.iter().any(|r| r.name == c.name))
            .map(|c| c.name.clone())
            .collect();
        Ok(Applied {
            log_level,
            templates_reloaded,
            ignored_campaigns,
            tls,
        })
    }

    /// Serve the new file's pair (already validated by `Settings::load`).
    fn apply_tls(&self, new: &Settings) -> TlsApplied {
        match (&self.tls, &new.callback.tls) {
            (Some(running), Some(pair)) => {
                let old = running.replace(pair.clone());
                TlsApplied::Replaced {
                    old_serial: old.serial.clone(),
                    new_serial: pair.serial.clone(),
                    not_after: pair.not_after,
                }
            }
            (None, Some(_)) => TlsApplied::NeedsRestart(
                "callback.tls_cert_file is set now: HTTPS starts at the next restart",
            ),
            (Some(_), None) => TlsApplied::NeedsRestart(
                "callback.tls_* is gone from the file: HTTPS is served until the next restart",
            ),
            (None, None) => TlsApplied::None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.config_path
    }
}

/// The running campaigns, each with the new file's settings where the new
/// file still names it.
fn merge_campaigns(running: &[Campaign], new: &[Campaign]) -> Vec<Campaign> {
    running
        .iter()
        .map(|r| {
            new.iter()
                .find(|n| n.name == r.name)
                .cloned()
                .unwrap_or_else(|| r.clone())
        })
        .collect()
}
