//! `etrading optimize SPEC --study NAME`: batched search over a spec's parameter space (grid,
//! random or TPE), each batch evaluated in one kernel dispatch, every trial written to an
//! Optuna-compatible study (docs/SEMANTICS.md §3 for the objectives and filters).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use etrading_db::study::{
    self, Direction, JsonValue, NewTrial, OpenMode, StudyFile, StudyOptions, StudyWriter,
    TrialOutcome, TrialState, internal_value, space_distributions,
};
use etrading_kernels::batch::{self, Backend, BatchError, BatchInput, WindowPlan};
use etrading_kernels::engine::Metrics;
use etrading_kernels::search::{
    Discard, Observation, Sampler, SamplerKind, TpeConfig, metric_attributes, overfit, score_trial,
};
use etrading_kernels::spec::{ObjectiveName, ParamSet, ParamValue, Spec};

use crate::backtest_cmd::{bracket_tables, funding_of, load_for_spec, market, read_spec_and_text};
use crate::data_cmd::DataSelection;
use crate::identity::RunIdentity;
use crate::research::check_capital;

#[derive(Debug, Args)]
pub struct OptimizeArgs {
    /// The strategy spec (TOML).
    pub spec: PathBuf,
    /// The study's name (created, or continued with --resume).
    #[arg(long)]
    pub study: String,
    /// The study file: `sqlite:///PATH` (relative) or `sqlite:////ABS/PATH`.
    #[arg(long, default_value = "sqlite:///db/optimization_study.db")]
    pub storage: String,
    /// Finished trials (complete or pruned) the study should hold at the end; a resumed study
    /// runs only the missing ones. Default: the whole grid for `--sampler grid`, else 100.
    #[arg(long)]
    pub trials: Option<u64>,
    #[arg(long, value_enum, default_value = "tpe")]
    pub sampler: SamplerArg,
    /// The objective (default: the spec's `[objective] name`).
    #[arg(long, value_enum)]
    pub objective: Option<ObjectiveArg>,
    /// Trials asked, evaluated in one kernel dispatch and told together.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Seed of the sampler (seeded runs are reproducible).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Kernel backend: auto takes the SIMD kernel and falls back to the scalar reference
    /// engine when the SIMD kernel does not support the spec.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Float precision of the SIMD kernel: auto and f64 are bit-identical to the reference,
    /// f32 runs twice the lanes per vector within the f32 tolerance (docs/SEMANTICS.md §4.3).
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: crate::research::PrecisionArg,
    /// The SIMD kernel's vector width (default: the widest this CPU has).
    #[arg(long, value_enum)]
    pub simd_width: Option<crate::research::SimdWidthArg>,
    /// Continue an existing study: its RUNNING trials (left by a killed run) become FAIL, its
    /// finished trials count towards --trials and are not sampled again.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Worker threads of the kernels (default: every core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Refuse to start when a batch's buffers would exceed this many MiB.
    #[arg(long, default_value_t = 4096)]
    pub max_memory_mib: u64,
    /// Market data: files or folders.
    #[arg(long, default_value = "data/sample")]
    pub data: Vec<PathBuf>,
    #[command(flatten)]
    pub select: DataSelection,
    /// Starting wallet balance, USDT.
    #[arg(long, default_value_t = 10_000.0)]
    pub capital: f64,
    /// Leverage brackets from a JSON file in the format of Binance's leverageBracket response.
    #[arg(long)]
    pub brackets: Option<PathBuf>,
    /// Print a JSON summary (schema etrading.optimize/1).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SamplerArg {
    Tpe,
    Random,
    Grid,
}

impl SamplerArg {
    fn kind(self) -> SamplerKind {
        match self {
            SamplerArg::Tpe => SamplerKind::Tpe,
            SamplerArg::Random => SamplerKind::Random,
            SamplerArg::Grid => SamplerKind::Grid,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ObjectiveArg {
    #[value(name = "return_over_drawdown")]
    ReturnOverDrawdown,
    #[value(name = "risk_adjusted")]
    RiskAdjusted,
    Robust,
}

impl ObjectiveArg {
    fn name(self) -> ObjectiveName {
        match self {
            ObjectiveArg::ReturnOverDrawdown => ObjectiveName::ReturnOverDrawdown,
            ObjectiveArg::RiskAdjusted => ObjectiveName::RiskAdjusted,
            ObjectiveArg::Robust => ObjectiveName::Robust,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Auto,
    Simd,
    Scalar,
}

/// The outcome of one evaluated trial: state, value and user attributes (metrics of the full
/// run and of every window, the objective per window, provenance, and the reason when the
/// trial is discarded).
pub fn trial_outcome(
    spec: &Spec,
    plan: &WindowPlan,
    metrics: &[Metrics],
    set: &ParamSet,
    identity: &RunIdentity,
) -> (TrialState, Option<f64>, Vec<(String, JsonValue)>) {
    // The leverage the set trades at after the spec's caps: what objectives and the drawdown
    // cap read (stored as `leverage`).
    let leverage = spec.leverage_used(set);
    let score = score_trial(&spec.objective, plan, metrics, leverage);
    let mut attrs: Vec<(String, JsonValue)> = metric_attributes(plan, metrics, &score)
        .into_iter()
        .map(|(k, v)| {
            // Counts are stored as integers, as a Python objective would store them.
            let count = k.ends_with("n_trades") || k.ends_with("liquidations");
            let json = if count && v.is_finite() {
                JsonValue::Int(v as i64)
            } else {
                JsonValue::finite_or_null(v)
            };
            (k, json)
        })
        .collect();
    attrs.push((
        "leverage".to_string(),
        if leverage.fract() == 0.0 {
            JsonValue::Int(leverage as i64)
        } else {
            JsonValue::Float(leverage)
        },
    ));
    attrs.extend(identity.trial_attrs());
    match score.value {
        Ok(value) => (TrialState::Complete, Some(value), attrs),
        Err(discard @ Discard::NotANumber { .. }) => {
            attrs.push((
                "fail_reason".to_string(),
                JsonValue::Str(discard.to_string()),
            ));
            (TrialState::Fail, None, attrs)
        }
        Err(discard) => {
            attrs.push((
                "prune_reason".to_string(),
                JsonValue::Str(discard.to_string()),
            ));
            attrs.push((
                "prune_filter".to_string(),
                JsonValue::Str(discard.filter().to_string()),
            ));
            (TrialState::Pruned, None, attrs)
        }
    }
}

pub fn run(args: &OptimizeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    check_capital(args.capital)?;
    crate::research::SimdWidthArg::apply(args.simd_width)?;
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(jobs) = args.jobs {
        if jobs == 0 {
            bail!("--jobs must be at least 1");
        }
        pool = pool.num_threads(jobs);
    }
    let pool = pool.build().context("starting the worker threads")?;
    // The report is written into a buffer inside the pool (the output stream stays on this
    // thread), then copied out.
    let mut report: Vec<u8> = Vec::new();
    pool.install(|| optimize(args, &mut report))?;
    out.write_all(&report)?;
    Ok(())
}

fn optimize(args: &OptimizeArgs, out: &mut Vec<u8>) -> anyhow::Result<()> {
    let path = study::parse_storage_url(&args.storage)?;
    let (mut spec, spec_text) = read_spec_and_text(&args.spec)?;
    if let Some(objective) = args.objective {
        spec.objective.name = objective.name();
    }
    let panel = load_for_spec(&spec, &args.data, &args.select)?;
    let funding = funding_of(&panel);
    let (tables, brackets_label) = bracket_tables(&panel.symbols, args.brackets.as_ref())?;
    let market = market(&panel, &funding);
    let plan = match &spec.walk_forward {
        Some(wf) => WindowPlan::walk_forward(wf, &panel.open_time, panel.interval.ms())
            .with_context(|| format!("{}: [walk_forward]", spec.file))?,
        None => WindowPlan::full(panel.n_bars()),
    };
    let input = BatchInput {
        spec: &spec,
        market: &market,
        brackets: &tables,
        initial_capital: args.capital,
        windows: &plan,
    };
    let backend = match args.backend {
        BackendArg::Scalar => {
            args.precision.check_scalar()?;
            Backend::Scalar
        }
        BackendArg::Auto | BackendArg::Simd => args.precision.simd(),
    };
    // Chosen before the study records it: every trial is computed by this backend.
    let backend = match (backend, args.backend) {
        (Backend::Simd(precision), BackendArg::Auto) => {
            match batch::simd::check_input(&input, precision) {
                Ok(()) => backend,
                Err(BatchError::Unsupported(why)) => {
                    eprintln!(
                        "note: the SIMD kernel cannot run this spec ({why}); using the scalar reference engine"
                    );
                    Backend::Scalar
                }
                Err(e) => return Err(anyhow::Error::new(e).context("checking the SIMD kernel")),
            }
        }
        _ => backend,
    };
    let identity = RunIdentity::new(
        spec_text,
        &[],
        &panel,
        &plan,
        args.capital,
        &brackets_label,
        backend.precision(),
    )
    .scored_by(spec.objective.name.name());
    // Memory guard: the batch's result table, its param sets and outcomes, and the writer's
    // queue of at most 64 batches of outcomes.
    let attrs_per_trial = 16 + 5 * plan.len();
    let per_trial = plan.len() * size_of::<Metrics>()
        + spec.params.params.len() * 48
        + 65 * attrs_per_trial * 64;
    let need_mib = (args.batch as u64 * per_trial as u64).div_ceil(1 << 20);
    if need_mib > args.max_memory_mib {
        bail!(
            "--batch {} needs about {need_mib} MiB of buffers ({} windows), above --max-memory-mib {}; lower --batch",
            args.batch,
            plan.len(),
            args.max_memory_mib
        );
    }

    let distributions = space_distributions(&spec.params);
    let kind = args.sampler.kind();
    // The objective is an identity fact: a resume with another --objective is refused.
    let mut study_attrs = vec![
        (
            "strategy_id".to_string(),
            JsonValue::Str(spec.strategy.id.clone()),
        ),
        (
            "spec_file".to_string(),
            JsonValue::Str(args.spec.display().to_string()),
        ),
        ("sampler".to_string(), JsonValue::Str(kind.name().into())),
        ("seed".to_string(), JsonValue::Int(args.seed as i64)),
    ];
    study_attrs.extend(identity.study_attrs());
    let (writer, report) = StudyWriter::open(
        &path,
        StudyOptions {
            name: args.study.clone(),
            direction: Direction::Maximize,
            mode: if args.resume {
                OpenMode::Resume
            } else {
                OpenMode::Create
            },
            params: distributions.clone(),
            user_attrs: study_attrs,
            identity: identity.study_keys(),
        },
    )?;
    let mut history = if report.created {
        Vec::new()
    } else {
        load_history(&path, &args.study, &spec, &distributions)?
    };
    let finished_before = history.len() as u64;
    let mut sampler = Sampler::new(
        kind,
        &spec.params,
        args.seed,
        TpeConfig::default(),
        &history,
    )
    .with_context(|| format!("{}: [params]", spec.file))?;
    let target = match (args.trials, sampler.grid_len()) {
        (Some(n), _) => n,
        (None, Some(len)) if kind == SamplerKind::Grid => len,
        (None, _) => 100,
    };
    // Ctrl-C (or SIGTERM) stops after the batch in flight: its trials are stored and the
    // study is closed cleanly; --resume continues.
    let interrupted = crate::research::stop_requests();
    let pb = if args.quiet || args.json {
        ProgressBar::hidden()
    } else {
        let pb = ProgressBar::new(target);
        pb.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} trials  {per_sec}  eta {eta}  {msg}",
            )
            .expect("progress template"),
        );
        pb.set_position(finished_before.min(target));
        pb
    };
    // The best value for the progress line (the study maximises).
    let mut best_so_far: Option<f64> = history
        .iter()
        .filter_map(|o| o.value)
        .filter(|v| !v.is_nan())
        .reduce(f64::max);
    let started = Instant::now();
    // FAIL trials do not count towards --trials: a spec whose every trial fails would run for
    // ever, so a long enough run of them ends the search with an error.
    let mut failures = FailureStreak::new(args.batch);
    let fail_all = std::env::var_os(FAIL_ALL_TEST_VAR).is_some_and(|v| v == "1");
    let mut ran = [0u64; 3]; // complete, pruned, failed
    let mut done = finished_before;
    let mut metrics: Vec<Metrics> = Vec::new();
    while done < target && !interrupted.load(Ordering::SeqCst) {
        let n = (target - done).min(args.batch as u64) as usize;
        let sets = sampler.ask(&history, n);
        if sets.is_empty() {
            break;
        }
        let new_trials = sets
            .iter()
            .map(|set| {
                let params = distributions
                    .iter()
                    .zip(&set.values)
                    .map(|((name, d), v)| {
                        internal_value(d, v).map_err(|e| anyhow::anyhow!("param {name}: {e}"))
                    })
                    .collect::<anyhow::Result<Vec<f64>>>()?;
                Ok(NewTrial {
                    params,
                    system_attrs: Vec::new(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let handles = writer.start_trials(new_trials)?;
        metrics.clear();
        metrics.resize(sets.len() * plan.len(), Metrics::default());
        let report = batch::run(&input, &sets, backend, &mut metrics, &|_| {})
            .context("evaluating a batch")?;
        if let Some(note) = report.fallback_note() {
            eprintln!("warning: {note}");
        }
        let mut outcomes = Vec::with_capacity(sets.len());
        for (i, (set, handle)) in sets.into_iter().zip(&handles).enumerate() {
            let rows = &metrics[i * plan.len()..(i + 1) * plan.len()];
            let (mut state, mut value, mut user_attrs) =
                trial_outcome(&spec, &plan, rows, &set, &identity);
            if fail_all {
                state = TrialState::Fail;
                value = None;
                user_attrs.push((
                    "fail_reason".to_string(),
                    JsonValue::Str(format!("{FAIL_ALL_TEST_VAR}=1")),
                ));
            }
            failures.record(state, &user_attrs);
            match state {
                TrialState::Complete => ran[0] += 1,
                TrialState::Pruned => ran[1] += 1,
                _ => ran[2] += 1,
            }
            if state != TrialState::Fail {
                done += 1;
            }
            if let Some(v) = value.filter(|v| !v.is_nan()) {
                best_so_far = Some(best_so_far.map_or(v, |b| b.max(v)));
            }
            history.push(Observation { set, value });
            outcomes.push(TrialOutcome {
                trial_id: handle.trial_id,
                state,
                value,
                user_attrs,
            });
        }
        writer.finish_trials(outcomes)?;
        pb.set_position(done.min(target));
        if let Some(why) = failures.exhausted() {
            pb.finish_and_clear();
            writer.close()?;
            bail!(
                "study {:?}: stopped after {why}; FAIL trials do not count towards --trials, so the search would never end (they are stored; fix the spec or data, then --resume)",
                args.study
            );
        }
        if let Some(best) = best_so_far {
            pb.set_message(format!("best {best:.6}"));
        }
    }
    pb.finish_and_clear();
    let stats = writer.close()?;
    let stopped_early = interrupted.load(Ordering::SeqCst) && done < target;
    let elapsed = started.elapsed().as_secs_f64();
    let file = StudyFile::open(&path)?;
    let study = file.load(&args.study)?;
    let best = study.best_trial();
    let trials_run = ran.iter().sum::<u64>();
    // The best's deflated Sharpe ratio, as the best of every trial the study evaluated
    // (complete and pruned; their stored Sharpe ratios give the variance).
    let evaluated: Vec<_> = study
        .trials
        .iter()
        .filter(|t| matches!(t.state, TrialState::Complete | TrialState::Pruned))
        .collect();
    let sharpes: Vec<f64> = evaluated
        .iter()
        .filter_map(|t| match t.user_attr("sharpe") {
            Some(JsonValue::Float(x)) if x.is_finite() => Some(*x),
            Some(JsonValue::Int(x)) => Some(*x as f64),
            _ => None,
        })
        .collect();
    let per_year = crate::research::bars_per_year(&panel);
    let variance = overfit::variance(
        sharpes
            .iter()
            .map(|&s| overfit::per_observation(s, per_year)),
    );
    // The best trial's params as a set of the spec's space (each param by name).
    let best_set = best.and_then(|t| {
        let values = spec
            .params
            .params
            .iter()
            .map(|p| {
                t.params
                    .iter()
                    .find(|q| q.name == p.name)
                    .map(|q| q.value.clone())
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ParamSet { values })
    });
    let deflated = match (&best_set, variance) {
        (Some(set), Some(variance)) => crate::research::deflated_sharpe(
            &spec,
            &market,
            &tables,
            args.capital,
            set,
            evaluated.len() as u64,
            variance,
        )
        .map_err(|e| eprintln!("note: no deflated Sharpe ratio for the best trial: {e:#}"))
        .ok(),
        _ => None,
    };
    let bars_per_year_sqrt = per_year.sqrt();
    // Stored with the study (user attribute `deflated_sharpe`), for `etrading study best`.
    if let (Some(d), Some(t)) = (deflated, best) {
        let value = deflated_sharpe_attr(("trial", t.number), &d, bars_per_year_sqrt);
        study::set_study_user_attr(&path, &args.study, DEFLATED_SHARPE_ATTR, &value)?;
    }
    if args.json {
        let doc = json!({
            "schema": "etrading.optimize/1",
            "study": args.study,
            "storage": path.display().to_string(),
            "created": report.created,
            "failed_running_on_resume": report.failed_running,
            "sampler": kind.name(),
            "seed": args.seed,
            "objective": spec.objective.name.name(),
            "backend": backend.name(),
            "precision": backend.precision().name(),
            "windows": plan.len(),
            "trials_run": trials_run,
            "interrupted": stopped_early,
            "complete": ran[0],
            "pruned": ran[1],
            "failed": ran[2],
            "study_trials": study.trials.len(),
            "seconds": elapsed,
            "transactions": stats.transactions,
            "outcomes_dropped": stats.outcomes_dropped,
            "best": best.map(|t| json!({
                "number": t.number,
                "value": t.value(),
                "params": t.params.iter().map(|p| (p.name.clone(), param_json(&p.value))).collect::<serde_json::Map<_, _>>(),
                "dsr": deflated.map(|d| d.dsr),
            })),
            "deflated_sharpe": {
                "trials": evaluated.len(),
                "variance_trials": sharpes.len(),
                "expected_max_sharpe": deflated.map(|d| d.expected_max * bars_per_year_sqrt),
            },
        });
        serde_json::to_writer(&mut *out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "study    {} in {} ({})",
        args.study,
        path.display(),
        if report.created {
            "created".to_string()
        } else {
            format!(
                "resumed with {finished_before} finished trials, {} RUNNING marked FAIL",
                report.failed_running
            )
        }
    )?;
    writeln!(
        out,
        "search   sampler {} (seed {}), objective {}, backend {} {}, batch {}, {} window(s)",
        kind.name(),
        args.seed,
        spec.objective.name.name(),
        backend.name(),
        backend.precision().name(),
        args.batch,
        plan.len()
    )?;
    writeln!(
        out,
        "ran      {trials_run} trials in {elapsed:.2} s: {} complete, {} pruned, {} failed; the study holds {}",
        ran[0],
        ran[1],
        ran[2],
        study.trials.len()
    )?;
    if stats.outcomes_dropped > 0 {
        writeln!(
            out,
            "dropped  {} outcomes: their trials were no longer RUNNING (another process failed them)",
            stats.outcomes_dropped
        )?;
    }
    if stopped_early {
        writeln!(
            out,
            "stopped  interrupted after the batch in flight; continue with --resume"
        )?;
    }
    match best {
        Some(t) => writeln!(
            out,
            "best     trial {} value {:.6}: {}",
            t.number,
            t.value().unwrap_or(f64::NAN),
            t.params
                .iter()
                .map(|p| format!("{}={}", p.name, p.value))
                .collect::<Vec<_>>()
                .join(" ")
        )?,
        None => writeln!(out, "best     none (no complete trial)")?,
    }
    if let Some(d) = deflated {
        writeln!(
            out,
            "dsr      {:.3}: deflated Sharpe ratio (Bailey & Lopez de Prado 2014), the probability \
             that the best's Sharpe ratio {:.2} beats the best of {} trials of pure luck \
             (expected best {:.2}, from {} trials' Sharpe ratios); below 0.95 the best may be \
             selection bias",
            d.dsr,
            d.sharpe * bars_per_year_sqrt,
            d.trials,
            d.expected_max * bars_per_year_sqrt,
            sharpes.len()
        )?;
    }
    Ok(())
}

/// The study user attribute holding the best trial's deflated Sharpe ratio after a run:
/// `{"trial", "dsr", "sharpe", "trials", "expected_max_sharpe"}` (Sharpe ratios annualised).
pub const DEFLATED_SHARPE_ATTR: &str = "deflated_sharpe";

/// The value of [`DEFLATED_SHARPE_ATTR`] for `d`, the chosen run named by `id` (`trial`
/// number or `grid_index`), Sharpe ratios annualised by `bars_per_year_sqrt`. Keys in sorted
/// order, as the JSON writers here and Python's json.dumps with sort_keys give them.
pub fn deflated_sharpe_attr(
    id: (&str, i64),
    d: &overfit::Deflated,
    bars_per_year_sqrt: f64,
) -> JsonValue {
    let mut fields = vec![
        (id.0.to_string(), JsonValue::Int(id.1)),
        ("dsr".to_string(), JsonValue::finite_or_null(d.dsr)),
        (
            "expected_max_sharpe".to_string(),
            JsonValue::finite_or_null(d.expected_max * bars_per_year_sqrt),
        ),
        (
            "sharpe".to_string(),
            JsonValue::finite_or_null(d.sharpe * bars_per_year_sqrt),
        ),
        ("trials".to_string(), JsonValue::Int(d.trials as i64)),
    ];
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    JsonValue::Object(fields)
}

/// `ETRADING_OPTIMIZE_TEST_FAIL_ALL=1` turns every trial into a FAIL (for the test of
/// [`FailureStreak`]: no real spec fails every trial on demand). Unset in normal use.
const FAIL_ALL_TEST_VAR: &str = "ETRADING_OPTIMIZE_TEST_FAIL_ALL";

/// The run of FAIL trials in a row, and when it is too long: at least 100 trials, and at least
/// two batches, so that one unlucky batch never ends a search.
#[derive(Debug)]
struct FailureStreak {
    limit: u64,
    run: u64,
    last_reason: Option<String>,
}

impl FailureStreak {
    fn new(batch: usize) -> FailureStreak {
        FailureStreak {
            limit: (2 * batch as u64).max(100),
            run: 0,
            last_reason: None,
        }
    }

    fn record(&mut self, state: TrialState, attrs: &[(String, JsonValue)]) {
        if state == TrialState::Fail {
            self.run += 1;
            self.last_reason = attrs.iter().find_map(|(k, v)| match (k.as_str(), v) {
                ("fail_reason", JsonValue::Str(why)) => Some(why.clone()),
                _ => None,
            });
        } else {
            self.run = 0;
        }
    }

    /// What happened, once the run of failures reached the limit.
    fn exhausted(&self) -> Option<String> {
        (self.run >= self.limit).then(|| {
            format!(
                "{} FAIL trials in a row (the last: {})",
                self.run,
                self.last_reason.as_deref().unwrap_or("no reason recorded")
            )
        })
    }
}

fn param_json(value: &ParamValue) -> serde_json::Value {
    study::param_json(value).to_serde()
}

/// The finished trials of a study as sampler history (COMPLETE with their value, PRUNED as
/// discarded), after checking that the study's params have the spec's distributions.
fn load_history(
    path: &Path,
    name: &str,
    spec: &Spec,
    distributions: &[(String, etrading_kernels::spec::Distribution)],
) -> anyhow::Result<Vec<Observation>> {
    let study = StudyFile::open(path)?.load(name)?;
    let mut history = Vec::new();
    for trial in &study.trials {
        let value = match trial.state {
            TrialState::Complete => trial.value(),
            TrialState::Pruned => None,
            _ => continue,
        };
        let mut values = Vec::with_capacity(distributions.len());
        for (param, distribution) in distributions {
            let Some(p) = trial.param(param) else {
                break;
            };
            if &p.distribution != distribution {
                bail!(
                    "{}: study {name:?} trial {} has param `{param}` with distribution {:?}; {} gives {:?} (a study continues only with the same parameter space)",
                    path.display(),
                    trial.number,
                    p.distribution,
                    spec.file,
                    distribution
                );
            }
            values.push(p.value.clone());
        }
        if values.len() == distributions.len() {
            history.push(Observation {
                set: ParamSet { values },
                value,
            });
        }
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(why: &str) -> Vec<(String, JsonValue)> {
        vec![("fail_reason".to_string(), JsonValue::Str(why.to_string()))]
    }

    #[test]
    fn a_run_of_failures_ends_the_search_a_success_resets_it() {
        let mut streak = FailureStreak::new(8);
        assert_eq!(streak.limit, 100, "at least 100 trials");
        assert_eq!(FailureStreak::new(64).limit, 128, "at least two batches");
        for _ in 0..99 {
            streak.record(TrialState::Fail, &fail("objective is NaN in window full"));
        }
        assert_eq!(streak.exhausted(), None);
        streak.record(TrialState::Pruned, &[]);
        for _ in 0..99 {
            streak.record(TrialState::Fail, &fail("x"));
        }
        assert_eq!(streak.exhausted(), None, "a pruned trial reset the run");
        streak.record(TrialState::Fail, &fail("objective is NaN in window oos_1"));
        assert_eq!(
            streak.exhausted().as_deref(),
            Some("100 FAIL trials in a row (the last: objective is NaN in window oos_1)")
        );
    }
}
