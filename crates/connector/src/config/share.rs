//! `schedule.max_disconnect_share`: a share of the members written as a
//! percentage or a fraction, its parsing, display and refusal texts.

/// Why a share was refused; the texts name the value as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("{0:?} is not a percentage such as \"5%\"")]
    BadPercentage(String),
    #[error("{0:?} is neither a percentage (\"5%\") nor a fraction (0.05)")]
    Neither(String),
    #[error("must be a percentage (\"5%\") or a fraction (0.05), not {0}")]
    WrongType(&'static str),
    #[error("must be between 0% and 100% (a fraction between 0 and 1)")]
    OutOfRange,
}

/// `schedule.max_disconnect_share`: `"5%"` or a fraction such as `0.05`
/// (a bare `5` would be ambiguous and is refused); 0% to 100%.
pub fn parse_share(v: &toml::Value) -> Result<f64, ShareError> {
    let share = match v {
        toml::Value::String(s) => {
            let t = s.trim();
            match t.strip_suffix('%') {
                Some(p) => p
                    .trim()
                    .parse::<f64>()
                    .map(|p| p / 100.0)
                    .map_err(|_| ShareError::BadPercentage(s.clone()))?,
                None => t
                    .parse::<f64>()
                    .map_err(|_| ShareError::Neither(s.clone()))?,
            }
        }
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        other => return Err(ShareError::WrongType(other.type_str())),
    };
    if !share.is_finite() || !(0.0..=1.0).contains(&share) {
        return Err(ShareError::OutOfRange);
    }
    Ok(share)
}

/// A share as `check-config` prints it (`"5%"`).
pub(super) fn format_share(share: f64) -> String {
    let pct = share * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{}%", pct.round())
    } else {
        format!("{pct}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_share_as_percentage_or_fraction() {
        let v = |s: &str| toml::Value::String(s.into());
        assert_eq!(parse_share(&v("5%")).unwrap(), 0.05);
        assert_eq!(parse_share(&v(" 12.5 % ")).unwrap(), 0.125);
        assert_eq!(parse_share(&toml::Value::Float(0.05)).unwrap(), 0.05);
        assert_eq!(parse_share(&v("0.3")).unwrap(), 0.3);
        assert_eq!(parse_share(&toml::Value::Integer(0)).unwrap(), 0.0);
        assert_eq!(parse_share(&v("100%")).unwrap(), 1.0);
        for bad in ["101%", "-1%", "five", "5", "%"] {
            assert!(parse_share(&v(bad)).is_err(), "{bad}");
        }
        assert!(parse_share(&toml::Value::Float(1.5)).is_err());
        assert!(parse_share(&toml::Value::Boolean(true)).is_err());
        assert_eq!(format_share(0.05), "5%");
    }

    #[test]
    fn share_error_texts() {
        let v = |s: &str| toml::Value::String(s.into());
        assert_eq!(
            parse_share(&v("x%")).unwrap_err().to_string(),
            "\"x%\" is not a percentage such as \"5%\""
        );
        assert_eq!(
            parse_share(&v("five")).unwrap_err().to_string(),
            "\"five\" is neither a percentage (\"5%\") nor a fraction (0.05)"
        );
        assert_eq!(
            parse_share(&toml::Value::Boolean(true))
                .unwrap_err()
                .to_string(),
            "must be a percentage (\"5%\") or a fraction (0.05), not boolean"
        );
    }
}
