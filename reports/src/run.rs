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

/// A column of numbers in the packed form that report pages embed (the schemas' `packed`
/// definition): the cells as little-endian binary in standard base64, so a million cells cost
/// one to eight bytes each (4/3 of that in base64) and no number parsing. A missing cell (NaN)
/// is NaN in `f32`/`f64` and the code 255 (`dict8`) or 65535 (`dict16`). When raw DEFLATE
/// (RFC 1951) makes the bytes at least 10% smaller they are stored compressed, with
/// `"compression": "deflate"` (a study's mostly-zero metrics of pruned trials shrink 4x).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "encoding", rename_all = "lowercase")]
pub enum Packed {
    /// `len` consecutive integers from `start` (trial numbers 0, 1, 2, ...).
    Seq { start: u64, len: u64 },
    /// One byte per cell: an index into `dict`.
    Dict8 {
        dict: Vec<Exact>,
        #[serde(flatten)]
        data: Data,
    },
    /// Two bytes per cell (u16 LE): an index into `dict`.
    Dict16 {
        dict: Vec<Exact>,
        #[serde(flatten)]
        data: Data,
    },
    /// Four bytes per cell (IEEE-754 single, LE).
    F32 {
        #[serde(flatten)]
        data: Data,
    },
    /// Eight bytes per cell (IEEE-754 double, LE).
    F64 {
        #[serde(flatten)]
        data: Data,
    },
}

/// The bytes of a [`Packed`] column: base64, of the raw DEFLATE stream when `compression` is
/// `deflate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Data {
    pub data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<&'static str>,
}

impl Data {
    /// `bytes` in base64, deflated when that saves at least 10%.
    pub fn of(bytes: &[u8]) -> Data {
        if bytes.len() >= 64 {
            let deflated = miniz_oxide::deflate::compress_to_vec(bytes, 6);
            if deflated.len() * 10 < bytes.len() * 9 {
                return Data {
                    data: base64(&deflated),
                    compression: Some("deflate"),
                };
            }
        }
        Data {
            data: base64(bytes),
            compression: None,
        }
    }
}

const MISSING8: u8 = u8::MAX;
const MISSING16: u16 = u16::MAX;

impl Packed {
    /// `xs` exactly: a dictionary when few distinct values repeat, else f64.
    pub fn exact(xs: &[f64]) -> Packed {
        Packed::dict(xs, 8).unwrap_or_else(|| Packed::F64 {
            data: Data::of(&le_bytes(xs.iter().map(|x| x.to_le_bytes()))),
        })
    }

    /// `xs` at f32 precision (as [`Approx`] writes them): a dictionary when few distinct
    /// values repeat, else f32 (f64 when a finite value is beyond f32's range).
    pub fn approx(xs: &[f64]) -> Packed {
        if xs
            .iter()
            .any(|&x| x.is_finite() && (x as f32).is_infinite())
        {
            return Packed::exact(xs);
        }
        let single: Vec<f64> = xs.iter().map(|&x| f64::from(x as f32)).collect();
        Packed::dict(&single, 4).unwrap_or_else(|| Packed::F32 {
            data: Data::of(&le_bytes(xs.iter().map(|&x| (x as f32).to_le_bytes()))),
        })
    }

    /// Integers `0..n` shifted by `start` as a sequence; anything else exactly.
    pub fn integers(xs: &[u64]) -> Packed {
        let start = xs.first().copied().unwrap_or(0);
        if xs.iter().zip(start..).all(|(&x, k)| x == k) {
            Packed::Seq {
                start,
                len: xs.len() as u64,
            }
        } else {
            Packed::exact(&xs.iter().map(|&x| x as f64).collect::<Vec<_>>())
        }
    }

    /// A dictionary encoding, if it is smaller than `width` bytes per cell.
    fn dict(xs: &[f64], width: usize) -> Option<Packed> {
        let mut seen: std::collections::HashMap<u64, u16> = std::collections::HashMap::new();
        for &x in xs {
            if x.is_nan() {
                continue;
            }
            if !seen.contains_key(&x.to_bits()) {
                if seen.len() >= usize::from(MISSING16) {
                    return None;
                }
                seen.insert(x.to_bits(), 0);
            }
        }
        let wide = seen.len() >= usize::from(MISSING8);
        if wide && width <= 2 {
            return None;
        }
        let mut dict: Vec<f64> = seen.keys().map(|&b| f64::from_bits(b)).collect();
        dict.sort_by(f64::total_cmp);
        for (k, x) in dict.iter().enumerate() {
            seen.insert(x.to_bits(), k as u16);
        }
        let code = |x: &f64| (!x.is_nan()).then(|| seen[&x.to_bits()]);
        let dict = dict.into_iter().map(Exact).collect();
        Some(if wide {
            let bytes = le_bytes(
                xs.iter()
                    .map(|x| code(x).unwrap_or(MISSING16).to_le_bytes()),
            );
            Packed::Dict16 {
                dict,
                data: Data::of(&bytes),
            }
        } else {
            let bytes: Vec<u8> = xs
                .iter()
                .map(|x| code(x).map_or(MISSING8, |c| c as u8))
                .collect();
            Packed::Dict8 {
                dict,
                data: Data::of(&bytes),
            }
        })
    }
}

fn le_bytes<const N: usize>(cells: impl Iterator<Item = [u8; N]>) -> Vec<u8> {
    cells.flatten().collect()
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

impl RunReport {
    /// The report as compact JSON with the per-bar curves (equity, drawdown, margin usage,
    /// funding paid, each symbol's close) in the [`Packed`] f32 form: what report pages embed.
    pub fn to_packed_json(&self) -> serde_json::Result<String> {
        let mut doc = serde_json::to_value(self)?;
        let plain = |c: &[Approx]| c.iter().map(|a| a.0).collect::<Vec<f64>>();
        for (key, curve) in [
            ("equity", &self.equity),
            ("drawdown", &self.drawdown),
            ("margin_usage", &self.margin_usage),
            ("funding_paid", &self.funding_paid),
        ] {
            doc[key] = serde_json::to_value(Packed::approx(&plain(curve)))?;
        }
        for (k, p) in self.prices.iter().enumerate() {
            doc["prices"][k]["close"] = serde_json::to_value(Packed::approx(&plain(&p.close)))?;
        }
        serde_json::to_string(&doc)
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

    /// Standard base64 back to bytes (the viewer has the real decoder).
    fn base64_decode_for_test(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bits: Vec<u32> = text
            .bytes()
            .filter(|&c| c != b'=')
            .map(|c| ALPHABET.iter().position(|&a| a == c).unwrap() as u32)
            .collect();
        let mut out = Vec::new();
        for q in bits.chunks(4) {
            let n = q.iter().fold(0u32, |n, &v| n << 6 | v) << (6 * (4 - q.len()));
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..q.len() - 1]);
        }
        out
    }

    fn check_packed(p: Packed, expect: &str) {
        assert_eq!(serde_json::to_string(&p).unwrap(), expect);
    }

    #[test]
    fn packed_columns() {
        // RFC 4648 section 10 test vectors.
        for (input, expect) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expect);
        }
        check_packed(
            Packed::integers(&[3, 4, 5]),
            r#"{"encoding":"seq","start":3,"len":3}"#,
        );
        // Codes 1, 0, 255 (missing), 2, 0 = bytes 01 00 ff 02 00.
        check_packed(
            Packed::exact(&[21.0, 14.0, f64::NAN, f64::INFINITY, 14.0]),
            r#"{"encoding":"dict8","dict":[14,21,"inf"],"data":"AQD/AgA="}"#,
        );
        // Few distinct values take a dictionary (dict16 beyond 254 of them); 70,000 distinct
        // values take 4 bytes each at f32 precision, 8 exactly.
        let many: Vec<f64> = (0..300).map(f64::from).collect();
        assert!(matches!(Packed::approx(&many), Packed::Dict16 { .. }));
        // Hashed bit patterns (bit 30 clear: finite): 70,000 distinct, incompressible values.
        let distinct: Vec<f64> = (0..70_000u32)
            .map(|i| f64::from(f32::from_bits(i.wrapping_mul(2_654_435_761) & 0xBFFF_FFFF)))
            .collect();
        let Packed::F32 { data } = Packed::approx(&distinct) else {
            panic!("70,000 distinct values are f32");
        };
        assert_eq!(
            data.compression, None,
            "counting floats do not deflate by 10%"
        );
        assert_eq!(data.data.len(), 280_000usize.div_ceil(3) * 4);
        // Mostly zeros (a study's pruned trials): deflated, and inflating gives the bytes back.
        let zeros: Vec<f64> = (0..70_000)
            .map(|i| if i % 10 == 0 { f64::from(i) + 0.5 } else { 0.0 })
            .collect();
        let Packed::Dict16 { dict, data } = Packed::approx(&zeros) else {
            panic!("7,001 distinct values take dict16");
        };
        assert_eq!(dict.len(), 7_001, "0 and 7,000 others");
        assert_eq!(data.compression, Some("deflate"));
        assert!(
            data.data.len() < 140_000 / 2,
            "{} base64 chars",
            data.data.len()
        );
        let deflated = base64_decode_for_test(&data.data);
        let codes = miniz_oxide::inflate::decompress_to_vec(&deflated).unwrap();
        assert_eq!(codes.len(), 140_000);
        // Trial 0 holds 0.5 (code 1: code 0 is 0.0, the smallest), trial 1 holds 0.0.
        assert_eq!(&codes[..4], &[1, 0, 0, 0]);
        assert_eq!(
            &codes[20..22],
            &2u16.to_le_bytes(),
            "trial 10 holds the third value"
        );
        assert!(matches!(Packed::exact(&distinct), Packed::F64 { .. }));
        // A finite value beyond f32's range keeps f64.
        let huge: Vec<f64> = (0..70_000).map(|i| f64::from(i) * 1e300).collect();
        assert!(matches!(Packed::approx(&huge), Packed::F64 { .. }));
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
