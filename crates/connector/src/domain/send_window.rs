//! A campaign's send window: the days and hours, in the campaign's own time
//! zone, during which its invitations may be mailed (`send_window =
//! "Mon-Fri 09:00-18:00"`, `time_zone = "Europe/London"`). Parsed once at
//! config load, so a typo fails the start with the key named.

use chrono::{Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Days (bit 0 = Monday) and a daily span `[start, end)` in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    days: u8,
    start_min: u16,
    end_min: u16,
    pub tz: Tz,
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Why a send window or time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("{0:?} is not a day (Mon, Tue, ... Sun)")]
    Day(String),
    #[error("{0:?} is not a time HH:MM")]
    Time(String),
    #[error("{0:?} is not an IANA time zone (e.g. \"Europe/London\", \"UTC\")")]
    TimeZone(String),
    #[error("{0:?} is not a send window like \"Mon-Fri 09:00-18:00\" (days, then a time span)")]
    Shape(String),
    #[error("{0:?}: the span must start before it ends (windows past midnight: split them by day)")]
    EmptySpan(String),
}

/// The text, for a configuration error naming the key.
impl From<WindowError> for String {
    fn from(e: WindowError) -> String {
        e.to_string()
    }
}

fn day(s: &str) -> Result<u8, WindowError> {
    let l = s.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|d| l == d[..3] || l == *d)
        .map(|i| i as u8)
        .ok_or_else(|| WindowError::Day(s.to_string()))
}

fn minutes(s: &str) -> Result<u16, WindowError> {
    let bad = || WindowError::Time(s.to_string());
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// The IANA time zone `name` (`"Europe/London"`, `"UTC"`).
pub fn parse_tz(name: &str) -> Result<Tz, WindowError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| WindowError::TimeZone(name.to_string()))
}

impl SendWindow {
    /// `"Mon-Fri 09:00-18:00"`, `"Sat,Sun 10:00-16:00"`, `"Mon-Sun 00:00-24:00"`.
    pub fn parse(raw: &str, tz: Tz) -> Result<Self, WindowError> {
        let shape = || WindowError::Shape(raw.to_string());
        let (days_part, span) = raw.trim().split_once(' ').ok_or_else(shape)?;
        let mut days = 0u8;
        for item in days_part.split(',') {
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    // A range may wrap around the week: "Sat-Mon".
                    let mut d = a;
                    loop {
                        days |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days |= 1 << day(item)?,
            }
        }
        let (start, end) = span.trim().split_once('-').ok_or_else(shape)?;
        let (start_min, end_min) = (minutes(start)?, minutes(end)?);
        if start_min >= end_min {
            return Err(WindowError::EmptySpan(raw.to_string()));
        }
        Ok(Self {
            days,
            start_min,
            end_min,
            tz,
        })
    }

    /// Is `at` inside the window?
    pub fn contains(&self, at: chrono::DateTime<Utc>) -> bool {
        let local = self.tz.from_utc_datetime(&at.naive_utc());
        let weekday = local.weekday().num_days_from_monday() as u8;
        let m = (local.hour() * 60 + local.minute()) as u16;
        self.days & (1 << weekday) != 0 && m >= self.start_min && m < self.end_min
    }

    pub fn open_now(&self) -> bool {
        self.contains(Utc::now())
    }

    /// When the window opens next after `at`; `None` while it is open.
    pub fn next_open(&self, at: chrono::DateTime<Utc>) -> Option<chrono::DateTime<Utc>> {
        if self.contains(at) {
            return None;
        }
        let today = self.tz.from_utc_datetime(&at.naive_utc()).date_naive();
        let start = chrono::NaiveTime::from_hms_opt(
            u32::from(self.start_min / 60),
            u32::from(self.start_min % 60),
            0,
        )?;
        (0..=7)
            .filter_map(|d| today.checked_add_days(chrono::Days::new(d)))
            .filter(|day| self.days & (1 << day.weekday().num_days_from_monday()) != 0)
            .filter_map(|day| self.tz.from_local_datetime(&day.and_time(start)).earliest())
            .map(|t| t.with_timezone(&Utc))
            .find(|t| *t > at)
    }
}

impl std::fmt::Display for SendWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days: Vec<&str> = (0..7)
            .filter(|d| self.days & (1 << d) != 0)
            .map(|d| &DAYS[d as usize][..3])
            .collect();
        write!(
            f,
            "{} {:02}:{:02}-{:02}:{:02}",
            days.join(","),
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> chrono::DateTime<Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn weekdays_in_london() {
        let w =
            SendWindow::parse("Mon-Fri 09:00-18:00", parse_tz("Europe/London").unwrap()).unwrap();
        // Monday 2026-06-01, 08:30 UTC = 09:30 BST.
        assert!(w.contains(at("2026-06-01T08:30:00Z")));
        // 07:30 UTC = 08:30 BST: too early.
        assert!(!w.contains(at("2026-06-01T07:30:00Z")));
        // 17:00 UTC = 18:00 BST: the end is exclusive.
        assert!(!w.contains(at("2026-06-01T17:00:00Z")));
        // Saturday.
        assert!(!w.contains(at("2026-06-06T10:00:00Z")));
    }

    #[test]
    fn says_when_it_opens() {
        let w =
            SendWindow::parse("Mon-Fri 09:00-18:00", parse_tz("Europe/London").unwrap()).unwrap();
        // Saturday 2026-06-06 10:00 UTC: Monday 09:00 BST = 08:00 UTC.
        assert_eq!(
            w.next_open(at("2026-06-06T10:00:00Z")),
            Some(at("2026-06-08T08:00:00Z"))
        );
        // Monday 07:30 UTC, before it opens that day.
        assert_eq!(
            w.next_open(at("2026-06-01T07:30:00Z")),
            Some(at("2026-06-01T08:00:00Z"))
        );
        assert_eq!(w.next_open(at("2026-06-01T08:30:00Z")), None);
    }

    #[test]
    fn lists_wraps_and_whole_days() {
        let w = SendWindow::parse("Sat-Mon,Wed 00:00-24:00", Tz::UTC).unwrap();
        assert!(w.contains(at("2026-06-06T23:59:00Z"))); // Sat
        assert!(w.contains(at("2026-06-08T00:00:00Z"))); // Mon
        assert!(!w.contains(at("2026-06-09T12:00:00Z"))); // Tue
        assert!(w.contains(at("2026-06-10T12:00:00Z"))); // Wed
    }

    #[test]
    fn bad_windows_say_why() {
        for bad in [
            "weekdays",
            "Mon-Fri",
            "Mon-Fro 09:00-18:00",
            "Mon 9-18",
            "Mon 18:00-09:00",
            "Mon 09:00-25:00",
            "Mon 09:60-10:00",
        ] {
            assert!(SendWindow::parse(bad, Tz::UTC).is_err(), "{bad}");
        }
        assert!(parse_tz("Mars/Olympus").is_err());
        assert!(parse_tz("Europe/London").is_ok());
    }
}
