//! `[delivery]`: readings delivered into members' PDS: the directory
//! watched for readings files, the default dataset, batch size, concurrency
//! and rate of the POSTs, how long a row may be held, and `settle`: how long
//! a thing must stay quiet before it is taken as finished (a readings file
//! copied in by another tool; a POST Mydex did not answer, read back after
//! it), with `file_settle` for the files alone when the two should differ;
//! `source = "nats"` takes readings from `{prefix}.readings` instead.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use super::intake_source::IntakeSource;
use super::rate::{Rate, parse_rate};
use super::show;
use super::validate::Validator;
use crate::domain::DatasetName;

#[derive(Debug, Clone, Serialize)]
pub struct DeliverySettings {
    /// Where reading rows come from: the directory, or NATS.
    pub source: IntakeSource,
    #[serde(serialize_with = "show::path")]
    pub dir: PathBuf,
    #[serde(serialize_with = "show::display")]
    pub dataset: DatasetName,
    pub batch_size: usize,
    pub concurrency: usize,
    #[serde(serialize_with = "show::rate")]
    pub rate: Option<Rate>,
    #[serde(serialize_with = "show::duration")]
    pub hold_for: Duration,
    /// A request Mydex has not answered is taken as finished or abandoned
    /// after this long (then read back; never sooner than
    /// `mydex.request_timeout`); see `docs/book/src/delivery.md`.
    #[serde(serialize_with = "show::duration")]
    pub settle: Duration,
    /// A readings file not placed by `deliver` is read only once it has not
    /// changed for this long (default `delivery.settle`, else
    /// `queue.settle`); see `intake/settle.rs`.
    #[serde(serialize_with = "show::duration")]
    pub file_settle: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    #[serde(default)]
    source: IntakeSource,
    dir: Option<PathBuf>,
    dataset: Option<String>,
    batch_size: Option<i64>,
    concurrency: Option<i64>,
    rate: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    hold_for: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    settle: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    file_settle: Option<Duration>,
}

impl Validator {
    pub(super) fn delivery(
        &self,
        raw: Option<RawDelivery>,
        request_timeout: Duration,
        (queue_settle, store): (Duration, Option<&std::path::Path>),
    ) -> Result<Option<DeliverySettings>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        // With `source = "nats"` and no `dir`: `readings` beside the store.
        let beside_store = store
            .filter(|_| raw.source == IntakeSource::Nats)
            .map(|s| s.parent().unwrap_or(s).join("readings"));
        let dir = match raw.dir {
            Some(d) => self.path(d),
            None => self.required("delivery.dir", beside_store)?,
        };
        let dataset = DatasetName::parse(raw.dataset.as_deref().unwrap_or("ds_energy_readings"))
            .map_err(|e| self.err("delivery.dataset", e.to_string()))?;
        let range = |key: &str, v: Option<i64>, default: i64, max: i64| {
            let v = v.unwrap_or(default);
            if (1..=max).contains(&v) {
                Ok(v as usize)
            } else {
                Err(self.err(key, format!("must be between 1 and {max}, not {v}")))
            }
        };
        let batch_size = range("delivery.batch_size", raw.batch_size, 50, 500)?;
        let concurrency = range("delivery.concurrency", raw.concurrency, 8, 256)?;
        let rate = parse_rate(raw.rate.as_deref().unwrap_or("unlimited"))
            .map_err(|e| self.err("delivery.rate", e.to_string()))?;
        let hold_for = raw.hold_for.unwrap_or(Duration::from_secs(30 * 86400));
        if hold_for < Duration::from_secs(1) || hold_for > Duration::from_secs(365 * 86400) {
            return Err(self.err("delivery.hold_for", "must be between 1s and 365d"));
        }
        // One word for one idea: how long a thing must stay quiet before it
        // is taken as finished. A readings file copied in by another tool
        // (unchanged this long), and a batch Mydex did not answer (read back
        // after this long, never sooner than Mydex may still be working on it).
        let settle = match raw.settle {
            Some(s) if s > Duration::from_secs(3600) => {
                return Err(self.err("delivery.settle", "must be at most 1h"));
            }
            Some(s) => s.max(request_timeout),
            None => (request_timeout * 2).max(Duration::from_secs(5)),
        };
        let file_settle = self.file_settle(
            "delivery.file_settle",
            raw.file_settle,
            raw.settle.unwrap_or(queue_settle),
        )?;
        Ok(Some(DeliverySettings {
            source: raw.source,
            dir,
            dataset,
            batch_size,
            concurrency,
            rate,
            hold_for,
            settle,
            file_settle,
        }))
    }
}
