//! `[log]`: the log level (or filter) and format.

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use super::validate::Validator;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Serialize)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

impl Validator {
    pub(super) fn log(&self, raw: RawLog) -> Result<LogSettings, ConfigError> {
        let level = raw.level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(self.err(
                "log.level",
                format!("{level:?} is not a level or filter (error, warn, info, debug, trace)"),
            ));
        }
        let format = match raw.format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(self.err(
                    "log.format",
                    format!("{other:?} is neither \"text\" nor \"json\""),
                ));
            }
        };
        Ok(LogSettings { level, format })
    }
}
