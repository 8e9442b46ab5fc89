//! Walk-forward windows on the bar index: the full run first, then each in-sample window
//! followed by its out-of-sample window (docs/SEMANTICS.md §4.2).

use std::ops::Range;

use crate::spec::{WalkForwardMode, WalkForwardSpec};

/// What a window scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Every bar.
    Full,
    /// In-sample window `k`.
    InSample(u32),
    /// Out-of-sample window `k`.
    OutOfSample(u32),
}

impl WindowKind {
    /// `full`, `is_0`, `oos_0`, ...: the prefix of the metric names stored per window.
    pub fn label(self) -> String {
        match self {
            WindowKind::Full => "full".to_string(),
            WindowKind::InSample(k) => format!("is_{k}"),
            WindowKind::OutOfSample(k) => format!("oos_{k}"),
        }
    }
}

/// One scored bar range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kind: WindowKind,
    pub start: usize,
    pub end: usize,
}

/// The windows of a batch; the first is always [`WindowKind::Full`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowPlan {
    windows: Vec<Window>,
}

/// The data is too short for the spec's walk-forward split.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WindowPlanError {
    #[error(
        "[walk_forward] needs {needed_days:.1} days of data ({windows} windows), the data covers {have_days:.1} days"
    )]
    TooShort {
        windows: u32,
        needed_days: f64,
        have_days: f64,
    },
    #[error("[walk_forward] window {window}: {what} holds no bar")]
    Empty { window: u32, what: &'static str },
}

const DAY_MS: f64 = 86_400_000.0;

impl WindowPlan {
    /// Only the full run over `bars` bars.
    pub fn full(bars: usize) -> WindowPlan {
        WindowPlan {
            windows: vec![Window {
                kind: WindowKind::Full,
                start: 0,
                end: bars,
            }],
        }
    }

    /// The full run plus the splits of `spec` placed from the first bar of `open_time` (bars
    /// of `interval_ms`). Window `k` (from 0):
    /// - rolling: IS = `[t0 + k x oos, t0 + k x oos + is)`;
    /// - anchored: IS = `[t0, t0 + is + k x oos)`;
    /// - OOS = `[IS end + gap, IS end + gap + oos)`.
    ///
    /// Times map to the bars whose open time lies in the span.
    pub fn walk_forward(
        spec: &WalkForwardSpec,
        open_time: &[i64],
        interval_ms: i64,
    ) -> Result<WindowPlan, WindowPlanError> {
        let mut plan = WindowPlan::full(open_time.len());
        let (Some(&t0), Some(&last)) = (open_time.first(), open_time.last()) else {
            return Err(WindowPlanError::TooShort {
                windows: spec.windows,
                needed_days: 0.0,
                have_days: 0.0,
            });
        };
        let data_end = last + interval_ms;
        let bar_at = |t: i64| open_time.partition_point(|&x| x < t);
        for k in 0..spec.windows {
            let k64 = i64::from(k);
            let (is_start, is_end) = match spec.mode {
                WalkForwardMode::Rolling => {
                    let start = t0 + k64 * spec.out_of_sample_ms;
                    (start, start + spec.in_sample_ms)
                }
                WalkForwardMode::Anchored => {
                    (t0, t0 + spec.in_sample_ms + k64 * spec.out_of_sample_ms)
                }
            };
            let oos_start = is_end + spec.gap_ms;
            let oos_end = oos_start + spec.out_of_sample_ms;
            if oos_end > data_end {
                let last_k = i64::from(spec.windows - 1);
                let needed = match spec.mode {
                    WalkForwardMode::Rolling | WalkForwardMode::Anchored => {
                        spec.in_sample_ms + spec.gap_ms + (last_k + 1) * spec.out_of_sample_ms
                    }
                };
                return Err(WindowPlanError::TooShort {
                    windows: spec.windows,
                    needed_days: needed as f64 / DAY_MS,
                    have_days: (data_end - t0) as f64 / DAY_MS,
                });
            }
            for (kind, start, end, what) in [
                (WindowKind::InSample(k), is_start, is_end, "in-sample"),
                (
                    WindowKind::OutOfSample(k),
                    oos_start,
                    oos_end,
                    "out-of-sample",
                ),
            ] {
                let (start, end) = (bar_at(start), bar_at(end));
                if start >= end {
                    return Err(WindowPlanError::Empty { window: k, what });
                }
                plan.windows.push(Window { kind, start, end });
            }
        }
        Ok(plan)
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Number of windows, the full run included.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The bar ranges in order.
    pub fn ranges(&self) -> Vec<Range<usize>> {
        self.windows.iter().map(|w| w.start..w.end).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn check(
        mode: WalkForwardMode,
        windows: u32,
        is_h: i64,
        oos_h: i64,
        gap_h: i64,
        bars: usize,
        expect: &[(usize, usize)],
    ) {
        let spec = WalkForwardSpec {
            mode,
            windows,
            in_sample_ms: is_h * H,
            out_of_sample_ms: oos_h * H,
            gap_ms: gap_h * H,
        };
        let open_time: Vec<i64> = (0..bars as i64).map(|i| 1_000 * H + i * H).collect();
        let plan = WindowPlan::walk_forward(&spec, &open_time, H).unwrap();
        let got: Vec<(usize, usize)> = plan.windows()[1..]
            .iter()
            .map(|w| (w.start, w.end))
            .collect();
        assert_eq!(
            plan.windows()[0],
            Window {
                kind: WindowKind::Full,
                start: 0,
                end: bars
            }
        );
        assert_eq!(got, expect);
    }

    #[test]
    fn rolling_windows_step_by_the_out_of_sample_length() {
        // IS 10 bars, OOS 5, gap 1: IS [0,10) OOS [11,16); IS [5,15) OOS [16,21).
        check(
            WalkForwardMode::Rolling,
            2,
            10,
            5,
            1,
            21,
            &[(0, 10), (11, 16), (5, 15), (16, 21)],
        );
    }

    #[test]
    fn anchored_windows_grow_from_the_first_bar() {
        check(
            WalkForwardMode::Anchored,
            2,
            10,
            5,
            0,
            20,
            &[(0, 10), (10, 15), (0, 15), (15, 20)],
        );
    }

    #[test]
    fn too_short_data_is_an_error_with_the_days_needed() {
        let spec = WalkForwardSpec {
            mode: WalkForwardMode::Rolling,
            windows: 3,
            in_sample_ms: 48 * H,
            out_of_sample_ms: 24 * H,
            gap_ms: 0,
        };
        let open_time: Vec<i64> = (0..72).map(|i| i * H).collect();
        let err = WindowPlan::walk_forward(&spec, &open_time, H).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[walk_forward] needs 5.0 days of data (3 windows), the data covers 3.0 days"
        );
    }
}
