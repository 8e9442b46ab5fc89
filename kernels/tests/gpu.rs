//! The GPU backend (kernels::gpu), run for real: naga validation of every shader, host/WGSL
//! layout agreement, the dispatch plan and the bar chunks, parity with the scalar reference
//! engine on Mesa's lavapipe (or any adapter) for at least 2,000 sampled param sets of each
//! example spec, in f32 and f64, under the tolerances of docs/SEMANTICS.md §5; a series far
//! past lavapipe's loop limit run in bar chunks, the loop-budget canary, dispatch groups split
//! under a small binding limit, and the CPU fallback after an injected dispatch failure
//! (SEMANTICS.md §5.4).
//!
//! There is no skip: without an adapter the parity tests fail, naming the package to install
//! (scripts/test.sh installs lavapipe). `GPU_PARITY_SPEC=rsi_ema` runs one spec only;
//! `GPU_PARITY_SETS=N` changes the sample size (at least 2,000 in CI); `GPU_PARITY_VERBOSE=1`
//! prints every row whose trade counts differ.

// Synthetic columns are filled bar by bar, several in step.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use etrading_kernels::batch::{self, Backend, BatchInput, WindowPlan};
use etrading_kernels::brackets::{BracketTable, bundled};
use etrading_kernels::engine::{FundingAt, Metrics};
use etrading_kernels::gpu::layout::{Dims, host_layouts};
use etrading_kernels::gpu::pair;
use etrading_kernels::gpu::plan::{
    self, PlanLimits, SOFTWARE_LOOP_BUDGET, SetBytes, bars_per_chunk, dispatches_with_warm_up,
    loop_iterations_per_bar, plan_dispatches, warm_bars_per_chunk, window_work,
};
use etrading_kernels::gpu::shaders::{self, ENTRY_POINTS, SHADER_FILES, SHADER_LIST, Variant};
use etrading_kernels::gpu::{self, GpuContext, GpuError, GpuOptions, GpuReport, Precision};
use etrading_kernels::reference::{Market, MarketSymbol};
use etrading_kernels::spec::{
    Distribution, ParamSet, ParamValue, Spec, WalkForwardMode, WalkForwardSpec,
};

/// The example specs and the test specs of kernels/tests/specs/ (`sma_rsi`: two SMAs and an
/// RSI that stream, read at lags 0 and 1).
const EXAMPLES: [&str; 4] = ["bb_atr_breakout", "ema_cross", "rsi_ema", "sma_rsi"];

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// An example spec (`examples/NAME.toml`) or a test spec (`kernels/tests/specs/NAME.toml`).
fn example(name: &str) -> Spec {
    let mut file = format!("examples/{name}.toml");
    if !repo().join(&file).exists() {
        file = format!("kernels/tests/specs/{name}.toml");
    }
    let text = std::fs::read_to_string(repo().join(&file)).unwrap();
    Spec::parse(&file, &text).unwrap()
}

// ---------------------------------------------------------------- shaders and layout

fn wgsl_files_on_disk(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.file_type().unwrap().is_dir() {
            wgsl_files_on_disk(&entry.path(), &format!("{prefix}{name}/"), out);
        } else if name.ends_with(".wgsl") {
            out.insert(format!("{prefix}{name}"));
        }
    }
}

#[test]
fn shader_files_match_the_committed_list() {
    let mut on_disk = BTreeSet::new();
    wgsl_files_on_disk(&repo().join("shaders"), "", &mut on_disk);
    let listed: BTreeSet<String> = SHADER_LIST
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let embedded: BTreeSet<String> = SHADER_FILES.iter().map(|(n, _)| n.to_string()).collect();
    assert!(!listed.is_empty(), "shaders/SHADERS.txt lists no shader");
    assert_eq!(on_disk, listed, "shaders/ and shaders/SHADERS.txt differ");
    assert_eq!(
        embedded, listed,
        "gpu::shaders::SHADER_FILES and SHADERS.txt differ"
    );
    for (name, _) in ENTRY_POINTS {
        assert!(listed.contains(*name), "entry point {name} is not listed");
    }
}

/// Every entry point, for every example spec's generated rules, at both precisions, through
/// naga; every shared file is reached by some entry point.
#[test]
fn every_shader_validates_with_naga() {
    let mut reached = BTreeSet::new();
    for name in EXAMPLES {
        let spec = example(name);
        let rules = gpu::codegen::rules_wgsl(&spec);
        // Both precisions, and every combination of the compiled-in switches.
        let n_symbols = spec.strategy.symbols.len();
        let variants = ["f32", "f64"].into_iter().flat_map(|real| {
            (0..8u8).map(move |bits| Variant {
                fill_close: bits & 1 != 0,
                cross_margin: bits & 2 != 0,
                funding_constant: bits & 4 != 0,
                ..Variant::new(real, n_symbols)
            })
        });
        for variant in variants {
            for (file, entry) in ENTRY_POINTS {
                let real = variant.real;
                let source = shaders::assemble(file, &variant, &rules)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                for line in source.lines() {
                    if let Some(path) = line.strip_prefix("// ---- shaders/") {
                        reached.insert(path.to_string());
                    }
                }
                let module = shaders::validate(file, real, &source)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(
                    module.entry_points.iter().any(|ep| ep.name == *entry),
                    "{file}: no entry point `{entry}`"
                );
                assert_eq!(
                    module.entry_points.len(),
                    1,
                    "{file}: one entry point per file"
                );
            }
        }
        reached.extend(ENTRY_POINTS.iter().map(|(f, _)| f.to_string()));
    }
    let all: BTreeSet<String> = SHADER_FILES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(reached, all, "shader files no entry point includes");
}

#[test]
fn layout_matches_wgsl() {
    let spec = example("rsi_ema");
    let rules = gpu::codegen::rules_wgsl(&spec);
    for (real, f64_variant) in [("f32", false), ("f64", true)] {
        let source = shaders::assemble("backtest.wgsl", &Variant::new(real, 4), &rules).unwrap();
        let module = shaders::validate("backtest.wgsl", real, &source).unwrap();
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let n_streams = gpu::streams::plan_streams(&spec).len();
        assert_eq!(n_streams, 2, "rsi_ema streams its RSI and its EMA");
        for host in host_layouts(f64_variant, 4, n_streams) {
            let (span, members) = shaders::wgsl_layout(&module, host.wgsl_name)
                .unwrap_or_else(|| panic!("no WGSL struct {}", host.wgsl_name));
            let wgsl: Vec<(String, usize)> =
                members.into_iter().map(|(n, o)| (n, o as usize)).collect();
            let rust: Vec<(String, usize)> = host
                .fields
                .iter()
                .map(|(n, o)| (n.to_string(), *o))
                .collect();
            assert_eq!(wgsl, rust, "{real} {}: field offsets", host.wgsl_name);
            assert_eq!(span as usize, host.size, "{real} {}: size", host.wgsl_name);
        }
    }
}

/// A one-symbol spec: `INDICATORS`, `PARAMS`, `LONG_ENTRY` and `LONG_EXIT` replaced.
const MINIMAL_SPEC: &str = r#"[strategy]
id = "t"
symbols = ["BTCUSDT"]
interval = "1h"
[indicators]
INDICATORS
[params]
PARAMS
[rules]
long_entry = "LONG_ENTRY"
long_exit = "LONG_EXIT"
[risk]
margin_mode = "cross"
position_size = 0.5
max_concurrent_positions = 1
[execution]
fill = "close"
taker_fee = 0.0005
slippage = 0.0
funding = "none"
"#;

/// The names of the indicators of `spec` the shader streams.
fn streamed_names(spec: &Spec) -> Vec<String> {
    gpu::streams::plan_streams(spec)
        .iter()
        .map(|s| spec.indicators[s.indicator].name.clone())
        .collect()
}

/// rsi_ema with its long exit reading the RSI two bars back.
fn rsi_ema_with_rsi_at_lag_2() -> Spec {
    let file = "examples/rsi_ema.toml";
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let from = r#"long_exit   = "rsi > rsi_upper""#;
    assert!(text.contains(from));
    let text = text.replace(from, r#"long_exit   = "prev(rsi, 2) > rsi_upper""#);
    Spec::parse(file, &text).unwrap()
}

/// The indicators that stream (docs/SEMANTICS.md §5.1) for one indicator table and rules.
fn check_streams(indicators: &str, entry: &str, exit: &str, expect: &[&str]) {
    let text = MINIMAL_SPEC
        .replace("INDICATORS", indicators)
        .replace("PARAMS", "n = [14, 21]\nlag = [1, 2]")
        .replace("LONG_ENTRY", entry)
        .replace("LONG_EXIT", exit);
    let spec = Spec::parse("streams.toml", &text).unwrap();
    assert_eq!(
        streamed_names(&spec),
        expect,
        "{indicators} / {entry} / {exit}"
    );
}

#[test]
fn plan_streams_picks_sma_ema_and_rsi_by_function_args_and_lags() {
    let three = r#"e = { fn = "EMA", timeperiod = "n" }
s = { fn = "SMA", input = "high", timeperiod = 5 }
r = { fn = "RSI", input = "volume", timeperiod = "n" }"#;
    // Lags 0 and 1 (cross_* reads 1), any real input, a period from a param or a number.
    check_streams(
        three,
        "cross_above(e, s) and r > 50",
        "r < 50",
        &["e", "s", "r"],
    );
    check_streams(
        three,
        "prev(r, 1) > 50 and e > s",
        "close < 0",
        &["e", "s", "r"],
    );
    // A constant lag of 2 or a lag that is a param: uploaded.
    check_streams(three, "prev(r, 2) > 50 and e > s", "close < 0", &["e", "s"]);
    check_streams(
        three,
        "prev(e, lag) > s and r > 50",
        "close < 0",
        &["s", "r"],
    );
    check_streams(three, "prev(s, 2) > e and r > 50", "close < 0", &["e", "r"]);
    // Only `timeperiod` set: other args (MA with `matype` = 0 is an SMA) or other functions
    // are uploaded.
    check_streams(
        r#"m = { fn = "MA", timeperiod = "n", matype = 0 }
w = { fn = "WMA", timeperiod = "n" }
b = { fn = "BBANDS", timeperiod = "n" }
s = { fn = "SMA", timeperiod = "n" }"#,
        "m > w and close > b.upper and s > 0",
        "close < 0",
        &["s"],
    );
}

/// The per-set bytes of an f64 dispatch of 3 windows, 4 symbols, 5 rule params, 2 slots, no
/// streamed indicator: out 3 x 112, state 3 x (48 + 4 x 112 + 4 x 104) = 2,736 (the
/// largest; one `StreamState` per symbol even without streams), sets 80, batch_real
/// (4 + 5) x 8, batch_u32 2 x 4.
fn per_set_bytes() -> SetBytes {
    let dims = Dims {
        n_symbols: 4,
        n_rule_params: 5,
        n_slots: 2,
        ..Dims::default()
    };
    let bytes = SetBytes::of::<f64>(3, &dims);
    assert_eq!(
        bytes,
        SetBytes {
            out: 336,
            state: 2_736,
            set_params: 80,
            batch_real: 72,
            batch_u32: 8,
        }
    );
    bytes
}

fn check_plan(n_sets: usize, limits: PlanLimits, expect: &[(usize, usize)]) {
    let plan = plan_dispatches(n_sets, 3, &per_set_bytes(), &limits).unwrap();
    let got: Vec<(usize, usize)> = plan.batches.iter().map(|r| (r.start, r.end)).collect();
    assert_eq!(got, expect);
}

#[test]
fn dispatch_plan_respects_device_limits() {
    let roomy = PlanLimits {
        max_workgroups: 65_535,
        max_binding_bytes: 1 << 30,
        target_sets: 1_000,
    };
    // By the target size: 2,500 sets -> 1,000 + 1,000 + 500.
    check_plan(2_500, roomy, &[(0, 1_000), (1_000, 2_000), (2_000, 2_500)]);
    // By workgroups: 2 workgroups x 64 invocations = 128 (set, window) rows: 42 sets of 3
    // windows per dispatch.
    let few_groups = PlanLimits {
        max_workgroups: 2,
        ..roomy
    };
    check_plan(100, few_groups, &[(0, 42), (42, 84), (84, 100)]);
    // By the largest per-set buffer, state: 2,736 bytes per set; 6,000 bytes -> 2 sets.
    let small_binding = PlanLimits {
        max_binding_bytes: 6_000,
        ..roomy
    };
    check_plan(5, small_binding, &[(0, 2), (2, 4), (4, 5)]);
    check_plan(0, roomy, &[]);
    // Not even one set's state fits: refused, naming the buffer, its size and the limit.
    let tiny = PlanLimits {
        max_binding_bytes: 2_000,
        ..roomy
    };
    let error = plan_dispatches(5, 3, &per_set_bytes(), &tiny)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "batch too large for the GPU tables: one param set needs 2736 bytes in state, the device binds at most 2000 bytes"
    );
}

/// Loop trips per bar (lavapipe's count) and the chunk length under a budget, without
/// streamed indicators.
fn check_chunking(symbols: usize, tiers: usize, events: usize, per_bar: u64, bars: usize) {
    check_chunking_streams(symbols, tiers, events, 0, per_bar, bars);
}

fn check_chunking_streams(
    symbols: usize,
    tiers: usize,
    events: usize,
    streams: usize,
    per_bar: u64,
    bars: usize,
) {
    assert_eq!(
        loop_iterations_per_bar(symbols, tiers, events, streams),
        per_bar
    );
    assert_eq!(
        bars_per_chunk(SOFTWARE_LOOP_BUDGET, symbols, tiers, events, streams),
        bars
    );
}

#[test]
fn bar_chunks_stay_within_the_loop_budget() {
    // 1 symbol, 1 tier, 1 event per bar: L(n) = n + 1 trips per loop of n iterations.
    // open = 2 L(1) + 2 L(1) = 8; execute = 2 L(1) + 8 = 12; funding = L(1) + 2 L(1) = 6;
    // intrabar = 2 L(1) + (L(1) + L(1)) + L(1) + (2 L(1) + L(1)) + 3 L(1) = 22;
    // per bar = 1 + 2 L(1) + 12 + 6 + 22 + L(1) + 12 + 3 L(1) = 65.
    // Per chunk: 2 L(1) + L(2) + 1 = 8, so (60,000 - 8) / 65 = 922 bars.
    check_chunking(1, 1, 1, 65, 922);
    // Streamed indicators add streams_update's loop over the symbols, L(1) = 2, whatever
    // their number: 67 trips, (60,000 - 8) / 67 = 895 bars.
    check_chunking_streams(1, 1, 1, 1, 67, 895);
    check_chunking_streams(1, 1, 1, 3, 67, 895);
    // A warm-up bar costs the bar loop's trip and L(symbols): 1 + 2 = 3 for one symbol,
    // (60,000 - 8) / 3 = 19,997 bars; 4 symbols: 1 + 5 = 6, (60,000 - 14) / 6 = 9,997.
    assert_eq!(warm_bars_per_chunk(SOFTWARE_LOOP_BUDGET, 1, 1), 19_997);
    assert_eq!(warm_bars_per_chunk(SOFTWARE_LOOP_BUDGET, 4, 2), 9_997);
    // The bench's shape: 4 symbols, Binance's brackets (up to 10 tiers), one event per bar.
    let four = loop_iterations_per_bar(4, 10, 1, 0);
    assert!((400..700).contains(&four), "{four}");
    check_chunking(4, 10, 1, four, ((60_000 - 14) / four) as usize);
    check_chunking_streams(4, 10, 1, 1, four + 5, ((60_000 - 14) / (four + 5)) as usize);
    // More symbols, tiers or events only shorten the chunks.
    assert!(loop_iterations_per_bar(5, 10, 1, 0) > four);
    assert!(loop_iterations_per_bar(4, 11, 1, 0) > four);
    assert!(loop_iterations_per_bar(4, 10, 3, 0) > four);
    // Dispatches per group: per window (warm-up bars, bars), the warm-up in chunks of its
    // own, then the window's chunks; the longest row decides, at least one.
    assert_eq!(dispatches_with_warm_up(&[(0, 10), (0, 3)], 4, 100), 3);
    assert_eq!(dispatches_with_warm_up(&[(0, 8), (0, 8)], 4, 100), 2);
    assert_eq!(dispatches_with_warm_up(&[(0, 3)], 100, 100), 1);
    assert_eq!(dispatches_with_warm_up(&[(0, 0)], 100, 100), 1);
    assert_eq!(dispatches_with_warm_up(&[(0, 10), (250, 3)], 4, 100), 4);
    assert_eq!(dispatches_with_warm_up(&[(0, 10), (201, 9)], 4, 100), 6);
    // Warm-up bars: from the first bar of the data to the window's start, none for an empty
    // window or without streams.
    assert_eq!(
        window_work(&[0..10, 30..40, 50..50], 5, 1),
        vec![(0, 10), (25, 10), (0, 0)]
    );
    assert_eq!(window_work(&[30..40, 0..10], 5, 0), vec![(0, 10), (0, 10)]);
}

// ---------------------------------------------------------------- synthetic market

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct OwnedSymbol {
    name: String,
    cols: [Vec<f64>; 8],
    funding: Vec<FundingAt>,
}

struct OwnedMarket {
    open_time: Vec<i64>,
    interval_ms: i64,
    symbols: Vec<OwnedSymbol>,
}

impl OwnedMarket {
    fn view(&self) -> Market<'_> {
        Market {
            open_time: &self.open_time,
            interval_ms: self.interval_ms,
            symbols: self
                .symbols
                .iter()
                .map(|s| MarketSymbol {
                    name: &s.name,
                    open: &s.cols[0],
                    high: &s.cols[1],
                    low: &s.cols[2],
                    close: &s.cols[3],
                    volume: &s.cols[4],
                    mark_open: &s.cols[5],
                    mark_high: &s.cols[6],
                    mark_low: &s.cols[7],
                    funding: &s.funding,
                })
                .collect(),
        }
    }
}

/// Edge-biased synthetic bars: a random walk with volatility regimes, spikes (liquidations at
/// high leverage), a flat stretch, gaps at the open, mark prices off the last price with holes
/// (NaN: the last price stands in), funding every 8 h (zero rates included), the third symbol
/// listed late and the fourth delisted early (NaN outside their data, SEMANTICS.md §1.4).
fn synthetic_market(symbols: &[String], interval_ms: i64, n: usize, seed: u64) -> OwnedMarket {
    let mut rng = Rng(seed | 1);
    let t0 = 1_735_689_600_000i64; // 2025-01-01
    let open_time: Vec<i64> = (0..n as i64).map(|i| t0 + i * interval_ms).collect();
    let mut out = Vec::new();
    for (k, name) in symbols.iter().enumerate() {
        let mut cols: [Vec<f64>; 8] = Default::default();
        let mut price = [60_000.0, 3_000.0, 0.6, 90.0][k % 4];
        let first = if k == 2 { n / 10 } else { 0 };
        let last = if k == 3 { n - n / 12 } else { n - 1 };
        let mut vol = 0.01;
        let mut funding = Vec::new();
        for t in 0..n {
            if t < first || t > last {
                for c in cols.iter_mut() {
                    c.push(f64::NAN);
                }
                continue;
            }
            if rng.below(50) == 0 {
                vol = [0.004, 0.01, 0.025][rng.below(3) as usize];
            }
            let flat = (n / 3..n / 3 + 12).contains(&t);
            let gap = if rng.below(40) == 0 {
                rng.normal() * 0.02
            } else {
                0.0
            };
            let open = price * (1.0 + gap);
            let mut ret = if flat { 0.0 } else { rng.normal() * vol };
            if rng.below(150) == 0 {
                ret += if rng.below(2) == 0 { -0.12 } else { 0.10 };
            }
            let close = open * (1.0 + ret);
            let wick = if flat { 0.0 } else { vol * rng.unit() };
            let high = open.max(close) * (1.0 + wick);
            let low = open.min(close) * (1.0 - wick * rng.unit());
            let volume = if flat { 0.0 } else { 1_000.0 * rng.unit() };
            let skew = 1.0 + (rng.unit() - 0.5) * 0.002;
            let mark_missing = (n / 2..n / 2 + 30).contains(&t) && k % 2 == 0;
            let mark = |v: f64| if mark_missing { f64::NAN } else { v * skew };
            for (c, v) in cols.iter_mut().zip([
                open,
                high,
                low,
                close,
                volume,
                mark(open),
                mark(high.max(open * skew)),
                mark(low.min(open * skew)),
            ]) {
                c.push(v);
            }
            if open_time[t] % (8 * 3_600_000) == 0 || (interval_ms > 8 * 3_600_000) {
                let rate = match rng.below(5) {
                    0 => 0.0,
                    1 => -0.0004,
                    _ => 0.0001 + 0.0006 * rng.unit(),
                };
                funding.push(FundingAt {
                    bar: t as u32,
                    rate,
                });
            }
            price = close;
        }
        out.push(OwnedSymbol {
            name: name.clone(),
            cols,
            funding,
        });
    }
    OwnedMarket {
        open_time,
        interval_ms,
        symbols: out,
    }
}

fn interval_ms(spec: &Spec) -> i64 {
    let text = &spec.strategy.interval;
    let (number, unit) = text.split_at(text.len() - 1);
    let n: i64 = number.parse().unwrap();
    n * match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => panic!("interval unit {other}"),
    }
}

/// `n` param sets drawn uniformly from each param's distribution (seeded).
fn sample_sets(spec: &Spec, n: usize, seed: u64) -> Vec<ParamSet> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|_| ParamSet {
            values: spec
                .params
                .params
                .iter()
                .map(|p| match p.domain.distribution() {
                    Distribution::Int {
                        low, high, step, ..
                    } => {
                        let steps = ((high - low) / step) as u64 + 1;
                        ParamValue::Int(low + step * rng.below(steps) as i64)
                    }
                    Distribution::Float {
                        low,
                        high,
                        step: Some(step),
                        ..
                    } => {
                        let steps = ((high - low) / step + 1e-9).floor() as u64 + 1;
                        let v = low + step * rng.below(steps) as f64;
                        ParamValue::Float((v * 1e12).round() / 1e12)
                    }
                    Distribution::Float { low, high, .. } => {
                        ParamValue::Float(low + (high - low) * rng.unit())
                    }
                    Distribution::Categorical { choices } => {
                        choices[rng.below(choices.len() as u64) as usize].clone()
                    }
                })
                .collect(),
        })
        .collect()
}

// ---------------------------------------------------------------- parity

/// `|a - b| <= abs + rel x max(|a|, |b|)`; NaN matches NaN only.
#[derive(Clone, Copy, Debug)]
struct Tolerance {
    rel: f64,
    abs: f64,
}

impl Tolerance {
    fn accepts(self, a: f64, b: f64) -> bool {
        if a.is_nan() || b.is_nan() {
            return a.is_nan() && b.is_nan();
        }
        a == b || (a - b).abs() <= self.abs + self.rel * a.abs().max(b.abs())
    }
}

/// Float metrics by name.
fn float_metrics(m: &Metrics) -> [(&'static str, f64); 13] {
    [
        ("final_equity", m.final_equity),
        ("total_return", m.total_return),
        ("cagr", m.cagr),
        ("apr", m.apr),
        ("max_drawdown", m.max_drawdown),
        ("calmar", m.calmar),
        ("sharpe", m.sharpe),
        ("sortino", m.sortino),
        ("win_rate", m.win_rate),
        ("profit_factor", m.profit_factor),
        ("exposure", m.exposure),
        ("fees_paid", m.fees_paid),
        ("funding_paid", m.funding_paid),
    ]
}

/// The float policy of docs/SEMANTICS.md §5, per precision.
struct Policy {
    /// Tolerance of every float metric in rows whose trade count agrees.
    tolerance: Tolerance,
    /// Tighter bound for metrics that only add per-trade values (fees) or count bars.
    /// Share of (set, window) rows whose trade and liquidation counts must equal the
    /// reference's.
    min_count_agreement: f64,
    /// Share of agreeing rows whose float metrics must all be within `tolerance`.
    min_float_agreement: f64,
}

const F64_POLICY: Policy = Policy {
    tolerance: Tolerance {
        rel: 1e-9,
        abs: 1e-9,
    },
    min_count_agreement: 1.0,
    min_float_agreement: 1.0,
};

const F32_POLICY: Policy = Policy {
    tolerance: Tolerance {
        rel: 2e-3,
        abs: 2e-4,
    },
    min_count_agreement: 0.99,
    min_float_agreement: 0.99,
};

/// One context per precision for the whole test binary, so that a spec's shader is compiled
/// once (the context caches pipelines; lavapipe takes seconds per compile).
fn context(precision: Precision) -> &'static GpuContext {
    static F32: OnceLock<GpuContext> = OnceLock::new();
    static F64: OnceLock<GpuContext> = OnceLock::new();
    let slot = match precision {
        Precision::F32 => &F32,
        Precision::F64 => &F64,
    };
    slot.get_or_init(|| match GpuContext::new(precision) {
        Ok(c) => c,
        Err(e) => panic!(
            "GPU parity needs an adapter and none could be opened ({e}); this test never \
             skips: install Mesa's lavapipe (scripts/test.sh does)"
        ),
    })
}

fn parity_sets() -> usize {
    std::env::var("GPU_PARITY_SETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// An example spec over a synthetic market of `bars` bars, scored on the full run and, with
/// `walk_forward`, two rolling IS/OOS pairs (5 windows).
struct Case {
    spec: Spec,
    owned: OwnedMarket,
    brackets: Vec<BracketTable>,
    windows: WindowPlan,
    /// Initial capital, USDT.
    capital: f64,
}

impl Case {
    fn new(name: &str, bars: usize, walk_forward: bool) -> Case {
        Case::of(example(name), bars, walk_forward)
    }

    fn of(spec: Spec, bars: usize, walk_forward: bool) -> Case {
        let interval = interval_ms(&spec);
        let owned = synthetic_market(&spec.strategy.symbols, interval, bars, 0x5eed ^ bars as u64);
        let span = bars as i64 * interval;
        let windows = if walk_forward {
            WindowPlan::walk_forward(
                &WalkForwardSpec {
                    mode: WalkForwardMode::Rolling,
                    windows: 2,
                    in_sample_ms: span * 2 / 5,
                    out_of_sample_ms: span / 5,
                    gap_ms: interval,
                },
                &owned.open_time,
                interval,
            )
            .unwrap()
        } else {
            WindowPlan::full(bars)
        };
        Case {
            spec,
            owned,
            brackets: bundled(),
            windows,
            capital: 10_000.0,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&BatchInput<'_>) -> T) -> T {
        let market = self.owned.view();
        f(&BatchInput {
            spec: &self.spec,
            market: &market,
            brackets: &self.brackets,
            initial_capital: self.capital,
            windows: &self.windows,
        })
    }

    fn rows(&self, sets: &[ParamSet]) -> Vec<Metrics> {
        vec![Metrics::default(); sets.len() * self.windows.len()]
    }

    /// `sets` through a CPU backend.
    fn cpu(&self, sets: &[ParamSet], backend: Backend) -> Vec<Metrics> {
        let mut rows = self.rows(sets);
        self.with(|input| batch::run(input, sets, backend, &mut rows, &|_| {}).unwrap());
        rows
    }

    /// `sets` on the GPU at `precision` with `options`.
    fn gpu(
        &self,
        sets: &[ParamSet],
        precision: Precision,
        options: &GpuOptions,
    ) -> Result<(Vec<Metrics>, GpuReport), GpuError> {
        let mut rows = self.rows(sets);
        let report = self.with(|input| {
            gpu::run_with_options(context(precision), input, sets, options, &mut rows, &|_| {})
        })?;
        Ok((rows, report))
    }
}

/// Every count and every float metric bit for bit (NaN equal to NaN).
fn check_identical(what: &str, expected: &[Metrics], got: &[Metrics]) {
    assert_eq!(expected.len(), got.len(), "{what}: rows");
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        assert_eq!(
            (e.n_trades, e.liquidations),
            (g.n_trades, g.liquidations),
            "{what}: row {i}: trades and liquidations"
        );
        for ((metric, a), (_, b)) in float_metrics(e).into_iter().zip(float_metrics(g)) {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{what}: row {i}: {metric}: expected {a:e}, got {b:e}"
            );
        }
    }
}

fn check_parity(name: &str, bars: usize) {
    if let Ok(only) = std::env::var("GPU_PARITY_SPEC")
        && only != name
    {
        return;
    }
    let case = Case::new(name, bars, true);
    let spec = &case.spec;
    let windows = &case.windows;
    let sets = sample_sets(spec, parity_sets(), 0xC0FFEE);
    let rows = sets.len() * windows.len();
    let clock = std::time::Instant::now();
    let reference = case.cpu(&sets, Backend::Scalar);
    eprintln!(
        "{name}: scalar reference, {} sets x {} windows: {:.1} s",
        sets.len(),
        windows.len(),
        clock.elapsed().as_secs_f64()
    );
    let traded = reference.iter().filter(|m| m.n_trades > 0).count();
    assert!(
        traded * 2 > rows,
        "{name}: the synthetic market must make most sets trade ({traded} of {rows} rows do)"
    );
    for (precision, policy) in [(Precision::F64, F64_POLICY), (Precision::F32, F32_POLICY)] {
        let ctx = context(precision);
        if precision == Precision::F64 && !ctx.info().has_f64 {
            assert!(
                ctx.info().is_hardware,
                "lavapipe has SHADER_F64: the f64 shader must be checked on it"
            );
            continue;
        }
        let clock = std::time::Instant::now();
        let (got, report) = case.gpu(&sets, precision, &GpuOptions::default()).unwrap();
        eprintln!(
            "{name}: gpu {precision:?} on {}: {:.1} s",
            ctx.info().name,
            clock.elapsed().as_secs_f64()
        );
        assert_eq!(
            report.cpu_fallback_sets, 0,
            "{name} {precision:?}: fell back to the CPU: {:?}",
            report.fallback_reason
        );
        assert_eq!(report.gpu_sets, sets.len());
        compare(name, precision, &policy, &sets, windows, &reference, &got);
    }
}

fn compare(
    name: &str,
    precision: Precision,
    policy: &Policy,
    sets: &[ParamSet],
    windows: &WindowPlan,
    reference: &[Metrics],
    got: &[Metrics],
) {
    let rows = reference.len();
    let mut count_ok = 0usize;
    let mut float_ok = 0usize;
    let mut first_failure: Option<String> = None;
    let mut worst_rel: Vec<(&str, f64)> = Vec::new();
    for (i, (r, g)) in reference.iter().zip(got).enumerate() {
        let label = || {
            format!(
                "{name} {precision:?} set {} {:?} window {}",
                i / windows.len(),
                sets[i / windows.len()].values,
                windows.windows()[i % windows.len()].kind.label()
            )
        };
        if r.n_trades != g.n_trades || r.liquidations != g.liquidations {
            if std::env::var_os("GPU_PARITY_VERBOSE").is_some() {
                eprintln!("{}: trades {} vs {}", label(), r.n_trades, g.n_trades);
            }
            if first_failure.is_none() {
                first_failure = Some(format!(
                    "{}: trades {} vs {}, liquidations {} vs {}",
                    label(),
                    r.n_trades,
                    g.n_trades,
                    r.liquidations,
                    g.liquidations
                ));
            }
            continue;
        }
        count_ok += 1;
        let mut all = true;
        for ((metric, a), (_, b)) in float_metrics(r).into_iter().zip(float_metrics(g)) {
            if !policy.tolerance.accepts(a, b) {
                all = false;
                if first_failure.is_none() {
                    first_failure = Some(format!(
                        "{}: {metric}: reference {a:e}, gpu {b:e}, tolerance {:?}",
                        label(),
                        policy.tolerance
                    ));
                }
            } else if a.is_finite() && a != b {
                let rel = (a - b).abs() / a.abs().max(b.abs());
                match worst_rel.iter_mut().find(|(m, _)| *m == metric) {
                    Some(entry) => entry.1 = entry.1.max(rel),
                    None => worst_rel.push((metric, rel)),
                }
            }
        }
        if all {
            float_ok += 1;
        }
    }
    let count_share = count_ok as f64 / rows as f64;
    let float_share = float_ok as f64 / count_ok.max(1) as f64;
    eprintln!(
        "{name} {precision:?}: {rows} rows, counts agree {count_share:.4}, floats agree {float_share:.4}, worst rel {worst_rel:?}"
    );
    assert!(
        count_share >= policy.min_count_agreement,
        "{name} {precision:?}: trade counts agree in {count_ok} of {rows} rows, below {}; first: {}",
        policy.min_count_agreement,
        first_failure.unwrap_or_default()
    );
    assert!(
        float_share >= policy.min_float_agreement,
        "{name} {precision:?}: floats agree in {float_ok} of {count_ok} rows, below {}; first: {}",
        policy.min_float_agreement,
        first_failure.unwrap_or_default()
    );
}

#[test]
fn gpu_parity_bb_atr_breakout() {
    check_parity("bb_atr_breakout", 700);
}

#[test]
fn gpu_parity_ema_cross() {
    check_parity("ema_cross", 700);
}

#[test]
fn gpu_parity_rsi_ema() {
    check_parity("rsi_ema", 900);
}

/// Streamed SMAs (a crossover, near-ties below f32 resolution) and RSI.
#[test]
fn gpu_parity_sma_rsi() {
    check_parity("sma_rsi", 900);
}

#[test]
fn probe_names_the_adapter() {
    let info = gpu::probe().unwrap_or_else(|e| panic!("no adapter ({e}); this test never skips"));
    assert!(!info.name.is_empty());
    if info.device_type == "Cpu" {
        assert!(!info.is_hardware, "{info:?}");
    }
}

// ---------------------------------------------------------------- compensated f32 on the adapter

/// `two_sum` and `pair_add` of shaders/shared/pair.wgsl, run on the adapter, against the same
/// f32 steps on the CPU; `two_sum`'s `hi + lo` must be the exact sum. Fails where the shader
/// compiler reassociates or simplifies `(a + b) - a` (the EMA/RSI compensation would be lost).
fn check_pairs(cases: &[pair::PairCase]) {
    let context = context(Precision::F32);
    let got = context
        .eval_pairs(cases)
        .unwrap_or_else(|e| panic!("pair probe: {e}"));
    assert_eq!(got.len(), cases.len());
    let errors: Vec<String> = cases
        .iter()
        .zip(&got)
        .enumerate()
        .filter_map(|(i, (case, got))| pair::case_error(i, case, got))
        .collect();
    assert!(
        errors.is_empty(),
        "{}: {} of {} compensated-sum cases wrong (first 5):\n{}",
        context.info().name,
        errors.len(),
        cases.len(),
        errors[..errors.len().min(5)].join("\n")
    );
}

#[test]
fn gpu_two_sum_is_exact_on_the_adapter() {
    check_pairs(&pair::adversarial_cases(4096, 0x7570));
}

/// The host's check itself: it accepts the CPU emulation and rejects a reassociated two-sum
/// (`lo = 0`), so the GPU test above can fail.
#[test]
fn pair_check_rejects_a_lost_error_term() {
    let cases = pair::adversarial_cases(64, 1);
    for (i, case) in cases.iter().enumerate() {
        let exact = pair::emulate(case);
        assert_eq!(pair::case_error(i, case, &exact), None);
    }
    // 1 + 1e-8 rounds to 1: the error term 1e-8 must survive.
    let lost = |r: pair::PairResult| pair::PairResult {
        two_sum: (r.two_sum.0, 0.0),
        ..r
    };
    let e = pair::case_error(0, &cases[0], &lost(pair::emulate(&cases[0])));
    assert!(e.is_some_and(|e| e.contains("two_sum(1e0, 1e-8)")));
    let rejected = cases
        .iter()
        .enumerate()
        .filter(|(i, c)| pair::case_error(*i, c, &lost(pair::emulate(c))).is_some())
        .count();
    assert!(rejected > cases.len() / 2, "{rejected} of {}", cases.len());
    // The context-level check every new f32 context runs refuses such an adapter by name.
    let broken: Vec<pair::PairResult> = cases.iter().map(|c| lost(pair::emulate(c))).collect();
    let exact: Vec<pair::PairResult> = cases.iter().map(pair::emulate).collect();
    assert!(pair::check_results("llvmpipe", &cases, &exact).is_ok());
    let err = pair::check_results("llvmpipe", &cases, &broken).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "llvmpipe: the f32 shader's compensated arithmetic is not exact on this adapter ({rejected} of 71 self-check cases wrong; first: case 0: two_sum(1e0, 1e-8)"
        )) && text.ends_with("run with --precision f64, or on the CPU (--backend simd)"),
        "{text}"
    );
    let short = pair::check_results("llvmpipe", &cases, &exact[..70]).unwrap_err();
    assert!(
        short
            .to_string()
            .contains("(1 of 71 self-check cases wrong; first: 1 results missing)"),
        "{short}"
    );
}

/// Every new f32 context runs the self-check on the adapter (and passes it here).
#[test]
fn gpu_f32_context_runs_its_self_check() {
    let context = context(Precision::F32);
    context
        .self_check()
        .unwrap_or_else(|e| panic!("self-check on {}: {e}", context.info().name));
}

// ---------------------------------------------------------------- chunks, splits, fallback

/// The precision a long run is checked at: f64 where the adapter has it (lavapipe does).
fn long_run_precision() -> (Precision, Policy) {
    if context(Precision::F64).info().has_f64 {
        (Precision::F64, F64_POLICY)
    } else {
        (Precision::F32, F32_POLICY)
    }
}

/// SEMANTICS.md §5.4: a run far longer than lavapipe's loop limit allows in one invocation
/// (it used to stop after about 1,700 bars of 4 symbols) goes through in bar chunks, the
/// accounts persisting between dispatches: no set falls back to the CPU, and the results equal
/// the reference's under the f64 policy.
#[test]
fn gpu_long_series_runs_in_bar_chunks() {
    let bars = 8_760; // a year of 1h bars
    let case = Case::new("rsi_ema", bars, true);
    let sets = sample_sets(&case.spec, 128, 0xBA55);
    let reference = case.cpu(&sets, Backend::Scalar);
    let (precision, policy) = long_run_precision();
    let clock = std::time::Instant::now();
    let (got, report) = case.gpu(&sets, precision, &GpuOptions::default()).unwrap();
    eprintln!(
        "long series: {bars} bars, {} sets x {} windows on {}: {:.1} s, {report:?}",
        sets.len(),
        case.windows.len(),
        report.adapter.name,
        clock.elapsed().as_secs_f64()
    );
    assert_eq!(
        report.cpu_fallback_sets, 0,
        "fell back to the CPU: {:?}",
        report.fallback_reason
    );
    assert_eq!(report.gpu_sets, sets.len());
    assert!(
        report.chunks_per_group >= 2 && report.chunks_per_group * report.bars_per_chunk >= bars,
        "{report:?}"
    );
    let traded = reference.iter().filter(|m| m.n_trades > 0).count();
    assert!(traded * 2 > reference.len(), "{traded} rows trade");
    compare(
        "rsi_ema long",
        precision,
        &policy,
        &sets,
        &case.windows,
        &reference,
        &got,
    );
}

/// Streamed indicators (docs/SEMANTICS.md §5.1) over a long series in many bar chunks: the
/// streams of `name` (`streams`, by indicator name) run in the shader from the first bar of
/// the data, so walk-forward windows that start late (the last out-of-sample window at bar
/// 2,401 of 4,000) see them warmed exactly as the CPU computes them over the whole series
/// (2,401 warm-up bars in 19 dispatches of 131). Short chunks make the warm-up and the windows
/// cross many dispatch boundaries (the state persists in `RowState::streams`); the rows must
/// match the reference under the f64 policy, and in f32 under §5.3's, with compensated sums.
/// (Without the warm-up, a window starting at its own first bar, the late windows' indicators
/// start cold and these rows differ from the reference: see the report of issue #5.)
fn check_warm_up(name: &str, streams: &[&str], n_sets: usize) {
    let bars = 4_000;
    let case = Case::new(name, bars, true);
    assert_eq!(streamed_names(&case.spec), streams);
    let planned = gpu::streams::plan_streams(&case.spec);
    let late = case.windows.ranges().iter().map(|r| r.start).max().unwrap();
    assert_eq!(late, 2_401, "the last window starts late");
    let sets = sample_sets(&case.spec, n_sets, 0x57EA);
    let reference = case.cpu(&sets, Backend::Scalar);
    let traded = reference.iter().filter(|m| m.n_trades > 0).count();
    assert!(traded * 2 > reference.len(), "{traded} rows trade");
    let options = GpuOptions {
        bars_per_chunk: Some(97),
        warm_bars_per_chunk: Some(131),
        ..GpuOptions::default()
    };
    let work = case.with(|input| {
        let first = plan::resolve_sets(input, &sets, 0..1).unwrap();
        let statics = plan::pack_statics::<f32>(input, &first[0]).unwrap();
        assert_eq!(statics.streams, planned);
        window_work(
            &case.windows.ranges(),
            statics.dims.warm_from as usize,
            planned.len(),
        )
    });
    let expected_chunks = dispatches_with_warm_up(&work, 97, 131);
    for (precision, policy) in [(Precision::F64, F64_POLICY), (Precision::F32, F32_POLICY)] {
        if precision == Precision::F64 && !context(precision).info().has_f64 {
            continue;
        }
        let (got, report) = case.gpu(&sets, precision, &options).unwrap();
        assert_eq!(
            report.cpu_fallback_sets, 0,
            "{precision:?}: fell back to the CPU: {:?}",
            report.fallback_reason
        );
        assert_eq!(report.chunks_per_group, expected_chunks, "{report:?}");
        compare(
            &format!("{name} streamed"),
            precision,
            &policy,
            &sets,
            &case.windows,
            &reference,
            &got,
        );
    }
}

/// The two EMAs of ema_cross, read at lags 0 and 1 by `cross_*`.
#[test]
fn gpu_streamed_indicators_warm_up_across_chunks() {
    check_warm_up("ema_cross", &["ema_fast", "ema_slow"], 96);
}

/// The SMAs and the RSI of the test spec sma_rsi (lags 0 and 1, periods down to 2; the slow
/// SMA over the opens reads back up to 119 bars, across dispatch boundaries).
#[test]
fn gpu_streamed_sma_and_rsi_warm_up_across_chunks() {
    check_warm_up("sma_rsi", &["sma_fast", "sma_slow", "rsi"], 96);
}

/// TA-Lib's RSI is 0 where the average gain plus loss is within 1e-8 of zero: on a series
/// that starts flat, the streamed RSI is 0 from its first output (bar `period`), so
/// `rsi < 1` enters a long there in every set, as in the reference (a shader computing
/// 0 / 0 there would never enter). One symbol, 300 bars: 40 flat at 100, then a random
/// walk; fill at the close.
#[test]
fn gpu_streamed_rsi_of_flat_prices_is_zero() {
    let text = MINIMAL_SPEC
        .replace(
            "INDICATORS",
            r#"rsi = { fn = "RSI", input = "close", timeperiod = "n" }"#,
        )
        .replace("PARAMS", "n = [2, 3, 14, 30]")
        .replace("LONG_ENTRY", "rsi < 1")
        .replace("LONG_EXIT", "rsi > 60");
    let spec = Spec::parse("flat_rsi.toml", &text).unwrap();
    assert_eq!(streamed_names(&spec), ["rsi"]);
    let bars = 300;
    let mut case = Case::of(spec, bars, false);
    let mut rng = Rng(0xF1A7);
    let mut price = 100.0;
    let sym = &mut case.owned.symbols[0];
    for t in 0..bars {
        let open = price;
        if t >= 40 {
            price *= 1.0 + rng.normal() * 0.01;
        }
        let (high, low) = (open.max(price) * 1.001, open.min(price) * 0.999);
        let (high, low) = if t < 40 { (open, open) } else { (high, low) };
        for (c, v) in [open, high, low, price, 10.0, open, high, low]
            .into_iter()
            .enumerate()
        {
            sym.cols[c][t] = v;
        }
    }
    sym.funding.clear();
    let sets: Vec<ParamSet> = [2, 3, 14, 30]
        .map(|n| ParamSet {
            values: vec![ParamValue::Int(n)],
        })
        .to_vec();
    let reference = case.cpu(&sets, Backend::Scalar);
    for (set, row) in sets.iter().zip(&reference) {
        assert!(row.n_trades >= 1, "{set:?}: the flat start must enter");
    }
    for (precision, policy) in [(Precision::F64, F64_POLICY), (Precision::F32, F32_POLICY)] {
        if precision == Precision::F64 && !context(precision).info().has_f64 {
            continue;
        }
        let (got, report) = case.gpu(&sets, precision, &GpuOptions::default()).unwrap();
        assert_eq!(report.cpu_fallback_sets, 0, "{report:?}");
        compare(
            "flat rsi",
            precision,
            &policy,
            &sets,
            &case.windows,
            &reference,
            &got,
        );
    }
}

/// Chunks too long for lavapipe are caught by the shader's canary loop, never returned as
/// silently truncated runs: the group falls back to the CPU naming the loop budget. (On a
/// hardware GPU, which has no loop counter, the same run simply succeeds.)
#[test]
fn gpu_loop_budget_overrun_is_detected() {
    let bars = 4_000;
    let case = Case::new("rsi_ema", bars, false);
    let sets = sample_sets(&case.spec, 16, 0xCA4A);
    let simd = case.cpu(&sets, Backend::Simd(Precision::F64));
    let (precision, policy) = long_run_precision();
    let one_chunk = GpuOptions {
        bars_per_chunk: Some(bars),
        ..GpuOptions::default()
    };
    let (got, report) = case.gpu(&sets, precision, &one_chunk).unwrap();
    assert_eq!(report.chunks_per_group, 1);
    if report.adapter.is_hardware {
        assert_eq!(report.cpu_fallback_sets, 0, "{report:?}");
        compare(
            "rsi_ema one chunk",
            precision,
            &policy,
            &sets,
            &case.windows,
            &simd,
            &got,
        );
        return;
    }
    assert_eq!(report.gpu_sets, 0, "{report:?}");
    assert_eq!(report.cpu_fallback_sets, sets.len());
    let reason = report.fallback_reason.unwrap_or_default();
    assert!(
        reason.contains("ran out of the adapter's loop budget (4000 bars per chunk"),
        "{reason}"
    );
    check_identical("fallback rows", &simd, &got);
}

/// `fit_sets` ends a dispatch group where the next set's new indicator columns would not fit
/// one binding, and refuses only a set that does not fit alone. rsi_ema on 100 bars x 4
/// symbols in f32: a column is 100 x 4 x 4 = 1,600 bytes, a set adds (4 leverages + 5 rule
/// params) x 4 = 36 bytes; its EMA streams in the shader and uploads no column. Its RSI is
/// read at lag 2 here (`prev(rsi, 2)`), so it does not stream and is uploaded.
#[test]
fn fit_sets_ends_groups_at_the_binding_limit() {
    let case = Case::of(rsi_ema_with_rsi_at_lag_2(), 100, false);
    assert_eq!(
        streamed_names(&case.spec),
        ["ema"],
        "the RSI read at lag 2 is uploaded"
    );
    let set = |rsi: i64, ema: i64| ParamSet {
        values: [rsi, 25, 70, ema, 2].map(ParamValue::Int).to_vec(),
    };
    // Columns: 1 (rsi 14; ema 50 streams), 1 (ema 100 streams too), 1, 2 (+ rsi 21).
    let sets = [set(14, 50), set(14, 100), set(14, 50), set(21, 50)];
    case.with(|input| {
        let resolved = plan::resolve_sets(input, &sets, 0..sets.len()).unwrap();
        let statics = plan::pack_statics::<f32>(input, &resolved[0]).unwrap();
        let fit = |cap: u64| plan::fit_sets::<f32>(input, &statics, &resolved, cap);
        // 3 sets: 1,600 + 3 x 36 = 1,708 bytes; the 4th needs 3,200 + 144 = 3,344.
        assert_eq!(fit(1_708).unwrap(), 3);
        assert_eq!(fit(3_343).unwrap(), 3);
        assert_eq!(fit(3_344).unwrap(), 4);
        // 2 sets: 1,600 + 2 x 36 = 1,672.
        assert_eq!(fit(1_671).unwrap(), 1);
        // One set alone needs 1,600 + 36 = 1,636 bytes.
        assert_eq!(
            fit(1_635).unwrap_err().to_string(),
            "batch too large for the GPU tables: one param set needs 1636 bytes in batch_real \
             (indicator columns, leverage, rule params) (1 indicator columns of 100 bars x 4 \
             symbols), the device binds at most 1635 bytes"
        );
        // The packed tables agree: one column, and the EMA's slot holds each set's period.
        let tables = plan::pack_batch::<f32>(input, &statics, &resolved).unwrap();
        assert_eq!(tables.columns, 2);
        let slots: Vec<u32> = tables.u32s[tables.dims.off_set_cols as usize..].to_vec();
        assert_eq!(slots, vec![0, 50, 0, 100, 0, 50, 1, 50]);
    });
}

/// Under a binding limit far below the device's, the sets go in many smaller dispatch groups
/// (by their indicator columns and their state) instead of failing, with results identical to
/// the run in one group; only inputs that cannot fit at all (here the market tables) are
/// refused, naming the buffer, its size and the limit.
#[test]
fn gpu_splits_dispatch_groups_under_small_limits() {
    let case = Case::new("bb_atr_breakout", 700, true);
    let sets = sample_sets(&case.spec, 200, 0x5917);
    let (whole, whole_report) = case
        .gpu(&sets, Precision::F32, &GpuOptions::default())
        .unwrap();
    assert_eq!(whole_report.groups, 1, "{whole_report:?}");
    // The market tables: 8 columns x 4 symbols x 700 bars x 4 bytes, brackets and funding.
    let statics_bytes = case.with(|input| {
        let first = plan::resolve_sets(input, &sets, 0..1).unwrap();
        let statics = plan::pack_statics::<f32>(input, &first[0]).unwrap();
        (statics.real.len() * 4).max(statics.u32s.len() * 4) as u64
    });
    assert!(statics_bytes > 8 * 4 * 700 * 4);
    // Room for the market and about 8 indicator columns of 11,200 bytes per group (the sets
    // use 25 distinct columns), and for 100 sets' state (5 windows x 512 bytes each).
    let small = GpuOptions {
        max_binding_bytes: Some(statics_bytes),
        ..GpuOptions::default()
    };
    let (split, split_report) = case.gpu(&sets, Precision::F32, &small).unwrap();
    eprintln!("split: {split_report:?}");
    assert!(split_report.groups >= 3, "{split_report:?}");
    assert_eq!(split_report.cpu_fallback_sets, 0, "{split_report:?}");
    assert_eq!(split_report.gpu_sets, sets.len());
    check_identical("split run", &whole, &split);
    let tiny = GpuOptions {
        max_binding_bytes: Some(statics_bytes - 1),
        ..GpuOptions::default()
    };
    let error = case
        .gpu(&sets, Precision::F32, &tiny)
        .map(|(_, report)| report)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("batch too large for the GPU tables: statics_")
            && error.ends_with(&format!(
                "the device binds at most {} bytes",
                statics_bytes - 1
            )),
        "{error}"
    );
}

/// SEMANTICS.md §5.4: a failed dispatch (injected after 2 of 4 groups) keeps the finished
/// groups' GPU results, bit for bit those of a run without failure, and the remaining sets
/// come from the CPU, bit for bit the SIMD backend's; the report names the reason and counts.
#[test]
fn gpu_failed_dispatch_falls_back_to_the_cpu() {
    let case = Case::new("rsi_ema", 700, true);
    let sets = sample_sets(&case.spec, 200, 0xFA11);
    let nw = case.windows.len();
    let groups_of_50 = GpuOptions {
        target_sets: Some(50),
        ..GpuOptions::default()
    };
    let (clean, clean_report) = case.gpu(&sets, Precision::F32, &groups_of_50).unwrap();
    assert_eq!(clean_report.groups, 4, "{clean_report:?}");
    assert_eq!(clean_report.cpu_fallback_sets, 0, "{clean_report:?}");
    let failing = GpuOptions {
        fail_after_dispatches: Some(2),
        ..groups_of_50
    };
    let (got, report) = case.gpu(&sets, Precision::F32, &failing).unwrap();
    assert_eq!(
        (report.groups, report.gpu_sets, report.cpu_fallback_sets),
        (2, 100, 100),
        "{report:?}"
    );
    assert_eq!(
        report.fallback_reason.as_deref(),
        Some(
            "GPU dispatch failed: injected failure of dispatch group 2 \
             (GpuOptions::fail_after_dispatches)"
        )
    );
    check_identical("finished GPU groups", &clean[..100 * nw], &got[..100 * nw]);
    let simd = case.cpu(&sets[100..], Backend::Simd(Precision::F64));
    check_identical("CPU fallback", &simd, &got[100 * nw..]);
}

/// SEMANTICS.md §5.3: the f32 shader holds an account's money in units of 2^-money_exp USDT
/// and rescales a flat account below 2^-40 units by 2^64. An account of 1e-30 USDT is
/// rescaled at its first close and then trades in the scaled unit (margins, fees, funding,
/// brackets, liquidations): every count and float metric must still match the reference at
/// that capital under the f32 policy, the final equity read back as 1e-30-sized USDT (scaled
/// by the row's exponent on the host), the trade sums in USDT.
#[test]
fn gpu_f32_rescales_a_nearly_empty_account() {
    let mut case = Case::new("rsi_ema", 700, true);
    case.capital = 1e-30;
    let sets = sample_sets(&case.spec, 200, 0x71A9);
    let reference = case.cpu(&sets, Backend::Scalar);
    let traded = reference.iter().filter(|m| m.n_trades > 0).count();
    assert!(traded * 4 > reference.len(), "{traded} rows trade");
    let (got, report) = case
        .gpu(&sets, Precision::F32, &GpuOptions::default())
        .unwrap();
    assert_eq!(report.cpu_fallback_sets, 0, "{report:?}");
    for (r, g) in reference.iter().zip(&got) {
        assert!(
            (1e-32..1e-28).contains(&g.final_equity) == (1e-32..1e-28).contains(&r.final_equity),
            "final equity {:e} vs reference {:e}",
            g.final_equity,
            r.final_equity
        );
    }
    compare(
        "rsi_ema 1e-30 USDT",
        Precision::F32,
        &F32_POLICY,
        &sets,
        &case.windows,
        &reference,
        &got,
    );
}
