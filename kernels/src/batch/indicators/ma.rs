//! Moving averages as TA-Lib 0.4.0 computes them (`ta_SMA.c`, `ta_EMA.c`, `ta_WMA.c`,
//! `ta_MA.c`), one bar at a time, operation for operation.

use super::ring::Ring;

/// TA-Lib's `PER_TO_K(per)`: `2.0 / (per + 1)`, the EMA smoothing factor.
#[inline]
pub(crate) fn per_to_k(period: usize) -> f64 {
    2.0 / ((period + 1) as f64)
}

/// Simple moving average (`TA_INT_SMA`), look-back `period - 1`.
///
/// TA-Lib streams a running total: add the new value, divide the total by the period for the
/// output, then subtract the value leaving the window. This is that total, kept in the same
/// order, so the output is bit-identical.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Sma {
    period: usize,
    /// `period` as a float, converted once (TA-Lib divides by the `int` period).
    divisor: f64,
    window: Ring,
    total: f64,
    seen: usize,
}

impl Sma {
    /// An SMA over `period >= 1` bars.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Sma {
            period,
            divisor: period as f64,
            window: Ring::new(period),
            total: 0.0,
            seen: 0,
        }
    }

    /// Adds one value; returns the average of the last `period` values (NaN while fewer).
    #[inline]
    pub fn update(&mut self, x: f64) -> f64 {
        self.seen += 1;
        let leaving = self.window.push_window(x);
        self.total += x;
        let average = self.total / self.divisor;
        // During warm-up `leaving` is an exact 0.0 (TA-Lib subtracts nothing there).
        self.total -= leaving;
        if self.seen >= self.period {
            average
        } else {
            f64::NAN
        }
    }
}

/// Exponential moving average (`TA_INT_EMA` with `TA_COMPATIBILITY_DEFAULT`), look-back
/// `period - 1`.
///
/// Seeding: the first output is the plain average of the first `period` values (summed in
/// order from `0.0`, then divided by the period); after it,
/// `ema = ((x - ema) * k) + ema` with `k = 2 / (period + 1)`. Period 1 runs the same recursion
/// with `k = 1` (as MACD's signal line does); [`Ma`] copies the input instead, as `TA_MA` does.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ema {
    period: usize,
    k: f64,
    seed_total: f64,
    seen: usize,
    value: f64,
}

impl Ema {
    /// An EMA over `period >= 1` bars with TA-Lib's `k = 2 / (period + 1)`.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Ema {
            period,
            k: per_to_k(period),
            seed_total: 0.0,
            seen: 0,
            value: f64::NAN,
        }
    }

    /// Adds one value; returns the EMA (NaN for the first `period - 1` values).
    #[inline]
    pub fn update(&mut self, x: f64) -> f64 {
        if self.seen >= self.period {
            self.value = ((x - self.value) * self.k) + self.value;
        } else {
            self.seen += 1;
            self.seed_total += x;
            if self.seen == self.period {
                self.value = self.seed_total / self.period as f64;
            }
        }
        self.value
    }
}

/// Weighted moving average (`TA_WMA`), weights `1..=period` from the oldest, look-back
/// `period - 1`.
///
/// TA-Lib streams two totals: `period_sub` (plain sum of the window) and `period_sum`
/// (weighted sum), updated in the order reproduced here; period 1 copies the input. The
/// divider is TA-Lib's `int` `(period * (period + 1)) >> 1`, wrapping as C's 32-bit `int`
/// does on x86-64 for periods above 46340.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Wma {
    period: usize,
    /// `period` as a float (TA-Lib's `tempReal * optInTimePeriod`).
    weight: f64,
    divider: f64,
    window: Ring,
    period_sub: f64,
    period_sum: f64,
    trailing_value: f64,
    seen: usize,
}

impl Wma {
    /// A WMA over `period >= 1` bars.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        let p = period as i32;
        let divider = p.wrapping_mul(p.wrapping_add(1)) >> 1;
        Wma {
            period,
            weight: period as f64,
            divider: f64::from(divider),
            window: Ring::new(period),
            period_sub: 0.0,
            period_sum: 0.0,
            trailing_value: 0.0,
            seen: 0,
        }
    }

    /// Adds one value; returns the WMA of the last `period` values (NaN while fewer).
    #[inline]
    pub fn update(&mut self, x: f64) -> f64 {
        if self.period == 1 {
            return x;
        }
        self.seen += 1;
        let oldest = self.window.push_window(x);
        if self.seen < self.period {
            self.period_sub += x;
            self.period_sum += x * self.seen as f64;
            return f64::NAN;
        }
        self.period_sub += x;
        self.period_sub -= self.trailing_value;
        self.period_sum += x * self.weight;
        self.trailing_value = oldest;
        let average = self.period_sum / self.divider;
        self.period_sum -= self.period_sub;
        average
    }
}

/// TA-Lib's moving-average types (`optInMAType`) that have a streaming twin here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MaType {
    /// `TA_MAType_SMA` (0).
    Sma,
    /// `TA_MAType_EMA` (1).
    Ema,
    /// `TA_MAType_WMA` (2).
    Wma,
}

impl MaType {
    /// The type for TA-Lib's code, or `None` for the types without a streaming twin
    /// (DEMA, TEMA, TRIMA, KAMA, MAMA, T3).
    pub fn from_code(code: f64) -> Option<MaType> {
        match code {
            0.0 => Some(MaType::Sma),
            1.0 => Some(MaType::Ema),
            2.0 => Some(MaType::Wma),
            _ => None,
        }
    }
}

/// `TA_MA`: the moving average of a type, with its period-1 rule (any type with period 1
/// copies the input, look-back 0).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Ma {
    /// Period 1: the input itself.
    Copy,
    /// [`Sma`].
    Sma(Sma),
    /// [`Ema`].
    Ema(Ema),
    /// [`Wma`].
    Wma(Wma),
}

impl Ma {
    /// The moving average of `kind` over `period >= 1` bars.
    pub fn new(kind: MaType, period: usize) -> Self {
        if period <= 1 {
            return Ma::Copy;
        }
        match kind {
            MaType::Sma => Ma::Sma(Sma::new(period)),
            MaType::Ema => Ma::Ema(Ema::new(period)),
            MaType::Wma => Ma::Wma(Wma::new(period)),
        }
    }

    /// `TA_MA_Lookback`: 0 for period 1, else `period - 1` for every type here.
    pub fn lookback(period: usize) -> usize {
        period.saturating_sub(1)
    }

    /// Adds one value; returns the average (NaN during warm-up).
    #[inline]
    pub fn update(&mut self, x: f64) -> f64 {
        match self {
            Ma::Copy => x,
            Ma::Sma(sma) => sma.update(x),
            Ma::Ema(ema) => ema.update(x),
            Ma::Wma(wma) => wma.update(x),
        }
    }
}
