//! What the research commands (sweep, parity, bench, optimize) share: the spec, its market
//! data loaded and aligned, bracket tables, walk-forward windows, backend choice, and the
//! memory guard that sizes batches; and the flags they share with `backtest`
//! ([`SpecRunArgs`]).

use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use etrading_data::Panel;
use etrading_kernels::batch::{Backend, BatchInput, Precision, WindowPlan, lanes::SimdLevel};
use etrading_kernels::brackets::BracketTable;
use etrading_kernels::engine::{self, FundingAt, Metrics};
use etrading_kernels::reference::{self, Market};
use etrading_kernels::search::overfit;
use etrading_kernels::spec::{ParamSet, Spec, WalkForwardMode, WalkForwardSpec, parse_duration_ms};

use crate::backtest_cmd::{bracket_tables, funding_of, load_for_spec, market, read_spec_and_text};
use crate::data_cmd::DataSelection;
use crate::identity::RunIdentity;

/// The flags of every command that runs a spec on market data (`backtest` and the research
/// commands): the spec, `--set`, the data and its selection, the account. Each command
/// restates what `--set` means for it (`#[command(mut_arg("set", ...))]`).
#[derive(Debug, Args)]
pub struct SpecRunArgs {
    /// The strategy spec (TOML).
    pub spec: PathBuf,
    /// A param value, `name=value`.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Market data: files or folders.
    #[arg(long, default_value = "data/sample")]
    pub data: Vec<PathBuf>,
    #[command(flatten)]
    pub select: DataSelection,
    /// Starting wallet balance, USDT.
    #[arg(long, default_value_t = 10_000.0)]
    pub capital: f64,
    /// Leverage brackets from a JSON file in the format of Binance's leverageBracket response
    /// (the bundled tables, dated, otherwise).
    #[arg(long, help = format!(
        "Leverage brackets from a JSON file in the format of Binance's leverageBracket response (the bundled {} tables otherwise)",
        etrading_kernels::brackets::BUNDLED_AS_OF
    ))]
    pub brackets: Option<PathBuf>,
}

impl SpecRunArgs {
    /// `--capital`, refused unless a positive number.
    pub fn capital(&self) -> anyhow::Result<f64> {
        check_capital(self.capital)
    }
}

/// A starting balance, refused unless a positive number of USDT.
pub fn check_capital(capital: f64) -> anyhow::Result<f64> {
    if !(capital.is_finite() && capital > 0.0) {
        bail!("--capital must be a positive number of USDT");
    }
    Ok(capital)
}

/// Flags every research command takes.
#[derive(Debug, Args)]
#[command(mut_arg("set", |a| a.help(
    "Fix a param to one value, `name=value` (the grid then spans the others)"
)))]
pub struct ResearchArgs {
    #[command(flatten)]
    pub run: SpecRunArgs,
    /// Walk-forward windows, overriding the spec's [walk_forward]:
    /// `MODE:WINDOWS:IN_SAMPLE:OUT_OF_SAMPLE[:GAP]`, e.g. `rolling:4:180d:60d` (`none` for
    /// the full run only).
    #[arg(long, value_name = "SPLIT")]
    pub walk_forward: Option<String>,
    /// Memory budget (e.g. 512M, 2G); the default is what the machine and its cgroup say is
    /// available.
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// The SIMD kernel's vector width (default: the widest this CPU has).
    #[arg(long, value_enum)]
    pub simd_width: Option<SimdWidthArg>,
}

/// `--simd-width`: the vector unit the SIMD kernel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimdWidthArg {
    /// 2 f64 lanes on x86-64 (SSE2).
    Sse2,
    /// 2 f64 lanes on aarch64 (NEON).
    Neon,
    /// 4 f64 lanes (AVX2).
    Avx2,
    /// 8 f64 lanes (AVX-512F).
    Avx512,
}

impl SimdWidthArg {
    /// Makes the SIMD kernel of this process run at this width, or says why it cannot (a
    /// width this CPU or architecture lacks).
    pub fn apply(width: Option<SimdWidthArg>) -> anyhow::Result<()> {
        let Some(width) = width else {
            return Ok(());
        };
        let level = match width {
            SimdWidthArg::Sse2 if cfg!(target_arch = "x86_64") => SimdLevel::Base,
            SimdWidthArg::Neon if cfg!(target_arch = "aarch64") => SimdLevel::Base,
            SimdWidthArg::Avx2 | SimdWidthArg::Avx512 if !cfg!(target_arch = "x86_64") => {
                bail!(
                    "--simd-width {}: an x86-64 width; this build runs on {}",
                    width.name(),
                    std::env::consts::ARCH
                )
            }
            SimdWidthArg::Sse2 | SimdWidthArg::Neon => bail!(
                "--simd-width {}: not this architecture's ({}: use --simd-width {})",
                width.name(),
                std::env::consts::ARCH,
                SimdLevel::Base.unit()
            ),
            SimdWidthArg::Avx2 => SimdLevel::Avx2,
            SimdWidthArg::Avx512 => SimdLevel::Avx512,
        };
        SimdLevel::force(level)
            .map_err(|why| anyhow::anyhow!("--simd-width {}: {why}", width.name()))
    }

    fn name(self) -> &'static str {
        match self {
            SimdWidthArg::Sse2 => "sse2",
            SimdWidthArg::Neon => "neon",
            SimdWidthArg::Avx2 => "avx2",
            SimdWidthArg::Avx512 => "avx512",
        }
    }
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// A hardware GPU when there is one, else the SIMD kernel (the choice is printed).
    Auto,
    /// The fused SIMD lane kernel.
    Simd,
    /// The scalar reference engine, one set at a time per thread.
    Scalar,
    /// The WGSL kernel on the first GPU adapter (a software one such as lavapipe included).
    Gpu,
}

/// `--precision`: the float precision of the SIMD and GPU backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// Each backend's default: f64 on the CPU (bit-identical to the reference), f32 on the GPU.
    Auto,
    /// f32 (SIMD: twice the lanes per vector; results within the f32 tolerance).
    F32,
    /// f64.
    F64,
}

impl PrecisionArg {
    /// The precision of the GPU backend (auto: f32).
    pub fn gpu(self) -> Precision {
        match self {
            PrecisionArg::Auto | PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F64 => Precision::F64,
        }
    }

    /// The precision of the SIMD backend (auto: f64).
    pub fn cpu(self) -> Precision {
        match self {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Auto | PrecisionArg::F64 => Precision::F64,
        }
    }

    /// The SIMD backend at this precision.
    pub fn simd(self) -> Backend {
        Backend::Simd(self.cpu())
    }

    /// The scalar reference runs f64 only: `--precision f32` with it is refused.
    pub fn check_scalar(self) -> anyhow::Result<()> {
        if self == PrecisionArg::F32 {
            bail!(
                "--precision f32: the scalar reference engine computes in f64 only (use --backend simd for f32)"
            );
        }
        Ok(())
    }
}

/// A line naming the SIMD backend at `precision`, e.g. `simd (avx2 f64x4, 2 threads)`.
pub fn simd_label(precision: Precision) -> String {
    format!(
        "simd ({}, {} threads)",
        SimdLevel::detect().label(precision),
        rayon::current_num_threads()
    )
}

impl BackendArg {
    /// The backend to run and a line saying which and why (`precision` per backend: see
    /// [`PrecisionArg`]).
    pub fn pick(self, precision: PrecisionArg) -> anyhow::Result<(Backend, String)> {
        let simd = || simd_label(precision.cpu());
        let gpu = |info: &etrading_kernels::gpu::AdapterInfo| {
            format!(
                "gpu ({}, {}, {})",
                info.name,
                info.backend,
                precision.gpu().name()
            )
        };
        Ok(match self {
            BackendArg::Simd => (precision.simd(), simd()),
            BackendArg::Scalar => {
                precision.check_scalar()?;
                (
                    Backend::Scalar,
                    format!(
                        "scalar reference ({} threads)",
                        rayon::current_num_threads()
                    ),
                )
            }
            BackendArg::Gpu => {
                let info = etrading_kernels::gpu::probe()
                    .map_err(|e| anyhow::anyhow!("--backend gpu: {e}"))?;
                if precision.gpu() == Precision::F64 && !info.has_f64 {
                    bail!(
                        "--precision f64: {} has no f64 shaders (SHADER_F64)",
                        info.name
                    );
                }
                (Backend::Gpu(precision.gpu()), gpu(&info))
            }
            BackendArg::Auto => match etrading_kernels::gpu::probe() {
                Ok(info)
                    if info.is_hardware && (precision.gpu() == Precision::F32 || info.has_f64) =>
                {
                    // A GPU whose compiler breaks the f32 compensation is not used for f32
                    // (the context's self-check, `GpuContext::self_check`).
                    match etrading_kernels::gpu::GpuContext::new(precision.gpu()) {
                        Ok(_) => (
                            Backend::Gpu(precision.gpu()),
                            format!("{} [auto: hardware GPU]", gpu(&info)),
                        ),
                        Err(e) => (
                            precision.simd(),
                            format!("{} [auto: the GPU {} was refused: {e}]", simd(), info.name),
                        ),
                    }
                }
                Ok(info) => (
                    precision.simd(),
                    format!(
                        "{} [auto: the only GPU adapter is {} ({}), not hardware]",
                        simd(),
                        info.name,
                        info.device_type
                    ),
                ),
                Err(_) => (
                    precision.simd(),
                    format!("{} [auto: no GPU adapter]", simd()),
                ),
            },
        })
    }
}

/// The spec with its data, ready for batches.
#[derive(Debug)]
pub struct Research {
    pub spec: Spec,
    /// The spec's path and its text as read (the text is part of the run's identity).
    pub spec_path: PathBuf,
    pub spec_text: String,
    pub panel: Panel,
    pub funding: Vec<Vec<FundingAt>>,
    pub brackets: Vec<BracketTable>,
    pub brackets_label: String,
    pub windows: WindowPlan,
    pub capital: f64,
    /// Params fixed by `--set` (index, value).
    pub fixed: Vec<(usize, etrading_kernels::spec::ParamValue)>,
}

impl Research {
    pub fn load(args: &ResearchArgs) -> anyhow::Result<Research> {
        SimdWidthArg::apply(args.simd_width)?;
        let run = &args.run;
        let capital = run.capital()?;
        let (mut spec, spec_text) = read_spec_and_text(&run.spec)?;
        if let Some(text) = &args.walk_forward {
            spec.walk_forward = parse_walk_forward(text)?;
        }
        let fixed = fixed_params(&spec, &run.set)?;
        let panel = load_for_spec(&spec, &run.data, &run.select)?;
        let funding = funding_of(&panel);
        let (brackets, brackets_label) =
            bracket_tables(&spec.strategy.symbols, run.brackets.as_ref())?;
        let windows = match &spec.walk_forward {
            Some(wf) => WindowPlan::walk_forward(wf, &panel.open_time, panel.interval.ms())
                .with_context(|| format!("{}: [walk_forward]", spec.file))?,
            None => WindowPlan::full(panel.n_bars()),
        };
        Ok(Research {
            spec,
            spec_path: run.spec.clone(),
            spec_text,
            panel,
            funding,
            brackets,
            brackets_label,
            windows,
            capital,
            fixed,
        })
    }

    /// What this research run's results are computed from, with the backend's `precision`.
    pub fn identity(&self, precision: Precision) -> RunIdentity {
        let params = &self.spec.params.params;
        let set = self
            .fixed
            .iter()
            .map(|(i, v)| (params[*i].name.as_str(), v))
            .collect::<Vec<_>>();
        RunIdentity::new(
            self.spec_text.clone(),
            &set,
            &self.panel,
            &self.windows,
            self.capital,
            &self.brackets_label,
            precision,
        )
        .scored_by(self.spec.objective.name.name())
    }

    pub fn market(&self) -> Market<'_> {
        market(&self.panel, &self.funding)
    }

    pub fn input<'a>(&'a self, market: &'a Market<'a>) -> BatchInput<'a> {
        BatchInput {
            spec: &self.spec,
            market,
            brackets: &self.brackets,
            initial_capital: self.capital,
            windows: &self.windows,
        }
    }

    /// The Deflated Sharpe Ratio of `set` chosen as the best of `trials` trials whose
    /// per-bar Sharpe ratios have variance `variance` ([`deflated_sharpe`]).
    pub fn deflated_sharpe(
        &self,
        set: &ParamSet,
        trials: u64,
        variance: f64,
    ) -> anyhow::Result<overfit::Deflated> {
        deflated_sharpe(
            &self.spec,
            &self.market(),
            &self.brackets,
            self.capital,
            set,
            trials,
            variance,
        )
    }

    /// Bars per year of the full run ([`bars_per_year`]).
    pub fn bars_per_year(&self) -> f64 {
        bars_per_year(&self.panel)
    }

    /// A full run's annualised Sharpe ratio, per bar (for the variance across trials).
    pub fn sharpe_per_bar(&self, annualised: f64) -> f64 {
        overfit::per_observation(annualised, self.bars_per_year())
    }

    /// Bars x symbols.
    pub fn bar_symbols(&self) -> u64 {
        self.panel.n_bars() as u64 * self.panel.n_symbols() as u64
    }

    /// The grid after `--set`: grid indices of the spec's space whose fixed params match.
    pub fn grid(&self) -> anyhow::Result<Grid> {
        let total = self
            .spec
            .params
            .grid_len()
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.spec.file))?;
        Ok(Grid {
            total,
            fixed: self.fixed.clone(),
        })
    }

    pub fn data_hash(&self) -> String {
        self.panel.content_hash()
    }
}

/// The spec's grid with some params fixed.
#[derive(Debug, Clone)]
pub struct Grid {
    pub total: u64,
    pub fixed: Vec<(usize, etrading_kernels::spec::ParamValue)>,
}

impl Grid {
    /// Whether grid point `set` agrees with the fixed params.
    pub fn accepts(&self, set: &ParamSet) -> bool {
        self.fixed.iter().all(|(i, v)| &set.values[*i] == v)
    }
}

fn fixed_params(
    spec: &Spec,
    sets: &[String],
) -> anyhow::Result<Vec<(usize, etrading_kernels::spec::ParamValue)>> {
    let mut out = Vec::new();
    for text in sets {
        let (index, value) = crate::backtest_cmd::assignment(spec, text)?;
        let name = &spec.params.params[index].name;
        let values = spec.params.params[index]
            .domain
            .discrete_values()
            .with_context(|| format!("--set {text:?}: `{name}` has no grid of values"))?;
        let chosen = values
            .iter()
            .find(|v| crate::backtest_cmd::same_value(v, value))
            .cloned()
            .with_context(|| {
                format!("--set {text:?}: `{value}` is not one of the spec's values for {name}")
            })?;
        out.push((index, chosen));
    }
    Ok(out)
}

/// The Deflated Sharpe Ratio of `set` chosen as the best of `trials` trials whose per-bar
/// Sharpe ratios have variance `variance`: the set is run again by the reference engine for
/// its per-bar returns (their skewness and kurtosis enter the statistic).
pub fn deflated_sharpe(
    spec: &Spec,
    market: &Market<'_>,
    brackets: &[BracketTable],
    capital: f64,
    set: &ParamSet,
    trials: u64,
    variance: f64,
) -> anyhow::Result<overfit::Deflated> {
    let resolved = spec
        .resolve(set)
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
    let bt = reference::run(spec, &resolved, market, brackets, capital)
        .context("running the backtest for the deflated Sharpe ratio")?;
    let mut prev = capital;
    let mut returns = Vec::with_capacity(bt.result.equity.len());
    for &e in &bt.result.equity {
        if prev > 0.0 {
            returns.push(e / prev - 1.0);
        }
        prev = e;
    }
    let m = overfit::moments(&returns)
        .ok_or_else(|| anyhow::anyhow!("the run has no varying per-bar returns"))?;
    Ok(overfit::deflated_sharpe(&m, trials, variance)?)
}

/// Bars per year of a full run on `panel` (its bar count over its time span), as the engine
/// annualises the Sharpe ratio (`engine::MetricsAcc::finish`).
pub fn bars_per_year(panel: &Panel) -> f64 {
    let span = engine::span_ms(&panel.open_time, panel.interval.ms());
    panel.n_bars() as f64 / (span as f64 / engine::YEAR_MS)
}

/// `MODE:WINDOWS:IS:OOS[:GAP]` or `none`.
pub fn parse_walk_forward(text: &str) -> anyhow::Result<Option<WalkForwardSpec>> {
    if text == "none" {
        return Ok(None);
    }
    let bad = || {
        anyhow::anyhow!(
            "--walk-forward {text:?}: expected MODE:WINDOWS:IN_SAMPLE:OUT_OF_SAMPLE[:GAP] such as rolling:4:180d:60d, or none"
        )
    };
    let parts: Vec<&str> = text.split(':').collect();
    if !(4..=5).contains(&parts.len()) {
        return Err(bad());
    }
    let mode = match parts[0] {
        "rolling" => WalkForwardMode::Rolling,
        "anchored" => WalkForwardMode::Anchored,
        _ => return Err(bad()),
    };
    let windows: u32 = parts[1]
        .parse()
        .ok()
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(bad)?;
    let dur = |s: &str| parse_duration_ms(s).ok_or_else(bad);
    let spec = WalkForwardSpec {
        mode,
        windows,
        in_sample_ms: dur(parts[2])?,
        out_of_sample_ms: dur(parts[3])?,
        gap_ms: parts.get(4).map_or(Ok(0), |g| dur(g))?,
    };
    if spec.in_sample_ms == 0 || spec.out_of_sample_ms == 0 {
        return Err(bad());
    }
    Ok(Some(spec))
}

/// Parses `512M`, `2G`, `1500000000` into bytes.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let (digits, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = digits
        .parse()
        .ok()
        .filter(|n: &f64| *n > 0.0)
        .with_context(|| format!("--max-memory {text:?}: expected a size such as 512M or 2G"))?;
    Ok((n * mult as f64) as u64)
}

/// How many sets a batch may hold within the memory budget.
#[derive(Debug, Clone, Copy)]
pub struct MemoryPlan {
    pub budget_bytes: u64,
    pub budget_source: &'static str,
    pub inputs_bytes: u64,
    pub per_set_bytes: u64,
    pub scratch_bytes: u64,
    pub batch_sets: usize,
}

impl MemoryPlan {
    /// Sizes batches for `research`: the budget (flag, else available memory) minus what is
    /// already resident and the per-thread scratch of the kernel, divided by what one set
    /// costs in flight. Fails with the numbers when even the inputs do not fit.
    pub fn new(research: &Research, max_memory: Option<&str>) -> anyhow::Result<MemoryPlan> {
        let (budget_bytes, budget_source) = match max_memory {
            Some(text) => (parse_size(text)?, "--max-memory"),
            None => match crate::sysinfo::available_memory_bytes() {
                Some(b) => (b, "available memory"),
                None => (4 << 30, "default (available memory unknown)"),
            },
        };
        let bars = research.panel.n_bars() as u64;
        let symbols = research.panel.n_symbols() as u64;
        let resident = crate::sysinfo::current_rss_bytes().unwrap_or(0);
        let inputs_bytes = resident.max(bars * symbols * 8 * 10);
        let threads = rayon::current_num_threads() as u64;
        let slots = research.spec.output_slot_count() as u64;
        // Per task: indicator columns, and signal codes for up to 256 distinct rule-param
        // values; per thread.
        let scratch_bytes = threads * (bars * symbols * (8 * slots + 256) + (16 << 20));
        let nw = research.windows.len() as u64;
        let metrics = size_of::<Metrics>() as u64;
        // The set, its plan and keys, the result row twice (sorted and in place), and the
        // output record.
        let per_set_bytes =
            64 * research.spec.params.params.len() as u64 + 256 + 2 * nw * metrics + 256;
        let needed = inputs_bytes + scratch_bytes + 64 * per_set_bytes;
        if budget_bytes < needed {
            bail!(
                "not enough memory: the data and the kernel's scratch need {}, the budget ({budget_source}) is {}; use fewer symbols or bars, or raise --max-memory",
                crate::sysinfo::mib(needed),
                crate::sysinfo::mib(budget_bytes)
            );
        }
        let batch_sets = ((budget_bytes - inputs_bytes - scratch_bytes) / per_set_bytes)
            .clamp(64, 1 << 18) as usize;
        Ok(MemoryPlan {
            budget_bytes,
            budget_source,
            inputs_bytes,
            per_set_bytes,
            scratch_bytes,
            batch_sets,
        })
    }
}

/// The flag Ctrl-C and SIGTERM set: a research command polls it between batches and stops
/// after the batch in flight. The handler is installed once per process; each call clears
/// the flag for the command that starts.
pub fn stop_requests() -> &'static AtomicBool {
    static FLAG: AtomicBool = AtomicBool::new(false);
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // Another handler already installed (an embedding program) keeps its own behaviour.
        let _ = ctrlc::set_handler(|| FLAG.store(true, Ordering::SeqCst));
    });
    FLAG.store(false, Ordering::SeqCst);
    &FLAG
}
