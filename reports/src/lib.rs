//! The JSON schema of everything e-trading exports. This crate owns the serialisable types;
//! other crates hand it their plain structs and it converts them by hand, so a change in an
//! engine's internals never changes a file format by accident. Every document carries a
//! `schema` field naming its type and version.

pub mod backtest;
pub mod csv_scan;
pub mod inspect;
pub mod run;
pub mod study;
pub mod table;

/// ISO-8601 UTC text of a Unix millisecond timestamp (`2025-01-01T00:00:00Z`).
pub fn iso_time(t_ms: i64) -> String {
    let secs = t_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let ms = t_ms.rem_euclid(1000);
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if ms == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{ms:03}Z")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_times() {
        assert_eq!(super::iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso_time(1_735_689_600_000), "2025-01-01T00:00:00Z");
        assert_eq!(super::iso_time(1_709_164_800_000), "2024-02-29T00:00:00Z");
        assert_eq!(
            super::iso_time(1_735_689_600_015),
            "2025-01-01T00:00:00.015Z"
        );
    }
}
