//! Bar intervals (`15m`, `1h`, `4h`, `1d`...) and UTC time formatting of millisecond timestamps.

use std::fmt;
use std::str::FromStr;

/// Milliseconds in one minute, hour and day.
pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// A bar interval, held in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    ms: i64,
}

impl Interval {
    /// An interval of `ms` milliseconds; `None` unless it is a positive whole number of minutes.
    pub fn from_ms(ms: i64) -> Option<Interval> {
        (ms > 0 && ms % MINUTE_MS == 0).then_some(Interval { ms })
    }

    /// The length in milliseconds.
    pub fn ms(self) -> i64 {
        self.ms
    }

    /// Whether bars of this interval start on multiples of it since the Unix epoch
    /// (true for every interval that divides a day; weeks start on Mondays, not on the epoch).
    pub fn is_epoch_aligned(self) -> bool {
        DAY_MS % self.ms == 0
    }

    /// The start of the bar that contains `t_ms`.
    pub fn floor(self, t_ms: i64) -> i64 {
        t_ms.div_euclid(self.ms) * self.ms
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_duration(self.ms, f)
    }
}

/// Writes a duration in the largest unit that divides it (`15m`, `1h`, `3d`, `1w`, `90s`, `250ms`).
fn format_duration(ms: i64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    const UNITS: [(i64, &str); 5] = [
        (7 * DAY_MS, "w"),
        (DAY_MS, "d"),
        (HOUR_MS, "h"),
        (MINUTE_MS, "m"),
        (1000, "s"),
    ];
    for (unit, name) in UNITS {
        if ms != 0 && ms % unit == 0 {
            return write!(f, "{}{name}", ms / unit);
        }
    }
    write!(f, "{ms}ms")
}

/// A duration in milliseconds, displayed like an interval (`45m`, `2h`).
#[derive(Debug, Clone, Copy)]
pub struct Duration(pub i64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_duration(self.0, f)
    }
}

/// The interval text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown interval {0:?}: expected a number and a unit m, h, d or w, such as 15m, 1h, 4h or 1d"
)]
pub struct ParseIntervalError(pub String);

impl FromStr for Interval {
    type Err = ParseIntervalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseIntervalError(s.to_string());
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (num, unit) = s.split_at(split);
        let n: i64 = num.parse().map_err(|_| err())?;
        let unit_ms = match unit {
            "m" => MINUTE_MS,
            "h" => HOUR_MS,
            "d" => DAY_MS,
            "w" => 7 * DAY_MS,
            _ => return Err(err()),
        };
        n.checked_mul(unit_ms)
            .and_then(Interval::from_ms)
            .ok_or_else(err)
    }
}

/// Formats a Unix millisecond timestamp as `YYYY-MM-DD HH:MM` UTC (with seconds and
/// milliseconds only when they are not zero).
pub fn fmt_time(t_ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(t_ms) {
        Some(t) if t_ms % MINUTE_MS == 0 => t.format("%Y-%m-%d %H:%M").to_string(),
        Some(t) if t_ms % 1000 == 0 => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        None => format!("{t_ms}ms"),
    }
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` or RFC 3339 as a UTC instant in milliseconds.
pub fn parse_date_ms(s: &str) -> Option<i64> {
    use chrono::{NaiveDate, NaiveDateTime};
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%:z", "%Y-%m-%d %H:%M:%S%z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_millis());
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, ms: i64) {
        let iv: Interval = text.parse().unwrap();
        assert_eq!(iv.ms(), ms, "{text}");
        assert_eq!(iv.to_string(), text);
    }

    #[test]
    fn parses_and_prints_intervals() {
        check("15m", 15 * MINUTE_MS);
        check("1h", HOUR_MS);
        check("4h", 4 * HOUR_MS);
        check("1d", DAY_MS);
        check("1w", 7 * DAY_MS);
        for bad in ["", "h", "1", "1y", "0h", "-1h", "1.5h"] {
            assert!(bad.parse::<Interval>().is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_times() {
        assert_eq!(fmt_time(1_735_689_600_000), "2025-01-01 00:00");
        assert_eq!(fmt_time(1_735_689_600_015), "2025-01-01 00:00:00.015");
        assert_eq!(parse_date_ms("2025-01-01"), Some(1_735_689_600_000));
        assert_eq!(
            parse_date_ms("2025-01-01T00:00:00Z"),
            Some(1_735_689_600_000)
        );
        assert_eq!(
            parse_date_ms("2025-01-01 01:00:00+01:00"),
            Some(1_735_689_600_000)
        );
        assert_eq!(parse_date_ms("2025-13-01"), None);
    }
}
