//! One run of a strategy and param set, everything a report page shows: provenance, metrics,
//! trades in their readable record form, the per-bar curves (equity, drawdown, margin usage,
//! funding paid, close price per symbol), monthly returns and the walk-forward window table.
//! Schema `etrading.run/1` (`reports/schema/etrading.run-1.schema.json`).
//!
//! Compactness: the bar axis is a list of contiguous segments `[first_open_time_ms, bars]`
//! rather than one timestamp per bar, and the per-bar curves are written at f32 precision
//! (about 7 significant digits: plenty for a chart; trades and metrics keep full f64).
//! Missing or non-finite curve values are `null`.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use etrading_kernels::engine::SimResult;

use crate::backtest::{MetricsReport, Provenance, TradeReport, finite, metrics, trade};

pub const SCHEMA: &str = "etrading.run/1";

/// A number written exactly: an integral value as an integer, `null` for NaN, the strings
/// `"inf"` and `"-inf"` for the infinities (JSON has no infinity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exact(pub f64);

/// A number written at f32 precision (`null` for NaN, `"inf"`/`"-inf"` for the infinities).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Approx(pub f64);

/// The JSON text of a non-finite number: `null` for NaN, `"inf"` or `"-inf"`.
fn special(x: f64) -> Option<Option<&'static str>> {
    if x.is_nan() {
        Some(None)
    } else if x == f64::INFINITY {
        Some(Some("inf"))
    } else if x == f64::NEG_INFINITY {
        Some(Some("-inf"))
    } else {
        None
    }
}

/// Largest magnitude below which an integral f64 is written as an integer (2^53).
const EXACT_INT_LIMIT: f64 = 9_007_199_254_740_992.0;

impl Serialize for Exact {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        match special(x) {
            Some(None) => s.serialize_none(),
            Some(Some(text)) => s.serialize_str(text),
            None if x.fract() == 0.0 && x.abs() < EXACT_INT_LIMIT => s.serialize_i64(x as i64),
            None => s.serialize_f64(x),
        }
    }
}

impl Serialize for Approx {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        let single = x as f32;
        match special(x) {
            Some(None) => s.serialize_none(),
            Some(Some(text)) => s.serialize_str(text),
            // A value beyond f32's range keeps f64 rather than turning into infinity.
            None if single.is_infinite() => s.serialize_f64(x),
            None if single.fract() == 0.0 && single.abs() < 16_777_216.0 => {
                s.serialize_i64(single as i64)
            }
            None => s.serialize_f32(single),
        }
    }
}

/// A column of f32-precision numbers.
pub fn approx_column(xs: &[f64]) -> Vec<Approx> {
    xs.iter().map(|&x| Approx(x)).collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub schema: &'static str,
    pub provenance: Provenance,
    pub metrics: MetricsReport,
    /// Where the param set came from, when it is a trial of a study.
    pub trial: Option<TrialRef>,
    pub bars: BarAxis,
    /// Close price per symbol on the bar axis (`null` where the symbol has no data).
    pub prices: Vec<PriceSeries>,
    /// Equity (wallet + unrealised PnL) after each bar, USDT.
    pub equity: Vec<Approx>,
    /// `1 - equity / running peak` after each bar.
    pub drawdown: Vec<Approx>,
    /// Initial margin in use / equity after each bar.
    pub margin_usage: Vec<Approx>,
    /// Funding paid (positive) or received (negative) in each bar, USDT.
    pub funding_paid: Vec<Approx>,
    pub trades: Vec<RunTrade>,
    pub monthly_returns: Vec<MonthlyReturn>,
    pub windows: Vec<WindowRow>,
}

/// The study trial a run re-runs.
#[derive(Debug, Clone, Serialize)]
pub struct TrialRef {
    pub study_name: String,
    pub number: u64,
    pub state: String,
    /// The trial's objective values as stored in the study, in objective order.
    pub values: Vec<Exact>,
}

/// The bar times: contiguous segments of `interval_ms` steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BarAxis {
    pub n: u64,
    pub interval_ms: i64,
    /// `[first_open_time_ms, bars]` per run of consecutive bars.
    pub segments: Vec<[i64; 2]>,
}

impl BarAxis {
    /// Segments of `open_time` (strictly increasing, ms) at `interval_ms`.
    pub fn new(open_time: &[i64], interval_ms: i64) -> BarAxis {
        let mut segments: Vec<[i64; 2]> = Vec::new();
        let mut prev: Option<i64> = None;
        for &t in open_time {
            match (prev, segments.last_mut()) {
                (Some(p), Some(last)) if t - p == interval_ms => last[1] += 1,
                _ => segments.push([t, 1]),
            }
            prev = Some(t);
        }
        BarAxis {
            n: open_time.len() as u64,
            interval_ms,
            segments,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PriceSeries {
    pub symbol: String,
    pub close: Vec<Approx>,
}

/// A trade with the bar indices of its entry and exit on the bar axis.
#[derive(Debug, Clone, Serialize)]
pub struct RunTrade {
    #[serde(flatten)]
    pub trade: TradeReport,
    pub entry_bar: u64,
    pub exit_bar: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthlyReturn {
    /// `YYYY-MM` (UTC), by the bars' open time.
    pub month: String,
    /// Equity at the month's last bar over equity at the previous month's last bar (the
    /// initial capital for the first month), minus one.
    #[serde(rename = "return")]
    pub return_: Option<f64>,
}

/// In-sample and out-of-sample metrics of one walk-forward window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowRow {
    pub window: u32,
    pub is: BTreeMap<String, Exact>,
    pub oos: BTreeMap<String, Exact>,
}

/// The market columns a run report shows.
#[derive(Debug, Clone, Copy)]
pub struct RunMarket<'a> {
    pub open_time: &'a [i64],
    pub interval_ms: i64,
    /// Close per symbol, in the order of `provenance.symbols`.
    pub close: &'a [&'a [f64]],
}

/// The run report of one simulation.
pub fn run_report(
    provenance: Provenance,
    market: RunMarket<'_>,
    r: &SimResult,
    trial: Option<TrialRef>,
    windows: Vec<WindowRow>,
) -> RunReport {
    let trades = r
        .trades
        .iter()
        .enumerate()
        .map(|(i, t)| RunTrade {
            trade: trade(i as u64 + 1, t, &provenance.symbols),
            entry_bar: t.entry_bar as u64,
            exit_bar: t.exit_bar as u64,
        })
        .collect();
    let prices = provenance
        .symbols
        .iter()
        .zip(market.close)
        .map(|(s, c)| PriceSeries {
            symbol: s.clone(),
            close: approx_column(c),
        })
        .collect();
    RunReport {
        schema: SCHEMA,
        metrics: metrics(&r.metrics, r.skipped_entries),
        monthly_returns: monthly_returns(market.open_time, &r.equity, provenance.initial_capital),
        provenance,
        trial,
        bars: BarAxis::new(market.open_time, market.interval_ms),
        prices,
        equity: approx_column(&r.equity),
        drawdown: approx_column(&r.drawdown),
        margin_usage: approx_column(&r.margin_usage),
        funding_paid: approx_column(&r.funding_paid),
        trades,
        windows,
    }
}

/// Month (`YYYY-MM`) of a Unix millisecond time.
fn month_of(t_ms: i64) -> String {
    crate::iso_time(t_ms)[..7].to_string()
}

/// Returns per calendar month of the equity curve (see [`MonthlyReturn`]).
pub fn monthly_returns(open_time: &[i64], equity: &[f64], initial: f64) -> Vec<MonthlyReturn> {
    let mut out = Vec::new();
    let mut base = initial;
    let n = open_time.len().min(equity.len());
    let mut i = 0;
    while i < n {
        let month = month_of(open_time[i]);
        let mut j = i;
        while j + 1 < n && month_of(open_time[j + 1]) == month {
            j += 1;
        }
        let end = equity[j];
        out.push(MonthlyReturn {
            month,
            return_: finite(end / base - 1.0),
        });
        base = end;
        i = j + 1;
    }
    out
}

/// The walk-forward window table from a trial's numeric attributes named
/// `is_{window}_{metric}` and `oos_{window}_{metric}`; other names are ignored.
pub fn windows_from_attrs<'a>(attrs: impl IntoIterator<Item = (&'a str, f64)>) -> Vec<WindowRow> {
    let mut rows: BTreeMap<u32, WindowRow> = BTreeMap::new();
    for (name, value) in attrs {
        let (oos, rest) = if let Some(rest) = name.strip_prefix("is_") {
            (false, rest)
        } else if let Some(rest) = name.strip_prefix("oos_") {
            (true, rest)
        } else {
            continue;
        };
        let Some((k, metric)) = rest.split_once('_') else {
            continue;
        };
        let Ok(window) = k.parse::<u32>() else {
            continue;
        };
        if metric.is_empty() {
            continue;
        }
        let row = rows.entry(window).or_insert_with(|| WindowRow {
            window,
            is: BTreeMap::new(),
            oos: BTreeMap::new(),
        });
        let side = if oos { &mut row.oos } else { &mut row.is };
        side.insert(metric.to_string(), Exact(value));
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_json<T: Serialize>(x: T, expect: &str) {
        assert_eq!(serde_json::to_string(&x).unwrap(), expect);
    }

    #[test]
    fn numbers() {
        check_json(Exact(14.0), "14");
        check_json(Exact(0.005), "0.005");
        check_json(Exact(f64::NAN), "null");
        check_json(Exact(f64::INFINITY), "\"inf\"");
        check_json(Exact(f64::NEG_INFINITY), "\"-inf\"");
        check_json(Approx(10_234.567_891_234), "10234.568");
        check_json(Approx(-0.012_345_678_9), "-0.012345679");
        check_json(Approx(3.0), "3");
        check_json(Approx(1e300), "1e+300");
    }

    #[test]
    fn bar_axis_segments() {
        let h = 3_600_000;
        let axis = BarAxis::new(&[0, h, 2 * h, 5 * h, 6 * h], h);
        assert_eq!(axis.segments, vec![[0, 3], [5 * h, 2]]);
        assert_eq!(axis.n, 5);
        assert!(BarAxis::new(&[], h).segments.is_empty());
    }

    #[test]
    fn monthly() {
        // 2025-01-31 23:00, 2025-02-01 00:00, 2025-02-28 23:00, 2025-03-01 00:00 (UTC).
        let jan31 = 1_738_364_400_000;
        let h = 3_600_000;
        let feb28 = jan31 + 28 * 24 * h;
        let t = [jan31, jan31 + h, feb28, feb28 + h];
        // 1000 -> 1100 (+10%) -> 990 (-10%) -> 990 (0%).
        let m = monthly_returns(&t, &[1100.0, 1050.0, 990.0, 990.0], 1000.0);
        let got: Vec<(&str, f64)> = m
            .iter()
            .map(|r| (r.month.as_str(), r.return_.unwrap()))
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, "2025-01");
        assert!((got[0].1 - 0.10).abs() < 1e-12);
        assert_eq!(got[1].0, "2025-02");
        assert!((got[1].1 + 0.10).abs() < 1e-12);
        assert_eq!(got[2], ("2025-03", 0.0));
    }

    #[test]
    fn windows() {
        let attrs = [
            ("is_0_total_return", 0.2),
            ("oos_0_total_return", 0.05),
            ("is_1_sharpe", 1.5),
            ("sharpe", 9.0),
            ("is_x_sharpe", 1.0),
            ("oos_10_", 1.0),
        ];
        let rows = windows_from_attrs(attrs);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].window, 0);
        assert_eq!(rows[0].is["total_return"], Exact(0.2));
        assert_eq!(rows[0].oos["total_return"], Exact(0.05));
        assert_eq!(rows[1].window, 1);
        assert_eq!(rows[1].is["sharpe"], Exact(1.5));
        assert!(rows[1].oos.is_empty());
    }
}
