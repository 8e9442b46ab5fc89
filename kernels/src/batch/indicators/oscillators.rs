//! Momentum oscillators as TA-Lib 0.4.0 computes them (`ta_RSI.c`, `ta_MACD.c`,
//! `ta_STOCH.c`, `ta_CCI.c`, `ta_ROC.c`, `ta_MOM.c`), one bar at a time.

use super::is_zero;
use super::ma::{Ema, Ma, MaType};
use super::ring::{Extreme, MinMaxWindow, Ring};

/// Wilder's RSI (`TA_RSI`, classic seeding of `TA_COMPATIBILITY_DEFAULT`), look-back `period`.
///
/// Seeding: gains and losses of the first `period` changes (bars 1..=period) are summed in
/// order and divided by the period. After that, per bar:
/// `avg = (avg * (period - 1) + today) / period` for both (multiply, add, divide, in that
/// order). Output `100 * (gain / (gain + loss))`, or 0 when `gain + loss` is within 1e-8 of
/// zero (`TA_IS_ZERO`). Period 1 copies the input, as TA-Lib does.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rsi {
    period: usize,
    /// `period` as a float, converted once (TA-Lib divides by the `int` period).
    divisor: f64,
    prev: f64,
    gain: f64,
    loss: f64,
    seen: usize,
}

impl Rsi {
    /// An RSI over `period >= 1` bars.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Rsi {
            period,
            divisor: period as f64,
            prev: 0.0,
            gain: 0.0,
            loss: 0.0,
            seen: 0,
        }
    }

    /// Adds one value; returns the RSI (NaN for the first `period` values).
    #[inline]
    pub fn update(&mut self, x: f64) -> f64 {
        if self.period == 1 {
            return x;
        }
        let period = self.divisor;
        let change = x - self.prev;
        self.prev = x;
        let bar = self.seen;
        self.seen += 1;
        // TA-Lib's `if change < 0 { loss -= change } else { gain += change }` without a
        // branch: the other total takes an exact 0.0, which leaves it bit-identical (both
        // totals are >= +0.0).
        let fall = change.min(0.0);
        let rise = change.max(0.0);
        if bar > self.period {
            self.loss *= period - 1.0;
            self.gain *= period - 1.0;
            self.loss -= fall;
            self.gain += rise;
            self.loss /= period;
            self.gain /= period;
        } else if bar == 0 {
            return f64::NAN;
        } else {
            self.loss -= fall;
            self.gain += rise;
            if bar < self.period {
                return f64::NAN;
            }
            self.loss /= period;
            self.gain /= period;
        }
        let total = self.gain + self.loss;
        if is_zero(total) {
            0.0
        } else {
            100.0 * (self.gain / total)
        }
    }
}

/// MACD (`TA_INT_MACD` via `TA_MACD`): fast EMA minus slow EMA, its EMA as the signal line,
/// and their difference. Look-back `(slow - 1) + (signal - 1)` after TA-Lib's swap of fast
/// and slow when slow < fast.
///
/// TA-Lib's seeding quirk, reproduced: both EMAs start at bar `slow - 1`, so the fast EMA is
/// seeded with the average of bars `slow - fast ..= slow - 1` (not of the first `fast` bars).
/// The signal EMA (`k = 2 / (signal + 1)`) is seeded with the average of the first `signal`
/// MACD values. All three outputs start at the look-back. (Signal period 1 runs the EMA
/// recursion with `k = 1`; TA-Lib's own output there is undefined, so [`super::compute`]
/// refuses it.)
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Macd {
    fast: Ema,
    slow: Ema,
    signal: Ema,
    /// Bars skipped before the fast EMA starts: `slow - fast`.
    fast_delay: usize,
    /// Bar of the first MACD value: `slow - 1`.
    first_macd: usize,
    seen: usize,
}

impl Macd {
    /// A MACD with TA-Lib's periods (fast and slow >= 2, signal >= 1; swapped when slow <
    /// fast).
    pub fn new(fast_period: usize, slow_period: usize, signal_period: usize) -> Self {
        let (fast_period, slow_period) = if slow_period < fast_period {
            (slow_period, fast_period)
        } else {
            (fast_period, slow_period)
        };
        Macd {
            fast: Ema::new(fast_period),
            slow: Ema::new(slow_period),
            signal: Ema::new(signal_period),
            fast_delay: slow_period - fast_period.max(1),
            first_macd: slow_period.max(1) - 1,
            seen: 0,
        }
    }

    /// Adds one value; returns `[macd, signal, hist]` (NaN during warm-up).
    #[inline]
    pub fn update(&mut self, x: f64) -> [f64; 3] {
        let bar = self.seen;
        self.seen += 1;
        let slow = self.slow.update(x);
        if bar < self.fast_delay {
            return [f64::NAN; 3];
        }
        let fast = self.fast.update(x);
        if bar < self.first_macd {
            return [f64::NAN; 3];
        }
        let macd = fast - slow;
        let signal = self.signal.update(macd);
        if signal.is_nan() {
            return [f64::NAN; 3];
        }
        [macd, signal, macd - signal]
    }
}

/// Slow stochastic (`TA_STOCH`): fast %K over `fastk_period` bars, smoothed by a moving average
/// into slow %K, smoothed again into slow %D. Look-back
/// `(fastk_period - 1) + ma_lookback(slowk_period) + ma_lookback(slowd_period)`.
///
/// Fast %K is `(close - lowest) / ((highest - lowest) / 100)`, or 0 when that divider is 0.
/// The moving averages follow `TA_MA` (period 1 copies; SMA, EMA, WMA seeded on their own
/// first inputs). Both outputs start at the look-back.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Stoch {
    lowest: MinMaxWindow,
    highest: MinMaxWindow,
    fastk_lookback: usize,
    slowk: Ma,
    slowd: Ma,
    seen: usize,
}

impl Stoch {
    /// A stochastic with TA-Lib's parameters (periods >= 1).
    pub fn new(
        fastk_period: usize,
        slowk_period: usize,
        slowk_type: MaType,
        slowd_period: usize,
        slowd_type: MaType,
    ) -> Self {
        let fastk_period = fastk_period.max(1);
        Stoch {
            lowest: MinMaxWindow::new(fastk_period, Extreme::Lowest),
            highest: MinMaxWindow::new(fastk_period, Extreme::Highest),
            fastk_lookback: fastk_period - 1,
            slowk: Ma::new(slowk_type, slowk_period),
            slowd: Ma::new(slowd_type, slowd_period),
            seen: 0,
        }
    }

    /// Adds one bar; returns `[slowk, slowd]` (NaN during warm-up).
    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> [f64; 2] {
        let bar = self.seen;
        self.seen += 1;
        let lowest = self.lowest.push(low);
        let highest = self.highest.push(high);
        if bar < self.fastk_lookback {
            return [f64::NAN; 2];
        }
        let diff = (highest - lowest) / 100.0;
        let fastk = if diff != 0.0 {
            (close - lowest) / diff
        } else {
            0.0
        };
        let slowk = self.slowk.update(fastk);
        if slowk.is_nan() {
            return [f64::NAN; 2];
        }
        let slowd = self.slowd.update(slowk);
        if slowd.is_nan() {
            return [f64::NAN; 2];
        }
        [slowk, slowd]
    }
}

/// Commodity Channel Index (`TA_CCI`), look-back `period - 1`.
///
/// TA-Lib recomputes the window per bar from a circular buffer of typical prices
/// `((high + low) + close) / 3`: the mean sums the buffer in its physical slot order (slot
/// `bar % period`), the mean deviation sums `|tp - mean|` in the same order. This keeps the
/// same buffer and order, O(period) per bar as in TA-Lib, so values are bit-identical.
/// Output `(tp - mean) / (0.015 * (deviation / period))`, or 0 when either factor is 0.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Cci {
    period: usize,
    /// `period` as a float, converted once.
    divisor: f64,
    typical: Ring,
    seen: usize,
}

impl Cci {
    /// A CCI over `period >= 1` bars.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Cci {
            period,
            divisor: period as f64,
            typical: Ring::new(period),
            seen: 0,
        }
    }

    /// Adds one bar; returns the CCI (NaN for the first `period - 1` bars).
    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> f64 {
        let last = (high + low + close) / 3.0;
        self.typical.delay(last);
        self.seen += 1;
        if self.seen < self.period {
            return f64::NAN;
        }
        let period = self.divisor;
        let slots = self.typical.slots();
        let mut average = 0.0;
        for &value in slots {
            average += value;
        }
        average /= period;
        let mut deviation = 0.0;
        for &value in slots {
            deviation += (value - average).abs();
        }
        let distance = last - average;
        if distance != 0.0 && deviation != 0.0 {
            distance / (0.015 * (deviation / period))
        } else {
            0.0
        }
    }
}

/// Rate of change (`TA_ROC`), `((x / x[period ago]) - 1) * 100`, 0 when the old value is 0;
/// look-back `period`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Roc {
    period: usize,
    history: Ring,
    seen: usize,
}

impl Roc {
    /// A ROC over `period >= 1` bars.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Roc {
            period,
            history: Ring::new(period),
            seen: 0,
        }
    }

    /// Adds one value; returns the ROC (NaN for the first `period` values).
    #[inline]
    pub fn update(&mut self, x: f64) -> f64 {
        let old = self.history.delay(x);
        self.seen += 1;
        if self.seen <= self.period {
            f64::NAN
        } else if old != 0.0 {
            ((x / old) - 1.0) * 100.0
        } else {
            0.0
        }
    }
}

/// Momentum (`TA_MOM`), `x - x[period ago]`; look-back `period`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Mom {
    period: usize,
    history: Ring,
    seen: usize,
}

impl Mom {
    /// A momentum over `period >= 1` bars.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Mom {
            period,
            history: Ring::new(period),
            seen: 0,
        }
    }

    /// Adds one value; returns the momentum (NaN for the first `period` values).
    #[inline]
    pub fn update(&mut self, x: f64) -> f64 {
        let old = self.history.delay(x);
        self.seen += 1;
        if self.seen <= self.period {
            f64::NAN
        } else {
            x - old
        }
    }
}
