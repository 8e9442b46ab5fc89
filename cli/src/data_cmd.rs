//! `etrading data ...`: inspect and validate market data, and generate synthetic data.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

use etrading_data::synth::{SynthOptions, generate, parse_month};
use etrading_data::{
    AlignPolicy, Dataset, GapPolicy, Interval, LoadOptions, Market, Panel, fmt_time, load_dataset,
    parse_date_ms,
};
use etrading_reports::inspect::{InspectReport, report};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Validate data files and print, per symbol, interval, span, bars, gaps, duplicates,
    /// funding coverage, and the aligned panel with its content hash. Exits non-zero on
    /// invalid data.
    Inspect(InspectArgs),
    /// Write a seeded synthetic data set in Binance's archive layout.
    Synth(SynthArgs),
    /// Download klines, mark-price klines and funding rates from Binance's public archive
    /// (verified against its checksums; resumable), then inspect what was fetched.
    Fetch(crate::fetch_cmd::FetchArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GapArg {
    /// Leave missing bars missing.
    Keep,
    /// Fill each missing bar with a flat bar at the previous close, volume 0.
    Ffill,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlignArg {
    /// Only bar times every symbol has.
    Intersection,
    /// Every bar time any symbol has (NaN before a symbol's first bar, previous close inside).
    Union,
}

/// Which data to load and how to align it; shared by every command that reads data.
#[derive(Debug, Clone, Args)]
pub struct DataSelection {
    /// Use only klines at this interval (e.g. 15m, 1h).
    #[arg(long)]
    pub interval: Option<Interval>,
    /// Aggregate klines to this coarser interval (e.g. 4h, 1d).
    #[arg(long)]
    pub resample: Option<Interval>,
    /// Only these symbols (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub symbols: Option<Vec<String>>,
    /// First bar time to keep, UTC (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Keep bars before this time, UTC (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// Missing bars inside a series: keep them missing, or forward-fill.
    #[arg(long, value_enum, default_value = "keep")]
    pub gaps: GapArg,
    /// How symbols are put on one time index.
    #[arg(long, value_enum, default_value = "intersection")]
    pub align: AlignArg,
    /// Which market's files to load (files under a `spot` folder or named `spot-...` are spot).
    #[arg(long, value_enum, default_value = "usdm")]
    pub market: MarketArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MarketArg {
    /// USDT-M perpetual futures.
    Usdm,
    /// Spot (for comparison only).
    Spot,
}

impl DataSelection {
    /// The defaults of the flags (for commands that load data without these flags).
    pub fn bench_default() -> DataSelection {
        DataSelection {
            interval: None,
            resample: None,
            symbols: None,
            from: None,
            to: None,
            gaps: GapArg::Keep,
            align: AlignArg::Intersection,
            market: MarketArg::Usdm,
        }
    }

    pub fn load_options(&self) -> anyhow::Result<LoadOptions> {
        let date = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
            v.as_deref()
                .map(|s| {
                    parse_date_ms(s).with_context(|| {
                        format!("{flag} {s:?}: expected a UTC date such as 2024-01-01 or 2024-01-01T08:00:00Z")
                    })
                })
                .transpose()
        };
        let from_ms = date("--from", &self.from)?;
        let to_ms = date("--to", &self.to)?;
        if let (Some(f), Some(t)) = (from_ms, to_ms)
            && f >= t
        {
            bail!("--from {} is not before --to {}", fmt_time(f), fmt_time(t));
        }
        Ok(LoadOptions {
            interval: self.interval,
            resample: self.resample,
            symbols: self.symbols.clone(),
            from_ms,
            to_ms,
            gap_policy: self.gap_policy(),
            market: match self.market {
                MarketArg::Usdm => Market::UsdM,
                MarketArg::Spot => Market::Spot,
            },
        })
    }

    pub fn gap_policy(&self) -> GapPolicy {
        match self.gaps {
            GapArg::Keep => GapPolicy::Keep,
            GapArg::Ffill => GapPolicy::ForwardFill,
        }
    }

    pub fn align_policy(&self) -> AlignPolicy {
        match self.align {
            AlignArg::Intersection => AlignPolicy::Intersection,
            AlignArg::Union => AlignPolicy::Union,
        }
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Files or folders (searched recursively) of klines, mark-price klines and funding rates.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub select: DataSelection,
    /// Print JSON (schema etrading.inspect/1) instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Folder to write into (created; the archive layout goes below it).
    #[arg(long)]
    pub out: PathBuf,
    /// Symbols (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "BTCUSDT,ETHUSDT,XRPUSDT,LTCUSDT"
    )]
    pub symbols: Vec<String>,
    /// Bar interval.
    #[arg(long, default_value = "15m")]
    pub interval: Interval,
    /// First month, YYYY-MM.
    #[arg(long, default_value = "2020-01")]
    pub from: String,
    /// Last month (inclusive), YYYY-MM.
    #[arg(long, default_value = "2025-12")]
    pub to: String,
    /// Seed of the random generator: the same seed gives the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write zips with .CHECKSUM files, as Binance publishes them.
    #[arg(long)]
    pub zip: bool,
    /// Omit the header row (as in older archive files).
    #[arg(long)]
    pub no_header: bool,
    /// Do not write mark-price klines.
    #[arg(long)]
    pub no_mark: bool,
    /// Do not write funding files.
    #[arg(long)]
    pub no_funding: bool,
}

pub fn run(cmd: DataCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Inspect(args) => inspect(&args, out),
        DataCommand::Synth(args) => synth(&args, out),
        DataCommand::Fetch(args) => crate::fetch_cmd::run(&args, out),
    }
}

/// Loads the data and builds one panel per interval found.
pub fn load_all(
    paths: &[PathBuf],
    select: &DataSelection,
) -> anyhow::Result<(Dataset, Vec<Panel>)> {
    let opts = select.load_options()?;
    let ds = load_dataset(paths, &opts).context("loading market data")?;
    let panels = ds
        .intervals()
        .into_iter()
        .map(|iv| ds.panel(Some(iv), select.align_policy(), select.gap_policy()))
        .collect::<Result<Vec<_>, _>>()
        .context("aligning symbols")?;
    Ok((ds, panels))
}

fn inspect(args: &InspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (ds, panels) = load_all(&args.paths, &args.select)?;
    let rep = report(&ds, &panels);
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &rep)?;
        writeln!(out)?;
    } else {
        print_tables(&rep, out)?;
    }
    Ok(())
}

fn short_time(iso: &str) -> String {
    // 2025-01-01T00:00:00Z -> 2025-01-01 00:00
    iso.get(..16)
        .map_or_else(|| iso.to_string(), |s| s.replace('T', " "))
}

/// Renders an inspect report as text tables.
pub fn print_tables(rep: &InspectReport, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "rows read: {}", rep.rows_read)?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<10} {:<10} {:<8} {:<16} {:<16} {:>8} {:>5} {:>8}  {:<28} {:>6} {:>7}",
        "symbol",
        "kind",
        "interval",
        "first bar",
        "last bar",
        "bars",
        "files",
        "gaps",
        "largest gap",
        "dups",
        "filled"
    )?;
    for s in &rep.series {
        let largest = s.gaps.largest.as_ref().map_or("-".to_string(), |g| {
            format!("{} bars from {}", g.bars, short_time(&g.first_missing))
        });
        writeln!(
            out,
            "{:<10} {:<10} {:<8} {:<16} {:<16} {:>8} {:>5} {:>8}  {:<28} {:>6} {:>7}",
            s.symbol,
            s.kind,
            s.interval,
            short_time(&s.first_bar),
            short_time(&s.last_bar),
            s.bars,
            s.files,
            s.gaps.count,
            largest,
            s.duplicates_merged,
            s.filled_bars
        )?;
    }
    if !rep.funding.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<10} {:>7} {:<16} {:<16} {:>6} {:>22} {:>9} {:>11}",
            "funding", "events", "first", "last", "every", "coverage", "zero-rate", "mean rate"
        )?;
        for f in &rep.funding {
            let cov = f.coverage.as_ref().map_or("-".to_string(), |c| {
                format!("{}/{} ({:.2}%)", c.present, c.expected, 100.0 * c.ratio)
            });
            let every = f
                .interval_hours
                .iter()
                .map(|h| format!("{h}h"))
                .collect::<Vec<_>>()
                .join("/");
            writeln!(
                out,
                "{:<10} {:>7} {:<16} {:<16} {:>6} {:>22} {:>9} {:>11}",
                f.symbol,
                f.events,
                f.first.as_deref().map(short_time).unwrap_or_default(),
                f.last.as_deref().map(short_time).unwrap_or_default(),
                every,
                cov,
                f.zero_rate_events,
                f.mean_rate.map_or("-".to_string(), |m| format!("{m:.6}"))
            )?;
        }
    }
    for p in &rep.panels {
        writeln!(out)?;
        writeln!(
            out,
            "panel {}: {} bars, {} .. {}, align {}, gaps {}",
            p.interval,
            p.bars,
            p.first_bar.as_deref().map(short_time).unwrap_or_default(),
            p.last_bar.as_deref().map(short_time).unwrap_or_default(),
            p.align,
            p.gap_policy
        )?;
        writeln!(out, "  content hash sha256:{}", p.content_hash)?;
        for s in &p.symbols {
            writeln!(
                out,
                "  {:<10} dropped {:>6}  filled {:>6}  NaN {:>6}  mark bars {:>7}  funding events {:>5}",
                s.symbol, s.dropped_bars, s.filled_bars, s.nan_bars, s.mark_bars, s.funding_events
            )?;
        }
    }
    if !rep.skipped.is_empty() {
        writeln!(out)?;
        writeln!(out, "skipped {} file(s):", rep.skipped.len())?;
        for s in &rep.skipped {
            writeln!(out, "  {}: {}", s.file, s.reason)?;
        }
    }
    if !rep.unverified.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "unverified {} zip file(s) (no .CHECKSUM beside them):",
            rep.unverified.len()
        )?;
        for f in &rep.unverified {
            writeln!(out, "  {f}")?;
        }
    }
    Ok(())
}

/// The warning a command that loads data prints when some zips had no `.CHECKSUM` (the
/// inspect report lists them instead).
pub fn unverified_warning(ds: &Dataset) -> Option<String> {
    let files = &ds.unverified;
    let shown = files.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    match files.len() {
        0 => None,
        n if n > 3 => Some(format!(
            "{n} zip files have no .CHECKSUM, so their content is unverified: {shown} and {} more",
            n - 3
        )),
        n => Some(format!(
            "{n} zip file(s) have no .CHECKSUM, so their content is unverified: {shown}"
        )),
    }
}

fn synth(args: &SynthArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let month = |flag: &str, s: &str| {
        parse_month(s).with_context(|| format!("{flag} {s:?}: expected a month as YYYY-MM"))
    };
    let opts = SynthOptions {
        symbols: args.symbols.clone(),
        interval: args.interval,
        from: month("--from", &args.from)?,
        to: month("--to", &args.to)?,
        seed: args.seed,
        zip: args.zip,
        header: !args.no_header,
        mark_price: !args.no_mark,
        funding: !args.no_funding,
    };
    if let Some(bad) = opts.symbols.iter().find(|s| {
        s.len() < 5
            || !s.ends_with("USDT")
            || !s
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    }) {
        bail!("--symbols: {bad:?} is not a USDT-M symbol such as BTCUSDT");
    }
    let started = std::time::Instant::now();
    let sum = generate(&args.out, &opts)
        .with_context(|| format!("writing synthetic data to {}", args.out.display()))?;
    writeln!(
        out,
        "wrote {} files ({} kline rows per kind, {} funding events, {}) to {} in {:.2}s",
        sum.files,
        sum.kline_rows,
        sum.funding_rows,
        crate::sysinfo::mib(sum.bytes),
        args.out.display(),
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}
