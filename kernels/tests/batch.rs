//! Batch kernels against the reference: every example spec (and variants: close fills,
//! isolated margin, constant funding, stops everywhere, walk-forward windows) on seeded,
//! edge-biased synthetic markets, the SIMD backend's metrics and trades must equal the
//! reference's bit for bit (docs/SEMANTICS.md §4.3); the f32 lanes, on these markets and on
//! `data/sample`, must meet the f32 policy and agree across widths and platforms.

#![allow(clippy::needless_range_loop)] // synthetic columns are filled bar by bar, in step

use etrading_kernels::batch::lanes::SimdLevel;
use etrading_kernels::batch::{self, Backend, BatchInput, WindowPlan, simd};
use etrading_kernels::brackets;
use etrading_kernels::engine::{FundingAt, Metrics};
use etrading_kernels::parity::{Tolerance, compare_metrics, compare_trades};
use etrading_kernels::reference::{self, Market, MarketSymbol};
use etrading_kernels::spec::{ParamSet, Spec};

const H: i64 = 3_600_000;

/// A seeded xorshift generator (no dependency, stable across platforms).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Owned columns of one synthetic symbol.
struct SymbolData {
    name: &'static str,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
    mark_open: Vec<f64>,
    mark_high: Vec<f64>,
    mark_low: Vec<f64>,
    funding: Vec<FundingAt>,
}

impl SymbolData {
    /// `bars` bars without data (NaN everywhere) and no funding.
    fn missing(name: &'static str, bars: usize) -> SymbolData {
        let nan = || vec![f64::NAN; bars];
        SymbolData {
            name,
            open: nan(),
            high: nan(),
            low: nan(),
            close: nan(),
            volume: nan(),
            mark_open: nan(),
            mark_high: nan(),
            mark_low: nan(),
            funding: Vec::new(),
        }
    }
}

/// Random walks with volatility regimes, spikes of up to 20 %, flat stretches, a symbol that
/// starts late and one that ends early, marks missing for a stretch, funding every 8 h with
/// rates of both signs. (No NaN inside a symbol's span: the panel never has one, §1.4.)
fn market_data(seed: u64, bars: usize, interval_ms: i64) -> (Vec<i64>, Vec<SymbolData>) {
    let mut rng = Rng(seed | 1);
    let open_time: Vec<i64> = (0..bars as i64)
        .map(|i| 1_600_000_000_000 + i * interval_ms)
        .collect();
    let names = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "LTCUSDT"];
    let starts = [30_000.0, 2_000.0, 0.5, 100.0];
    let mut out = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let mut price = starts[k];
        let mut d = SymbolData::missing(name, bars);
        let first = if k == 2 { bars / 5 } else { 0 };
        let last = if k == 3 { bars - bars / 7 } else { bars };
        let mut vol = 0.01;
        for t in first..last {
            if rng.unit() < 0.01 {
                vol = [0.003, 0.01, 0.03][(rng.next() % 3) as usize];
            }
            let flat = (t / 97) % 11 == 3;
            let mut ret = if flat { 0.0 } else { vol * rng.normal() };
            if rng.unit() < 0.004 {
                ret += if rng.unit() < 0.5 { -0.2 } else { 0.15 };
            }
            let o = price;
            let c = (price * (1.0 + ret)).max(1e-6);
            let wick = if flat { 0.0 } else { vol * rng.unit() * price };
            let h = o.max(c) + wick;
            let l = (o.min(c) - vol * rng.unit() * price * if flat { 0.0 } else { 1.0 }).max(1e-7);
            d.open[t] = o;
            d.high[t] = h;
            d.low[t] = l;
            d.close[t] = c;
            d.volume[t] = 1_000.0 * rng.unit();
            if !(k == 0 && (bars / 3..bars / 3 + 50).contains(&t)) {
                d.mark_open[t] = o * (1.0 + 0.0005 * rng.normal());
                d.mark_high[t] = h * (1.0 + 0.001 * rng.unit());
                d.mark_low[t] = l * (1.0 - 0.001 * rng.unit());
            }
            if open_time[t] % (8 * H) == 0 {
                d.funding.push(FundingAt {
                    bar: t as u32,
                    rate: 0.0003 * rng.normal(),
                });
            }
            price = c;
        }
        out.push(d);
    }
    (open_time, out)
}

fn market<'a>(
    open_time: &'a [i64],
    interval_ms: i64,
    data: &'a [SymbolData],
    symbols: &[String],
) -> Market<'a> {
    Market {
        open_time,
        interval_ms,
        symbols: symbols
            .iter()
            .map(|name| {
                let d = data
                    .iter()
                    .find(|d| d.name == name)
                    .expect("synthetic symbol");
                MarketSymbol {
                    name: d.name,
                    open: &d.open,
                    high: &d.high,
                    low: &d.low,
                    close: &d.close,
                    volume: &d.volume,
                    mark_open: &d.mark_open,
                    mark_high: &d.mark_high,
                    mark_low: &d.mark_low,
                    funding: &d.funding,
                }
            })
            .collect(),
    }
}

/// Grid points: the first, the last, and seeded random ones.
fn sample_sets(spec: &Spec, count: usize, seed: u64) -> Vec<ParamSet> {
    let len = spec.params.grid_len().expect("a finite grid");
    let mut rng = Rng(seed | 1);
    let mut idx = vec![0, len - 1];
    while idx.len() < count.min(len as usize) {
        idx.push(rng.next() % len);
    }
    idx.iter()
        .map(|&i| spec.params.decode(i).expect("grid index"))
        .collect()
}

/// Runs `sets` of `spec_text` through the reference and the SIMD kernel; every metric of every
/// window and every trade of the full run must be identical.
fn check(label: &str, spec_text: &str, sets_count: usize, seed: u64) {
    let spec = Spec::parse(label, spec_text).unwrap_or_else(|e| panic!("{label}: {e}"));
    let interval_ms = match spec.strategy.interval.as_str() {
        "4h" => 4 * H,
        _ => H,
    };
    let (open_time, data) = market_data(seed, 3_001, interval_ms);
    let market = market(&open_time, interval_ms, &data, &spec.strategy.symbols);
    let tables = brackets::bundled();
    let windows = match &spec.walk_forward {
        Some(wf) => WindowPlan::walk_forward(wf, &open_time, interval_ms).expect("windows fit"),
        None => WindowPlan::full(open_time.len()),
    };
    let input = BatchInput {
        spec: &spec,
        market: &market,
        brackets: &tables,
        initial_capital: 10_000.0,
        windows: &windows,
    };
    let sets = sample_sets(&spec, sets_count, seed);
    let nw = windows.len();
    let mut reference_rows = vec![Metrics::default(); sets.len() * nw];
    batch::run(&input, &sets, Backend::Scalar, &mut reference_rows, &|_| {}).expect("scalar");
    // Every vector width this CPU has gives the same rows (the narrower ones are checked
    // against the widest, which is checked against the reference below).
    let mut simd_rows = vec![Metrics::default(); sets.len() * nw];
    let mut logs = vec![Vec::new(); sets.len()];
    simd::run_traced(&input, &sets, &mut simd_rows, Some(&mut logs), &|_| {}).expect("simd");
    for level in SimdLevel::available() {
        let mut rows = vec![Metrics::default(); sets.len() * nw];
        simd::run_at(level, &input, &sets, &mut rows, None, &|_| {}).expect("simd level");
        for (k, (a, b)) in simd_rows.iter().zip(&rows).enumerate() {
            if let Some(d) = compare_metrics(a, b, Tolerance::EXACT) {
                panic!("{label}: {} row {k}: {d}", level.name());
            }
        }
    }
    check_golden(label, &simd_rows);
    let mut trades = 0;
    let mut liquidations = 0;
    for (i, set) in sets.iter().enumerate() {
        for w in 0..nw {
            let (e, f) = (&reference_rows[i * nw + w], &simd_rows[i * nw + w]);
            if let Some(d) = compare_metrics(e, f, Tolerance::EXACT) {
                panic!("{label}: set {} window {w}: {d}", spec.params.describe(set));
            }
        }
        let resolved = spec.resolve(set).expect("resolves");
        let bt = reference::run(&spec, &resolved, &market, &tables, 10_000.0).expect("reference");
        // The kernel's indicators (streaming) and signal codes (column-wise rules) equal the
        // reference's (TA-Lib, bar-wise rules).
        let fast = simd::signals_of(&input, set).expect("signals");
        for (s, ((columns, codes), r)) in fast.iter().zip(&bt.signals).enumerate() {
            for (slot, (a, b)) in r.indicators.iter().zip(columns).enumerate() {
                if let Some(t) = (0..a.len()).find(|&t| !Tolerance::EXACT.accepts(a[t], b[t])) {
                    panic!(
                        "{label}: symbol {s} slot {slot} bar {t}: TA-Lib {} vs {}",
                        a[t], b[t]
                    );
                }
            }
            for t in 0..codes.len() {
                let expected = if market.symbols[s].close[t].is_finite() {
                    simd::code::of(
                        r.long_entry[t],
                        r.long_exit[t],
                        r.short_entry[t],
                        r.short_exit[t],
                    )
                } else {
                    0
                };
                assert_eq!(
                    codes[t], expected,
                    "{label}: symbol {s} bar {t}: signal code"
                );
            }
        }
        if let Some(d) = compare_trades(&bt.result.trades, &logs[i], Tolerance::EXACT) {
            panic!("{label}: set {}: {d}", spec.params.describe(set));
        }
        trades += bt.result.trades.len();
        liquidations += bt.result.metrics.liquidations;
    }
    assert!(
        trades > sets.len(),
        "{label}: too few trades ({trades}) for a meaningful check"
    );
    eprintln!(
        "{label}: {} sets x {nw} windows, {trades} trades, {liquidations} liquidations: identical",
        sets.len()
    );
}

/// The SIMD rows against the committed ones, produced on x86-64 where the reference runs
/// TA-Lib (`UPDATE_GOLDEN=1` rewrites them). This is how the aarch64 build, which has no
/// TA-Lib, is held to TA-Lib's numbers (scripts/ci/test-30-aarch64.sh runs it under qemu).
fn check_golden(label: &str, rows: &[Metrics]) {
    use etrading_kernels::parity::metric_fields;
    let path = format!(
        "{}/tests/golden/batch-{}.json",
        env!("CARGO_MANIFEST_DIR"),
        label.replace('/', "-")
    );
    let table: Vec<Vec<serde_json::Value>> = rows
        .iter()
        .map(|m| {
            metric_fields(m)
                .iter()
                .map(|(_, v)| {
                    serde_json::Number::from_f64(*v)
                        .map_or(serde_json::Value::Null, serde_json::Value::Number)
                })
                .collect()
        })
        .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(format!("{}/tests/golden", env!("CARGO_MANIFEST_DIR")))
            .expect("golden dir");
        std::fs::write(&path, serde_json::to_string(&table).expect("json") + "\n")
            .expect("write golden");
        return;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (UPDATE_GOLDEN=1 writes it)"));
    let golden: Vec<Vec<Option<f64>>> = serde_json::from_str(&text).expect("golden json");
    assert_eq!(golden.len(), rows.len(), "{label}: golden row count");
    for (k, (g, m)) in golden.iter().zip(rows).enumerate() {
        for ((name, v), expected) in metric_fields(m).iter().zip(g) {
            let expected = expected.unwrap_or(f64::NAN);
            assert!(
                Tolerance::CROSS_PLATFORM.accepts(expected, *v),
                "{label}: row {k} {name}: golden {expected} vs {v} ({})",
                Tolerance::CROSS_PLATFORM
            );
        }
    }
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../examples/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("example spec")
}

#[test]
fn rsi_ema_matches_the_reference() {
    check("rsi_ema", &example("rsi_ema"), 48, 7);
}

#[test]
fn rsi_ema_close_fills_isolated_constant_funding() {
    let text = example("rsi_ema")
        .replace("fill = \"next_open\"", "fill = \"close\"")
        .replace("margin_mode = \"cross\"", "margin_mode = \"isolated\"")
        .replace("funding = \"data\"", "funding = 0.0002");
    check("rsi_ema/close/isolated", &text, 40, 11);
}

#[test]
fn rsi_ema_high_leverage_liquidates_identically() {
    let text = example("rsi_ema")
        .replace(
            "leverage   = { low = 1, high = 10, step = 1 }",
            "leverage = [15, 20]",
        )
        .replace("position_size = 0.25", "position_size = 0.6")
        .replace("stop_loss = 0.05", "stop_loss = 0.5")
        .replace(
            "max_leverage = { XRPUSDT = 10 }",
            "max_leverage = { XRPUSDT = 20 }",
        );
    check("rsi_ema/20x", &text, 40, 13);
}

#[test]
fn isolated_high_leverage_liquidates_identically() {
    let text = example("rsi_ema")
        .replace(
            "leverage   = { low = 1, high = 10, step = 1 }",
            "leverage = [12, 20]",
        )
        .replace("margin_mode = \"cross\"", "margin_mode = \"isolated\"")
        .replace("stop_loss = 0.05", "stop_loss = 0.5")
        .replace(
            "max_leverage = { XRPUSDT = 10 }",
            "max_leverage = { XRPUSDT = 20 }",
        );
    check("rsi_ema/isolated-20x", &text, 40, 29);
}

#[test]
fn ema_cross_matches_the_reference() {
    check("ema_cross", &example("ema_cross"), 40, 17);
}

#[test]
fn bb_atr_breakout_matches_the_reference() {
    check("bb_atr_breakout", &example("bb_atr_breakout"), 40, 19);
}

#[test]
fn walk_forward_windows_match_the_reference() {
    let text = format!(
        "{}\n[walk_forward]\nmode = \"rolling\"\nwindows = 3\nin_sample = \"40d\"\nout_of_sample = \"20d\"\ngap = \"1d\"\n",
        example("rsi_ema")
    );
    check("rsi_ema/walk-forward", &text, 24, 23);
}

// f32 lanes (docs/SEMANTICS.md §4.3): the same kernel with f32 vectors, held to the f32 policy
// against the reference, identical at every width and (through the golden rows) on aarch64.

/// Edge cases a case makes the reference go through, counted over its sets' full runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct EdgeCases {
    trades: usize,
    stop_losses: usize,
    take_profits: usize,
    liquidations: usize,
    /// A position closed and the opposite one opened on the same symbol and bar.
    reversals: usize,
    /// Positions that paid or received funding on their entry bar.
    funded_at_entry: usize,
}

impl EdgeCases {
    fn of(trades: &[etrading_kernels::engine::Trade], market: &Market<'_>) -> EdgeCases {
        use etrading_kernels::engine::ExitReason;
        let mut e = EdgeCases {
            trades: trades.len(),
            ..EdgeCases::default()
        };
        for (k, t) in trades.iter().enumerate() {
            match t.exit_reason {
                ExitReason::StopLoss => e.stop_losses += 1,
                ExitReason::TakeProfit => e.take_profits += 1,
                ExitReason::Liquidation => e.liquidations += 1,
                ExitReason::Signal | ExitReason::End => {}
            }
            e.reversals +=
                usize::from(trades[k + 1..].iter().any(|n| {
                    n.symbol == t.symbol && n.entry_bar == t.exit_bar && n.side != t.side
                }));
            let funding = market.symbols[t.symbol].funding;
            e.funded_at_entry += usize::from(funding.iter().any(|f| f.bar as usize == t.entry_bar));
        }
        e
    }

    fn add(&mut self, o: EdgeCases) {
        self.trades += o.trades;
        self.stop_losses += o.stop_losses;
        self.take_profits += o.take_profits;
        self.liquidations += o.liquidations;
        self.reversals += o.reversals;
        self.funded_at_entry += o.funded_at_entry;
    }
}

/// `sets` through the reference and the f32 lanes at every vector width this CPU has: the
/// widths must agree bit for bit (rows and trades), the rows must meet the f32 policy (counts
/// equal in >= 99 % of rows, floats within `f32` in >= 99 % of those), at most 1 % of the sets
/// may trade differently, and the rows must equal the committed ones up to libm (which is how
/// the aarch64 run holds NEON f32x4 to x86-64). Returns the edge cases the reference went
/// through.
fn check_f32(
    label: &str,
    spec: &Spec,
    market: &Market<'_>,
    windows: &WindowPlan,
    sets: &[ParamSet],
) -> EdgeCases {
    use etrading_kernels::batch::Precision;
    use etrading_kernels::parity::{Policy, compare_rows};
    let tables = brackets::bundled();
    let input = BatchInput {
        spec,
        market,
        brackets: &tables,
        initial_capital: 10_000.0,
        windows,
    };
    let nw = windows.len();
    let mut reference_rows = vec![Metrics::default(); sets.len() * nw];
    batch::run(&input, sets, Backend::Scalar, &mut reference_rows, &|_| {}).expect("scalar");
    let mut widths: Vec<(SimdLevel, Vec<Metrics>, Vec<simd::TradeLog>)> = Vec::new();
    for level in SimdLevel::available() {
        let mut rows = vec![Metrics::default(); sets.len() * nw];
        let mut logs = vec![Vec::new(); sets.len()];
        simd::run_at_precision(
            level,
            Precision::F32,
            &input,
            sets,
            &mut rows,
            Some(&mut logs),
            &|_| {},
        )
        .expect("simd f32");
        if let Some((first, first_rows, first_logs)) = widths.first() {
            for (k, (a, b)) in first_rows.iter().zip(&rows).enumerate() {
                if let Some(d) = compare_metrics(a, b, Tolerance::EXACT) {
                    panic!(
                        "{label}: f32 row {k}: {} vs {}: {d}",
                        first.label(Precision::F32),
                        level.label(Precision::F32)
                    );
                }
            }
            for (i, (a, b)) in first_logs.iter().zip(&logs).enumerate() {
                if let Some(d) = compare_trades(a, b, Tolerance::EXACT) {
                    panic!("{label}: f32 set {i}: {}: {d}", level.label(Precision::F32));
                }
            }
        }
        widths.push((level, rows, logs));
    }
    let (_, rows, logs) = widths.swap_remove(0);
    let agreement = compare_rows(&reference_rows, &rows, Tolerance::F32);
    assert!(
        agreement.meets(&Policy::F32),
        "{label}: f32 lanes against the reference: {agreement}; first count miss {:?}, first float miss {:?}",
        agreement.first_count_miss,
        agreement.first_float_miss
    );
    let mut edges = EdgeCases::default();
    let mut differing_sets = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        let resolved = spec.resolve(set).expect("resolves");
        let bt = reference::run(spec, &resolved, market, &tables, 10_000.0).expect("reference");
        edges.add(EdgeCases::of(&bt.result.trades, market));
        if let Some(d) = compare_trades(&bt.result.trades, &logs[i], Tolerance::F32) {
            differing_sets.push(format!("{}: {d}", spec.params.describe(set)));
        }
    }
    assert!(
        differing_sets.len() * 100 <= sets.len(),
        "{label}: {} of {} sets trade differently in f32 (at most 1 %): {:?}",
        differing_sets.len(),
        sets.len(),
        &differing_sets[..differing_sets.len().min(3)]
    );
    check_golden(&format!("{label}-f32"), &rows);
    let worst: Vec<String> = agreement
        .worst_relative
        .iter()
        .filter(|w| w.1 > 0.0)
        .map(|(name, rel)| format!("{name} {rel:.1e}"))
        .collect();
    eprintln!(
        "{label}: f32 at {} widths, {} sets x {nw} windows: {agreement}; {} sets trade differently; {edges:?}; worst relative: {}",
        SimdLevel::available().len(),
        sets.len(),
        differing_sets.len(),
        worst.join(", ")
    );
    edges
}

/// [`check_f32`] on the synthetic market of [`check`].
fn check_f32_synthetic(label: &str, spec_text: &str, sets_count: usize, seed: u64) -> EdgeCases {
    let spec = Spec::parse(label, spec_text).unwrap_or_else(|e| panic!("{label}: {e}"));
    let interval_ms = match spec.strategy.interval.as_str() {
        "4h" => 4 * H,
        _ => H,
    };
    let (open_time, data) = market_data(seed, 3_001, interval_ms);
    let market = market(&open_time, interval_ms, &data, &spec.strategy.symbols);
    let windows = match &spec.walk_forward {
        Some(wf) => WindowPlan::walk_forward(wf, &open_time, interval_ms).expect("windows fit"),
        None => WindowPlan::full(open_time.len()),
    };
    let sets = sample_sets(&spec, sets_count, seed);
    check_f32(label, &spec, &market, &windows, &sets)
}

/// `data/sample/`: the four symbols' 1h klines, mark-price klines and funding of 2025 (every
/// symbol has every bar), resampled to `interval_ms` as SEMANTICS.md §1.7 does (open of the
/// first bar, highest high, lowest low, close of the last, summed volume, buckets of
/// `floor(open_time / interval)`), funding on the bar whose span holds its time (§1.6).
fn sample_data(interval_ms: i64) -> (Vec<i64>, Vec<SymbolData>) {
    fn read(path: &str, columns: usize) -> Vec<Vec<f64>> {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines()
            .enumerate()
            .skip(1)
            .map(|(number, line)| {
                let fields: Vec<f64> = line
                    .split(',')
                    .map(|field| {
                        field.parse().unwrap_or_else(|e| {
                            panic!("{path}:{}: `{field}` is not a number: {e}", number + 1)
                        })
                    })
                    .collect();
                assert_eq!(fields.len(), columns, "{path}:{}: fields", number + 1);
                fields
            })
            .collect()
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample");
    let names = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "LTCUSDT"];
    let hourly: Vec<i64> = read(&format!("{dir}/BTCUSDT-1h.csv"), 6)
        .iter()
        .map(|r| r[0] as i64)
        .collect();
    let mut open_time: Vec<i64> = hourly.iter().map(|t| t - t % interval_ms).collect();
    open_time.dedup();
    let bucket = |t: i64| {
        open_time
            .binary_search(&(t - t % interval_ms))
            .unwrap_or_else(|_| panic!("time {t} is outside the sample"))
    };
    let n = open_time.len();
    let mut out = Vec::new();
    for name in names {
        let klines = read(&format!("{dir}/{name}-1h.csv"), 6);
        let marks = read(&format!("{dir}/{name}-1h-markprice.csv"), 5);
        let mut d = SymbolData::missing(name, n);
        let ohlc = |rows: &[Vec<f64>],
                    open: &mut [f64],
                    high: &mut [f64],
                    low: &mut [f64],
                    mut close: Option<&mut [f64]>| {
            for r in rows {
                let b = bucket(r[0] as i64);
                if open[b].is_nan() {
                    (open[b], high[b], low[b]) = (r[1], r[2], r[3]);
                }
                high[b] = high[b].max(r[2]);
                low[b] = low[b].min(r[3]);
                if let Some(close) = close.as_deref_mut() {
                    close[b] = r[4];
                }
            }
        };
        ohlc(
            &klines,
            &mut d.open,
            &mut d.high,
            &mut d.low,
            Some(&mut d.close),
        );
        ohlc(
            &marks,
            &mut d.mark_open,
            &mut d.mark_high,
            &mut d.mark_low,
            None,
        );
        for r in &klines {
            let b = bucket(r[0] as i64);
            d.volume[b] = if d.volume[b].is_nan() {
                0.0
            } else {
                d.volume[b]
            } + r[5];
        }
        d.funding = read(&format!("{dir}/{name}-funding.csv"), 3)
            .iter()
            .map(|r| FundingAt {
                bar: bucket(r[0] as i64) as u32,
                rate: r[2],
            })
            .collect();
        assert!(
            d.close.iter().all(|c| c.is_finite()),
            "{name}: a bar is missing"
        );
        out.push(d);
    }
    (open_time, out)
}

/// Every example spec on the real sample data through the f32 lanes at every width.
#[test]
fn every_example_on_the_sample_data_meets_the_f32_policy() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("examples")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".toml")?.to_string())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 4, "examples: {names:?}");
    let mut total = EdgeCases::default();
    for name in &names {
        let spec = Spec::parse(name, &example(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let interval_ms = match spec.strategy.interval.as_str() {
            "1h" => H,
            "4h" => 4 * H,
            other => panic!("{name}: interval {other} is not in the sample"),
        };
        let (open_time, data) = sample_data(interval_ms);
        let market = market(&open_time, interval_ms, &data, &spec.strategy.symbols);
        let windows = match &spec.walk_forward {
            Some(wf) => WindowPlan::walk_forward(wf, &open_time, interval_ms).expect("windows"),
            None => WindowPlan::full(open_time.len()),
        };
        let sets = sample_sets(&spec, 12, 41);
        let edges = check_f32(&format!("sample-{name}"), &spec, &market, &windows, &sets);
        assert!(
            edges.trades > sets.len(),
            "{name}: too few trades: {edges:?}"
        );
        total.add(edges);
    }
    assert!(
        total.stop_losses > 0 && total.reversals > 0 && total.funded_at_entry > 0,
        "the sample runs must go through stops, reversals and funding at entry: {total:?}"
    );
}

#[test]
fn f32_rsi_ema_close_fills_isolated_constant_funding() {
    let text = example("rsi_ema")
        .replace("fill = \"next_open\"", "fill = \"close\"")
        .replace("margin_mode = \"cross\"", "margin_mode = \"isolated\"")
        .replace("funding = \"data\"", "funding = 0.0002");
    let e = check_f32_synthetic("rsi_ema/close/isolated", &text, 40, 11);
    assert!(e.stop_losses > 0 && e.take_profits > 0, "{e:?}");
}

#[test]
fn f32_cross_high_leverage_liquidates_as_the_reference() {
    let text = example("rsi_ema")
        .replace(
            "leverage   = { low = 1, high = 10, step = 1 }",
            "leverage = [15, 20]",
        )
        .replace("position_size = 0.25", "position_size = 0.6")
        .replace("stop_loss = 0.05", "stop_loss = 0.5")
        .replace(
            "max_leverage = { XRPUSDT = 10 }",
            "max_leverage = { XRPUSDT = 20 }",
        );
    let e = check_f32_synthetic("rsi_ema/20x", &text, 40, 13);
    assert!(e.liquidations > 0, "{e:?}");
}

#[test]
fn f32_isolated_high_leverage_liquidates_as_the_reference() {
    let text = example("rsi_ema")
        .replace(
            "leverage   = { low = 1, high = 10, step = 1 }",
            "leverage = [12, 20]",
        )
        .replace("margin_mode = \"cross\"", "margin_mode = \"isolated\"")
        .replace("stop_loss = 0.05", "stop_loss = 0.5")
        .replace(
            "max_leverage = { XRPUSDT = 10 }",
            "max_leverage = { XRPUSDT = 20 }",
        );
    let e = check_f32_synthetic("rsi_ema/isolated-20x", &text, 40, 29);
    assert!(e.liquidations > 0, "{e:?}");
}

#[test]
fn f32_ema_cross_and_bb_atr_breakout_on_synthetic_markets() {
    let e = check_f32_synthetic("ema_cross", &example("ema_cross"), 40, 17);
    assert!(e.reversals > 0, "ema_cross reverses: {e:?}");
    check_f32_synthetic("bb_atr_breakout", &example("bb_atr_breakout"), 40, 19);
}

#[test]
fn f32_walk_forward_windows() {
    let text = format!(
        "{}\n[walk_forward]\nmode = \"rolling\"\nwindows = 3\nin_sample = \"40d\"\nout_of_sample = \"20d\"\ngap = \"1d\"\n",
        example("rsi_ema")
    );
    check_f32_synthetic("rsi_ema/walk-forward", &text, 24, 23);
}

/// f32 lanes count bars in f32: a window longer than 2^24 bars is refused, never miscounted.
#[test]
fn f32_refuses_windows_longer_than_its_bar_count_is_exact() {
    use etrading_kernels::batch::Precision;
    let spec = Spec::parse("rsi_ema", &example("rsi_ema")).expect("spec");
    let (open_time, data) = market_data(3, 600, H);
    let market = market(&open_time, H, &data, &spec.strategy.symbols);
    let tables = brackets::bundled();
    let windows = WindowPlan::full(simd::F32_MAX_WINDOW_BARS + 1);
    let input = BatchInput {
        spec: &spec,
        market: &market,
        brackets: &tables,
        initial_capital: 10_000.0,
        windows: &windows,
    };
    let sets = sample_sets(&spec, 2, 3);
    let mut rows = vec![Metrics::default(); sets.len()];
    let err = batch::run(
        &input,
        &sets,
        Backend::Simd(Precision::F32),
        &mut rows,
        &|_| {},
    )
    .expect_err("too long for f32");
    assert!(err.to_string().contains("16777216 bars"), "{err}");
    // The same refusal before any set runs (callers choose their backend with it), and none
    // for f64 lanes.
    let early = simd::check_input(&input, Precision::F32).expect_err("too long for f32");
    assert_eq!(early.to_string(), err.to_string());
    simd::check_input(&input, Precision::F64).expect("f64 counts bars exactly");
}
