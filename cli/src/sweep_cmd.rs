//! `etrading sweep SPEC`: every grid point of the spec's param space through a batch backend,
//! batched within the memory budget, with progress, a ranked top-N table, and every set's
//! metrics in an `--out` file that doubles as the checkpoint for `--resume` (Ctrl-C or SIGTERM
//! stops after the batch in flight; nothing finished is lost or recomputed).
//!
//! A CSV `--out F.csv` is appended row by row, with the sweep's metadata (as a Parquet
//! footer holds it) in `F.csv.sweep.json`; a resume checks the header and that record and
//! drops a row cut by a kill. A Parquet `--out F.parquet` is readable only once its footer is written, so it is
//! written through [`ParquetCheckpoint`]: each batch becomes a closed file in
//! `F.parquet.parts/` (written as `.tmp`, synced, renamed), and when the sweep ends (done,
//! Ctrl-C, SIGTERM or an error) `F.parquet` and the parts are merged into a new `F.parquet`
//! that replaces the old one atomically; the parts are then deleted. `F.parquet` is therefore
//! absent or complete at every moment; after a SIGKILL or a power cut the finished sets wait
//! in the parts folder, and `--resume` reads `F.parquet` and the parts (a torn or unfinished
//! last part is discarded with a note, its sets run again), checks that they are this sweep's
//! (the columns, and the footer's key-value metadata: the run's identity, see
//! [`crate::identity`] and [`sweep_metadata`]), and runs
//! only the other sets.
//!
//! Test hook: `ETRADING_SWEEP_TEST="batch=N,interrupt=K"` runs batches of N sets and stops
//! after K batches as Ctrl-C does; `abort=K` instead exits at once with status 137 after K
//! batches, as a SIGKILL would (no merge); `sleep_ms=M` waits M ms before each batch (a slow
//! sweep, for tests that need one still running). Unset in normal use.
//!
//! With both `--out` and `--study`, each store is written after the batch is computed, so a
//! kill or a power cut between the two (or one store's unsynced tail lost) leaves a set in one
//! store only: `--resume` runs such a set again and writes it to the other store alone.
//! Each `--out` file has one writer at a time (`FILE.lock`, and the study's own lock).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use etrading_db::lock::{LockKind, WriterLock, output_lock_path};
use etrading_db::study;
use etrading_kernels::batch;
use etrading_kernels::engine::Metrics;
use etrading_kernels::parity::metric_fields;
use etrading_kernels::search::{overfit, score_trial};
use etrading_kernels::spec::{Distribution, ParamSet, ParamValue};
use etrading_reports::csv_scan::scan_csv;
use etrading_reports::table::{
    Batch, Cell, Column, ColumnType, Field, ParquetCheckpoint, ParquetTable, TableError,
    TableFormat, TableWriter,
};

use crate::identity::{RunIdentity, value_text};
use crate::research::{BackendArg, MemoryPlan, PrecisionArg, Research, ResearchArgs};

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub research: ResearchArgs,
    /// Which engine runs the sets.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Float precision of the SIMD and GPU backends (auto: f64 on the CPU, f32 on the GPU).
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: PrecisionArg,
    /// Rows in the ranked table.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Write every set's params and metrics (full run and each window) to this file, the
    /// `--resume` checkpoint: CSV, or Parquet when it ends in `.parquet` (typed columns, one row
    /// group per batch; finished batches wait in `FILE.parquet.parts/` until the sweep ends).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue an interrupted sweep: sets already in `--out` (or already trials of
    /// `--study`) are not recomputed.
    #[arg(long)]
    pub resume: bool,
    /// Also write every set as a trial of this Optuna study (COMPLETE, or PRUNED with the
    /// reason), with its metrics as user attributes.
    #[arg(long)]
    pub study: Option<String>,
    /// Study storage, `sqlite:///PATH`.
    #[arg(long, default_value = "sqlite:///db/optimization_study.db")]
    pub storage: String,
    /// Print the summary and the ranked sets as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// A ranked set.
#[derive(Debug, Clone)]
struct Ranked {
    grid_index: u64,
    score: f64,
    set: ParamSet,
    full: Metrics,
    /// Its Deflated Sharpe Ratio as the best of the sweep's trials (filled once ranked).
    dsr: Option<overfit::Deflated>,
}

const BATCH_CAP: usize = 16_384;

/// The sets a store (the `--out` file or the `--study`) already holds.
#[derive(Debug, Default)]
struct Stored {
    /// Grid indices.
    sets: BTreeSet<u64>,
    /// The objective of each ranked one.
    ranked: BTreeMap<u64, f64>,
    /// The full run's annualised Sharpe ratio of each (finite ones), for the deflated Sharpe
    /// ratio of a resumed sweep.
    sharpe: BTreeMap<u64, f64>,
}

impl Stored {
    fn insert(&mut self, grid_index: u64, objective: Option<f64>, sharpe: Option<f64>) {
        if self.sets.insert(grid_index) {
            if let Some(v) = objective.filter(|v| !v.is_nan()) {
                self.ranked.insert(grid_index, v);
            }
            if let Some(v) = sharpe.filter(|v| v.is_finite()) {
                self.sharpe.insert(grid_index, v);
            }
        }
    }
}

pub fn run(args: &SweepArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.resume && args.out.is_none() && args.study.is_none() {
        bail!("--resume continues the sweep stored in --out FILE or --study NAME; give one");
    }
    let research = Research::load(&args.research)?;
    let grid = research.grid()?;
    let memory = MemoryPlan::new(&research, args.research.max_memory.as_deref())?;
    let (backend, backend_label) = args.backend.pick(args.precision)?;
    let identity = research.identity(backend.precision());
    let spec = &research.spec;
    let names: Vec<String> = spec.params.params.iter().map(|p| p.name.clone()).collect();
    let windows = research.windows.windows().to_vec();

    // The grid points to run (after --set), minus those already in the output file.
    let mut todo: Vec<u64> = Vec::new();
    let mut scratch = spec.params.decode(0).map_err(|e| anyhow::anyhow!("{e}"))?;
    for index in 0..grid.total {
        spec.params
            .decode_into(index, &mut scratch)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if grid.accepts(&scratch) {
            todo.push(index);
        }
    }
    let selected = todo.len() as u64;
    let fields = output_fields(&names, &study::space_distributions(&spec.params), &windows);
    let test_hook = TestHook::from_env()?;
    let batch_sets = test_hook
        .batch_sets
        .unwrap_or(memory.batch_sets.min(BATCH_CAP));
    // What each store already holds (grid index, and the objective of a ranked set): a set is
    // skipped only when every store of this run holds it; one that a kill or a power cut left
    // in one store only is run again and written to the other, so neither keeps a gap.
    let mut in_out = Stored::default();
    let mut in_study = Stored::default();
    // One writer per output file: a second sweep (or resume) into it is refused while this
    // one runs (released when the process ends, however it ends).
    let _out_lock = match &args.out {
        Some(path) => Some(
            WriterLock::acquire(
                &output_lock_path(path),
                &format!("the sweep output {}", path.display()),
                LockKind::Exclusive,
            )
            .map_err(anyhow::Error::new)?,
        ),
        None => None,
    };
    let mut writer = match &args.out {
        Some(path) => Some(open_output(
            path,
            fields.clone(),
            &identity,
            sweep_metadata(&research, &identity, &backend_label),
            args.resume,
            &mut in_out,
        )?),
        None => None,
    };
    let study = match &args.study {
        Some(name) => Some(open_study(args, &research, &identity, name, &mut in_study)?),
        None => None,
    };
    let stored_everywhere = |i: &u64| {
        (writer.is_none() || in_out.sets.contains(i))
            && (study.is_none() || in_study.sets.contains(i))
    };
    let done: BTreeSet<u64> = in_out
        .sets
        .iter()
        .chain(&in_study.sets)
        .copied()
        .filter(|i| stored_everywhere(i))
        .collect();
    // Sets ranked in an earlier run compete in this run's ranking (the out file's objective
    // column, or the study's values).
    let mut earlier: Vec<(u64, f64)> = in_out
        .ranked
        .iter()
        .chain(&in_study.ranked)
        .filter(|(i, _)| done.contains(i))
        .map(|(&i, &v)| (i, v))
        .collect::<BTreeMap<u64, f64>>()
        .into_iter()
        .collect();
    let refill = if writer.is_some() && study.is_some() {
        in_out
            .sets
            .union(&in_study.sets)
            .filter(|i| !done.contains(i))
            .count()
    } else {
        0
    };
    todo.retain(|i| !done.contains(i));

    let interrupted = crate::research::stop_requests();
    let bar_sets_per_set = research.bar_symbols();
    let pb = if args.quiet || args.json {
        ProgressBar::hidden()
    } else {
        let pb = ProgressBar::new(selected);
        pb.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} sets  {per_sec}  eta {eta}  {msg}")
                .expect("progress template"),
        );
        pb.set_position(done.len() as u64);
        pb
    };
    if !args.json {
        writeln!(
            out,
            "sweep {}: {} sets of {} grid points, {} x {} bars, {} window(s), backend {}, brackets {}; batches of {} sets (memory budget {} from {})",
            spec.strategy.id,
            selected,
            grid.total,
            research.panel.n_symbols(),
            research.panel.n_bars(),
            windows.len(),
            backend_label,
            research.brackets_label,
            batch_sets,
            crate::sysinfo::mib(memory.budget_bytes),
            memory.budget_source,
        )?;
        if !done.is_empty() {
            writeln!(
                out,
                "resuming: {} sets already stored{}",
                done.len(),
                match (&args.out, &args.study) {
                    (Some(_), Some(_)) => " in both --out and --study",
                    (Some(_), None) => " in the output file",
                    _ => " in the study",
                }
            )?;
        }
        if refill > 0 {
            writeln!(
                out,
                "resuming: {refill} sets stored in only one of --out and --study run again to fill the other"
            )?;
        }
    }

    let market = research.market();
    let input = research.input(&market);
    let nw = windows.len();
    let mut top: Vec<Ranked> = Vec::new();
    // Every set's annualised full-run Sharpe ratio (discarded ones too; a resumed sweep's
    // earlier sets from its stores): their variance deflates the best
    // (kernels::search::overfit).
    let mut trial_sharpes: BTreeMap<u64, f64> = in_out
        .sharpe
        .iter()
        .chain(&in_study.sharpe)
        .filter(|(i, _)| done.contains(i))
        .map(|(&i, &v)| (i, v))
        .collect();
    let mut ranked_count = 0u64;
    let mut discarded: HashMap<&'static str, u64> = HashMap::new();
    let finished = AtomicU64::new(0);
    let started = Instant::now();
    let mut computed = 0u64;
    let mut rows_out = Batch::new(&fields);
    // The batches run in a closure so that the output is finished (a Parquet output's parts
    // are merged into the file) however the loop ends: done, Ctrl-C, or an error.
    let mut sweep = || -> anyhow::Result<()> {
        for (n, chunk) in todo.chunks(batch_sets).enumerate() {
            test_hook.before_batch(n, interrupted);
            if interrupted.load(Ordering::SeqCst) {
                break;
            }
            let sets: Vec<ParamSet> = chunk
                .iter()
                .map(|&i| spec.params.decode(i).map_err(|e| anyhow::anyhow!("{e}")))
                .collect::<Result<_, _>>()?;
            let mut rows = vec![Metrics::default(); sets.len() * nw];
            let report = batch::run(&input, &sets, backend, &mut rows, &|n| {
                finished.fetch_add(n as u64, Ordering::Relaxed);
                pb.inc(n as u64);
            })
            .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
            if let Some(note) = report.fallback_note() {
                pb.suspend(|| eprintln!("warning: {note}"));
            }
            computed += sets.len() as u64;
            if let Some((writer, distributions)) = &study {
                let records = chunk
                    .iter()
                    .zip(&sets)
                    .enumerate()
                    .filter(|(_, (grid_index, _))| !in_study.sets.contains(grid_index))
                    .map(|(k, (&grid_index, set))| {
                        let (state, value, user_attrs) = crate::optimize_cmd::trial_outcome(
                            spec,
                            &research.windows,
                            &rows[k * nw..(k + 1) * nw],
                            set,
                            &identity,
                        );
                        let params = distributions
                            .iter()
                            .zip(&set.values)
                            .map(|((name, d), v)| {
                                study::internal_value(d, v)
                                    .map_err(|e| anyhow::anyhow!("param {name}: {e}"))
                            })
                            .collect::<anyhow::Result<Vec<f64>>>()?;
                        Ok(study::TrialRecord {
                            params,
                            state,
                            value,
                            user_attrs,
                            system_attrs: vec![(
                                "grid_index".to_string(),
                                study::JsonValue::Int(grid_index as i64),
                            )],
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                writer.append_trials(records)?;
                writer.flush()?;
            }
            for (k, (&grid_index, set)) in chunk.iter().zip(&sets).enumerate() {
                let metrics = &rows[k * nw..(k + 1) * nw];
                let leverage = spec.leverage_used(set);
                let score = score_trial(&spec.objective, &research.windows, metrics, leverage);
                if metrics[0].sharpe.is_finite() {
                    trial_sharpes.insert(grid_index, metrics[0].sharpe);
                }
                if writer.is_some() && !in_out.sets.contains(&grid_index) {
                    push_row(&mut rows_out, grid_index, set, &score.value, metrics)?;
                }
                match score.value {
                    Ok(value) => {
                        ranked_count += 1;
                        push_top(
                            &mut top,
                            args.top,
                            Ranked {
                                grid_index,
                                score: value,
                                set: set.clone(),
                                full: metrics[0],
                                dsr: None,
                            },
                        );
                    }
                    Err(d) => *discarded.entry(d.filter()).or_default() += 1,
                }
            }
            if let Some(w) = writer.as_mut() {
                w.write_batch(&rows_out)
                    .context("writing the sweep output")?;
                rows_out.clear();
            }
        }
        Ok(())
    };
    let swept = sweep();
    let closed = writer.take().map(Output::finish).transpose();
    swept?;
    let stored = closed?.unwrap_or(0);
    pb.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    // Sets ranked in an earlier run of a resumed sweep compete too: the best of them are run
    // again (a few sets) for their full metrics.
    ranked_count += earlier.len() as u64;
    earlier.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    earlier.truncate(args.top);
    if !earlier.is_empty() {
        let sets: Vec<ParamSet> = earlier
            .iter()
            .map(|&(i, _)| spec.params.decode(i).map_err(|e| anyhow::anyhow!("{e}")))
            .collect::<Result<_, _>>()?;
        let mut rows = vec![Metrics::default(); sets.len() * nw];
        batch::run(&input, &sets, backend, &mut rows, &|_| {})
            .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
        for (k, (&(grid_index, score), set)) in earlier.iter().zip(&sets).enumerate() {
            push_top(
                &mut top,
                args.top,
                Ranked {
                    grid_index,
                    score,
                    set: set.clone(),
                    full: rows[k * nw],
                    dsr: None,
                },
            );
        }
    }
    // The deflated Sharpe ratio of each ranked set as the best of every set tried.
    let trials = done.len() as u64 + computed;
    let sharpe_variance =
        overfit::variance(trial_sharpes.values().map(|&s| research.sharpe_per_bar(s)));
    let mut expected_max = None;
    if let Some(variance) = sharpe_variance {
        for r in &mut top {
            match research.deflated_sharpe(&r.set, trials, variance) {
                Ok(d) => {
                    r.dsr = Some(d);
                    expected_max = Some(d.expected_max);
                }
                Err(e) => pb.suspend(|| {
                    eprintln!(
                        "note: no deflated Sharpe ratio for grid point {}: {e:#}",
                        r.grid_index
                    )
                }),
            }
        }
    }
    let deflation = DeflationNote {
        trials,
        variance_sets: trial_sharpes.len() as u64,
        expected_max_annualised: expected_max.map(|e| e * research.bars_per_year().sqrt()),
    };
    // The best's deflated Sharpe ratio goes with the study too (`etrading study best`),
    // once its writer has finished.
    drop(study);
    if let (Some(name), Some(first)) = (&args.study, top.first())
        && let Some(d) = &first.dsr
    {
        let value = crate::optimize_cmd::deflated_sharpe_attr(
            ("grid_index", first.grid_index as i64),
            d,
            research.bars_per_year().sqrt(),
        );
        let path = study::parse_storage_url(&args.storage)?;
        study::set_study_user_attr(
            &path,
            name,
            crate::optimize_cmd::DEFLATED_SHARPE_ATTR,
            &value,
        )?;
    }
    let remaining = todo.len() as u64 - computed;
    let rate = computed as f64 / elapsed.max(1e-9);
    if args.json {
        let top_json: Vec<_> = top
            .iter()
            .map(|r| {
                json!({
                    "grid_index": r.grid_index,
                    "objective": r.score,
                    "params": names.iter().zip(&r.set.values).map(|(n, v)| (n.clone(), value_json(v))).collect::<serde_json::Map<_, _>>(),
                    "full": metric_fields(&r.full).iter().map(|(n, v)| (n.to_string(), num(*v))).collect::<serde_json::Map<_, _>>(),
                    "dsr": r.dsr.map(|d| num(d.dsr)),
                })
            })
            .collect();
        let doc = json!({
            "schema": "etrading.sweep/1",
            "spec": spec.strategy.id,
            "objective": spec.objective.name.name(),
            "backend": backend_label,
            "sets": selected,
            "computed": computed,
            "resumed": done.len(),
            "remaining": remaining,
            "ranked": ranked_count,
            "discarded": discarded,
            "seconds": elapsed,
            "sets_per_second": rate,
            "bar_sets_per_second": rate * bar_sets_per_set as f64,
            "data_hash": research.data_hash(),
            "brackets": research.brackets_label,
            "memory": {
                "budget_bytes": memory.budget_bytes,
                "budget_source": memory.budget_source,
                "inputs_bytes": memory.inputs_bytes,
                "scratch_bytes": memory.scratch_bytes,
                "per_set_bytes": memory.per_set_bytes,
                "batch_sets": batch_sets,
            },
            "deflated_sharpe": {
                "trials": deflation.trials,
                "variance_sets": deflation.variance_sets,
                "expected_max_sharpe": deflation.expected_max_annualised.map(num),
            },
            "top": top_json,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        writeln!(
            out,
            "{computed} sets in {elapsed:.2} s: {:.0} sets/s, {:.3e} bar-sets/s",
            rate,
            rate * bar_sets_per_set as f64
        )?;
        let mut reasons: Vec<_> = discarded.iter().collect();
        reasons.sort();
        let reasons: Vec<String> = reasons.iter().map(|(k, v)| format!("{v} {k}")).collect();
        writeln!(
            out,
            "ranked {ranked_count}; discarded {}",
            if reasons.is_empty() {
                "none".to_string()
            } else {
                reasons.join(", ")
            }
        )?;
        print_top(out, &top, &names, spec.objective.name.name())?;
        if !top.is_empty() {
            deflation.print(out)?;
        }
    }
    if remaining > 0 {
        bail!(
            "interrupted: {remaining} of {selected} sets not run{}",
            match &args.out {
                Some(p) if is_parquet(p) => format!(
                    "; {} holds the {stored} sets finished (closed, readable); `--resume --out {}` continues without recomputing them",
                    p.display(),
                    p.display()
                ),
                Some(p) => format!(
                    "; `--resume --out {}` continues without recomputing the others",
                    p.display()
                ),
                None => String::new(),
            }
        );
    }
    Ok(())
}

type StudySink = (study::StudyWriter, Vec<(String, Distribution)>);

/// Opens (or, with `--resume`, reopens) the sweep's study; grid points already stored as
/// trials (and the values of the COMPLETE ones) go into `stored`, so a resumed sweep never
/// stores one twice and ranks them with its own.
fn open_study(
    args: &SweepArgs,
    research: &Research,
    identity: &RunIdentity,
    name: &str,
    stored: &mut Stored,
) -> anyhow::Result<StudySink> {
    let spec = &research.spec;
    let path = study::parse_storage_url(&args.storage)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let distributions = study::space_distributions(&spec.params);
    let mut attrs = vec![
        (
            "strategy_id".to_string(),
            study::JsonValue::Str(spec.strategy.id.clone()),
        ),
        (
            "spec_file".to_string(),
            study::JsonValue::Str(research.spec_path.display().to_string()),
        ),
        ("sampler".to_string(), study::JsonValue::Str("sweep".into())),
    ];
    attrs.extend(identity.study_attrs());
    let (writer, report) = study::StudyWriter::open(
        &path,
        study::StudyOptions {
            name: name.to_string(),
            direction: study::Direction::Maximize,
            mode: if args.resume {
                study::OpenMode::Resume
            } else {
                study::OpenMode::Create
            },
            params: distributions.clone(),
            user_attrs: attrs,
            identity: identity.study_keys(),
        },
    )?;
    if report.failed_running > 0 {
        eprintln!(
            "note: study {name:?}: {} RUNNING trials left by a killed run marked FAIL",
            report.failed_running
        );
    }
    if !report.created {
        let trials = study::StudyFile::open(&path)?.load(name)?.trials;
        for trial in &trials {
            if let Some((_, study::JsonValue::Int(i))) =
                trial.system_attrs.iter().find(|(k, _)| k == "grid_index")
                && let Ok(i) = u64::try_from(*i)
            {
                let value = match trial.state {
                    study::TrialState::Complete => trial.value(),
                    _ => None,
                };
                let sharpe = trial.user_attrs.iter().find_map(|(k, v)| match v {
                    study::JsonValue::Float(x) if k == "sharpe" => Some(*x),
                    study::JsonValue::Int(x) if k == "sharpe" => Some(*x as f64),
                    _ => None,
                });
                stored.insert(i, value, sharpe);
            }
        }
    }
    Ok((writer, distributions))
}

fn push_top(top: &mut Vec<Ranked>, n: usize, r: Ranked) {
    if n == 0 {
        return;
    }
    let pos = top
        .iter()
        .position(|x| r.score > x.score || (r.score == x.score && r.grid_index < x.grid_index))
        .unwrap_or(top.len());
    if pos < n {
        top.insert(pos, r);
        top.truncate(n);
    }
}

fn num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

fn value_json(v: &ParamValue) -> serde_json::Value {
    match v {
        ParamValue::Int(i) => json!(i),
        ParamValue::Float(f) => num(*f),
        ParamValue::Bool(b) => json!(b),
        ParamValue::Str(s) => json!(s),
    }
}

fn print_top(
    out: &mut dyn Write,
    top: &[Ranked],
    names: &[String],
    objective: &str,
) -> anyhow::Result<()> {
    if top.is_empty() {
        writeln!(out, "no set passed the filters")?;
        return Ok(());
    }
    writeln!(out)?;
    write!(out, "{:>4} {:>12}", "rank", objective)?;
    for n in names {
        write!(out, " {n:>12}")?;
    }
    writeln!(
        out,
        " {:>10} {:>8} {:>7} {:>7} {:>6} {:>6}",
        "return", "max_dd", "sharpe", "trades", "win", "dsr"
    )?;
    for (i, r) in top.iter().enumerate() {
        write!(out, "{:>4} {:>12.4}", i + 1, r.score)?;
        for v in &r.set.values {
            write!(out, " {:>12}", value_text(v))?;
        }
        writeln!(
            out,
            " {:>9.2}% {:>7.2}% {:>7.2} {:>7} {:>5.1}% {:>6}",
            r.full.total_return * 100.0,
            r.full.max_drawdown * 100.0,
            r.full.sharpe,
            r.full.n_trades,
            r.full.win_rate * 100.0,
            r.dsr
                .map_or_else(|| "-".to_string(), |d| format!("{:.3}", d.dsr))
        )?;
    }
    Ok(())
}

/// What the ranked sets' deflated Sharpe ratios were deflated by.
struct DeflationNote {
    /// Sets tried (this run's and a resumed run's earlier ones).
    trials: u64,
    /// Sets whose Sharpe ratios gave the variance (those with a finite one).
    variance_sets: u64,
    /// SR0, the expected best Sharpe ratio of `trials` flukes, annualised.
    expected_max_annualised: Option<f64>,
}

impl DeflationNote {
    fn print(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        match self.expected_max_annualised {
            Some(sr0) => writeln!(
                out,
                "dsr: deflated Sharpe ratio (Bailey & Lopez de Prado 2014), the probability that a \
                 set's Sharpe ratio beats the best of {} trials of pure luck (expected best \
                 Sharpe {sr0:.2}, from the spread of {} sets' Sharpe ratios); below 0.95 the \
                 ranking may be selection bias",
                self.trials, self.variance_sets
            )?,
            None => writeln!(
                out,
                "dsr: not computed ({} sets with a Sharpe ratio: too few for their spread)",
                self.variance_sets
            )?,
        }
        Ok(())
    }
}

const ROW_METRICS: [&str; 9] = [
    "total_return",
    "cagr",
    "max_drawdown",
    "calmar",
    "sharpe",
    "win_rate",
    "n_trades",
    "liquidations",
    "fees_paid",
];

/// The output's columns: `grid_index`, the params (typed by their distribution), `objective`
/// (empty when discarded), `discarded` (the reason), then [`ROW_METRICS`] per window
/// (`n_trades` and `liquidations` as integers, the others as floats).
fn output_fields(
    names: &[String],
    distributions: &[(String, Distribution)],
    windows: &[batch::Window],
) -> Vec<Field> {
    let mut fields = vec![Field::new("grid_index", ColumnType::Int64)];
    fields.extend(
        names
            .iter()
            .zip(distributions)
            .map(|(name, (_, d))| Field::new(name.clone(), param_type(d))),
    );
    fields.push(Field::new("objective", ColumnType::Float64));
    fields.push(Field::new("discarded", ColumnType::Utf8));
    for w in windows {
        let label = w.kind.label();
        fields.extend(ROW_METRICS.iter().map(|m| {
            let kind = if matches!(*m, "n_trades" | "liquidations") {
                ColumnType::Int64
            } else {
                ColumnType::Float64
            };
            Field::new(format!("{label}_{m}"), kind)
        }));
    }
    fields
}

/// The column type of a param: ints, floats, or a categorical's common type (text when its
/// choices mix types).
fn param_type(d: &Distribution) -> ColumnType {
    match d {
        Distribution::Int { .. } => ColumnType::Int64,
        Distribution::Float { .. } => ColumnType::Float64,
        Distribution::Categorical { choices } => {
            let all = |f: fn(&ParamValue) -> bool| choices.iter().all(f);
            if all(|v| matches!(v, ParamValue::Int(_))) {
                ColumnType::Int64
            } else if all(|v| matches!(v, ParamValue::Int(_) | ParamValue::Float(_))) {
                ColumnType::Float64
            } else if all(|v| matches!(v, ParamValue::Bool(_))) {
                ColumnType::Bool
            } else {
                ColumnType::Utf8
            }
        }
    }
}

fn param_cell(v: &ParamValue, kind: ColumnType) -> Cell {
    match (v, kind) {
        (ParamValue::Int(i), ColumnType::Int64 | ColumnType::Float64) => Cell::Int(*i),
        (ParamValue::Float(f), ColumnType::Float64) => Cell::Float(*f),
        (ParamValue::Bool(b), ColumnType::Bool) => Cell::Bool(*b),
        _ => Cell::Str(value_text(v)),
    }
}

/// A metric as an integer cell (`n_trades`, `liquidations`); null when not finite.
fn int_cell(v: f64) -> Cell {
    if v.is_finite() {
        Cell::Int(v as i64)
    } else {
        Cell::Null
    }
}

fn push_row(
    rows: &mut Batch,
    grid_index: u64,
    set: &ParamSet,
    value: &Result<f64, etrading_kernels::search::Discard>,
    metrics: &[Metrics],
) -> anyhow::Result<()> {
    let kinds: Vec<ColumnType> = rows.fields().iter().map(|f| f.kind).collect();
    let mut row = vec![Cell::Int(grid_index as i64)];
    row.extend(
        set.values
            .iter()
            .zip(&kinds[1..])
            .map(|(v, &kind)| param_cell(v, kind)),
    );
    match value {
        Ok(v) => {
            row.push(Cell::Float(*v));
            row.push(Cell::Null);
        }
        Err(d) => {
            row.push(Cell::Null);
            row.push(Cell::Str(d.to_string()));
        }
    }
    for m in metrics {
        let fields = metric_fields(m);
        for name in ROW_METRICS {
            let v = fields
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(f64::NAN, |f| f.1);
            row.push(if matches!(name, "n_trades" | "liquidations") {
                int_cell(v)
            } else {
                Cell::Float(v)
            });
        }
    }
    rows.push_row(row).context("writing the sweep output")?;
    Ok(())
}

fn is_parquet(path: &Path) -> bool {
    matches!(TableFormat::from_path(path), Ok(TableFormat::Parquet))
}

/// Where the sweep's rows go: a CSV appended row by row, or a Parquet checkpoint.
enum Output {
    /// `stored`: the rows the file held when the sweep started.
    Csv {
        writer: Box<TableWriter>,
        stored: u64,
    },
    Parquet(ParquetCheckpoint),
}

impl Output {
    fn write_batch(&mut self, batch: &Batch) -> anyhow::Result<()> {
        match self {
            Output::Csv { writer, .. } => writer.write_batch(batch)?,
            Output::Parquet(w) => w.write_batch(batch)?,
        }
        Ok(())
    }

    /// Closes the output (a Parquet output's parts are merged into its file); returns the
    /// rows the file holds.
    fn finish(self) -> anyhow::Result<u64> {
        match self {
            Output::Csv { writer, stored } => {
                Ok(stored + writer.finish().context("closing the sweep output")?)
            }
            Output::Parquet(w) => {
                let path = w.path().to_path_buf();
                w.finish().with_context(|| {
                    format!(
                        "merging the finished sets into {} (they stay in {}; `--resume` merges them)",
                        path.display(),
                        ParquetCheckpoint::parts_dir(&path).display()
                    )
                })
            }
        }
    }
}

/// The `ETRADING_SWEEP_TEST` hook of the module doc: batch size and a deterministic stop.
#[derive(Debug, Default)]
struct TestHook {
    batch_sets: Option<usize>,
    interrupt_after: Option<usize>,
    abort_after: Option<usize>,
    sleep_ms: Option<usize>,
}

impl TestHook {
    const VAR: &str = "ETRADING_SWEEP_TEST";

    fn from_env() -> anyhow::Result<TestHook> {
        let mut hook = TestHook::default();
        let Some(text) = std::env::var_os(Self::VAR) else {
            return Ok(hook);
        };
        let text = text.to_string_lossy();
        for item in text.split(',').filter(|i| !i.trim().is_empty()) {
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            let n = value.trim().parse::<usize>().ok().filter(|n| *n > 0);
            let slot = match key.trim() {
                "batch" => Some(&mut hook.batch_sets),
                "interrupt" => Some(&mut hook.interrupt_after),
                "abort" => Some(&mut hook.abort_after),
                "sleep_ms" => Some(&mut hook.sleep_ms),
                _ => None,
            };
            let (Some(slot), Some(n)) = (slot, n) else {
                bail!(
                    "{}={text:?}: {item:?} is not batch=N, interrupt=N, abort=N or sleep_ms=N (N a positive whole number)",
                    Self::VAR
                );
            };
            *slot = Some(n);
        }
        Ok(hook)
    }

    /// Called before batch `n` (from 0): after `sleep_ms=M` it waits; after `interrupt=K`
    /// batches the sweep stops as on Ctrl-C; after `abort=K` the process exits at once,
    /// merging nothing, as on SIGKILL.
    fn before_batch(&self, n: usize, interrupted: &AtomicBool) {
        if let Some(ms) = self.sleep_ms {
            std::thread::sleep(std::time::Duration::from_millis(ms as u64));
        }
        if self.abort_after == Some(n) {
            std::process::exit(137);
        }
        if self.interrupt_after == Some(n) {
            interrupted.store(true, Ordering::SeqCst);
        }
    }
}

/// The metadata of a sweep output: the run's identity ([`RunIdentity::sweep_metadata`]), which
/// a resume checks, then what it records but does not check: which backend ran (backends of
/// one precision agree within its tolerance, the f64 ones on the CPU bit for bit; the
/// precision is checked) and the spec's path (its text is checked).
fn sweep_metadata(
    research: &Research,
    identity: &RunIdentity,
    backend_label: &str,
) -> Vec<(String, String)> {
    let mut pairs = identity.sweep_metadata();
    pairs.push((
        "etrading.sweep.backend".to_string(),
        backend_label.to_string(),
    ));
    pairs.push((
        "etrading.sweep.spec_file".to_string(),
        research.spec_path.display().to_string(),
    ));
    pairs
}

/// Refuses a stored table (the `--out` file or one of its parts) that is not this sweep's,
/// naming the file and what differs.
fn check_same_sweep(
    table: &ParquetTable,
    fields: &[Field],
    identity: &RunIdentity,
) -> anyhow::Result<()> {
    let file = table.path().display();
    let advice = "choose another --out (or delete it and its .parts folder to start over)";
    if table.fields() != fields {
        bail!(
            "{file}: its columns are not this sweep's ({}: another spec, --set or window split); {advice}",
            column_difference(table.fields(), fields)
        );
    }
    identity.check_sweep(&file.to_string(), &table.metadata(), advice)
}

/// The first column that differs between a stored table's and this sweep's.
fn column_difference(theirs: &[Field], ours: &[Field]) -> String {
    match theirs.iter().zip(ours).position(|(a, b)| a != b) {
        Some(i) => format!(
            "column {} is {} ({:?}) there, {} ({:?}) here",
            i + 1,
            theirs[i].name,
            theirs[i].kind,
            ours[i].name,
            ours[i].kind
        ),
        None => format!("{} columns there, {} here", theirs.len(), ours.len()),
    }
}

/// Opens a Parquet `--out` as a [`ParquetCheckpoint`]: new (refusing an existing file or parts
/// folder without `--resume`), or continued: the stored file and parts must be this sweep's,
/// their grid indices join `done` and their objectives `earlier`, and a torn or unfinished
/// part is discarded with a note (its sets run again).
fn open_parquet(
    path: &Path,
    fields: Vec<Field>,
    identity: &RunIdentity,
    metadata: Vec<(String, String)>,
    resume: bool,
    stored: &mut Stored,
) -> anyhow::Result<Output> {
    let parts = ParquetCheckpoint::parts_dir(path);
    if !resume && path.exists() {
        bail!(
            "{} exists; pass --resume to continue that sweep, or choose another --out",
            path.display()
        );
    }
    if !resume && parts.exists() {
        bail!(
            "{} holds the finished sets of an interrupted sweep into {}; pass --resume to continue it, or choose another --out",
            parts.display(),
            path.display()
        );
    }
    let scan = ParquetCheckpoint::scan(path)
        .with_context(|| format!("reading the sweep stored in {}", path.display()))?;
    let tables: Vec<&ParquetTable> = scan.table.iter().chain(&scan.parts).collect();
    for table in &tables {
        check_same_sweep(table, &fields, identity)?;
    }
    for (file, why) in &scan.torn {
        eprintln!(
            "note: {}: {why}; discarded, its sets run again",
            file.display()
        );
    }
    let objective = fields
        .iter()
        .position(|f| f.name == "objective")
        .context("the sweep output has an objective column")?;
    let sharpe = fields
        .iter()
        .position(|f| f.name == "full_sharpe")
        .context("the sweep output has a full_sharpe column")?;
    for table in &tables {
        let file = table.path().display();
        for i in 0..table.row_groups() {
            let batch = table
                .read_row_group(i)
                .with_context(|| format!("reading the sweep stored in {file}"))?;
            let (Column::Int64(indices), Column::Float64(objectives), Column::Float64(sharpes)) = (
                &batch.columns()[0],
                &batch.columns()[objective],
                &batch.columns()[sharpe],
            ) else {
                bail!(
                    "{file}: grid_index, objective and full_sharpe are not Int64, Float64 and \
                     Float64 columns"
                );
            };
            for ((index, value), sharpe) in indices.iter().zip(objectives).zip(sharpes) {
                let index = index.and_then(|i| u64::try_from(i).ok()).with_context(|| {
                    format!("{file}: row group {i}: a grid_index that is null or negative")
                })?;
                stored.insert(index, *value, *sharpe);
            }
        }
    }
    let checkpoint = ParquetCheckpoint::start(path, fields, metadata, "grid_index", &scan)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(Output::Parquet(checkpoint))
}

/// Where a CSV `--out F.csv` records which sweep it belongs to: `F.csv.sweep.json`, the
/// metadata a Parquet output keeps in its footer ([`sweep_metadata`]), checked by `--resume`.
fn csv_record_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sweep.json");
    PathBuf::from(name)
}

/// Opens the output: a Parquet checkpoint when its name ends in `.parquet` ([`open_parquet`]),
/// else a CSV: a new file (refusing to overwrite one), or with `resume` an existing CSV whose
/// header must match, collecting the grid indices (and objectives) of its complete records
/// into `stored` and cutting the file after the last of them (a record torn by a kill or a
/// power cut is dropped, see `etrading_reports::csv_scan`) before appending.
fn open_output(
    path: &Path,
    fields: Vec<Field>,
    identity: &RunIdentity,
    metadata: Vec<(String, String)>,
    resume: bool,
    stored: &mut Stored,
) -> anyhow::Result<Output> {
    if is_parquet(path) {
        return open_parquet(path, fields, identity, metadata, resume, stored);
    }
    let exists = path.exists();
    if exists && !resume {
        bail!(
            "{} exists; pass --resume to continue that sweep, or choose another --out",
            path.display()
        );
    }
    let record = csv_record_path(path);
    if exists {
        let text = match std::fs::read_to_string(&record) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{}: its sweep record {} is missing (written by an older etrading, or deleted), so it cannot be checked to be this sweep's; choose another --out",
                path.display(),
                record.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", record.display()));
            }
        };
        let stored_metadata: Vec<(String, String)> =
            serde_json::from_str::<serde_json::Map<_, _>>(&text)
                .with_context(|| {
                    format!("{}: not a sweep record (a JSON object)", record.display())
                })?
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(v) => Ok((k, v)),
                    other => bail!("{}: {k} is {other}, expected a string", record.display()),
                })
                .collect::<anyhow::Result<_>>()?;
        identity.check_sweep(
            &record.display().to_string(),
            &stored_metadata,
            "choose another --out",
        )?;
        let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let objective = fields
            .iter()
            .position(|f| f.name == "objective")
            .context("the sweep output has an objective column")?;
        let sharpe = fields
            .iter()
            .position(|f| f.name == "full_sharpe")
            .context("the sweep output has a full_sharpe column")?;
        let label = path.display().to_string();
        let scan = scan_csv(&label, BufReader::new(file), &fields, |row| {
            // Complete records hold an integer grid index and a float or empty objective.
            let number = |i: usize| std::str::from_utf8(&row[i]).ok();
            if let Some(index) = number(0).and_then(|t| t.parse::<u64>().ok()) {
                stored.insert(
                    index,
                    number(objective).and_then(|t| t.parse().ok()),
                    number(sharpe).and_then(|t| t.parse().ok()),
                );
            }
        })
        .map_err(|e| match e {
            TableError::Shape { .. } => {
                anyhow::anyhow!("{e} (another spec, --set or window split); choose another --out")
            }
            e => anyhow::Error::new(e),
        })?;
        if let Some((line, why)) = &scan.torn {
            eprintln!(
                "note: {}:{line}: an incomplete record ({why}) and what follows it are dropped; their sets run again",
                path.display()
            );
        }
        let complete_len = scan.complete_len;
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.set_len(complete_len)
            .with_context(|| format!("truncating a partial row of {}", path.display()))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let writer = TableWriter::csv(
            path.display().to_string(),
            Box::new(BufWriter::new(file)),
            fields,
            false,
        )?;
        Ok(Output::Csv {
            writer: Box::new(writer),
            stored: scan.rows,
        })
    } else {
        let object: serde_json::Map<String, serde_json::Value> = metadata
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let tmp = record.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&object)? + "\n")
            .and_then(|()| std::fs::rename(&tmp, &record))
            .with_context(|| format!("writing {}", record.display()))?;
        let writer = TableWriter::create(path, TableFormat::Csv, fields)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Output::Csv {
            writer: Box::new(writer),
            stored: 0,
        })
    }
}
