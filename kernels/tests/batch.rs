//! Batch kernels against the reference: every example spec (and variants: close fills,
//! isolated margin, constant funding, stops everywhere, walk-forward windows) on seeded,
//! edge-biased synthetic markets, the SIMD backend's metrics and trades must equal the
//! reference's bit for bit (docs/SEMANTICS.md §4.3).

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
        let mut d = SymbolData {
            name,
            open: vec![f64::NAN; bars],
            high: vec![f64::NAN; bars],
            low: vec![f64::NAN; bars],
            close: vec![f64::NAN; bars],
            volume: vec![f64::NAN; bars],
            mark_open: vec![f64::NAN; bars],
            mark_high: vec![f64::NAN; bars],
            mark_low: vec![f64::NAN; bars],
            funding: Vec::new(),
        };
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
