//! `etrading parity SPEC`: sampled param sets (edge cases first: the grid's corners, the
//! highest leverage, the tightest stops) through every fast backend and the reference;
//! indicators, signals, trades and metrics compared under named tolerances
//! (docs/SEMANTICS.md §4.3). Exits non-zero on any disagreement.

use std::io::Write;

use anyhow::bail;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::json;

use etrading_kernels::batch::simd;
use etrading_kernels::engine::Metrics;
use etrading_kernels::parity::{Tolerance, compare_metrics, compare_trades};
use etrading_kernels::reference;
use etrading_kernels::spec::{ParamSet, Spec};

use crate::research::{Research, ResearchArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParityBackend {
    /// The f64 SIMD kernel.
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
    trade_diffs: Vec<String>,
    metric_diffs: Vec<String>,
}

impl Tally {
    fn failed(&self) -> bool {
        !(self.indicator_diffs.is_empty()
            && self.signal_diffs.is_empty()
            && self.trade_diffs.is_empty()
            && self.metric_diffs.is_empty())
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
    // kept for the GPU comparison, trades and signals only while their chunk is checked.
    let with_simd = args.backend != ParityBackend::Gpu;
    let mut ref_metrics: Vec<Vec<Metrics>> = Vec::with_capacity(sets.len());
    let mut ref_trades: Vec<usize> = Vec::with_capacity(sets.len());
    let mut tally = Tally::default();
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
        if with_simd {
            check_simd(&input, spec, &research, chunk, &reference_runs, &mut tally)?;
        }
        for (m, bt) in reference_runs {
            ref_metrics.push(m);
            ref_trades.push(bt.result.trades.len());
        }
    }
    pb.finish_and_clear();

    let mut tallies: Vec<(&'static str, Tolerance, Tally)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let want_gpu = matches!(args.backend, ParityBackend::Gpu | ParityBackend::All);
    if want_gpu {
        match etrading_kernels::gpu::probe() {
            Ok(info) => {
                let mut precisions = vec![(
                    etrading_kernels::gpu::Precision::F32,
                    "gpu f32",
                    Tolerance::F32,
                )];
                if info.has_f64 {
                    precisions.insert(
                        0,
                        (
                            etrading_kernels::gpu::Precision::F64,
                            "gpu f64",
                            Tolerance::F64_REORDERED,
                        ),
                    );
                }
                for (precision, name, tol) in precisions {
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
                        ..Tally::default()
                    };
                    let mut float_misses = 0usize;
                    for (i, set) in sets.iter().enumerate() {
                        gpu_tally.trades += ref_trades[i];
                        for w in 0..nw {
                            let (e, f) = (&ref_metrics[i][w], &rows[i * nw + w]);
                            if let Some(d) = compare_metrics(e, f, tol) {
                                let counts = d.tolerance == Tolerance::EXACT;
                                let line = format!(
                                    "{}: window {}: {d}",
                                    spec.params.describe(set),
                                    research.windows.windows()[w].kind.label()
                                );
                                if precision == etrading_kernels::gpu::Precision::F64 || counts {
                                    gpu_tally.metric_diffs.push(line);
                                } else {
                                    float_misses += 1;
                                    if float_misses * 100 > sets.len() * nw {
                                        gpu_tally.metric_diffs.push(format!(
                                            "more than 1 % of rows outside {tol}: {line}"
                                        ));
                                    }
                                }
                            }
                        }
                    }
                    if float_misses > 0 {
                        notes.push(format!("{name}: {float_misses} of {} rows have a float outside {tol} (at most 1 % allowed, §5.3)", sets.len() * nw));
                    }
                    tallies.push((name, tol, gpu_tally));
                }
            }
            Err(e) if args.backend == ParityBackend::Gpu => bail!("--backend gpu: {e}"),
            Err(e) => notes.push(format!("gpu: not checked: {e}")),
        }
    }
    if args.backend == ParityBackend::Gpu {
        return finish(args, out, spec, &research, sets.len(), nw, tallies, notes);
    }
    tallies.insert(0, ("simd f64", Tolerance::EXACT, tally));
    finish(args, out, spec, &research, sets.len(), nw, tallies, notes)
}

/// Sets per chunk of the parity run.
const PARITY_CHUNK: usize = 64;

/// The SIMD kernel on `sets` against their reference runs: indicators, signal codes, trades
/// and every window's metrics, exactly.
fn check_simd(
    input: &etrading_kernels::batch::BatchInput<'_>,
    spec: &Spec,
    research: &Research,
    sets: &[ParamSet],
    reference_runs: &[(Vec<Metrics>, reference::Backtest)],
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let nw = research.windows.len();
    let market = input.market;
    let mut rows = vec![Metrics::default(); sets.len() * nw];
    let mut logs = vec![Vec::new(); sets.len()];
    simd::run_traced(input, sets, &mut rows, Some(&mut logs), &|_| {})
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
    for (i, set) in sets.iter().enumerate() {
        let (ref_metrics, bt) = &reference_runs[i];
        let label = spec.params.describe(set);
        tally.sets += 1;
        tally.windows += nw;
        tally.trades += bt.result.trades.len();
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
        if let Some(d) = compare_trades(&bt.result.trades, &logs[i], Tolerance::EXACT) {
            tally.trade_diffs.push(format!("{label}: {d}"));
        }
        for w in 0..nw {
            if let Some(d) = compare_metrics(&ref_metrics[w], &rows[i * nw + w], Tolerance::EXACT) {
                tally.metric_diffs.push(format!(
                    "{label}: window {}: {d}",
                    research.windows.windows()[w].kind.label()
                ));
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn finish(
    args: &ParityArgs,
    out: &mut dyn Write,
    spec: &Spec,
    research: &Research,
    samples: usize,
    nw: usize,
    tallies: Vec<(&'static str, Tolerance, Tally)>,
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
            "backends": tallies.iter().map(|(name, tol, t)| json!({
                "backend": name,
                "tolerance": tol.to_string(),
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
        for (name, tol, t) in &tallies {
            writeln!(
                out,
                "{:<10} {:<26} {:>6} {:>8} {:>11} {:>8} {:>7} {:>8}",
                name,
                tol.to_string(),
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
