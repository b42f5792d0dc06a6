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
    /// A field the expression's reader refused, said in words.
    #[error("{expr:?} is not a valid cron expression: {problem}")]
    Field { expr: String, problem: String },
    #[error("{expr:?} is not a valid cron expression: {}", words(error))]
    Invalid {
        expr: String,
        error: croner::errors::CronError,
    },
}

/// The fields of a cron expression with seconds: name, plural, range, and
/// the names the field accepts besides numbers.
const FIELDS: [(&str, &str, u32, u32, &[&str]); 6] = [
    ("second", "seconds", 0, 59, &[]),
    ("minute", "minutes", 0, 59, &[]),
    ("hour", "hours", 0, 23, &[]),
    ("day of the month", "days of the month", 1, 31, &[]),
    (
        "month",
        "months",
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    ),
    (
        "day of the week",
        "days of the week",
        0,
        7,
        &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    ),
];

/// The croner error without its "Component error:" style prefix.
fn words(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    match e {
        E::InvalidPattern(m) | E::IllegalCharacters(m) | E::ComponentError(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The first field with a number out of its range, a step of 0, or a word
/// that is not a name it accepts, said in words.
fn field_problem(expr: &str) -> Option<String> {
    for (text, (name, plural, lo, hi, names)) in expr.split_whitespace().zip(FIELDS) {
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (part, None),
            };
            if let Some(step) = step
                && step.parse::<u32>().map_or(true, |n| n == 0)
            {
                return Some(format!(
                    "the {name} field {text:?} has the step {step:?}: a step is a whole number from 1"
                ));
            }
            for item in range.split('-').filter(|i| !matches!(*i, "*" | "?" | "")) {
                if item.contains(['L', 'W', '#']) {
                    continue;
                }
                match item.parse::<u32>() {
                    Ok(n) if n < lo || n > hi => {
                        return Some(format!(
                            "the {name} field is {n}, but {plural} run from {lo} to {hi}"
                        ));
                    }
                    Ok(_) => {}
                    Err(_) if names.contains(&item.to_ascii_lowercase().as_str()) => {}
                    Err(_) => {
                        return Some(format!(
                            "the {name} field holds {item:?}, which is not a number from {lo} to {hi}{}",
                            if names.is_empty() {
                                ""
                            } else {
                                " or a name such as Jan or Mon"
                            }
                        ));
                    }
                }
            }
        }
    }
    None
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
        .map_err(|error| match field_problem(expr) {
            Some(problem) => CronError::Field {
                expr: expr.to_string(),
                problem,
            },
            None => CronError::Invalid {
                expr: expr.to_string(),
                error,
            },
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
        let hour = parse_cron("0 0 25 * * *").unwrap_err().to_string();
        assert!(
            hour.contains("the hour field is 25, but hours run from 0 to 23"),
            "{hour}"
        );
        let step = parse_cron("*/0 * * * * *").unwrap_err().to_string();
        assert!(step.contains("step"), "{step}");
        let month = parse_cron("0 0 3 1 Foo *").unwrap_err().to_string();
        assert!(month.contains("month field holds \"Foo\""), "{month}");
        assert!(parse_cron("0 0 3 * Jan-Mar Mon-Fri").is_ok());
    }
}
