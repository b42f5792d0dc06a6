//! A row refused on its way in (by `enqueue`, `deliver`, the daemon's
//! intake of a file or a request, or delivery's intake), as the operator
//! knows it: the file as they named it, their own line number, the reason
//! and when. The admin API answers these and the CLI prints them; the
//! store keeps them (`store/rejects.rs`) for a bounded time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One rejected row, as `rejects list --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    /// The file as the operator named it (a request: `POST /invitees`).
    pub file: String,
    /// The operator's own line number (0: the file as a whole).
    pub line: u64,
    pub reason: String,
    /// When it was rejected (RFC 3339, UTC).
    pub at: String,
}

/// A rejection about to be kept: what the intake knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The file as the operator named it.
    pub file: String,
    /// The name the row's file had where the daemon took it in (the
    /// queue or readings directory), which `enqueue --wait` asks about.
    #[serde(default)]
    pub source: String,
    pub line: u64,
    pub reason: String,
    /// When it was rejected, milliseconds since the epoch.
    pub at_ms: u64,
}

impl Rejection {
    /// The row as the operator sees it.
    pub fn shown(&self) -> RejectedRow {
        RejectedRow {
            file: self.file.clone(),
            line: self.line,
            reason: self.reason.clone(),
            at: rfc3339(self.at_ms),
        }
    }
}

/// `at_ms` as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(at_ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(at_ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// `--since`: a duration back from now (`"2h"`, `"7d"`) or a moment
/// (`"2026-12-07T00:00:00Z"`), as milliseconds since the epoch.
pub fn parse_since(text: &str, now: SystemTime) -> Result<u64, SinceError> {
    let text = text.trim();
    let at = match humantime::parse_duration(text) {
        Ok(back) => now.checked_sub(back).unwrap_or(UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(text).map_err(|_| SinceError(text.into()))?,
    };
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64))
}

/// A `--since` that is neither a duration nor a moment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is neither a duration (\"2h\", \"7d\") nor a moment (\"2026-12-07T09:00:00Z\", \"2026-12-07 09:00:00\")"
)]
pub struct SinceError(pub String);

/// `GET /rejects`'s answer: a page of rejects, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectsPage {
    pub rejects: Vec<RejectedRow>,
    /// The cursor of the next page (`?after=`); none on the last.
    pub next: Option<String>,
}

/// What the daemon made of one file (or message) placed for it, once it
/// has taken it in: `enqueue --wait` and `deliver --wait` print it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeVerdict {
    /// The file as the operator named it.
    pub file: String,
    /// Rows stored (invitations queued, or readings queued).
    pub stored: u64,
    /// Readings stored but held (no active member with a grant yet).
    #[serde(default)]
    pub held: u64,
    /// Rows already held: not stored twice.
    pub duplicates: u64,
    /// Rows refused, `enqueue`'s and `deliver`'s own included.
    pub rejected: u64,
    /// When the daemon finished the file (RFC 3339, UTC).
    pub at: String,
}

/// `GET /intake/verdict`'s answer: the verdict once the file is taken in,
/// with the rows rejected (at most a page of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictAnswer {
    /// `pending` (not taken in yet) or `done`.
    pub state: String,
    pub verdict: Option<IntakeVerdict>,
    #[serde(default)]
    pub rejects: Vec<RejectedRow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_or_a_moment() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(parse_since("1h", now), Ok(6_400_000));
        assert_eq!(parse_since("1970-01-01T00:00:05Z", now), Ok(5_000));
        assert!(parse_since("yesterday", now).is_err());
        assert_eq!(rfc3339(5_000), "1970-01-01T00:00:05.000Z");
    }
}
