//! `etrading parity SPEC`: sampled param sets (edge cases first: the grid's corners, the
//! highest leverage, the tightest stops) through every fast backend and the reference;
//! indicators, signals, trades and metrics compared under named tolerances and the policy of
//! each precision (docs/SEMANTICS.md §4.3, §5): f64 SIMD exactly, f32 (SIMD and GPU) with
//! counts equal in 99 % of rows and floats within `f32` in 99 % of those. Exits non-zero on any
//! disagreement beyond the policy.

use std::io::Write;

use anyhow::bail;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::json;

use etrading_kernels::batch::lanes::SimdLevel;
use etrading_kernels::batch::{Precision, simd};
use etrading_kernels::engine::Metrics;
use etrading_kernels::parity::{Policy, Tolerance, compare_metrics, compare_rows, compare_trades};
use etrading_kernels::reference;
use etrading_kernels::spec::{ParamSet, Spec};

use crate::research::{PrecisionArg, Research, ResearchArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParityBackend {
    /// The SIMD kernel (f64 and f32 lanes, see --precision).
    Simd,
    /// The GPU kernel on the first adapter: f64 (when it has SHADER_F64) and f32.
    Gpu,
    /// SIMD, and the GPU when an adapter exists.
    All,
}

#[derive(Debug, Args)]
pub struct ParityArgs {
    #[command(flatten)]
    pub research: ResearchArgs,
    /// Backends to check against the reference.
    #[arg(long, value_enum, default_value = "all")]
    pub backend: ParityBackend,
    /// Precisions to check: auto checks every precision of each backend (SIMD f64 and f32;
    /// GPU f64 where the adapter has it, and f32).
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: PrecisionArg,
    /// Param sets to sample (edge cases included).
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One backend's tally.
#[derive(Debug, Default)]
struct Tally {
    sets: usize,
    windows: usize,
    trades: usize,
    indicator_columns: usize,
    signal_bars: u64,
    indicator_diffs: Vec<String>,
    signal_diffs: Vec<String>,
    /// Sets whose trades differ beyond the tolerance.
    trade_diffs: Vec<String>,
    /// How many sets may trade differently (f32: 1 % of the sets, §4.3).
    trade_diff_budget: usize,
    /// Rows outside the policy (exact backends: every differing row).
    metric_diffs: Vec<String>,
    /// Row agreement under the policy (backends checked by share).
    agreement: Option<etrading_kernels::parity::RowAgreement>,
}

impl Tally {
    fn failed(&self) -> bool {
        !(self.indicator_diffs.is_empty()
            && self.signal_diffs.is_empty()
            && self.trade_diffs.len() <= self.trade_diff_budget
            && self.metric_diffs.is_empty())
    }
}

/// The SIMD precisions `--backend` and `--precision` ask for (f64 first).
fn simd_precisions(args: &ParityArgs) -> Vec<Precision> {
    match (args.backend, args.precision) {
        (ParityBackend::Gpu, _) => Vec::new(),
        (_, PrecisionArg::Auto) => vec![Precision::F64, Precision::F32],
        (_, PrecisionArg::F64) => vec![Precision::F64],
        (_, PrecisionArg::F32) => vec![Precision::F32],
    }
}

/// The table name and policy of a backend at a precision.
fn policy_of(backend: &'static str, precision: Precision) -> (&'static str, Policy) {
    match (backend, precision) {
        ("simd", Precision::F64) => ("simd f64", Policy::EXACT),
        ("simd", Precision::F32) => ("simd f32", Policy::F32),
        (_, Precision::F64) => ("gpu f64", Policy::F64_REORDERED),
        (_, Precision::F32) => ("gpu f32", Policy::F32),
    }
}

/// The sets to check: every corner of the grid along each param (its first and last value
/// with the others at their first), the last grid point (highest of everything: leverage,
/// stops), then seeded random grid points.
pub fn sample_sets(spec: &Spec, samples: usize, seed: u64) -> anyhow::Result<Vec<ParamSet>> {
    let total = spec
        .params
        .grid_len()
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
    let mut indices: Vec<u64> = vec![0, total - 1];
    // Grid indices are mixed-radix with the last param fastest: stride of param k.
    let radix: Vec<u64> = spec
        .params
        .params
        .iter()
        .map(|p| p.domain.grid_len().unwrap_or(1))
        .collect();
    let mut stride = 1u64;
    let mut strides = vec![0u64; radix.len()];
    for k in (0..radix.len()).rev() {
        strides[k] = stride;
        stride = stride.saturating_mul(radix[k]);
    }
    for k in 0..radix.len() {
        indices.push((radix[k] - 1) * strides[k]);
        indices.push(total - 1 - (radix[k] - 1) * strides[k]);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    while indices.len() < samples.max(2) + 2 * radix.len() {
        indices.push(rng.random_range(0..total));
    }
    indices.truncate(samples.max(1).min(indices.len()));
    indices
        .iter()
        .map(|&i| spec.params.decode(i).map_err(|e| anyhow::anyhow!("{e}")))
        .collect()
}

pub fn run(args: &ParityArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let research = Research::load(&args.research)?;
    let spec = &research.spec;
    let sets = sample_sets(spec, args.samples, args.seed)?;
    let market = research.market();
    let input = research.input(&market);
    let nw = research.windows.len();
    let pb = if args.json {
        ProgressBar::hidden()
    } else {
        let pb = ProgressBar::new(sets.len() as u64);
        pb.set_style(
            ProgressStyle::with_template("reference {bar:40} {pos}/{len} sets  eta {eta}")
                .expect("progress template"),
        );
        pb
    };
    // The reference and the SIMD kernel, chunk by chunk so memory stays bounded (a reference
    // run keeps its curves and indicator columns): every window's metrics of every set are
    // kept for the comparisons by share (f32, GPU), trades and signals only while their chunk
    // is checked.
    let precisions = simd_precisions(args);
    let mut ref_metrics: Vec<Vec<Metrics>> = Vec::with_capacity(sets.len());
    let mut ref_trades: Vec<usize> = Vec::with_capacity(sets.len());
    let mut simd_tallies: Vec<Tally> = precisions.iter().map(|_| Tally::default()).collect();
    let mut simd_rows: Vec<Vec<Metrics>> = precisions
        .iter()
        .map(|_| Vec::with_capacity(sets.len() * nw))
        .collect();
    for chunk in sets.chunks(PARITY_CHUNK) {
        let reference_runs: Vec<(Vec<Metrics>, reference::Backtest)> = chunk
            .par_iter()
            .map(|set| {
                let resolved = spec
                    .resolve(set)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
                let (signals, results) = reference::run_windows(
                    spec,
                    &resolved,
                    &market,
                    &research.brackets,
                    research.capital,
                    &research.windows.ranges(),
                )?;
                let metrics: Vec<Metrics> = results.iter().map(|r| r.metrics).collect();
                let full = results.into_iter().next().unwrap_or_default();
                pb.inc(1);
                Ok((
                    metrics,
                    reference::Backtest {
                        signals,
                        result: full,
                    },
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        for (k, &precision) in precisions.iter().enumerate() {
            let rows = check_simd(
                &input,
                spec,
                &research,
                chunk,
                &reference_runs,
                precision,
                // Indicators and signals are computed in f64 for both lane types: checked once.
                k == 0,
                &mut simd_tallies[k],
            )?;
            simd_rows[k].extend(rows);
        }
        for (m, bt) in reference_runs {
            ref_metrics.push(m);
            ref_trades.push(bt.result.trades.len());
        }
    }
    pb.finish_and_clear();

    let mut tallies: Vec<(&'static str, Policy, Tally)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let expected_rows: Vec<Metrics> = ref_metrics.iter().flatten().copied().collect();
    for ((precision, mut tally), rows) in precisions.iter().zip(simd_tallies).zip(&simd_rows) {
        let (name, policy) = policy_of("simd", *precision);
        if *precision == Precision::F32 {
            // Exact backends fail on the first differing row (check_simd); f32 by share.
            let label = format!("{name} ({})", SimdLevel::detect().label(Precision::F32));
            apply_policy(
                &label,
                &policy,
                &expected_rows,
                rows,
                &sets,
                &research,
                &mut tally,
                &mut notes,
            );
            if !tally.trade_diffs.is_empty() {
                notes.push(format!(
                    "{label}: {} of {} sets trade differently under {} (at most {} allowed: 1 %)",
                    tally.trade_diffs.len(),
                    tally.sets,
                    Tolerance::F32,
                    tally.trade_diff_budget
                ));
            }
        }
        tallies.push((name, policy, tally));
    }
    let want_gpu = matches!(args.backend, ParityBackend::Gpu | ParityBackend::All);
    if want_gpu {
        match etrading_kernels::gpu::probe() {
            Ok(info) => {
                let mut precisions = Vec::new();
                if args.precision != PrecisionArg::F32 {
                    if info.has_f64 {
                        precisions.push(Precision::F64);
                    } else if args.precision == PrecisionArg::F64 {
                        let line =
                            format!("gpu f64: {} has no f64 shaders (SHADER_F64)", info.name);
                        if args.backend == ParityBackend::Gpu {
                            bail!("--precision f64: {line}");
                        }
                        notes.push(format!("{line}: not checked"));
                    }
                }
                if args.precision != PrecisionArg::F64 {
                    precisions.push(Precision::F32);
                }
                for precision in precisions {
                    let (name, policy) = policy_of("gpu", precision);
                    let mut rows = vec![Metrics::default(); sets.len() * nw];
                    let report =
                        etrading_kernels::gpu::run(&input, &sets, precision, &mut rows, &|_| {})
                            .map_err(|e| anyhow::anyhow!("gpu: {e}"))?;
                    notes.push(format!(
                        "{name} on {} ({}): {} sets on the GPU, {} fell back to the CPU{}",
                        info.name,
                        info.device_type,
                        report.gpu_sets,
                        report.cpu_fallback_sets,
                        report
                            .fallback_reason
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ));
                    let mut gpu_tally = Tally {
                        sets: sets.len(),
                        windows: sets.len() * nw,
                        trades: ref_trades.iter().sum(),
                        ..Tally::default()
                    };
                    apply_policy(
                        name,
                        &policy,
                        &expected_rows,
                        &rows,
                        &sets,
                        &research,
                        &mut gpu_tally,
                        &mut notes,
                    );
                    tallies.push((name, policy, gpu_tally));
                }
            }
            Err(e) if args.backend == ParityBackend::Gpu => bail!("--backend gpu: {e}"),
            Err(e) => notes.push(format!("gpu: not checked: {e}")),
        }
    }
    finish(args, out, spec, &research, sets.len(), nw, tallies, notes)
}

/// A backend's rows against the reference's under `policy`: a failure line per unmet share
/// (with the first differing row of each kind), and a note with the shares.
#[allow(clippy::too_many_arguments)]
fn apply_policy(
    name: &str,
    policy: &Policy,
    expected: &[Metrics],
    found: &[Metrics],
    sets: &[ParamSet],
    research: &Research,
    tally: &mut Tally,
    notes: &mut Vec<String>,
) {
    let nw = research.windows.len();
    let agreement = compare_rows(expected, found, policy.tolerance);
    let describe = |row: usize| {
        format!(
            "{}: window {}",
            research.spec.params.describe(&sets[row / nw]),
            research.windows.windows()[row % nw].kind.label()
        )
    };
    if !agreement.meets(policy) {
        tally
            .metric_diffs
            .push(format!("{agreement}, required: {policy}"));
        for (row, d) in agreement
            .first_count_miss
            .iter()
            .chain(&agreement.first_float_miss)
        {
            tally.metric_diffs.push(format!("{}: {d}", describe(*row)));
        }
    } else if policy.min_count_agreement < 1.0 || policy.min_float_agreement < 1.0 {
        let worst = agreement
            .worst_relative
            .iter()
            .filter(|w| w.1 > 0.0)
            .map(|(metric, rel)| format!("{metric} {rel:.1e}"))
            .collect::<Vec<_>>()
            .join(", ");
        notes.push(format!(
            "{name}: {agreement} (required: {policy}); largest relative differences: {}",
            if worst.is_empty() { "none" } else { &worst }
        ));
    }
    tally.agreement = Some(agreement);
}

/// Sets per chunk of the parity run.
const PARITY_CHUNK: usize = 64;

/// The SIMD kernel at `precision` on `sets` against their reference runs: indicators and
/// signal codes (when `signals`), trades and, in f64, every window's metrics, exactly; f32
/// trades under the `f32` tolerance (up to 1 % of the sets may differ). Returns the rows.
#[allow(clippy::too_many_arguments)]
fn check_simd(
    input: &etrading_kernels::batch::BatchInput<'_>,
    spec: &Spec,
    research: &Research,
    sets: &[ParamSet],
    reference_runs: &[(Vec<Metrics>, reference::Backtest)],
    precision: Precision,
    signals: bool,
    tally: &mut Tally,
) -> anyhow::Result<Vec<Metrics>> {
    let nw = research.windows.len();
    let market = input.market;
    let mut rows = vec![Metrics::default(); sets.len() * nw];
    let mut logs = vec![Vec::new(); sets.len()];
    simd::run_at_precision(
        SimdLevel::detect(),
        precision,
        input,
        sets,
        &mut rows,
        Some(&mut logs),
        &|_| {},
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
    let trade_tolerance = match precision {
        Precision::F64 => Tolerance::EXACT,
        Precision::F32 => Tolerance::F32,
    };
    for (i, set) in sets.iter().enumerate() {
        let (ref_metrics, bt) = &reference_runs[i];
        let label = spec.params.describe(set);
        tally.sets += 1;
        tally.windows += nw;
        tally.trades += bt.result.trades.len();
        if precision == Precision::F32 {
            tally.trade_diff_budget = tally.sets / 100;
        }
        if let Some(d) = compare_trades(&bt.result.trades, &logs[i], trade_tolerance) {
            tally.trade_diffs.push(format!("{label}: {d}"));
        }
        if precision == Precision::F64 {
            for w in 0..nw {
                if let Some(d) =
                    compare_metrics(&ref_metrics[w], &rows[i * nw + w], Tolerance::EXACT)
                {
                    tally.metric_diffs.push(format!(
                        "{label}: window {}: {d}",
                        research.windows.windows()[w].kind.label()
                    ));
                }
            }
        }
        if !signals {
            continue;
        }
        // Indicators and signals.
        let fast = simd::signals_of(input, set).map_err(|e| anyhow::anyhow!("{e}"))?;
        for (s, ((columns, codes), reference)) in fast.iter().zip(&bt.signals).enumerate() {
            for (slot, (a, b)) in reference.indicators.iter().zip(columns).enumerate() {
                tally.indicator_columns += 1;
                if let Some(t) = (0..a.len()).find(|&t| !Tolerance::EXACT.accepts(a[t], b[t])) {
                    tally.indicator_diffs.push(format!(
                        "{label}: {} slot {slot} bar {t}: TA-Lib {} vs {}",
                        market.symbols[s].name, a[t], b[t]
                    ));
                }
            }
            for (t, &code) in codes.iter().enumerate() {
                tally.signal_bars += 1;
                let expected = if market.symbols[s].close[t].is_finite() {
                    simd::code::of(
                        reference.long_entry[t],
                        reference.long_exit[t],
                        reference.short_entry[t],
                        reference.short_exit[t],
                    )
                } else {
                    0
                };
                if expected != code {
                    tally.signal_diffs.push(format!(
                        "{label}: {} bar {t}: signal code {expected:#06b} vs {code:#06b}",
                        market.symbols[s].name
                    ));
                    break;
                }
            }
        }
    }
    Ok(rows)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    args: &ParityArgs,
    out: &mut dyn Write,
    spec: &Spec,
    research: &Research,
    samples: usize,
    nw: usize,
    tallies: Vec<(&'static str, Policy, Tally)>,
    notes: Vec<String>,
) -> anyhow::Result<()> {
    let failed = tallies.iter().any(|(_, _, t)| t.failed());
    if args.json {
        let doc = json!({
            "schema": "etrading.parity/1",
            "spec": spec.strategy.id,
            "data_hash": research.data_hash(),
            "samples": samples,
            "notes": notes,
            "windows": nw,
            "backends": tallies.iter().map(|(name, policy, t)| json!({
                "backend": name,
                "tolerance": policy.tolerance.to_string(),
                "policy": policy.to_string(),
                "rows": t.agreement.as_ref().map(|a| json!({
                    "rows": a.rows,
                    "counts_equal": a.count_agree,
                    "floats_within_tolerance": a.float_agree,
                })),
                "trade_disagreements_allowed": t.trade_diff_budget,
                "sets": t.sets,
                "reference_trades": t.trades,
                "indicator_columns": t.indicator_columns,
                "indicator_disagreements": t.indicator_diffs.len(),
                "signal_disagreements": t.signal_diffs.len(),
                "trade_disagreements": t.trade_diffs.len(),
                "metric_disagreements": t.metric_diffs.len(),
                "first": t.indicator_diffs.iter().chain(&t.signal_diffs).chain(&t.trade_diffs).chain(&t.metric_diffs).take(5).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "ok": !failed,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        writeln!(
            out,
            "parity {}: {} sampled sets x {} window(s) against the reference (data {})",
            spec.strategy.id,
            samples,
            nw,
            &research.data_hash()[..12]
        )?;
        writeln!(
            out,
            "{:<10} {:<26} {:>6} {:>8} {:>11} {:>8} {:>7} {:>8}",
            "backend", "tolerance", "sets", "trades", "indicators", "signals", "trades", "metrics"
        )?;
        for (name, policy, t) in &tallies {
            writeln!(
                out,
                "{:<10} {:<26} {:>6} {:>8} {:>11} {:>8} {:>7} {:>8}",
                name,
                policy.tolerance.to_string(),
                t.sets,
                t.trades,
                t.indicator_diffs.len(),
                t.signal_diffs.len(),
                t.trade_diffs.len(),
                t.metric_diffs.len()
            )?;
            for d in t
                .indicator_diffs
                .iter()
                .chain(&t.signal_diffs)
                .chain(&t.trade_diffs)
                .chain(&t.metric_diffs)
                .take(10)
            {
                writeln!(out, "  {d}")?;
            }
        }
        for n in &notes {
            writeln!(out, "note: {n}")?;
        }
        writeln!(
            out,
            "{}",
            if failed {
                "DISAGREEMENT (columns: disagreements per kind)"
            } else {
                "all backends agree with the reference (columns: disagreements per kind)"
            }
        )?;
    }
    if failed {
        bail!("parity failed");
    }
    Ok(())
}
