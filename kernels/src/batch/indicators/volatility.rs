//! Range and dispersion indicators as TA-Lib 0.4.0 computes them (`ta_TRANGE.c`,
//! `ta_ATR.c`, `ta_NATR.c`, `ta_VAR.c`, `ta_STDDEV.c`, `ta_BBANDS.c`), one bar at a time.

use super::is_zero;
use super::ma::{Ma, MaType};
use super::ring::Ring;

/// True range (`TA_TRANGE`): the largest of `high - low`, `|prev_close - high|` and
/// `|prev_close - low|`, compared in that order; look-back 1.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TrueRange {
    prev_close: Option<f64>,
}

impl TrueRange {
    /// A true range with no previous bar.
    pub fn new() -> Self {
        TrueRange::default()
    }

    /// Adds one bar; returns its true range (NaN for the first bar).
    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> f64 {
        let Some(prev_close) = self.prev_close.replace(close) else {
            return f64::NAN;
        };
        true_range(high, low, prev_close)
    }
}

/// TA-Lib's true-range comparison chain (`TA_TRANGE`, ADX's `TRUE_RANGE` macro).
#[inline]
pub(crate) fn true_range(high: f64, low: f64, prev_close: f64) -> f64 {
    let mut greatest = high - low;
    let to_high = (prev_close - high).abs();
    if to_high > greatest {
        greatest = to_high;
    }
    let to_low = (prev_close - low).abs();
    if to_low > greatest {
        greatest = to_low;
    }
    greatest
}

/// Average true range (`TA_ATR`), look-back `period`.
///
/// Seeding: the plain average of the first `period` true ranges (bars 1..=period, summed in
/// order as `TA_INT_SMA` does). After it Wilder's smoothing, operation for operation:
/// `atr *= period - 1; atr += tr; atr /= period`. Period 1 is the true range itself.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Atr {
    period: usize,
    /// `period` as a float, converted once (TA-Lib divides by the `int` period).
    divisor: f64,
    range: TrueRange,
    seed_total: f64,
    seen_ranges: usize,
    value: f64,
}

impl Atr {
    /// An ATR over `period >= 1` bars.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Atr {
            period,
            divisor: period as f64,
            range: TrueRange::new(),
            seed_total: 0.0,
            seen_ranges: 0,
            value: f64::NAN,
        }
    }

    /// Adds one bar; returns the ATR (NaN for the first `period` bars).
    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> f64 {
        let tr = self.range.update(high, low, close);
        if self.period == 1 || tr.is_nan() {
            return tr;
        }
        if self.seen_ranges >= self.period {
            let period = self.divisor;
            self.value *= period - 1.0;
            self.value += tr;
            self.value /= period;
        } else {
            self.seen_ranges += 1;
            self.seed_total += tr;
            if self.seen_ranges == self.period {
                self.value = self.seed_total / self.divisor;
            }
        }
        self.value
    }
}

/// Normalised ATR (`TA_NATR`): `(atr / close) * 100`, look-back `period`.
///
/// Reproduces TA-Lib's quirks: period 1 returns the raw true range (not normalised), and a
/// close within 1e-8 of zero gives 0. (There TA-Lib writes the 0 into its first output slot
/// and leaves the current one unwritten; this writes 0 at the current bar.)
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Natr {
    atr: Atr,
    raw_true_range: bool,
}

impl Natr {
    /// A NATR over `period >= 1` bars.
    pub fn new(period: usize) -> Self {
        Natr {
            atr: Atr::new(period),
            raw_true_range: period <= 1,
        }
    }

    /// Adds one bar; returns the NATR (NaN for the first `period` bars).
    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> f64 {
        let atr = self.atr.update(high, low, close);
        if self.raw_true_range || atr.is_nan() {
            atr
        } else if is_zero(close) {
            0.0
        } else {
            (atr / close) * 100.0
        }
    }
}

/// Population variance over a window (`TA_INT_VAR`), look-back `period - 1`.
///
/// Streams TA-Lib's two running totals (values and squares): add the new value and its
/// square, take both means, subtract the leaving value and its square; the variance is
/// `mean_of_squares - mean * mean`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Variance {
    period: usize,
    /// `period` as a float, converted once.
    divisor: f64,
    window: Ring,
    total: f64,
    total_squares: f64,
    seen: usize,
}

impl Variance {
    /// A variance over `period >= 1` bars.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Variance {
            period,
            divisor: period as f64,
            window: Ring::new(period),
            total: 0.0,
            total_squares: 0.0,
            seen: 0,
        }
    }

    /// Adds one value; returns the variance of the last `period` values (NaN while fewer).
    #[inline]
    pub fn update(&mut self, x: f64) -> f64 {
        self.seen += 1;
        let leaving = self.window.push_window(x);
        let period = self.divisor;
        self.total += x;
        self.total_squares += x * x;
        let mean = self.total / period;
        let mean_of_squares = self.total_squares / period;
        // During warm-up `leaving` is an exact 0.0 (TA-Lib subtracts nothing there).
        self.total -= leaving;
        self.total_squares -= leaving * leaving;
        if self.seen >= self.period {
            mean_of_squares - mean * mean
        } else {
            f64::NAN
        }
    }
}

/// TA-Lib's `TA_IS_ZERO_OR_NEG` threshold: a variance below it counts as 0.
const ZERO_OR_NEGATIVE: f64 = 0.000_000_01;

/// TA-Lib's square root of a variance: 0 when below 1e-8 (`TA_IS_ZERO_OR_NEG`).
#[inline]
fn guarded_sqrt(variance: f64) -> f64 {
    if variance < ZERO_OR_NEGATIVE {
        0.0
    } else {
        variance.sqrt()
    }
}

/// Standard deviation (`TA_STDDEV`): `sqrt(variance) * nbdev` ([`Variance`]), exactly 0.0
/// (not `0.0 * nbdev`) when the variance is below 1e-8; look-back `period - 1`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StdDev {
    variance: Variance,
    nbdev: f64,
}

impl StdDev {
    /// A standard deviation over `period >= 1` bars, scaled by `nbdev`.
    pub fn new(period: usize, nbdev: f64) -> Self {
        StdDev {
            variance: Variance::new(period),
            nbdev,
        }
    }

    /// Adds one value; returns the scaled deviation (NaN for the first `period - 1` values).
    #[inline]
    pub fn update(&mut self, x: f64) -> f64 {
        let variance = self.variance.update(x);
        if variance.is_nan() {
            return variance;
        }
        // TA-Lib writes a plain 0.0 below the threshold (never `0.0 * nbdev`, which is -0.0
        // for a negative nbdev) and skips the multiplication when nbdev is 1.0 (`x * 1.0 ==
        // x`, the same value).
        if variance < ZERO_OR_NEGATIVE {
            0.0
        } else {
            variance.sqrt() * self.nbdev
        }
    }
}

/// The middle band and deviation of [`Bbands`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Bands {
    /// SMA middle band (`TA_INT_SMA`) and TA-Lib's `TA_INT_stddev_using_precalc_ma`: one
    /// window, a running total and a running total of squares; the deviation is the square
    /// root of `(squares / period) - middle^2`.
    Sma {
        window: Ring,
        divisor: f64,
        seen: usize,
        period: usize,
        total: f64,
        total_squares: f64,
    },
    /// Any other middle band (`TA_MA`) with `TA_STDDEV(period, 1.0)` of the input.
    Other { middle: Ma, deviation: StdDev },
}

/// Bollinger Bands (`TA_BBANDS`), look-back `ma_lookback(period)`.
///
/// Middle band: `TA_MA` of the type ([`super::Sma`], [`super::Ema`], [`super::Wma`]).
/// Deviation: with an SMA middle band, the square root of `(sum of squares / period) -
/// middle^2` from a running sum of squares kept like the SMA's total; otherwise [`StdDev`]
/// with nbdev 1. Either is 0 below a variance of 1e-8. Bands: `middle + dev * nbdevup` and
/// `middle - dev * nbdevdn` (TA-Lib's special cases for a multiplier of exactly 1.0 give the
/// same values).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Bbands {
    bands: Bands,
    nbdev_up: f64,
    nbdev_down: f64,
}

impl Bbands {
    /// Bollinger Bands over `period >= 1` bars.
    pub fn new(period: usize, nbdev_up: f64, nbdev_down: f64, ma_type: MaType) -> Self {
        let period = period.max(1);
        let bands = match Ma::new(ma_type, period) {
            Ma::Sma(_) => Bands::Sma {
                window: Ring::new(period),
                divisor: period as f64,
                seen: 0,
                period,
                total: 0.0,
                total_squares: 0.0,
            },
            middle => Bands::Other {
                middle,
                deviation: StdDev::new(period, 1.0),
            },
        };
        Bbands {
            bands,
            nbdev_up,
            nbdev_down,
        }
    }

    /// Adds one value; returns `[upper, middle, lower]` (NaN during warm-up).
    #[inline]
    pub fn update(&mut self, x: f64) -> [f64; 3] {
        let (middle, deviation) = match &mut self.bands {
            Bands::Sma {
                window,
                divisor,
                seen,
                period,
                total,
                total_squares,
            } => {
                *seen += 1;
                let leaving = window.push_window(x);
                *total += x;
                let middle = *total / *divisor;
                // During warm-up `leaving` is an exact 0.0 (TA-Lib subtracts nothing there).
                *total -= leaving;
                *total_squares += x * x;
                let mut mean_of_squares = *total_squares / *divisor;
                *total_squares -= leaving * leaving;
                if *seen < *period {
                    return [f64::NAN; 3];
                }
                mean_of_squares -= middle * middle;
                (middle, guarded_sqrt(mean_of_squares))
            }
            Bands::Other { middle, deviation } => {
                let middle = middle.update(x);
                let deviation = deviation.update(x);
                if middle.is_nan() || deviation.is_nan() {
                    return [f64::NAN; 3];
                }
                (middle, deviation)
            }
        };
        [
            middle + deviation * self.nbdev_up,
            middle,
            middle - deviation * self.nbdev_down,
        ]
    }
}
