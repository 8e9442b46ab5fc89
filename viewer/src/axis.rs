//! The time axis and value scales: the visible window of bars (zoom about a point, pan,
//! clamped to the data), round tick values, and UTC time labels.

/// The visible bars: `[start, end)` in fractional bar indices over `n` bars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub start: f64,
    pub end: f64,
    pub n: usize,
}

/// The narrowest view, in bars.
pub const MIN_SPAN: f64 = 8.0;

impl View {
    pub fn all(n: usize) -> View {
        View {
            start: 0.0,
            end: n as f64,
            n,
        }
    }

    pub fn span(&self) -> f64 {
        self.end - self.start
    }

    /// Zooms by `factor` (< 1 zooms in) keeping the bar at fraction `anchor` of the width fixed.
    pub fn zoom(&mut self, anchor: f64, factor: f64) {
        let n = self.n as f64;
        let min = MIN_SPAN.min(n);
        let span = (self.span() * factor).clamp(min, n);
        let at = self.start + anchor.clamp(0.0, 1.0) * self.span();
        self.start = at - anchor.clamp(0.0, 1.0) * span;
        self.end = self.start + span;
        self.clamp();
    }

    /// Moves by `bars` (positive: later).
    pub fn pan(&mut self, bars: f64) {
        self.start += bars;
        self.end += bars;
        self.clamp();
    }

    fn clamp(&mut self) {
        let n = self.n as f64;
        let span = self.span().min(n);
        if self.start < 0.0 {
            self.start = 0.0;
        }
        if self.start + span > n {
            self.start = n - span;
        }
        self.end = self.start + span;
    }
}

/// Round tick values covering `[lo, hi]`, at most about `max_ticks`.
pub fn nice_ticks(lo: f64, hi: f64, max_ticks: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || max_ticks == 0 {
        return Vec::new();
    }
    let raw = (hi - lo) / max_ticks as f64;
    let exp = raw.log10().floor() as i32;
    // Multiples of 10^exp, divided (not multiplied) by a negative power so that 0.6 is 0.6.
    let scale = |x: f64| {
        if exp < 0 {
            x / 10f64.powi(-exp)
        } else {
            x * 10f64.powi(exp)
        }
    };
    let mantissa = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|&m| scale(m) >= raw)
        .unwrap_or(10.0);
    let step = scale(mantissa);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| scale(k as f64 * mantissa)).collect()
}

/// A tick label: as many decimals as the tick step needs (`9999.5`, `10000`, `0.25`).
pub fn format_tick(v: f64, step: f64) -> String {
    if !(step.is_finite() && step > 0.0) || v.abs() >= 1e9 || (v != 0.0 && v.abs() < 1e-6) {
        return crate::table::format_num(v, 4);
    }
    // The fewest decimals that write the step exactly (0.5: 1, 0.25: 2, 2.5: 1, 1000: 0).
    let decimals = (0..10usize)
        .find(|&d| {
            let scaled = step * 10f64.powi(d as i32);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(10);
    let s = format!("{v:.decimals$}");
    if s == "-0" { "0".to_string() } else { s }
}

/// UTC date (`2025-01-31`) or date and time (`2025-01-31 22:00`) of Unix milliseconds.
pub fn format_time(t_ms: i64, with_time: bool) -> String {
    let secs = t_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if with_time {
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60
        )
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_view(v: View, start: f64, end: f64) {
        assert!(
            (v.start - start).abs() < 1e-9 && (v.end - end).abs() < 1e-9,
            "{v:?}, expected {start}..{end}"
        );
    }

    #[test]
    fn zoom_and_pan() {
        let mut v = View::all(1000);
        v.zoom(0.5, 0.5);
        check_view(v, 250.0, 750.0);
        v.zoom(0.0, 0.5);
        check_view(v, 250.0, 500.0);
        v.pan(-1000.0);
        check_view(v, 0.0, 250.0);
        v.pan(10_000.0);
        check_view(v, 750.0, 1000.0);
        v.zoom(1.0, 100.0);
        check_view(v, 0.0, 1000.0);
        v.zoom(0.5, 1e-9);
        assert!((v.span() - MIN_SPAN).abs() < 1e-9);
        let mut tiny = View::all(3);
        tiny.zoom(0.5, 0.1);
        check_view(tiny, 0.0, 3.0);
    }

    #[test]
    fn ticks() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(nice_ticks(0.13, 0.61, 4), vec![0.2, 0.4, 0.6]);
        assert!(nice_ticks(1.0, 1.0, 5).is_empty());
    }

    #[test]
    fn tick_labels() {
        let check = |v: f64, step: f64, expect: &str| assert_eq!(format_tick(v, step), expect);
        check(9999.5, 0.5, "9999.5");
        check(10_000.0, 0.5, "10000.0");
        check(120_000.0, 10_000.0, "120000");
        check(0.25, 0.25, "0.25");
        check(0.5, 0.25, "0.50");
        check(-0.0, 1.0, "0");
    }

    #[test]
    fn times() {
        assert_eq!(format_time(1_738_360_800_000, true), "2025-01-31 22:00");
        assert_eq!(format_time(0, false), "1970-01-01");
    }
}
