//! `[schedule]`: when the version and expiry sweeps run, and the version
//! sweep's pace and brake.

use serde::{Deserialize, Serialize};

use super::show;

use super::error::ConfigError;
use super::rate::{Rate, parse_rate};
use super::share::parse_share;
use super::validate::Validator;

#[derive(Serialize)]
pub struct ScheduleSettings {
    pub version_check: String,
    pub expiry_check: String,
    /// Connection-status checks in flight at once during a version sweep.
    pub sweep_concurrency: usize,
    /// The version sweep's own limit on status checks (None: unlimited).
    #[serde(serialize_with = "show::rate")]
    pub sweep_rate: Option<Rate>,
    /// The brake: the largest share (0..=1) of the members a sweep has
    /// checked that it may disconnect before it holds the rest.
    #[serde(serialize_with = "show::share")]
    pub max_disconnect_share: f64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    version_check: Option<String>,
    expiry_check: Option<String>,
    sweep_concurrency: Option<usize>,
    sweep_rate: Option<String>,
    max_disconnect_share: Option<toml::Value>,
}

impl Validator {
    /// The cron expressions are checked here so a typo fails at start.
    pub(super) fn schedule(&self, raw: RawSchedule) -> Result<ScheduleSettings, ConfigError> {
        let version_check = raw.version_check.unwrap_or_else(|| "0 0 3 * * *".into());
        let expiry_check = raw.expiry_check.unwrap_or_else(|| "0 */5 * * * *".into());
        for (key, expr) in [
            ("schedule.version_check", &version_check),
            ("schedule.expiry_check", &expiry_check),
        ] {
            crate::domain::cron::parse_cron(expr).map_err(|m| self.err(key, m))?;
        }
        let sweep_concurrency = raw.sweep_concurrency.unwrap_or(16);
        if !(1..=1024).contains(&sweep_concurrency) {
            return Err(self.err("schedule.sweep_concurrency", "must be between 1 and 1024"));
        }
        let sweep_rate = parse_rate(raw.sweep_rate.as_deref().unwrap_or("100/s"))
            .map_err(|e| self.err("schedule.sweep_rate", e.to_string()))?;
        let max_disconnect_share = match &raw.max_disconnect_share {
            None => 0.05,
            Some(v) => parse_share(v)
                .map_err(|e| self.err("schedule.max_disconnect_share", e.to_string()))?,
        };
        Ok(ScheduleSettings {
            version_check,
            expiry_check,
            sweep_concurrency,
            sweep_rate,
            max_disconnect_share,
        })
    }
}
