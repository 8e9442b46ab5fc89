//! `etrading data fetch`: download klines, mark-price klines and funding rates from Binance's
//! public archive (or a mirror) into the archive layout, with a progress bar on stderr, a
//! summary, and the `etrading data inspect` report of what was fetched.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::NaiveDate;
use clap::{Args, ValueEnum};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use etrading_data::Interval;
use etrading_data::fetch::{
    ArchiveKind, BASE_URL_ENV, DEFAULT_BASE_URL, FetchError, FetchOptions, FetchSummary, Job,
    Month, Outcome, Progress, download, plan,
};
use etrading_reports::inspect::report;

use crate::data_cmd::{AlignArg, DataSelection, GapArg, MarketArg, load_all, print_tables};

/// The archive's data sets, as its folders name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Last-price klines.
    #[value(name = "klines")]
    Klines,
    /// Mark-price klines.
    #[value(name = "markPriceKlines")]
    MarkPriceKlines,
    /// Funding rates (monthly files only: the current month's arrive when it ends).
    #[value(name = "fundingRate")]
    FundingRate,
}

impl KindArg {
    fn kind(self) -> ArchiveKind {
        match self {
            KindArg::Klines => ArchiveKind::Klines,
            KindArg::MarkPriceKlines => ArchiveKind::MarkPriceKlines,
            KindArg::FundingRate => ArchiveKind::FundingRate,
        }
    }
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Symbols (comma-separated), e.g. BTCUSDT,ETHUSDT.
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// Kline intervals (comma-separated), e.g. 15m,1h; needed for klines and markPriceKlines.
    #[arg(long, value_delimiter = ',')]
    pub interval: Vec<Interval>,
    /// First month, YYYY-MM.
    #[arg(long, default_value = "2020-01")]
    pub from: Month,
    /// Last month (inclusive), YYYY-MM; the current month, the default, is fetched as daily
    /// files up to yesterday (UTC).
    #[arg(long)]
    pub to: Option<Month>,
    /// Data sets (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "klines,markPriceKlines,fundingRate"
    )]
    pub kinds: Vec<KindArg>,
    /// Folder to download into; files go below DIR/futures/um/ as in the archive.
    #[arg(long, default_value = "data")]
    pub dir: PathBuf,
    /// Root of the archive or of a mirror [default: $ETRADING_BINANCE_BASE_URL, else
    /// https://data.binance.vision].
    #[arg(long)]
    pub base_url: Option<String>,
    /// Files downloaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// Further attempts after a transient failure (connection, timeout, HTTP 5xx or 429,
    /// checksum mismatch), with exponential backoff.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// The longest wait, in seconds, to connect, for the response, and for each read.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
}

impl FetchArgs {
    /// The validated options, as of `today` (UTC), with `env_base_url` the value of
    /// `$ETRADING_BINANCE_BASE_URL`.
    pub fn options(
        &self,
        today: NaiveDate,
        env_base_url: Option<String>,
    ) -> anyhow::Result<FetchOptions> {
        if let Some(bad) = self.symbols.iter().find(|s| !is_symbol(s)) {
            bail!("--symbols: {bad:?} is not a USDT-M futures symbol such as BTCUSDT");
        }
        let mut kinds: Vec<ArchiveKind> = self.kinds.iter().map(|k| k.kind()).collect();
        kinds.dedup();
        if self.interval.is_empty() && kinds.iter().any(|k| k.has_interval()) {
            bail!(
                "--interval is needed for klines and markPriceKlines (e.g. --interval 15m,1h), \
                 or fetch only --kinds fundingRate"
            );
        }
        let current = Month::of(today);
        let to = self.to.unwrap_or(current);
        if self.from > to {
            bail!("--from {} is after --to {to}", self.from);
        }
        if self.from > current {
            bail!(
                "--from {} is after the current month {current}: the archive has nothing yet",
                self.from
            );
        }
        let base_url = self
            .base_url
            .clone()
            .or(env_base_url)
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            bail!("base URL {base_url:?}: expected an http:// or https:// URL");
        }
        Ok(FetchOptions {
            base_url: base_url.trim_end_matches('/').to_string(),
            dir: self.dir.clone(),
            symbols: self.symbols.clone(),
            intervals: self.interval.clone(),
            kinds,
            from: self.from,
            to,
            jobs: self.jobs as usize,
            retries: self.retries,
            timeout: Duration::from_secs(self.timeout_secs),
            backoff: Duration::from_millis(500),
        })
    }
}

fn is_symbol(s: &str) -> bool {
    s.len() > 4
        && (s.ends_with("USDT") || s.ends_with("USDC"))
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The progress bar: files done out of planned, bytes and rate, ETA by files.
struct Bar {
    bar: ProgressBar,
    bytes: AtomicU64,
    started: Instant,
}

impl Bar {
    fn new(files: usize) -> Bar {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(files as u64), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} files  {msg}  ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Bar {
            bar,
            bytes: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl Progress for Bar {
    fn bytes(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} at {}/s",
            HumanBytes(total),
            HumanBytes((total as f64 / secs) as u64)
        ));
    }

    fn retrying(&self, _job: &Job, attempt: u32, error: &FetchError, wait: Duration) {
        self.bar.suspend(|| {
            eprintln!(
                "retrying in {:.1}s (attempt {attempt} failed): {error}",
                wait.as_secs_f64()
            );
        });
    }

    fn finished(&self, _job: &Job, _outcome: &Outcome) {
        self.bar.inc(1);
    }
}

pub fn run(args: &FetchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let today = chrono::Utc::now().date_naive();
    let opts = args.options(today, std::env::var(BASE_URL_ENV).ok())?;
    let jobs = plan(&opts, today);
    if jobs.is_empty() {
        bail!(
            "nothing to fetch from {} to {} as of {today} (the current month's funding arrives when it ends)",
            opts.from,
            opts.to
        );
    }
    writeln!(
        out,
        "fetching {} files from {} into {}",
        jobs.len(),
        opts.base_url,
        opts.dir.display()
    )?;
    out.flush()?;
    let bar = Bar::new(jobs.len());
    let started = Instant::now();
    let summary = download(&jobs, &opts, &bar);
    bar.bar.finish_and_clear();
    print_summary(&summary, started.elapsed(), out)?;

    let tree = opts.dir.join("futures").join("um");
    writeln!(out)?;
    writeln!(
        out,
        "etrading data inspect {} --symbols {}",
        tree.display(),
        opts.symbols.join(",")
    )?;
    let inspected = if tree.is_dir() {
        inspect(&tree, &opts.symbols, out)
    } else {
        Err(anyhow::anyhow!(
            "{} does not exist: nothing was fetched",
            tree.display()
        ))
    };
    if let Err(e) = &inspected {
        writeln!(out, "inspection failed: {e:#}")?;
    }
    match (summary.failed.len(), inspected) {
        (0, Ok(())) => Ok(()),
        (0, Err(e)) => Err(e.context(format!("inspecting the fetched data in {}", tree.display()))),
        (n, _) => bail!(
            "{n} of {} files could not be fetched (listed above)",
            summary.planned
        ),
    }
}

fn print_summary(
    summary: &FetchSummary,
    elapsed: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "{} files: {} downloaded ({}), {} skipped as already verified, {} failed, in {:.1}s",
        summary.planned,
        summary.downloaded,
        crate::sysinfo::mib(summary.bytes_downloaded),
        summary.already_verified,
        summary.failed.len(),
        elapsed.as_secs_f64()
    )?;
    for f in &summary.failed {
        let tries = if f.attempts == 1 { "try" } else { "tries" };
        writeln!(out, "  failed after {} {tries}: {}", f.attempts, f.error)?;
    }
    Ok(())
}

/// Prints what `etrading data inspect TREE --symbols ...` prints.
fn inspect(tree: &std::path::Path, symbols: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    let select = DataSelection {
        interval: None,
        resample: None,
        symbols: Some(symbols.to_vec()),
        from: None,
        to: None,
        gaps: GapArg::Keep,
        align: AlignArg::Intersection,
        market: MarketArg::Usdm,
    };
    let (ds, panels) = load_all(&[tree.to_path_buf()], &select)?;
    print_tables(&report(&ds, &panels), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: FetchArgs,
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, 4).unwrap()
    }

    /// Parses `etrading data fetch <flags>` and builds the options as of 2025-03-04.
    fn parse(flags: &str) -> anyhow::Result<FetchOptions> {
        let argv = std::iter::once("fetch").chain(flags.split_whitespace());
        let cli = Cli::try_parse_from(argv)?;
        cli.args.options(today(), None)
    }

    /// `flags` give options whose symbols, intervals, kinds, months and base URL print as
    /// `expect`.
    fn check(flags: &str, expect: &str) {
        let o = parse(flags).unwrap_or_else(|e| panic!("{flags}: {e:#}"));
        let got = format!(
            "{} | {} | {} | {}..{} | {} | jobs {} retries {} timeout {}s",
            o.symbols.join(","),
            o.intervals
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            o.kinds
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            o.from,
            o.to,
            o.base_url,
            o.jobs,
            o.retries,
            o.timeout.as_secs()
        );
        assert_eq!(got, expect, "{flags}");
    }

    /// `flags` are refused with a message containing `expect`.
    fn check_err(flags: &str, expect: &str) {
        let msg = match parse(flags) {
            Ok(o) => panic!("{flags}: expected an error, got {o:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(msg.contains(expect), "{flags}: {msg:?} lacks {expect:?}");
    }

    #[test]
    fn parses_fetch_flags() {
        check(
            "--symbols BTCUSDT,ETHUSDT,XRPUSDT,LTCUSDT --interval 15m,1h",
            "BTCUSDT,ETHUSDT,XRPUSDT,LTCUSDT | 15m,1h | klines,markPriceKlines,fundingRate | \
             2020-01..2025-03 | https://data.binance.vision | jobs 4 retries 3 timeout 30s",
        );
        check(
            "--symbols BTCUSDT --kinds fundingRate --from 2024-11 --to 2025-01 \
             --base-url http://127.0.0.1:8080/ --jobs 2 --retries 0 --timeout-secs 5",
            "BTCUSDT |  | fundingRate | 2024-11..2025-01 | http://127.0.0.1:8080 | \
             jobs 2 retries 0 timeout 5s",
        );
        check(
            "--symbols BTCUSDT --interval 1h --kinds markPriceKlines,klines",
            "BTCUSDT | 1h | markPriceKlines,klines | 2020-01..2025-03 | \
             https://data.binance.vision | jobs 4 retries 3 timeout 30s",
        );
    }

    #[test]
    fn base_url_comes_from_the_flag_then_the_environment() {
        let cli = Cli::try_parse_from(["fetch", "--symbols", "BTCUSDT", "--interval", "1h"]);
        let args = cli.unwrap().args;
        let mirror = Some("https://mirror.example".to_string());
        let o = args.options(today(), mirror.clone()).unwrap();
        assert_eq!(o.base_url, "https://mirror.example");
        let cli = Cli::try_parse_from(["fetch", "--symbols", "BTCUSDT", "--interval", "1h"]);
        let mut args = cli.unwrap().args;
        args.base_url = Some("http://flag.example".into());
        let o = args.options(today(), mirror).unwrap();
        assert_eq!(o.base_url, "http://flag.example");
    }

    #[test]
    fn refuses_bad_fetch_flags() {
        check_err(
            "--symbols BTCUSDT --interval 1h --kinds klines,trades",
            "invalid value 'trades' for '--kinds",
        );
        check_err(
            "--symbols BTCUSDT --interval 1h --kinds trades",
            "[possible values: klines, markPriceKlines, fundingRate]",
        );
        check_err(
            "--symbols BTCUSDT --interval 7x",
            "invalid value '7x' for '--interval",
        );
        check_err(
            "--symbols btcusdt --interval 1h",
            "--symbols: \"btcusdt\" is not a USDT-M futures symbol such as BTCUSDT",
        );
        check_err("--interval 1h", "--symbols <SYMBOLS>");
        check_err("--symbols BTCUSDT", "--interval is needed for klines");
        check_err(
            "--symbols BTCUSDT --interval 1h --from 2024-13",
            "expected a month as YYYY-MM (such as 2024-01), found \"2024-13\"",
        );
        check_err(
            "--symbols BTCUSDT --interval 1h --from 2025-02 --to 2025-01",
            "--from 2025-02 is after --to 2025-01",
        );
        check_err(
            "--symbols BTCUSDT --interval 1h --from 2025-04 --to 2025-05",
            "--from 2025-04 is after the current month 2025-03",
        );
        check_err(
            "--symbols BTCUSDT --interval 1h --base-url ftp://x",
            "expected an http:// or https:// URL",
        );
        check_err("--symbols BTCUSDT --interval 1h --jobs 0", "--jobs <JOBS>");
    }
}
