//! How long a link lasts, in the words a member reads in the mail
//! ("24 hours", "3 days", "1 hour and 30 minutes"; days only from two
//! days on, as people say "24 hours" rather than "1 day"), from
//! `invitations.link_ttl`: the mail must never promise longer than the
//! daemon keeps the link, nor say "24 hours" when it is not.

use std::time::Duration;

/// `d` in words, to the minute (rounded down; less than a minute is
/// "1 minute"): at most two units, the larger first.
pub fn duration_in_words(d: Duration) -> String {
    let minutes = (d.as_secs() / 60).max(1);
    let days = if minutes >= 2 * 1440 {
        minutes / 1440
    } else {
        0
    };
    let (hours, mins) = ((minutes - days * 1440) / 60, minutes % 60);
    let unit = |n: u64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    let parts: Vec<String> = [(days, "day"), (hours, "hour"), (mins, "minute")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, one)| unit(n, one))
        .collect();
    match parts.as_slice() {
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [a, b, c] => format!("{a}, {b} and {c}"),
        _ => unit(minutes, "minute"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_words() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(duration_in_words(h(24)), "24 hours");
        assert_eq!(duration_in_words(h(36)), "36 hours");
        assert_eq!(duration_in_words(h(72)), "3 days");
        assert_eq!(duration_in_words(h(1)), "1 hour");
        assert_eq!(duration_in_words(h(12)), "12 hours");
        assert_eq!(
            duration_in_words(Duration::from_secs(90 * 60)),
            "1 hour and 30 minutes"
        );
        assert_eq!(duration_in_words(Duration::from_secs(30)), "1 minute");
        assert_eq!(
            duration_in_words(Duration::from_secs(49 * 3600 + 60)),
            "2 days, 1 hour and 1 minute"
        );
    }
}
