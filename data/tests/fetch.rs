//! Integration tests of `etrading_data::fetch` against a small HTTP/1.1 server that the tests
//! start on 127.0.0.1 (port 0) and nothing else on the network: it serves archive-format zips
//! and `.CHECKSUM` files cut by month from `data/sample` (BTCUSDT and ETHUSDT, January and
//! February 2025, klines, mark-price klines and funding), records every request, and can be
//! told per path to serve a corrupted zip a number of times or to stall on the first request.
//! A path it has no file for answers 404.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::NaiveDate;
use etrading_data::fetch::{
    ArchiveKind, FetchError, FetchOptions, FetchSummary, Job, Month, Outcome, Progress, download,
    plan,
};
use etrading_data::source::{classify, sha256_hex, verify_checksum};
use etrading_data::{Dataset, Interval, Kind, LoadOptions, load_dataset};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sample");
const SYMBOLS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];
const MONTHS: [&str; 2] = ["2025-01", "2025-02"];
/// 2025-01-01 and 2025-03-01 00:00 UTC in ms: the span the server has files for.
const JAN_1: i64 = 1_735_689_600_000;
const MAR_1: i64 = 1_740_787_200_000;

/// A day well after the months served, so plans hold monthly files only.
fn later_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 15).unwrap()
}

fn month(s: &str) -> Month {
    s.parse().unwrap()
}

fn h1() -> Interval {
    "1h".parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The archive's files, made from the sample data.

/// Archive-relative path (`futures/um/monthly/...`) -> zip bytes, for every file served.
fn archive() -> &'static HashMap<String, Vec<u8>> {
    static ARCHIVE: OnceLock<HashMap<String, Vec<u8>>> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let mut files = HashMap::new();
        for sym in SYMBOLS {
            for (kind, source) in [
                ("klines", format!("{sym}-1h.csv")),
                ("markPriceKlines", format!("{sym}-1h-markprice.csv")),
                ("fundingRate", format!("{sym}-funding.csv")),
            ] {
                let text = std::fs::read_to_string(Path::new(SAMPLE).join(source)).unwrap();
                for m in MONTHS {
                    let (folder, stem) = if kind == "fundingRate" {
                        (format!("{kind}/{sym}"), format!("{sym}-fundingRate-{m}"))
                    } else {
                        (format!("{kind}/{sym}/1h"), format!("{sym}-1h-{m}"))
                    };
                    let csv = month_rows(&text, &month(m));
                    files.insert(
                        format!("futures/um/monthly/{folder}/{stem}.zip"),
                        zip_one(&format!("{stem}.csv"), &csv),
                    );
                }
            }
        }
        files
    })
}

/// The header and the rows of `csv` whose first column (ms) falls in `m`.
fn month_rows(csv: &str, m: &Month) -> String {
    let start = NaiveDate::from_ymd_opt(m.year, m.month, 1).unwrap();
    let next = m.next();
    let end = NaiveDate::from_ymd_opt(next.year, next.month, 1).unwrap();
    let ms = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis();
    let (start, end) = (ms(start), ms(end));
    let mut lines = csv.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for line in lines {
        let t: i64 = line.split(',').next().unwrap().parse().unwrap();
        if (start..end).contains(&t) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn zip_one(name: &str, csv: &str) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(name, opts).unwrap();
    w.write_all(csv.as_bytes()).unwrap();
    w.finish().unwrap();
    buf.into_inner()
}

fn checksum_text(rel: &str, bytes: &[u8]) -> String {
    let name = rel.rsplit('/').next().unwrap();
    format!("{}  {name}\n", sha256_hex(bytes))
}

// ---------------------------------------------------------------------------------------------
// The server.

/// What the server does with one path instead of serving it plainly.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Serve a corrupted zip (same length, one byte changed) this many more times.
    Corrupt(u32),
    /// Send nothing on the next request until the client hangs up, then serve normally.
    StallOnce,
}

#[derive(Debug, Default)]
struct State {
    rules: Mutex<HashMap<String, Rule>>,
    requests: Mutex<Vec<String>>,
}

#[derive(Debug)]
struct Server {
    base_url: String,
    state: Arc<State>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        // The accept loop lives as long as the test process; each connection gets a thread.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Server { base_url, state }
    }

    /// Applies `rule` to the archive-relative path `rel` (`futures/um/...`).
    fn rule(&self, rel: &str, rule: Rule) {
        self.state
            .rules
            .lock()
            .unwrap()
            .insert(format!("/data/{rel}"), rule);
    }

    /// The paths requested since the last call, sorted.
    fn take_requests(&self) -> Vec<String> {
        let mut v = std::mem::take(&mut *self.state.requests.lock().unwrap());
        v.sort();
        v
    }
}

fn serve(stream: TcpStream, state: &State) {
    // Bounds every wait of this connection, so a client that never hangs up cannot hold it.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    state.requests.lock().unwrap().push(path.to_string());
    let rule = {
        let mut rules = state.rules.lock().unwrap();
        let rule = rules.get(path).copied();
        match rule {
            Some(Rule::Corrupt(n)) if n > 1 => {
                rules.insert(path.to_string(), Rule::Corrupt(n - 1));
            }
            Some(_) => {
                rules.remove(path);
            }
            None => {}
        }
        rule
    };
    if let Some(Rule::StallOnce) = rule {
        // Answer nothing; wait until the client gives up and closes (or the read timeout).
        let mut sink = [0u8; 64];
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
        return;
    }
    let body = if method != "GET" {
        None
    } else {
        let rel = path.strip_prefix("/data/").unwrap_or("");
        match rel.strip_suffix(".CHECKSUM") {
            Some(zip) => archive()
                .get(zip)
                .map(|bytes| checksum_text(zip, bytes).into_bytes()),
            None => archive().get(rel).map(|bytes| {
                let mut bytes = bytes.clone();
                if let Some(Rule::Corrupt(_)) = rule {
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 0xff;
                }
                bytes
            }),
        }
    };
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b"not found".to_vec()),
    };
    let mut stream = &stream;
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn options(server: &Server, dir: &Path, to: &str) -> FetchOptions {
    FetchOptions {
        base_url: server.base_url.clone(),
        dir: dir.to_path_buf(),
        symbols: SYMBOLS.iter().map(|s| s.to_string()).collect(),
        intervals: vec![h1()],
        kinds: ArchiveKind::ALL.to_vec(),
        from: month("2025-01"),
        to: month(to),
        jobs: 4,
        retries: 2,
        timeout: Duration::from_secs(5),
        backoff: Duration::from_millis(5),
    }
}

/// Records what the downloader reports.
#[derive(Debug, Default)]
struct Recorder {
    bytes: AtomicU64,
    retries: Mutex<Vec<String>>,
    finished: Mutex<Vec<String>>,
}

impl Progress for Recorder {
    fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
    fn retrying(&self, job: &Job, attempt: u32, error: &FetchError, _wait: Duration) {
        self.retries
            .lock()
            .unwrap()
            .push(format!("{} attempt {attempt}: {error}", job.url));
    }
    fn finished(&self, job: &Job, _outcome: &Outcome) {
        self.finished.lock().unwrap().push(job.url.clone());
    }
}

fn fetch(opts: &FetchOptions) -> (FetchSummary, Recorder) {
    let rec = Recorder::default();
    let summary = download(&plan(opts, later_day()), opts, &rec);
    (summary, rec)
}

/// `summary` counted `downloaded` and `already_verified` files, and failed exactly the files
/// whose URLs contain one of `failed` (in plan order), each error message containing `reason`.
fn check_summary(
    summary: &FetchSummary,
    downloaded: usize,
    already_verified: usize,
    failed: &[&str],
    reason: &str,
) {
    let failures: Vec<String> = summary.failed.iter().map(|f| f.error.to_string()).collect();
    assert_eq!(
        (summary.downloaded, summary.already_verified, failures.len()),
        (downloaded, already_verified, failed.len()),
        "downloaded, already verified, failed; failures: {failures:#?}"
    );
    for (f, want) in summary.failed.iter().zip(failed) {
        let msg = f.error.to_string();
        assert!(f.job.url.contains(want), "{} lacks {want}", f.job.url);
        assert!(
            msg.contains(&f.job.url),
            "{msg:?} lacks the URL {}",
            f.job.url
        );
        assert!(
            msg.contains(&f.job.path.display().to_string()),
            "{msg:?} lacks the path"
        );
        assert!(msg.contains(reason), "{msg:?} lacks {reason:?}");
    }
    assert_eq!(summary.is_complete(), failed.is_empty());
}

/// The 12 archive-relative paths of the full plan.
fn all_files() -> Vec<String> {
    let mut v: Vec<String> = archive().keys().cloned().collect();
    v.sort();
    v
}

/// Server paths of the zips and/or checksums of `rels`, sorted.
fn requests_for(rels: &[String], zips: bool, checksums: bool) -> Vec<String> {
    let mut v = Vec::new();
    for rel in rels {
        if zips {
            v.push(format!("/data/{rel}"));
        }
        if checksums {
            v.push(format!("/data/{rel}.CHECKSUM"));
        }
    }
    v.sort();
    v
}

/// Every file below `dir`, relative and sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The fetched tree holds exactly each served zip (or those of `only`) with its `.CHECKSUM`,
/// every one verifying, and no part file.
fn check_tree(dir: &Path, only: &[String]) {
    let mut want = Vec::new();
    for rel in only {
        want.push(rel.clone());
        want.push(format!("{rel}.CHECKSUM"));
    }
    want.sort();
    assert_eq!(tree(dir), want);
    for rel in only {
        let p = dir.join(rel);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes, &archive()[rel], "{rel}");
        assert!(
            verify_checksum(&p, &bytes).unwrap_or_else(|e| panic!("{e}")),
            "{rel}: no checksum verified"
        );
    }
}

fn load(paths: &[PathBuf], symbols: &[&str]) -> Dataset {
    let opts = LoadOptions {
        symbols: Some(symbols.iter().map(|s| s.to_string()).collect()),
        from_ms: Some(JAN_1),
        to_ms: Some(MAR_1),
        ..LoadOptions::default()
    };
    load_dataset(paths, &opts).unwrap_or_else(|e| panic!("{e}"))
}

/// Loading the fetched tree gives the same series as the sample files for the same span.
fn check_matches_source(dir: &Path) {
    let got = load(&[dir.to_path_buf()], &SYMBOLS);
    let sources: Vec<PathBuf> = SYMBOLS
        .iter()
        .flat_map(|s| {
            [
                format!("{s}-1h.csv"),
                format!("{s}-1h-markprice.csv"),
                format!("{s}-funding.csv"),
            ]
        })
        .map(|n| Path::new(SAMPLE).join(n))
        .collect();
    let want = load(&sources, &SYMBOLS);
    assert!(want.rows_read > 0 && want.klines.len() == 2 && want.mark.len() == 2);
    let bars = |ds: &Dataset| {
        ds.klines
            .iter()
            .chain(&ds.mark)
            .map(|k| {
                (
                    k.symbol.clone(),
                    k.kind,
                    k.interval,
                    k.open_time.clone(),
                    [&k.open, &k.high, &k.low, &k.close, &k.volume].map(|c| c.clone()),
                )
            })
            .collect::<Vec<_>>()
    };
    let funding = |ds: &Dataset| {
        ds.funding
            .iter()
            .map(|f| (f.symbol.clone(), f.time.clone(), f.rate.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bars(&got), bars(&want));
    assert_eq!(funding(&got), funding(&want));
    // January and February 2025, hourly: 59 days of 24 bars.
    assert!(got.klines.iter().all(|k| k.open_time.len() == 59 * 24));
    assert!(got.mark.iter().all(|k| k.kind == Kind::MarkPrice));
}

// ---------------------------------------------------------------------------------------------
// Cases.

#[test]
fn full_fetch_loads_like_the_source() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&server, dir.path(), "2025-02");
    let jobs = plan(&opts, later_day());
    assert_eq!(jobs.len(), 2 * 2 * 3);
    let (summary, rec) = fetch(&opts);
    check_summary(&summary, 12, 0, &[], "");
    let total: u64 = archive().values().map(|b| b.len() as u64).sum();
    assert_eq!(summary.bytes_downloaded, total);
    assert_eq!(rec.bytes.load(Ordering::Relaxed), total);
    assert_eq!(rec.finished.lock().unwrap().len(), 12);
    assert!(rec.retries.lock().unwrap().is_empty());
    // One request for each checksum and each zip.
    assert_eq!(
        server.take_requests(),
        requests_for(&all_files(), true, true)
    );
    check_tree(dir.path(), &all_files());
    check_matches_source(dir.path());
}

/// A second run finds every zip verified by its local `.CHECKSUM` and sends no request at all
/// (not even for the checksums: files in the archive do not change once published).
#[test]
fn second_fetch_requests_nothing() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&server, dir.path(), "2025-02");
    check_summary(&fetch(&opts).0, 12, 0, &[], "");
    server.take_requests();
    let (summary, rec) = fetch(&opts);
    check_summary(&summary, 0, 12, &[], "");
    assert_eq!(summary.bytes_downloaded, 0);
    assert_eq!(rec.bytes.load(Ordering::Relaxed), 0);
    assert_eq!(server.take_requests(), Vec::<String>::new());
    check_tree(dir.path(), &all_files());
}

/// What an interrupted run leaves behind is replaced and verified: a `.part` file, a truncated
/// zip without checksum, a truncated zip with the right checksum; a complete zip whose
/// checksum file was not yet written is kept after checking it against the archive's.
#[test]
fn resumes_after_an_interrupted_fetch() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let files = all_files();
    let put = |rel: &str, bytes: &[u8]| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    let good = |rel: &str| archive()[rel].clone();
    let half = |rel: &str| archive()[rel][..archive()[rel].len() / 2].to_vec();
    let (part_only, truncated, truncated_with_sum, unverified) =
        (&files[0], &files[1], &files[5], &files[9]);
    put(&format!("{part_only}.part"), &half(part_only));
    put(truncated, &half(truncated));
    put(truncated_with_sum, &half(truncated_with_sum));
    put(
        &format!("{truncated_with_sum}.CHECKSUM"),
        checksum_text(truncated_with_sum, &good(truncated_with_sum)).as_bytes(),
    );
    put(unverified, &good(unverified));

    let opts = options(&server, dir.path(), "2025-02");
    let (summary, _) = fetch(&opts);
    check_summary(&summary, 11, 1, &[], "");
    // Every checksum was asked for (none was verified locally); every zip but the complete one.
    let zips: Vec<String> = files.iter().filter(|f| *f != unverified).cloned().collect();
    let mut want = requests_for(&files, false, true);
    want.extend(requests_for(&zips, true, false));
    want.sort();
    assert_eq!(server.take_requests(), want);
    check_tree(dir.path(), &files);
    check_matches_source(dir.path());
}

/// A zip that does not match its checksum is refused and retried; one corrupted once lands on
/// the retry, one that stays corrupted is reported with the checksum message and leaves
/// nothing behind, while the good files still land.
#[test]
fn refuses_corrupted_zips() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let files = all_files();
    let (once, always) = (&files[2], &files[7]);
    server.rule(once, Rule::Corrupt(1));
    server.rule(always, Rule::Corrupt(100));
    let opts = options(&server, dir.path(), "2025-02");
    let (summary, rec) = fetch(&opts);
    check_summary(&summary, 11, 0, &[always.as_str()], "checksum mismatch");
    assert_eq!(summary.failed[0].attempts, 1 + opts.retries);
    let requests = server.take_requests();
    let count = |rel: &str| {
        requests
            .iter()
            .filter(|r| **r == format!("/data/{rel}"))
            .count()
    };
    assert_eq!((count(once), count(always)), (2, 3));
    let retries = rec.retries.lock().unwrap().clone();
    assert_eq!(retries.len(), 1 + 2, "{retries:#?}");
    assert!(
        retries.iter().all(|r| r.contains("checksum mismatch")),
        "{retries:#?}"
    );
    let landed: Vec<String> = files.iter().filter(|f| *f != always).cloned().collect();
    check_tree(dir.path(), &landed);
}

/// A month the archive does not have (404) is reported per file with its URL and not retried;
/// the other files land, and the result is incomplete.
#[test]
fn reports_a_missing_month() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&server, dir.path(), "2025-03");
    let (summary, rec) = fetch(&opts);
    let missing = [
        "monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2025-03.zip",
        "monthly/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2025-03.zip",
        "monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2025-03.zip",
        "monthly/klines/ETHUSDT/1h/ETHUSDT-1h-2025-03.zip",
        "monthly/markPriceKlines/ETHUSDT/1h/ETHUSDT-1h-2025-03.zip",
        "monthly/fundingRate/ETHUSDT/ETHUSDT-fundingRate-2025-03.zip",
    ];
    check_summary(&summary, 12, 0, &missing, "not in the archive (HTTP 404)");
    assert!(summary.failed.iter().all(|f| f.attempts == 1));
    assert!(rec.retries.lock().unwrap().is_empty());
    // The message names the URL that answered 404: the checksum, asked for first.
    let msg = summary.failed[0].error.to_string();
    assert!(
        msg.contains(&format!("{}.CHECKSUM", summary.failed[0].job.url)),
        "{msg}"
    );
    check_tree(dir.path(), &all_files());
}

/// A server that does not answer in time: the request times out, and the retry succeeds.
#[test]
fn retries_after_a_timeout() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let files = all_files();
    let slow = &files[4];
    server.rule(slow, Rule::StallOnce);
    let opts = FetchOptions {
        timeout: Duration::from_millis(300),
        ..options(&server, dir.path(), "2025-02")
    };
    let (summary, rec) = fetch(&opts);
    check_summary(&summary, 12, 0, &[], "");
    let retries = rec.retries.lock().unwrap().clone();
    assert_eq!(retries.len(), 1, "{retries:#?}");
    assert!(
        retries[0].contains(slow.as_str()) && retries[0].contains("timed out"),
        "{retries:#?}"
    );
    let requests = server.take_requests();
    let count = |rel: &str| {
        requests
            .iter()
            .filter(|r| **r == format!("/data/{rel}"))
            .count()
    };
    assert_eq!(count(slow), 2);
    check_tree(dir.path(), &files);
}

/// The plan for `symbols` x `kinds` at 1h from `from` to `to` as of `today`: archive-relative
/// paths in plan order. Also checks each job's URL and destination, and that the loader
/// classifies the destination as the job's symbol, kind and interval.
fn check_plan(
    from: &str,
    to: &str,
    today: (i32, u32, u32),
    kinds: &[ArchiveKind],
    expect: &[&str],
) {
    let opts = FetchOptions {
        base_url: "https://mirror.example/".into(),
        dir: PathBuf::from("out"),
        symbols: vec!["BTCUSDT".into()],
        intervals: vec![h1(), h1()],
        kinds: kinds.to_vec(),
        from: month(from),
        to: month(to),
        jobs: 1,
        retries: 0,
        timeout: Duration::from_secs(1),
        backoff: Duration::ZERO,
    };
    let today = NaiveDate::from_ymd_opt(today.0, today.1, today.2).unwrap();
    let jobs = plan(&opts, today);
    let rels: Vec<String> = jobs
        .iter()
        .map(|j| j.path.strip_prefix("out").unwrap().display().to_string())
        .collect();
    assert_eq!(rels, expect, "plan {from}..{to} on {today}");
    for (job, rel) in jobs.iter().zip(expect) {
        assert_eq!(job.url, format!("https://mirror.example/data/{rel}"));
        assert_eq!(job.checksum_url(), format!("{}.CHECKSUM", job.url));
        let f = classify(&job.path).unwrap().unwrap();
        let kind = match job.kind {
            ArchiveKind::Klines => Kind::Klines,
            ArchiveKind::MarkPriceKlines => Kind::MarkPrice,
            ArchiveKind::FundingRate => Kind::Funding,
        };
        assert_eq!(
            (f.symbol.as_str(), f.kind, f.interval_hint),
            ("BTCUSDT", kind, job.interval)
        );
    }
}

#[test]
fn plans_monthly_files_and_daily_ones_for_the_current_month() {
    use ArchiveKind::*;
    // Past months only: monthly files.
    check_plan(
        "2024-12",
        "2025-01",
        (2025, 6, 15),
        &[Klines, FundingRate],
        &[
            "futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-12.zip",
            "futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2025-01.zip",
            "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-12.zip",
            "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2025-01.zip",
        ],
    );
    // Up to the current month (March 4th): February monthly, March 1st to 3rd daily; funding
    // has no daily files. A later --to means the same.
    let current = [
        "futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2025-02.zip",
        "futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2025-03-01.zip",
        "futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2025-03-02.zip",
        "futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2025-03-03.zip",
        "futures/um/monthly/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2025-02.zip",
        "futures/um/daily/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2025-03-01.zip",
        "futures/um/daily/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2025-03-02.zip",
        "futures/um/daily/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2025-03-03.zip",
        "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2025-02.zip",
    ];
    check_plan(
        "2025-02",
        "2025-03",
        (2025, 3, 4),
        &ArchiveKind::ALL,
        &current,
    );
    check_plan(
        "2025-02",
        "2026-12",
        (2025, 3, 4),
        &ArchiveKind::ALL,
        &current,
    );
    // On the first of the month there is no day before today in it yet.
    check_plan(
        "2025-02",
        "2025-03",
        (2025, 3, 1),
        &[Klines],
        &["futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2025-02.zip"],
    );
    // Starting in the current month: daily files only; across a year end.
    check_plan(
        "2026-01",
        "2026-01",
        (2026, 1, 3),
        &[Klines, FundingRate],
        &[
            "futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-01-01.zip",
            "futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-01-02.zip",
        ],
    );
    // Entirely in the future: nothing.
    check_plan("2025-04", "2025-05", (2025, 3, 4), &ArchiveKind::ALL, &[]);
}
