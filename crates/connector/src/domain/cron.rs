//! A cron expression with seconds, checked the way the lifecycle's
//! scheduler reads it (`schedule.version_check`, `schedule.expiry_check`).

use croner::parser::{CronParser, Seconds};

/// Why a cron expression was refused.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error(
        "{expr:?} is not a cron expression with seconds: it needs 6 fields (sec min hour day-of-month month day-of-week), it has {fields}"
    )]
    FieldCount { expr: String, fields: usize },
    #[error("{expr:?} is not a valid cron expression: {error}")]
    Invalid {
        expr: String,
        error: croner::errors::CronError,
    },
}

/// The text, for a configuration error naming the key.
impl From<CronError> for String {
    fn from(e: CronError) -> String {
        e.to_string()
    }
}

/// Check a cron expression with seconds, the way the scheduler reads it.
pub fn parse_cron(expr: &str) -> Result<(), CronError> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err(CronError::FieldCount {
            expr: expr.to_string(),
            fields,
        });
    }
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map(|_| ())
        .map_err(|error| CronError::Invalid {
            expr: expr.to_string(),
            error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_with_seconds() {
        assert!(parse_cron("0 0 3 * * *").is_ok());
        assert!(parse_cron("0 */5 * * * *").is_ok());
        assert!(parse_cron("*/2 * * * * Mon-Fri").is_ok());
        assert!(parse_cron("0 3 * * *").is_err(), "five fields: no seconds");
        assert!(parse_cron("0 0 25 * * *").is_err(), "hour 25");
        assert!(parse_cron("every day").is_err());
    }
}
