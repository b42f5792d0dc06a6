//! `[queue]`: the intake directory watched for CSV drops.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::show;

use super::error::ConfigError;
use super::validate::Validator;

#[derive(Serialize)]
pub struct QueueSettings {
    #[serde(serialize_with = "show::path")]
    pub dir: PathBuf,
    #[serde(serialize_with = "show::duration")]
    pub poll_interval: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    dir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde::option")]
    poll_interval: Option<Duration>,
}

impl Validator {
    pub(super) fn queue(&self, raw: RawQueue) -> Result<QueueSettings, ConfigError> {
        Ok(QueueSettings {
            dir: self.path(self.required("queue.dir", raw.dir)?),
            poll_interval: raw.poll_interval.unwrap_or(Duration::from_secs(2)),
        })
    }
}
