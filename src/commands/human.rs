//! How the CLI writes numbers and times for a person: counts with
//! thousands separators, times as a local date with how long ago, durations
//! in words. Scripts use `--json`, which keeps the daemon's own numbers.

use std::time::Duration;

use chrono::{Local, TimeZone};

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 invitation`, `2 invitations` (with separators).
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A duration in words, its two largest units: `3 minutes`, `2 hours 5
/// minutes`, `less than a second`.
pub fn words(d: Duration) -> String {
    let units = [
        (86_400, "day", "days"),
        (3_600, "hour", "hours"),
        (60, "minute", "minutes"),
        (1, "second", "seconds"),
    ];
    let mut left = d.as_secs();
    let mut parts = Vec::new();
    for (size, one, many) in units {
        let n = left / size;
        if n > 0 {
            parts.push(counted(n, one, many));
            left %= size;
        }
        if parts.len() == 2 || (!parts.is_empty() && n == 0) {
            break;
        }
    }
    if parts.is_empty() {
        "less than a second".into()
    } else {
        parts.join(" ")
    }
}

/// Milliseconds since the epoch as a local date and time with how long
/// ago (or how soon): `2026-12-07 01:02 (3 minutes ago)`.
pub fn time_ms(ms: u64) -> String {
    time_ms_at(ms, now_ms())
}

fn time_ms_at(ms: u64, now: u64) -> String {
    let Ok(signed) = i64::try_from(ms) else {
        return "-".into();
    };
    let Some(at) = Local.timestamp_millis_opt(signed).single() else {
        return "-".into();
    };
    let date = at.format("%Y-%m-%d %H:%M");
    if ms <= now {
        let ago = Duration::from_millis(now - ms);
        if ago < Duration::from_secs(1) {
            format!("{date} (just now)")
        } else {
            format!("{date} ({} ago)", words(ago))
        }
    } else {
        format!("{date} (in {})", words(Duration::from_millis(ms - now)))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A percentage of `part` in `whole`, `0%` when there is no whole.
pub fn percent(part: u64, whole: u64) -> String {
    match (part * 100).checked_div(whole) {
        Some(p) => format!("{p}%"),
        None => "0%".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_words() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(counted(1, "invitation", "invitations"), "1 invitation");
        assert_eq!(counted(2, "invitation", "invitations"), "2 invitations");
        assert_eq!(words(Duration::from_secs(180)), "3 minutes");
        assert_eq!(words(Duration::from_secs(7500)), "2 hours 5 minutes");
        assert_eq!(words(Duration::from_secs(90_061)), "1 day 1 hour");
        assert_eq!(words(Duration::from_millis(300)), "less than a second");
    }

    #[test]
    fn times_say_how_long_ago() {
        let now = 1_800_000_000_000;
        assert!(time_ms_at(now - 180_000, now).ends_with("(3 minutes ago)"));
        assert!(time_ms_at(now + 7_200_000, now).ends_with("(in 2 hours)"));
        assert!(!time_ms_at(now, now).contains("1800000000000"));
    }
}
