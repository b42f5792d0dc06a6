//! `[notifications]`: where PDX notifications are passed on (a program, a
//! webhook) and how long that may take.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::show;

use super::error::ConfigError;
use super::validate::Validator;

/// Where PDX notifications are passed on (besides being kept and counted).
#[derive(Serialize)]
pub struct NotificationSettings {
    /// Program and arguments, run without a shell, the JSON on stdin.
    #[serde(serialize_with = "show::command")]
    pub command: Option<Vec<String>>,
    #[serde(serialize_with = "show::url_or_none")]
    pub webhook_url: Option<reqwest::Url>,
    #[serde(serialize_with = "show::duration")]
    pub timeout: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotifications {
    command: Option<Vec<String>>,
    webhook_url: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    timeout: Option<Duration>,
}

impl Validator {
    pub(super) fn notifications(
        &self,
        raw: RawNotifications,
    ) -> Result<NotificationSettings, ConfigError> {
        let command = match raw.command {
            None => None,
            Some(c) if c.is_empty() || c[0].trim().is_empty() => {
                return Err(self.err(
                    "notifications.command",
                    "must name a program: [\"/path/to/program\", \"arg\", ...]",
                ));
            }
            Some(mut c) => {
                let program = PathBuf::from(&c[0]);
                if !program.is_absolute() && c[0].contains('/') {
                    c[0] = self.path(program).display().to_string();
                }
                Some(c)
            }
        };
        let webhook_url = raw
            .webhook_url
            .map(|u| self.url("notifications.webhook_url", &u))
            .transpose()?;
        let timeout = raw.timeout.unwrap_or(Duration::from_secs(10));
        if timeout.is_zero() {
            return Err(self.err("notifications.timeout", "must be more than 0s"));
        }
        Ok(NotificationSettings {
            command,
            webhook_url,
            timeout,
        })
    }
}
