//! Directional movement as TA-Lib 0.4.0 computes it (`ta_ADX.c`), one bar at a time.

use super::is_zero;
use super::volatility::true_range;

/// Average Directional Movement Index (`TA_ADX`), look-back `2 * period - 1`.
///
/// Bars 1..period-1 sum +DM, -DM and the true range. Bars period..=2*period-1 smooth them
/// Wilder's way (`dm -= dm / period; dm += today`, `tr = tr - tr / period + today`) and sum
/// the DX values `100 * |-DI - +DI| / (-DI + +DI)` (skipped when the true-range total or the
/// DI sum is within 1e-8 of zero). The first ADX is that sum divided by the period; after it
/// `adx = (adx * (period - 1) + dx) / period`, and it holds its value on bars without a DX.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Adx {
    period: usize,
    /// `period` as a float, converted once (TA-Lib divides by the `int` period).
    divisor: f64,
    /// Bar of the first output, `2 * period - 1`.
    first_output: usize,
    prev_high: f64,
    prev_low: f64,
    prev_close: f64,
    plus_dm: f64,
    minus_dm: f64,
    true_range: f64,
    sum_dx: f64,
    adx: f64,
    seen: usize,
}

impl Adx {
    /// An ADX over `period >= 1` bars.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Adx {
            period,
            divisor: period as f64,
            first_output: 2 * period - 1,
            prev_high: 0.0,
            prev_low: 0.0,
            prev_close: 0.0,
            plus_dm: 0.0,
            minus_dm: 0.0,
            true_range: 0.0,
            sum_dx: 0.0,
            adx: f64::NAN,
            seen: 0,
        }
    }

    /// Adds one bar; returns the ADX (NaN for the first `2 * period - 1` bars).
    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> f64 {
        let bar = self.seen;
        self.seen += 1;
        if bar == 0 {
            self.prev_high = high;
            self.prev_low = low;
            self.prev_close = close;
            return f64::NAN;
        }
        let period = self.divisor;
        let diff_plus = high - self.prev_high;
        self.prev_high = high;
        let diff_minus = self.prev_low - low;
        self.prev_low = low;
        let smoothing = bar >= self.period;
        if smoothing {
            self.minus_dm -= self.minus_dm / period;
            self.plus_dm -= self.plus_dm / period;
        }
        // TA-Lib's `if minus { minus_dm += diff_minus } else if plus { plus_dm += diff_plus }`
        // as selects: the other total takes an exact 0.0 (both totals are >= +0.0).
        let minus = diff_minus > 0.0 && diff_plus < diff_minus;
        let plus = !minus && diff_plus > 0.0 && diff_plus > diff_minus;
        self.minus_dm += if minus { diff_minus } else { 0.0 };
        self.plus_dm += if plus { diff_plus } else { 0.0 };
        let range = true_range(high, low, self.prev_close);
        self.prev_close = close;
        if !smoothing {
            self.true_range += range;
            return f64::NAN;
        }
        self.true_range = self.true_range - (self.true_range / period) + range;
        let mut dx = f64::NAN;
        if !is_zero(self.true_range) {
            let minus_di = 100.0 * (self.minus_dm / self.true_range);
            let plus_di = 100.0 * (self.plus_dm / self.true_range);
            let di_sum = minus_di + plus_di;
            if !is_zero(di_sum) {
                dx = 100.0 * ((minus_di - plus_di).abs() / di_sum);
            }
        }
        let first_output = self.first_output;
        if bar < first_output {
            if !dx.is_nan() {
                self.sum_dx += dx;
            }
            return f64::NAN;
        }
        if bar == first_output {
            if !dx.is_nan() {
                self.sum_dx += dx;
            }
            self.adx = self.sum_dx / period;
        } else if !dx.is_nan() {
            self.adx = ((self.adx * (period - 1.0)) + dx) / period;
        }
        self.adx
    }
}
