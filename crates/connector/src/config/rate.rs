//! `"60/min"`-style rates (`campaign.rate`, `schedule.sweep_rate`): their
//! parsing, their display, and the error a bad one gives.

use std::time::Duration;

/// At most `count` invitations in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

/// Why a rate was refused; the texts name the value as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("{0:?} is not a rate like \"60/min\", \"10/s\", \"1000/h\" or \"5/90s\"")]
    Malformed(String),
    #[error("{0:?}: the count must be 1 or more")]
    ZeroCount(String),
}

/// `"60/min"`, `"10/s"`, `"1000/h"`, `"5/90s"`; `"unlimited"` or `"off"` for none.
pub fn parse_rate(raw: &str) -> Result<Option<Rate>, RateError> {
    let raw = raw.trim();
    if matches!(raw, "unlimited" | "off" | "none") {
        return Ok(None);
    }
    let bad = || RateError::Malformed(raw.to_string());
    let (count, per) = raw.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(RateError::ZeroCount(raw.to_string()));
    }
    let per = match per.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86400),
        other => humantime::parse_duration(other).map_err(|_| bad())?,
    };
    if per.is_zero() {
        return Err(bad());
    }
    Ok(Some(Rate { count, per }))
}

/// A rate as `check-config` prints it (`"60/1m"`), `"unlimited"` for none.
pub(super) fn format_rate(rate: Option<Rate>) -> String {
    rate.map(|r| format!("{}/{}", r.count, humantime::format_duration(r.per)))
        .unwrap_or("unlimited".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            parse_rate("60/min").unwrap(),
            Some(Rate {
                count: 60,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(
            parse_rate("5/90s").unwrap(),
            Some(Rate {
                count: 5,
                per: Duration::from_secs(90)
            })
        );
        assert_eq!(parse_rate("off").unwrap(), None);
        assert!(parse_rate("0/min").is_err());
        assert!(parse_rate("ten/min").is_err());
        assert!(parse_rate("10").is_err());
    }

    #[test]
    fn rate_error_texts() {
        assert_eq!(
            parse_rate("0/min").unwrap_err().to_string(),
            "\"0/min\": the count must be 1 or more"
        );
        assert_eq!(
            parse_rate("10").unwrap_err().to_string(),
            "\"10\" is not a rate like \"60/min\", \"10/s\", \"1000/h\" or \"5/90s\""
        );
    }
}
