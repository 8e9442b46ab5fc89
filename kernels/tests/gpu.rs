//! The GPU backend (kernels::gpu), run for real: naga validation of every shader, host/WGSL
//! layout agreement, the dispatch plan, and parity with the scalar reference engine on
//! Mesa's lavapipe (or any adapter) for at least 2,000 sampled param sets of each example
//! spec, in f32 and f64, under the tolerances of docs/SEMANTICS.md §5.
//!
//! There is no skip: without an adapter the parity tests fail, naming the package to install
//! (scripts/test.sh installs lavapipe). `GPU_PARITY_SPEC=rsi_ema` runs one spec only;
//! `GPU_PARITY_SETS=N` changes the sample size (at least 2,000 in CI).

// Synthetic columns are filled bar by bar, several in step.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeSet;
use std::path::Path;

use etrading_kernels::batch::{self, Backend, BatchInput, WindowPlan};
use etrading_kernels::brackets::bundled;
use etrading_kernels::engine::{FundingAt, Metrics};
use etrading_kernels::gpu::layout::host_layouts;
use etrading_kernels::gpu::plan::{PlanLimits, plan_dispatches};
use etrading_kernels::gpu::shaders::{self, ENTRY_POINTS, SHADER_FILES, SHADER_LIST};
use etrading_kernels::gpu::{self, GpuContext, Precision};
use etrading_kernels::reference::{Market, MarketSymbol};
use etrading_kernels::spec::{
    Distribution, ParamSet, ParamValue, Spec, WalkForwardMode, WalkForwardSpec,
};

const EXAMPLES: [&str; 3] = ["bb_atr_breakout", "ema_cross", "rsi_ema"];

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn example(name: &str) -> Spec {
    let file = format!("examples/{name}.toml");
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
        for (file, entry) in ENTRY_POINTS {
            for real in ["f32", "f64"] {
                let source = shaders::assemble(file, real, spec.strategy.symbols.len(), &rules)
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
        let source = shaders::assemble("backtest.wgsl", real, 4, &rules).unwrap();
        let module = shaders::validate("backtest.wgsl", real, &source).unwrap();
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        for host in host_layouts(f64_variant) {
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

fn check_plan(n_sets: usize, limits: PlanLimits, expect: &[(usize, usize)]) {
    let plan = plan_dispatches(n_sets, 3, 104, &limits);
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
    // By the output binding: 3 windows x 104 bytes = 312 bytes per set; 1,000 bytes -> 3 sets.
    let small_binding = PlanLimits {
        max_binding_bytes: 1_000,
        ..roomy
    };
    check_plan(7, small_binding, &[(0, 3), (3, 6), (6, 7)]);
    check_plan(0, roomy, &[]);
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

fn context(precision: Precision) -> GpuContext {
    match GpuContext::new(precision) {
        Ok(c) => c,
        Err(e) => panic!(
            "GPU parity needs an adapter and none could be opened ({e}); this test never \
             skips: install Mesa's lavapipe (scripts/test.sh does)"
        ),
    }
}

fn parity_sets() -> usize {
    std::env::var("GPU_PARITY_SETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn check_parity(name: &str, bars: usize) {
    if let Ok(only) = std::env::var("GPU_PARITY_SPEC")
        && only != name
    {
        return;
    }
    let spec = example(name);
    let interval = interval_ms(&spec);
    let owned = synthetic_market(&spec.strategy.symbols, interval, bars, 0x5eed ^ bars as u64);
    let market = owned.view();
    let brackets = bundled();
    let span = bars as i64 * interval;
    let windows = WindowPlan::walk_forward(
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
    .unwrap();
    let input = BatchInput {
        spec: &spec,
        market: &market,
        brackets: &brackets,
        initial_capital: 10_000.0,
        windows: &windows,
    };
    let sets = sample_sets(&spec, parity_sets(), 0xC0FFEE);
    let rows = sets.len() * windows.len();
    let mut reference = vec![Metrics::default(); rows];
    let clock = std::time::Instant::now();
    batch::run(&input, &sets, Backend::Scalar, &mut reference, &|_| {}).unwrap();
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
        let mut got = vec![Metrics::default(); rows];
        let clock = std::time::Instant::now();
        let report = gpu::run_with(&ctx, &input, &sets, &mut got, &|_| {}).unwrap();
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
        compare(name, precision, &policy, &sets, &windows, &reference, &got);
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

#[test]
fn probe_names_the_adapter() {
    let info = gpu::probe().unwrap_or_else(|e| panic!("no adapter ({e}); this test never skips"));
    assert!(!info.name.is_empty());
    if info.device_type == "Cpu" {
        assert!(!info.is_hardware, "{info:?}");
    }
}
