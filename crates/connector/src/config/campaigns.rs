//! `[[campaign]]`: each campaign's mail (subject, templates), pace, send
//! window, reminders and error brake.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::show;

use super::error::ConfigError;
use super::invitations::InvitationSettings;
use super::rate::{Rate, parse_rate};
use super::validate::Validator;
use crate::domain::send_window::{SendWindow, parse_tz};

/// Serialised as `check-config` shows it (the reminder templates and
/// `invite` are not shown).
#[derive(Debug, Clone, Serialize)]
pub struct Campaign {
    pub name: String,
    pub subject: String,
    #[serde(serialize_with = "show::template")]
    pub text_template: Option<PathBuf>,
    #[serde(serialize_with = "show::template")]
    pub html_template: Option<PathBuf>,
    #[serde(serialize_with = "show::rate")]
    pub rate: Option<Rate>,
    /// When its mail may go out; None: any time.
    #[serde(serialize_with = "show::send_window")]
    pub send_window: Option<SendWindow>,
    /// Reminders: how long after expiry, and how many (from
    /// `[invitations]` unless the campaign sets its own).
    #[serde(serialize_with = "show::duration")]
    pub reminder_after: Duration,
    pub max_reminders: u32,
    pub reminder_subject: String,
    #[serde(skip)]
    pub reminder_text_template: Option<PathBuf>,
    #[serde(skip)]
    pub reminder_html_template: Option<PathBuf>,
    /// Failed invitations in a row after which the campaign pauses itself.
    #[serde(serialize_with = "show::count_or_off")]
    pub error_threshold: Option<u32>,
    /// The hard-bounce share (of at least 100 mails) past which the
    /// campaign pauses itself; None: off.
    #[serde(serialize_with = "show::share_or_off")]
    pub bounce_threshold: Option<f64>,
    /// A member found revoked gets a new first-time invitation.
    pub reconnect_on_revoke: bool,
    /// `invite = "identify"`: learn the invitee's MydexID first.
    #[serde(skip)]
    pub identify_first: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCampaign {
    name: Option<String>,
    subject: Option<String>,
    text_template: Option<PathBuf>,
    html_template: Option<PathBuf>,
    rate: Option<String>,
    send_window: Option<String>,
    time_zone: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    reminder_after: Option<Duration>,
    max_reminders: Option<u32>,
    reminder_subject: Option<String>,
    reminder_text_template: Option<PathBuf>,
    reminder_html_template: Option<PathBuf>,
    error_threshold: Option<u32>,
    bounce_threshold: Option<toml::Value>,
    reconnect_on_revoke: Option<bool>,
    invite: Option<String>,
}

/// `campaign[i].k`: how a campaign's keys are named in errors.
struct Keys(usize);

impl Keys {
    fn key(&self, k: &str) -> String {
        format!("campaign[{}].{k}", self.0)
    }
}

impl Validator {
    /// At least one campaign, names unique; reminders default to `[invitations]`'s.
    pub(super) fn campaigns(
        &self,
        raw: Vec<RawCampaign>,
        defaults: &InvitationSettings,
    ) -> Result<Vec<Campaign>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err("campaign", "at least one [[campaign]] is required"));
        }
        let mut names = HashSet::new();
        raw.into_iter()
            .enumerate()
            .map(|(i, c)| self.campaign(&Keys(i), c, &mut names, defaults))
            .collect()
    }

    fn campaign(
        &self,
        keys: &Keys,
        c: RawCampaign,
        names: &mut HashSet<String>,
        defaults: &InvitationSettings,
    ) -> Result<Campaign, ConfigError> {
        let name = self.campaign_name(keys, c.name, names)?;
        let subject = c
            .subject
            .unwrap_or_else(|| "Connect to your Personal Data Store".into());
        self.one_line(keys, "subject", &subject)?;
        let text_template = self.template(keys, "text_template", c.text_template)?;
        let html_template = self.template(keys, "html_template", c.html_template)?;
        let rate = match c.rate {
            None => None,
            Some(r) => parse_rate(&r).map_err(|e| self.err(&keys.key("rate"), e.to_string()))?,
        };
        let send_window = self.send_window(keys, c.send_window, c.time_zone)?;
        let max_reminders = c.max_reminders.unwrap_or(defaults.max_reminders);
        if max_reminders > 100 {
            return Err(self.err(&keys.key("max_reminders"), "must be at most 100"));
        }
        let reminder_subject = c
            .reminder_subject
            .unwrap_or_else(|| format!("Reminder: {subject}"));
        self.one_line(keys, "reminder_subject", &reminder_subject)?;
        let reminder_text_template =
            self.template(keys, "reminder_text_template", c.reminder_text_template)?;
        let reminder_html_template =
            self.template(keys, "reminder_html_template", c.reminder_html_template)?;
        let identify_first = match c.invite.as_deref().unwrap_or("connect") {
            "connect" => false,
            "identify" => true,
            other => {
                return Err(self.err(
                    &keys.key("invite"),
                    format!("{other:?} is neither \"connect\" nor \"identify\""),
                ));
            }
        };
        if c.error_threshold == Some(0) {
            return Err(self.err(&keys.key("error_threshold"), "must be 1 or more"));
        }
        let bounce_threshold = c
            .bounce_threshold
            .as_ref()
            .map(|v| {
                super::share::parse_share(v)
                    .map_err(|e| self.err(&keys.key("bounce_threshold"), e.to_string()))
            })
            .transpose()?;
        Ok(Campaign {
            bounce_threshold,
            name,
            subject,
            text_template,
            html_template,
            rate,
            send_window,
            reminder_after: c.reminder_after.unwrap_or(defaults.reminder_after),
            max_reminders,
            reminder_subject,
            reminder_text_template,
            reminder_html_template,
            error_threshold: c.error_threshold,
            reconnect_on_revoke: c.reconnect_on_revoke.unwrap_or(false),
            identify_first,
        })
    }

    /// Letters, digits, `-`, `_` and `.`, 1 to 64, not used before.
    fn campaign_name(
        &self,
        keys: &Keys,
        name: Option<String>,
        names: &mut HashSet<String>,
    ) -> Result<String, ConfigError> {
        let key = keys.key("name");
        let name = self.required(&key, name)?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(self.err(
                &key,
                format!("{name:?}: letters, digits, `-`, `_` and `.` only, 1 to 64"),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(self.err(&key, format!("{name:?} is used by two campaigns")));
        }
        Ok(name)
    }

    fn one_line(&self, keys: &Keys, k: &str, text: &str) -> Result<(), ConfigError> {
        if text.contains(['\r', '\n']) {
            return Err(self.err(&keys.key(k), "must be one line"));
        }
        Ok(())
    }

    /// A template path, resolved beside the config file; it must exist.
    fn template(
        &self,
        keys: &Keys,
        k: &str,
        p: Option<PathBuf>,
    ) -> Result<Option<PathBuf>, ConfigError> {
        let Some(p) = p else { return Ok(None) };
        let p = self.path(p);
        if !p.is_file() {
            return Err(self.err(&keys.key(k), format!("{} does not exist", p.display())));
        }
        Ok(Some(p))
    }

    /// `send_window` in `time_zone` (UTC by default); a zone alone is refused.
    fn send_window(
        &self,
        keys: &Keys,
        window: Option<String>,
        time_zone: Option<String>,
    ) -> Result<Option<SendWindow>, ConfigError> {
        let tz = match &time_zone {
            None => chrono_tz::Tz::UTC,
            Some(z) => parse_tz(z).map_err(|m| self.err(&keys.key("time_zone"), m))?,
        };
        let send_window = match &window {
            None => None,
            Some(w) => {
                Some(SendWindow::parse(w, tz).map_err(|m| self.err(&keys.key("send_window"), m))?)
            }
        };
        if time_zone.is_some() && send_window.is_none() {
            return Err(self.err(
                &keys.key("time_zone"),
                "only means something with a send_window",
            ));
        }
        Ok(send_window)
    }
}
