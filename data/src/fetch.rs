//! Fetching Binance's public archive (data.binance.vision or a mirror) into the archive layout
//! that [`crate::load_dataset`] reads: a [`plan`] of (URL, destination) jobs computed from the
//! options as plain data, and a [`download`] that runs it with bounded parallelism, retries and
//! checksum verification, reporting through a [`Progress`] callback so this crate stays UI-free.
//!
//! Layout: `{base}/data/futures/um/monthly/{klines,markPriceKlines}/{SYM}/{IV}/{SYM}-{IV}-{YYYY-MM}.zip`,
//! `{base}/data/futures/um/monthly/fundingRate/{SYM}/{SYM}-fundingRate-{YYYY-MM}.zip`, and for
//! the current month (which has no monthly file yet) the daily kline files
//! `{base}/data/futures/um/daily/{klines,markPriceKlines}/{SYM}/{IV}/{SYM}-{IV}-{YYYY-MM-DD}.zip`
//! up to yesterday; funding has no daily files, so the current month's funding arrives with its
//! monthly file. Every zip has a sibling `NAME.zip.CHECKSUM` (`"<sha256>  <name>"`). The local
//! copy lives at the same path below the destination folder, minus the leading `data/`.
//!
//! Guarantees: a zip appears under its final name only after its SHA-256 matched the archive's
//! `.CHECKSUM` (it is written to `NAME.zip.part`, verified, and renamed after its checksum file);
//! a zip whose local `.CHECKSUM` verifies is skipped without any request, so a second run makes
//! none; a zip present but unverified is checked against the archive's `.CHECKSUM` and
//! downloaded again when it differs. Transient failures (connection errors, timeouts, HTTP 5xx,
//! 408 and 429, checksum mismatches) are retried with exponential backoff; a 404 is reported at
//! once with its URL, and the other files go on.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use sha2::{Digest, Sha256};

use crate::interval::Interval;
use crate::source::{hex, sha256_hex, verify_checksum};
use crate::synth::parse_month;

/// Binance's public archive.
pub const DEFAULT_BASE_URL: &str = "https://data.binance.vision";
/// The environment variable that names a mirror of the archive (the `--base-url` flag wins).
pub const BASE_URL_ENV: &str = "ETRADING_BINANCE_BASE_URL";
/// The longest wait between two attempts, however many retries are allowed.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A `.CHECKSUM` file is one line; anything longer is not one.
const MAX_CHECKSUM_BYTES: u64 = 4096;

/// The archive's data sets, named as its folders are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ArchiveKind {
    /// Last-price klines (`klines`).
    Klines,
    /// Mark-price klines (`markPriceKlines`).
    MarkPriceKlines,
    /// Funding-rate events (`fundingRate`), monthly files only, no interval.
    FundingRate,
}

impl ArchiveKind {
    pub const ALL: [ArchiveKind; 3] = [
        ArchiveKind::Klines,
        ArchiveKind::MarkPriceKlines,
        ArchiveKind::FundingRate,
    ];

    /// The archive's folder name.
    pub fn folder(self) -> &'static str {
        match self {
            ArchiveKind::Klines => "klines",
            ArchiveKind::MarkPriceKlines => "markPriceKlines",
            ArchiveKind::FundingRate => "fundingRate",
        }
    }

    /// Whether files come per bar interval (and as daily files for the current month).
    pub fn has_interval(self) -> bool {
        self != ArchiveKind::FundingRate
    }
}

impl fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.folder())
    }
}

/// A calendar month, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// The month `date` falls in.
    pub fn of(date: NaiveDate) -> Month {
        Month {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn previous(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The months from `self` to `last`, both included (empty when `last` is earlier).
    fn through(self, last: Month) -> impl Iterator<Item = Month> {
        std::iter::successors(Some(self), |m| Some(m.next())).take_while(move |m| *m <= last)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// A month that is not written `YYYY-MM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a month as YYYY-MM (such as 2024-01), found {0:?}")]
pub struct ParseMonthError(pub String);

impl FromStr for Month {
    type Err = ParseMonthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_month(s.trim())
            .map(|(year, month)| Month { year, month })
            .ok_or_else(|| ParseMonthError(s.to_string()))
    }
}

/// What to fetch, from where, into where, and how hard to try.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The archive's root, without a trailing slash (`https://data.binance.vision`).
    pub base_url: String,
    /// The local folder; files go to `dir/futures/um/...`.
    pub dir: PathBuf,
    pub symbols: Vec<String>,
    /// Bar intervals of the kline kinds (funding ignores them).
    pub intervals: Vec<Interval>,
    pub kinds: Vec<ArchiveKind>,
    /// First month, included.
    pub from: Month,
    /// Last month, included; the current month (or a later one) means "up to yesterday".
    pub to: Month,
    /// Files downloaded at once (at least 1).
    pub jobs: usize,
    /// Further attempts after a transient failure.
    pub retries: u32,
    /// The longest wait to connect, for the response headers, and for each read of the body.
    pub timeout: Duration,
    /// The wait before the first retry; it doubles with each further one (up to 30 s).
    pub backoff: Duration,
}

/// One file to fetch: the zip's URL and where it goes. Its `.CHECKSUM` sits next to both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Job {
    pub url: String,
    pub path: PathBuf,
    pub symbol: String,
    pub kind: ArchiveKind,
    pub interval: Option<Interval>,
    /// `YYYY-MM` for a monthly file, `YYYY-MM-DD` for a daily one.
    pub period: String,
}

impl Job {
    pub fn checksum_url(&self) -> String {
        format!("{}.CHECKSUM", self.url)
    }

    pub fn checksum_path(&self) -> PathBuf {
        with_suffix(&self.path, ".CHECKSUM")
    }

    /// Where the zip is written until it has been verified.
    pub fn part_path(&self) -> PathBuf {
        with_suffix(&self.path, ".part")
    }

    fn checksum_part_path(&self) -> PathBuf {
        with_suffix(&self.path, ".CHECKSUM.part")
    }

    fn display_path(&self) -> String {
        self.path.display().to_string()
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The files to fetch for `opts`, as of `today` (UTC): monthly files from `opts.from` to the
/// month before the current one (or `opts.to` when earlier), and when `opts.to` reaches the
/// current month, the daily kline and mark-price files of its days before `today`. Ordered by
/// symbol, kind, interval and period as the options list them; no network.
pub fn plan(opts: &FetchOptions, today: NaiveDate) -> Vec<Job> {
    let current = Month::of(today);
    let last_monthly = opts.to.min(current.previous());
    let daily_days: Vec<NaiveDate> = if opts.from <= current && opts.to >= current {
        today
            .with_day(1)
            .into_iter()
            .flat_map(|first| first.iter_days())
            .take_while(|d| *d < today)
            .collect()
    } else {
        Vec::new()
    };
    let base = opts.base_url.trim_end_matches('/');
    let mut intervals = opts.intervals.clone();
    dedup_in_order(&mut intervals);
    let mut kinds = opts.kinds.clone();
    dedup_in_order(&mut kinds);
    let mut symbols = opts.symbols.clone();
    dedup_in_order(&mut symbols);

    let mut jobs = Vec::new();
    let mut push = |rel: String, symbol: &str, kind, interval, period: String| {
        jobs.push(Job {
            url: format!("{base}/data/{rel}"),
            path: opts.dir.join(&rel),
            symbol: symbol.to_string(),
            kind,
            interval,
            period,
        });
    };
    for sym in &symbols {
        for &kind in &kinds {
            let folder = kind.folder();
            if !kind.has_interval() {
                for m in opts.from.through(last_monthly) {
                    push(
                        format!("futures/um/monthly/{folder}/{sym}/{sym}-{folder}-{m}.zip"),
                        sym,
                        kind,
                        None,
                        m.to_string(),
                    );
                }
                continue;
            }
            for &iv in &intervals {
                for m in opts.from.through(last_monthly) {
                    push(
                        format!("futures/um/monthly/{folder}/{sym}/{iv}/{sym}-{iv}-{m}.zip"),
                        sym,
                        kind,
                        Some(iv),
                        m.to_string(),
                    );
                }
                for d in &daily_days {
                    let day = d.format("%Y-%m-%d");
                    push(
                        format!("futures/um/daily/{folder}/{sym}/{iv}/{sym}-{iv}-{day}.zip"),
                        sym,
                        kind,
                        Some(iv),
                        day.to_string(),
                    );
                }
            }
        }
    }
    jobs
}

fn dedup_in_order<T: PartialEq + Clone>(v: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::with_capacity(v.len());
    v.retain(|x| {
        if seen.contains(x) {
            false
        } else {
            seen.push(x.clone());
            true
        }
    });
}

/// Why one file could not be fetched. Every message names the URL and the local path.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "fetching {url} for {path}: not in the archive (HTTP 404); check the symbol, interval and month"
    )]
    NotFound { url: String, path: String },
    #[error("fetching {url} for {path}: HTTP status {status}")]
    Status {
        url: String,
        path: String,
        status: u16,
    },
    #[error("fetching {url} for {path}: {detail}")]
    Transport {
        url: String,
        path: String,
        detail: String,
    },
    #[error(
        "fetching {url} for {path}: checksum mismatch: the .CHECKSUM says sha256 {expected}, the download has {actual}; the file was not kept"
    )]
    Checksum {
        url: String,
        path: String,
        expected: String,
        actual: String,
    },
    #[error("fetching {url} for {path}: not a checksum file: {detail}")]
    BadChecksumFile {
        url: String,
        path: String,
        detail: String,
    },
    /// The message includes the I/O error's text, so it is not also chained as a `source`.
    #[error("fetching {url} into {path}: {error}")]
    Io {
        url: String,
        path: String,
        error: io::Error,
    },
}

impl FetchError {
    /// Whether another attempt may succeed: connection errors and timeouts, HTTP 5xx, 408 and
    /// 429, a checksum that does not match, and a checksum file that is not one (a cut reply).
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Transport { .. }
            | FetchError::Checksum { .. }
            | FetchError::BadChecksumFile { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            FetchError::NotFound { .. } | FetchError::Io { .. } => false,
        }
    }
}

/// How one file ended.
#[derive(Debug)]
pub enum Outcome {
    /// Downloaded and verified; `bytes` is the zip's size.
    Downloaded { bytes: u64 },
    /// Already present and verified (against the local `.CHECKSUM`, or the archive's when the
    /// local one was missing or stale); nothing downloaded but the checksum.
    AlreadyVerified,
    /// Given up after `attempts` attempts; `error` is the last one's.
    Failed { error: FetchError, attempts: u32 },
}

/// A file that could not be fetched.
#[derive(Debug)]
pub struct Failure {
    pub job: Job,
    pub attempts: u32,
    pub error: FetchError,
}

/// What a [`download`] did, files in plan order.
#[derive(Debug, Default)]
pub struct FetchSummary {
    pub planned: usize,
    pub downloaded: usize,
    pub already_verified: usize,
    /// Bytes of the zips downloaded (checksum files and failed attempts not counted).
    pub bytes_downloaded: u64,
    pub failed: Vec<Failure>,
}

impl FetchSummary {
    /// Whether every planned file is now present and verified.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Callbacks from the download threads; every method has a default that does nothing.
pub trait Progress: Sync {
    /// `n` more bytes of some zip arrived.
    fn bytes(&self, _n: u64) {}
    /// Attempt `attempt` of `job` failed with a transient `error`; the next starts after `wait`.
    fn retrying(&self, _job: &Job, _attempt: u32, _error: &FetchError, _wait: Duration) {}
    /// `job` is finished.
    fn finished(&self, _job: &Job, _outcome: &Outcome) {}
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Fetches every job with `opts.jobs` threads taking from one shared queue, and returns what
/// happened to each. Never stops early: a file that fails is recorded and the others go on.
pub fn download(jobs: &[Job], opts: &FetchOptions, progress: &dyn Progress) -> FetchSummary {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(opts.timeout))
        .timeout_send_request(Some(opts.timeout))
        .timeout_recv_response(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .user_agent(concat!("etrading/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Outcome>>> =
        Mutex::new(std::iter::repeat_with(|| None).take(jobs.len()).collect());
    let threads = opts.jobs.clamp(1, jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let outcome = fetch_with_retries(&agent, job, opts, progress);
                    progress.finished(job, &outcome);
                    slots.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
                }
            });
        }
    });
    let slots = slots.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut summary = FetchSummary {
        planned: jobs.len(),
        ..FetchSummary::default()
    };
    for (job, outcome) in jobs.iter().zip(slots) {
        match outcome {
            Some(Outcome::Downloaded { bytes }) => {
                summary.downloaded += 1;
                summary.bytes_downloaded += bytes;
            }
            Some(Outcome::AlreadyVerified) => summary.already_verified += 1,
            Some(Outcome::Failed { error, attempts }) => summary.failed.push(Failure {
                job: job.clone(),
                attempts,
                error,
            }),
            // Every index below jobs.len() is taken by exactly one thread, which fills it.
            None => unreachable!("no outcome recorded for {}", job.url),
        }
    }
    summary
}

fn fetch_with_retries(
    agent: &ureq::Agent,
    job: &Job,
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Outcome {
    if locally_verified(job) {
        return Outcome::AlreadyVerified;
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_once(agent, job, progress) {
            Ok(outcome) => return outcome,
            Err(error) if error.is_transient() && attempt <= opts.retries => {
                let wait = opts
                    .backoff
                    .saturating_mul(1 << (attempt - 1).min(16))
                    .min(MAX_BACKOFF);
                progress.retrying(job, attempt, &error, wait);
                std::thread::sleep(wait);
            }
            Err(error) => {
                remove_parts(job);
                return Outcome::Failed {
                    error,
                    attempts: attempt,
                };
            }
        }
    }
}

/// Whether the zip and its `.CHECKSUM` are both present and agree.
fn locally_verified(job: &Job) -> bool {
    if !job.checksum_path().is_file() {
        return false;
    }
    fs::read(&job.path).is_ok_and(|bytes| matches!(verify_checksum(&job.path, &bytes), Ok(true)))
}

fn remove_parts(job: &Job) {
    // Best effort: a leftover part file is never mistaken for data and is overwritten next time.
    let _ = fs::remove_file(job.part_path());
    let _ = fs::remove_file(job.checksum_part_path());
}

/// One attempt: the archive's checksum, then (unless the local zip already matches it) the zip.
fn fetch_once(
    agent: &ureq::Agent,
    job: &Job,
    progress: &dyn Progress,
) -> Result<Outcome, FetchError> {
    let sum_url = job.checksum_url();
    let mut sum_response = get(agent, &sum_url, job)?;
    let mut sum_text = Vec::new();
    sum_response
        .body_mut()
        .as_reader()
        .take(MAX_CHECKSUM_BYTES)
        .read_to_end(&mut sum_text)
        .map_err(|e| transport(&sum_url, job, &e))?;
    let expected = parse_checksum(&sum_text).ok_or_else(|| FetchError::BadChecksumFile {
        url: sum_url.clone(),
        path: job.display_path(),
        detail: format!(
            "expected a SHA-256 (64 hex digits) and the file name, found {:?}",
            String::from_utf8_lossy(&sum_text[..sum_text.len().min(100)])
        ),
    })?;

    let io_err = |path: &Path, error: io::Error| FetchError::Io {
        url: job.url.clone(),
        path: path.display().to_string(),
        error,
    };
    if let Some(dir) = job.path.parent() {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    // A zip already here (an earlier run stopped before writing its checksum, or the checksum
    // is stale) is kept when the archive's checksum vouches for it.
    if fs::read(&job.path).is_ok_and(|bytes| sha256_hex(&bytes) == expected) {
        write_checksum(job, &sum_text).map_err(|(p, e)| io_err(&p, e))?;
        return Ok(Outcome::AlreadyVerified);
    }

    let mut response = get(agent, &job.url, job)?;
    let part = job.part_path();
    let mut file = fs::File::create(&part).map_err(|e| io_err(&part, e))?;
    let mut hasher = Sha256::new();
    let mut reader = response.body_mut().as_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(transport(&job.url, job, &e)),
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| io_err(&part, e))?;
        bytes += n as u64;
        progress.bytes(n as u64);
    }
    file.flush().map_err(|e| io_err(&part, e))?;
    drop(file);
    let actual = hex(&hasher.finalize());
    if actual != expected {
        let _ = fs::remove_file(&part);
        return Err(FetchError::Checksum {
            url: job.url.clone(),
            path: job.display_path(),
            expected,
            actual,
        });
    }
    // The checksum goes first: a zip under its final name always has the checksum it was
    // verified against next to it, so a run stopped between the renames leaves nothing that
    // verifies without being complete.
    write_checksum(job, &sum_text).map_err(|(p, e)| io_err(&p, e))?;
    fs::rename(&part, &job.path).map_err(|e| io_err(&job.path, e))?;
    Ok(Outcome::Downloaded { bytes })
}

/// Writes the archive's checksum text next to the zip (via a part file and a rename).
fn write_checksum(job: &Job, text: &[u8]) -> Result<(), (PathBuf, io::Error)> {
    let part = job.checksum_part_path();
    fs::write(&part, text).map_err(|e| (part.clone(), e))?;
    let dest = job.checksum_path();
    fs::rename(&part, &dest).map_err(|e| (dest, e))
}

fn get(
    agent: &ureq::Agent,
    url: &str,
    job: &Job,
) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Timeout(phase) => transport(url, job, &format_args!("timed out ({phase})")),
        e => transport(url, job, &e),
    })?;
    match response.status().as_u16() {
        200 => Ok(response),
        404 => Err(FetchError::NotFound {
            url: url.to_string(),
            path: job.display_path(),
        }),
        status => Err(FetchError::Status {
            url: url.to_string(),
            path: job.display_path(),
            status,
        }),
    }
}

fn transport(url: &str, job: &Job, e: &dyn fmt::Display) -> FetchError {
    FetchError::Transport {
        url: url.to_string(),
        path: job.display_path(),
        detail: e.to_string(),
    }
}

/// The SHA-256 in a `.CHECKSUM` file's text (`"<64 hex digits>  <name>"`), lowercased.
pub fn parse_checksum(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    text.split_whitespace()
        .next()
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_month(s: &str, expect: Option<&str>) {
        let got = s.parse::<Month>().ok().map(|m| m.to_string());
        assert_eq!(got.as_deref(), expect, "{s}");
    }

    #[test]
    fn parses_months() {
        check_month("2024-01", Some("2024-01"));
        check_month("2024-1", Some("2024-01"));
        check_month("2024-13", None);
        check_month("2024", None);
        check_month("24-01-01", None);
    }

    #[test]
    fn months_step_over_years() {
        let dec = Month {
            year: 2024,
            month: 12,
        };
        assert_eq!(dec.next().to_string(), "2025-01");
        assert_eq!(dec.next().previous(), dec);
        let span: Vec<String> = Month {
            year: 2024,
            month: 11,
        }
        .through(Month {
            year: 2025,
            month: 2,
        })
        .map(|m| m.to_string())
        .collect();
        assert_eq!(span, ["2024-11", "2024-12", "2025-01", "2025-02"]);
    }

    #[test]
    fn reads_checksum_files() {
        let h = "AB".repeat(32);
        assert_eq!(
            parse_checksum(format!("{h}  X.zip\n").as_bytes()),
            Some("ab".repeat(32))
        );
        assert_eq!(parse_checksum(b"<html>503</html>"), None);
        assert_eq!(parse_checksum(b""), None);
    }
}
