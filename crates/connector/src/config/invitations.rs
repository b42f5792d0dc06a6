//! `[invitations]`: link lifetime, reminders (the campaigns' defaults) and
//! how many invitations are prepared at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::show;

use super::error::ConfigError;
use super::validate::Validator;

#[derive(Serialize)]
pub struct InvitationSettings {
    #[serde(serialize_with = "show::duration")]
    pub link_ttl: Duration,
    #[serde(serialize_with = "show::duration")]
    pub reminder_after: Duration,
    pub max_reminders: u32,
    pub concurrency: usize,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInvitations {
    #[serde(default, with = "humantime_serde::option")]
    link_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    reminder_after: Option<Duration>,
    max_reminders: Option<u32>,
    concurrency: Option<usize>,
}

impl Validator {
    pub(super) fn invitations(
        &self,
        raw: RawInvitations,
    ) -> Result<InvitationSettings, ConfigError> {
        let link_ttl = raw.link_ttl.unwrap_or(Duration::from_secs(24 * 3600));
        if link_ttl.is_zero() || link_ttl > Duration::from_secs(24 * 3600) {
            return Err(self.err(
                "invitations.link_ttl",
                "must be more than 0s and at most 24h (Mydex's links die after 24h)",
            ));
        }
        let concurrency = raw.concurrency.unwrap_or(8);
        if !(1..=1024).contains(&concurrency) {
            return Err(self.err("invitations.concurrency", "must be between 1 and 1024"));
        }
        let max_reminders = raw.max_reminders.unwrap_or(2);
        if max_reminders > 100 {
            return Err(self.err("invitations.max_reminders", "must be at most 100"));
        }
        Ok(InvitationSettings {
            link_ttl,
            reminder_after: raw.reminder_after.unwrap_or(Duration::from_secs(72 * 3600)),
            max_reminders,
            concurrency,
        })
    }
}
