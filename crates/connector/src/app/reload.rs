//! SIGHUP: re-read the configuration file and apply what can change while
//! the daemon runs — the log level, and each running campaign's settings:
//! subject and templates, rate, send window and time zone, reminder policy,
//! error threshold, `reconnect_on_revoke`. The new file is validated in full
//! first; a bad one is refused with its error logged and the running
//! configuration stays in force. Work in flight is not dropped: each step
//! reads the campaign's settings when it starts. Campaigns added or removed
//! in the file wait for a restart (they are logged); pauses stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::app::logging::LogControl;
use crate::config::{Campaign, ConfigError, Settings, Swap};
use crate::notify::email::Templates;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    pub control: Arc<crate::pipeline::campaign_control::CampaignControl>,
    pub log: Option<LogControl>,
}

/// What a reload changed, for the log.
#[derive(Debug, Default)]
pub struct Applied {
    pub log_level: Option<String>,
    pub templates_reloaded: usize,
    pub ignored_campaigns: Vec<String>,
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
        let templates = Templates::load(&merged).map_err(|e| e.in_config(&self.config_path))?;
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
        })
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
