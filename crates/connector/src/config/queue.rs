//! `[queue]`: the intake directory watched for CSV drops, how often it is
//! listed, and how long a file copied in by another tool must stay unchanged
//! before it is read (`settle`); or, with `source = "nats"`, the broker's
//! `{prefix}.invitees` instead of the directory.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::intake_source::IntakeSource;
use super::show;

use super::error::ConfigError;
use super::validate::Validator;

#[derive(Serialize)]
pub struct QueueSettings {
    /// Where invitee rows come from: the directory, or NATS.
    pub source: IntakeSource,
    /// With `source = "nats"` and no `dir` set: `queue` beside the store
    /// (unread by the daemon then; `people` and `status` still look there).
    #[serde(serialize_with = "show::path")]
    pub dir: PathBuf,
    #[serde(serialize_with = "show::duration")]
    pub poll_interval: Duration,
    /// A file not placed by `enqueue` is read only once it has not changed
    /// for this long (default 5s); see `intake/settle.rs`.
    #[serde(serialize_with = "show::duration")]
    pub settle: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    #[serde(default)]
    source: IntakeSource,
    dir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde::option")]
    poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    settle: Option<Duration>,
}

/// `queue.settle` when the file does not set it.
const DEFAULT_SETTLE: Duration = Duration::from_secs(5);

impl Validator {
    pub(super) fn queue(
        &self,
        raw: RawQueue,
        store: Option<&std::path::Path>,
    ) -> Result<QueueSettings, ConfigError> {
        let beside_store = store
            .filter(|_| raw.source == IntakeSource::Nats)
            .map(|s| s.parent().unwrap_or(s).join("queue"));
        let dir = match raw.dir {
            Some(d) => self.path(d),
            None => self.required("queue.dir", beside_store)?,
        };
        Ok(QueueSettings {
            source: raw.source,
            dir,
            poll_interval: raw.poll_interval.unwrap_or(Duration::from_secs(2)),
            settle: self.file_settle("queue.settle", raw.settle, DEFAULT_SETTLE)?,
        })
    }

    /// A settle time for files copied into a watched directory: 0s (read as
    /// soon as no write is seen in progress) to 1h.
    pub(super) fn file_settle(
        &self,
        key: &str,
        raw: Option<Duration>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let settle = raw.unwrap_or(default);
        if settle > Duration::from_secs(3600) {
            return Err(self.err(key, "must be at most 1h"));
        }
        Ok(settle)
    }
}
