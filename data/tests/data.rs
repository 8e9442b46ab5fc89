//! Integration tests of the data layer: every CSV variant, every error with its file and line,
//! merging, gaps, alignment, resampling, the content hash and the synthetic generator.

use std::io::Write;
use std::path::{Path, PathBuf};

use etrading_data::synth::{SynthOptions, generate};
use etrading_data::{
    AlignPolicy, DataError, Dataset, GapPolicy, Interval, Kind, LoadOptions, Market, Panel,
    load_dataset, load_panel,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sample");
const H: i64 = 3_600_000;
/// 2025-01-01 00:00 UTC in ms.
const T0: i64 = 1_735_689_600_000;

/// Writes `files` (relative path, content) into a fresh temporary folder.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn load(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    load_dataset(&[dir.to_path_buf()], opts)
}

fn load_ok(dir: &Path) -> Dataset {
    load(dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Loading `files` fails with a message that contains every one of `expect`.
fn check_err(files: &[(&str, &str)], expect: &[&str]) {
    let dir = folder(files);
    let err = load(dir.path(), &LoadOptions::default())
        .err()
        .unwrap_or_else(|| panic!("expected an error containing {expect:?}"));
    let msg = err.to_string();
    for e in expect {
        assert!(msg.contains(e), "message {msg:?} lacks {e:?}");
    }
}

fn bars_csv(header: bool, rows: &[(i64, [f64; 4], f64)]) -> String {
    let mut s = String::new();
    if header {
        s.push_str("open_time,open,high,low,close,volume\n");
    }
    for (t, [o, h, l, c], v) in rows {
        s.push_str(&format!("{t},{o},{h},{l},{c},{v}\n"));
    }
    s
}

fn flat(t: i64, p: f64) -> (i64, [f64; 4], f64) {
    (t, [p, p + 1.0, p - 1.0, p], 10.0)
}

fn zip_bytes(inner_name: &str, csv: &[u8]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    w.start_file(inner_name, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(csv).unwrap();
    w.finish().unwrap();
    buf.into_inner()
}

fn sha256_hex(bytes: &[u8]) -> String {
    etrading_data::source::sha256_hex(bytes)
}

// ---------------------------------------------------------------- variants

#[test]
fn archive_12_columns_with_header() {
    let dir = folder(&[]);
    std::fs::copy(
        Path::new(FIXTURES).join("futures-um-BTCUSDT-1h-2024-10-28_header_ms.csv"),
        dir.path().join("BTCUSDT-1h-2024-10-28.csv"),
    )
    .unwrap();
    let ds = load_ok(dir.path());
    let k = &ds.klines[0];
    assert_eq!(
        (k.symbol.as_str(), k.len(), k.interval.to_string()),
        ("BTCUSDT", 24, "1h".into())
    );
    // First row of the file: 1730073600000,67992.70,68094.60,67804.70,67835.20,5179.117,...
    assert_eq!(k.open_time[0], 1_730_073_600_000);
    assert_eq!(
        [k.open[0], k.high[0], k.low[0], k.close[0], k.volume[0]],
        [67992.7, 68094.6, 67804.7, 67835.2, 5179.117]
    );
}

#[test]
fn archive_12_columns_without_header_futures_and_spot() {
    let text = std::fs::read_to_string(
        Path::new(FIXTURES).join("futures-um-BTCUSDT-1h-2024-10-28_header_ms.csv"),
    )
    .unwrap();
    let body: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let dir = folder(&[("BTCUSDT-1h-2024-10-28.csv", &body)]);
    assert_eq!(load_ok(dir.path()).klines[0].len(), 24);
    let spot = load(
        Path::new(FIXTURES),
        &LoadOptions {
            market: Market::Spot,
            symbols: Some(vec!["BTCUSDT".into()]),
            ..Default::default()
        },
    );
    // The spot fixtures of 2020-01, 2024-10-28 and 2025-01 (µs) load side by side.
    let spot = spot.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spot.klines[0].len(), 48 + 24 + 48);
    assert!(
        spot.skipped
            .iter()
            .any(|s| s.reason.contains("USDT-M futures"))
    );
}

#[test]
fn microsecond_timestamps_are_detected_per_file() {
    let ds = load(
        &Path::new(FIXTURES).join("spot-BTCUSDT-1h-2025-01_noheader_us.csv"),
        &LoadOptions {
            market: Market::Spot,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.klines[0].open_time[0], T0);
    assert_eq!(ds.klines[0].open_time[47], T0 + 47 * H);
}

#[test]
fn rest_camelcase_header() {
    let ds = load_ok(
        &Path::new(FIXTURES).join("futures-BTCUSDT-1h-2025-01_rest-camelcase-header_ms.csv"),
    );
    assert_eq!(ds.klines[0].len(), 199);
    assert_eq!(ds.klines[0].open_time[0], T0);
}

#[test]
fn short_exports_iso_dates_and_mark_price_without_volume() {
    let dir = folder(&[
        (
            "BTCUSDT-1h.csv",
            "date,open,high,low,close,volume\n2025-01-01T00:00:00Z,10,11,9,10.5,1\n2025-01-01 01:00:00+00:00,10.5,12,10,11,2\n",
        ),
        (
            "BTCUSDT-1h-markprice.csv",
            "open_time,open,high,low,close\n1735689600000,10,11,9,10.4\n1735693200000,10.4,12,10,11\n",
        ),
    ]);
    let ds = load_ok(dir.path());
    assert_eq!(ds.klines[0].open_time, vec![T0, T0 + H]);
    assert_eq!(ds.mark[0].kind, Kind::MarkPrice);
    assert_eq!(ds.mark[0].close, vec![10.4, 11.0]);
    assert_eq!(ds.mark[0].volume, vec![0.0, 0.0]);
}

#[test]
fn sample_data_loads_as_documented() {
    let (panel, ds) = load_panel(
        &[PathBuf::from(SAMPLE)],
        &LoadOptions::default(),
        AlignPolicy::Intersection,
    )
    .unwrap();
    assert_eq!(panel.symbols, ["BTCUSDT", "ETHUSDT", "LTCUSDT", "XRPUSDT"]);
    assert_eq!(panel.n_bars(), 8760);
    assert_eq!(panel.open_time[0], T0);
    assert_eq!(ds.funding.len(), 4);
    for s in 0..4 {
        assert_eq!(panel.stats[s].mark_bars, 8760);
        assert_eq!(panel.bars(s).funding.len(), 1095, "{}", panel.symbols[s]);
    }
}

#[test]
fn zips_monthly_and_daily_with_checksums() {
    let m = bars_csv(
        true,
        &(0..48)
            .map(|i| flat(T0 + i * H, 100.0 + i as f64))
            .collect::<Vec<_>>(),
    );
    // A daily file for 2025-01-02 repeats the monthly file's second day: merged, reported.
    let d = bars_csv(
        false,
        &(24..48)
            .map(|i| flat(T0 + i * H, 100.0 + i as f64))
            .collect::<Vec<_>>(),
    );
    let dir = folder(&[]);
    let base = dir.path().join("futures/um");
    for (sub, name, csv) in [
        ("monthly", "BTCUSDT-1h-2025-01", &m),
        ("daily", "BTCUSDT-1h-2025-01-02", &d),
    ] {
        let folder = base.join(sub).join("klines/BTCUSDT/1h");
        std::fs::create_dir_all(&folder).unwrap();
        let z = zip_bytes(&format!("{name}.csv"), csv.as_bytes());
        std::fs::write(folder.join(format!("{name}.zip")), &z).unwrap();
        std::fs::write(
            folder.join(format!("{name}.zip.CHECKSUM")),
            format!("{}  {name}.zip\n", sha256_hex(&z)),
        )
        .unwrap();
    }
    let ds = load_ok(dir.path());
    assert_eq!(ds.klines[0].len(), 48);
    assert_eq!(ds.klines[0].duplicates_merged, 24);
    assert_eq!(ds.klines[0].files.len(), 2);
    assert!(ds.unverified.is_empty(), "{:?}", ds.unverified);

    // Corrupt the daily zip: refused by its checksum, naming both files.
    let daily = base.join("daily/klines/BTCUSDT/1h/BTCUSDT-1h-2025-01-02.zip");
    let mut z = std::fs::read(&daily).unwrap();
    let last = z.len() - 30;
    z[last] ^= 0xff;
    std::fs::write(&daily, z).unwrap();
    let msg = load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("BTCUSDT-1h-2025-01-02.zip")
            && msg.contains(".CHECKSUM")
            && msg.contains("does not match"),
        "{msg}"
    );
}

#[test]
fn zip_without_checksum_and_bad_zips() {
    let csv = bars_csv(true, &[flat(T0, 10.0), flat(T0 + H, 11.0)]);
    let dir = folder(&[]);
    std::fs::write(
        dir.path().join("BTCUSDT-1h-2025-01.zip"),
        zip_bytes("BTCUSDT-1h-2025-01.csv", csv.as_bytes()),
    )
    .unwrap();
    std::fs::write(dir.path().join("BTCUSDT-1h-2025-02.csv"), &csv).unwrap();
    let ds = load_ok(dir.path());
    assert_eq!(ds.klines[0].len(), 2);
    // Read, but reported: nothing vouches for the zip's content. The plain CSV is not listed.
    assert_eq!(
        ds.unverified,
        vec![
            dir.path()
                .join("BTCUSDT-1h-2025-01.zip")
                .display()
                .to_string()
        ]
    );
    std::fs::write(dir.path().join("ETHUSDT-1h-2025-01.zip"), b"not a zip").unwrap();
    let msg = load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("ETHUSDT-1h-2025-01.zip: not a valid zip"),
        "{msg}"
    );
    let bad_sum = folder(&[(
        "BTCUSDT-1h-2025-01.zip.CHECKSUM",
        "xyz  BTCUSDT-1h-2025-01.zip\n",
    )]);
    std::fs::write(
        bad_sum.path().join("BTCUSDT-1h-2025-01.zip"),
        zip_bytes("a.csv", csv.as_bytes()),
    )
    .unwrap();
    let msg = load(bad_sum.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("CHECKSUM: expected a SHA-256"), "{msg}");
}

/// Overwrites the uncompressed size of the first entry, in its local header (offset 22) and
/// in its central directory record (offset 24), as a corrupt mirror or a zip bomb would.
fn patch_declared_size(zip: &mut [u8], size: u32) {
    let at = |sig: &[u8; 4]| zip.windows(4).position(|w| w == sig).unwrap();
    let local = at(b"PK\x03\x04") + 22;
    let central = at(b"PK\x01\x02") + 24;
    zip[local..local + 4].copy_from_slice(&size.to_le_bytes());
    zip[central..central + 4].copy_from_slice(&size.to_le_bytes());
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let file = etrading_data::source::classify(path).unwrap().unwrap();
    etrading_data::source::read_csv_bytes_limited(&file, limit).map(|c| c.bytes)
}

#[test]
fn zip_sizes_are_bounded() {
    let dir = folder(&[]);
    let path = dir.path().join("BTCUSDT-1h-2025-01.zip");
    let csv = bars_csv(true, &[flat(T0, 10.0), flat(T0 + H, 11.0)]);

    // A declared size of 3.75 GiB is refused before anything is reserved or inflated.
    let mut z = zip_bytes("BTCUSDT-1h-2025-01.csv", csv.as_bytes());
    patch_declared_size(&mut z, 0xF000_0000);
    std::fs::write(&path, &z).unwrap();
    let msg = load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("BTCUSDT-1h-2025-01.zip: BTCUSDT-1h-2025-01.csv declares 4026531840 bytes")
            && msg.contains("over the limit of 1073741824 bytes"),
        "{msg}"
    );

    // A bomb: 2 MiB of one byte deflates to a few KB. With a 1 MiB limit, it is refused for
    // what it declares, and, once its size field lies (100 bytes), for what it inflates to.
    let bomb = vec![b'1'; 2 << 20];
    let mut z = zip_bytes("BTCUSDT-1h-2025-01.csv", &bomb);
    assert!(z.len() < 16 << 10, "{} bytes compressed", z.len());
    std::fs::write(&path, &z).unwrap();
    let msg = read_limited(&path, 1 << 20).unwrap_err().to_string();
    assert!(
        msg.contains("declares 2097152 bytes inflated, over the limit of 1048576"),
        "{msg}"
    );
    assert_eq!(read_limited(&path, 2 << 20).unwrap().len(), 2 << 20);
    patch_declared_size(&mut z, 100);
    std::fs::write(&path, &z).unwrap();
    let msg = read_limited(&path, 1 << 20).unwrap_err().to_string();
    assert!(
        msg.contains("BTCUSDT-1h-2025-01.zip: BTCUSDT-1h-2025-01.csv inflates past the limit of 1048576 bytes although it declares 100"),
        "{msg}"
    );
}

#[test]
fn funding_variants() {
    // Archive form, REST form with ms jitter, two-column form, BigDecimal zeros.
    let dir = folder(&[
        (
            "a/BTCUSDT-fundingRate-2025-01.csv",
            "calc_time,funding_interval_hours,last_funding_rate\n1735689600000,8,0.00010000\n1735718400000,8,0E-8\n",
        ),
        (
            "b/ETHUSDT-funding.csv",
            "fundingTime,fundingIntervalHours,fundingRate\n1735689600015,8,8.4E-7\n1735718400002,8,-3.5E-7\n",
        ),
        (
            "c/LTCUSDT-funding.csv",
            "funding_time,funding_rate\n1735689600001,0.0001\n1735718400003,0.0002\n",
        ),
    ]);
    let ds = load(dir.path(), &LoadOptions::default()).err();
    // Only funding files: there is nothing to align, but the series load.
    assert!(ds.is_none());
    let ds = load_ok(dir.path());
    let by = |s: &str| ds.funding_of(s).unwrap();
    assert_eq!(by("BTCUSDT").rate, vec![0.0001, 0.0]);
    assert_eq!(by("ETHUSDT").time, vec![T0, T0 + 8 * H]);
    assert_eq!(by("ETHUSDT").rate, vec![8.4e-7, -3.5e-7]);
    assert_eq!(
        by("LTCUSDT").interval_hours,
        vec![8, 8],
        "inferred from the spacing"
    );
    let real =
        load_ok(&Path::new(FIXTURES).join("futures-BTCUSDT-funding-2025-01_rest_ms-jitter.csv"));
    let f = &real.funding[0];
    assert_eq!(f.len(), 99);
    assert!(f.time.iter().all(|t| t % (8 * H) == 0));
}

// ---------------------------------------------------------------- errors

const HDR: &str = "open_time,open,high,low,close,volume\n";

#[test]
fn row_errors_name_file_and_line() {
    let cases: &[(&str, &[&str])] = &[
        (
            "1735693200000,1,2,0.5,1,1\n1735689600000,1,2,0.5,1,1\n",
            &["BTCUSDT-1h.csv:3:", "earlier than the previous row"],
        ),
        (
            "1735689600000,1,2,0.5,1,1\n1735689600000,1,2,0.5,1,1\n",
            &[
                "BTCUSDT-1h.csv:3:",
                "duplicate timestamp 2025-01-01 00:00 (first seen on line 2)",
            ],
        ),
        (
            "1735689600000,1,2,0.5,1,1\n1735691400000,1,2,0.5,1,1\n",
            &[
                "BTCUSDT-1h.csv:3:",
                "step of 30m is not a whole number of 1h bars",
            ],
        ),
        (
            "1735689600000,1,2,0.5,1,1\n1735693200000,0,2,0.5,1,1\n",
            &["BTCUSDT-1h.csv:3:", "`open`: price must be positive"],
        ),
        (
            "1735689600000,1,2,0.5,-1,1\n",
            &["BTCUSDT-1h.csv:2:", "`close`: price must be positive"],
        ),
        (
            "1735689600000,1,NaN,0.5,1,1\n",
            &[
                "BTCUSDT-1h.csv:2:",
                "`high`: price must be positive and finite, found NaN",
            ],
        ),
        (
            "1735689600000,1,inf,0.5,1,1\n",
            &["BTCUSDT-1h.csv:2:", "found inf"],
        ),
        (
            "1735689600000,1,1.5,0.5,2,1\n",
            &[
                "BTCUSDT-1h.csv:2:",
                "high 1.5 is below max(open 1, close 2)",
            ],
        ),
        (
            "1735689600000,1,2,1.5,1.2,1\n",
            &[
                "BTCUSDT-1h.csv:2:",
                "low 1.5 is above min(open 1, close 1.2)",
            ],
        ),
        (
            "1735689600000,1,2,0.5,1,-3\n",
            &["BTCUSDT-1h.csv:2:", "volume must be finite and >= 0"],
        ),
        (
            "1735689600000,1,2,0.5,1\n",
            &["BTCUSDT-1h.csv:2:", "expected 6 fields, found 5"],
        ),
        (
            "1735689600000,1,2,0.5,abc,1\n",
            &[
                "BTCUSDT-1h.csv:2:",
                "`close`: expected a number, found \"abc\"",
            ],
        ),
        (
            "1735689600000,1,2,0.5,1,1\n1735693200000000,1,2,0.5,1,1\n",
            &[
                "BTCUSDT-1h.csv:3:",
                "in microseconds but the file's first row is in milliseconds",
            ],
        ),
        (
            "1735689600000,1,2,0.5,1,1\n1735693260000,1,2,0.5,1,1\n",
            &["BTCUSDT-1h.csv:3:", "bar interval mismatch"],
        ),
        (
            "1735689660000,1,2,0.5,1,1\n1735693260000,1,2,0.5,1,1\n",
            &[
                "BTCUSDT-1h.csv:2:",
                "2025-01-01 00:01 is not on the 1h grid",
            ],
        ),
        (
            "2025-13-45,1,2,0.5,1,1\n",
            &["BTCUSDT-1h.csv:2:", "expected a Unix time"],
        ),
        // Times outside 2017-01-01 .. 2100-01-01: a far-future µs time (year 5138), 1970 in
        // seconds, the last millisecond before 2017, 2100 as an ISO date.
        (
            "1735689600000000,1,2,0.5,1,1\n99999999999999000,1,2,0.5,1,1\n",
            &[
                "BTCUSDT-1h.csv:3:",
                "column `open_time`: time 5138-11-16 09:46:39.999 is outside the plausible window 2017-01-01 .. 2100-01-01",
            ],
        ),
        (
            "3600,1,2,0.5,1,1\n",
            &["BTCUSDT-1h.csv:2:", "time 1970-01-01 01:00 is outside"],
        ),
        (
            "1483228799999,1,2,0.5,1,1\n",
            &[
                "BTCUSDT-1h.csv:2:",
                "time 2016-12-31 23:59:59.999 is outside",
            ],
        ),
        (
            "2025-01-01,1,2,0.5,1,1\n2100-01-01,1,2,0.5,1,1\n",
            &["BTCUSDT-1h.csv:3:", "time 2100-01-01 00:00 is outside"],
        ),
    ];
    for (body, expect) in cases {
        check_err(&[("BTCUSDT-1h.csv", &format!("{HDR}{body}"))], expect);
    }
}

#[test]
fn file_errors_name_the_file() {
    check_err(
        &[("BTCUSDT-1h.csv", "time,o,h,l,c\n1,2,3,4,5\n")],
        &[
            "BTCUSDT-1h.csv: line 1: header",
            "lacks the column(s) open, high, low, close, volume",
        ],
    );
    check_err(
        &[("BTCUSDT-1h.csv", HDR)],
        &["BTCUSDT-1h.csv: no data rows"],
    );
    check_err(&[("BTCUSDT-1h.csv", "")], &["BTCUSDT-1h.csv: no data rows"]);
    check_err(
        &[("BTCUSDT.csv", "1735689600000,1,2,0.5,1,1\n")],
        &["BTCUSDT.csv: cannot tell the bar interval from a single row"],
    );
    check_err(
        &[("prices-1h.csv", "1735689600000,1,2,0.5,1,1\n")],
        &["prices-1h.csv: cannot tell the symbol"],
    );
    check_err(
        &[("BTCUSDT-1h.csv", "1735689600000,1,2,0.5\n")],
        &["expected at least 5 columns"],
    );
    check_err(
        &[(
            "BTCUSDT-15m.csv",
            "1735689600000,1,2,0.5,1,1\n1735693200000,1,2,0.5,1,1\n1735696800000,1,2,0.5,1,1\n",
        )],
        &[
            "BTCUSDT-15m.csv: the file name says 15m but no two bars are 15m apart (most are 1h apart)",
        ],
    );
}

#[test]
fn funding_errors() {
    let hdr = "calc_time,funding_interval_hours,last_funding_rate\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "1735704000000,8,0.0001\n",
            &[
                "BTCUSDT-funding.csv:2:",
                "funding time 2025-01-01 04:00 is more than a minute away from the 8h funding grid",
            ],
        ),
        (
            "1735689600000,8,NaN\n",
            &["BTCUSDT-funding.csv:2:", "funding rate must be finite"],
        ),
        (
            "1735689600000,8,1.5\n",
            &["BTCUSDT-funding.csv:2:", "|rate| < 1, found 1.5"],
        ),
        (
            "1735689600000,0,0.0001\n",
            &[
                "BTCUSDT-funding.csv:2:",
                "funding interval must be a whole number of hours",
            ],
        ),
        (
            "1735689600000,8,0.0001\n1735689600005,8,0.0001\n",
            &["BTCUSDT-funding.csv:3:", "duplicate timestamp"],
        ),
        (
            "1735718400000,8,0.0001\n1735689600000,8,0.0001\n",
            &["BTCUSDT-funding.csv:3:", "earlier than the previous row"],
        ),
    ];
    for (body, expect) in cases {
        check_err(&[("BTCUSDT-funding.csv", &format!("{hdr}{body}"))], expect);
    }
    check_err(
        &[("BTCUSDT-funding.csv", "a,b\n1,2\n")],
        &["is not a funding header"],
    );
}

#[test]
fn conflicting_overlap_names_both_files_and_lines() {
    let a = bars_csv(true, &[flat(T0, 10.0), flat(T0 + H, 11.0)]);
    let b = bars_csv(true, &[flat(T0 + H, 11.5), flat(T0 + 2 * H, 12.0)]);
    check_err(
        &[
            ("BTCUSDT-1h-2025-01.csv", &a),
            ("BTCUSDT-1h-2025-01-01.csv", &b),
        ],
        &[
            "BTCUSDT-1h-2025-01.csv:3 and ",
            "BTCUSDT-1h-2025-01-01.csv:2",
            "BTCUSDT klines at 2025-01-01 01:00",
        ],
    );
    let fa = "calc_time,funding_interval_hours,last_funding_rate\n1735689600000,8,0.0001\n";
    let fb = "calc_time,funding_interval_hours,last_funding_rate\n1735689600000,8,0.0002\n";
    check_err(
        &[("x/BTCUSDT-funding.csv", fa), ("y/BTCUSDT-funding.csv", fb)],
        &[
            "x/BTCUSDT-funding.csv:2 and ",
            "y/BTCUSDT-funding.csv:2",
            "BTCUSDT funding",
        ],
    );
}

#[test]
fn interval_in_name_must_match_the_data() {
    check_err(
        &[(
            "BTCUSDT-4h.csv",
            &bars_csv(true, &[flat(T0, 10.0), flat(T0 + H, 11.0)]),
        )],
        &[
            "BTCUSDT-4h.csv:3:",
            "step of 1h is not a whole number of 4h bars",
        ],
    );
}

#[test]
fn several_intervals_need_a_choice() {
    let dir = folder(&[
        (
            "BTCUSDT-1h.csv",
            &bars_csv(true, &[flat(T0, 10.0), flat(T0 + H, 11.0)]),
        ),
        (
            "BTCUSDT-15m.csv",
            &bars_csv(true, &[flat(T0, 10.0), flat(T0 + H / 4, 11.0)]),
        ),
    ]);
    let ds = load_ok(dir.path());
    let msg = ds
        .panel(None, AlignPolicy::Intersection, GapPolicy::Keep)
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "klines at several intervals (15m, 1h); choose one with --interval"
    );
    let only = load(
        dir.path(),
        &LoadOptions {
            interval: Some("15m".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(only.klines.len(), 1);
    assert_eq!(only.skipped.len(), 1);
}

// ---------------------------------------------------------------- gaps, alignment, resampling

#[test]
fn gaps_are_reported_and_optionally_filled() {
    // Bars at 0,1,2,5,6,9h: gaps of 2 bars (3-4h) and 2 bars (7-8h).
    let rows: Vec<_> = [0, 1, 2, 5, 6, 9]
        .iter()
        .map(|&i| flat(T0 + i * H, 10.0 + i as f64))
        .collect();
    let dir = folder(&[("BTCUSDT-1h.csv", &bars_csv(true, &rows))]);
    let ds = load_ok(dir.path());
    let g = &ds.gaps[0];
    assert_eq!(g.len(), 2);
    assert_eq!(
        (g[0].first_missing, g[0].last_missing, g[0].bars),
        (T0 + 3 * H, T0 + 4 * H, 2)
    );
    assert_eq!((g[1].first_missing, g[1].bars), (T0 + 7 * H, 2));
    let filled = load(
        dir.path(),
        &LoadOptions {
            gap_policy: GapPolicy::ForwardFill,
            ..Default::default()
        },
    )
    .unwrap();
    let k = &filled.klines[0];
    assert_eq!(k.len(), 10);
    assert_eq!(k.filled_bars, 4);
    // The bar at 3h is flat at the 2h close (12), volume 0.
    assert_eq!(
        [k.open[3], k.high[3], k.low[3], k.close[3], k.volume[3]],
        [12.0, 12.0, 12.0, 12.0, 0.0]
    );
    assert!(k.gaps().is_empty());
    assert_eq!(
        filled.gaps[0].len(),
        2,
        "the report keeps the gaps found before filling"
    );
}

#[test]
fn times_are_plausible_and_fills_bounded() {
    // The window's ends: 2017-01-01 00:00 is accepted, and so is the last bar of 2099.
    let last_of_2099 = 4_102_444_800_000 - H;
    let dir = folder(&[(
        "BTCUSDT-1h.csv",
        &bars_csv(
            true,
            &[flat(1_483_228_800_000, 10.0), flat(last_of_2099, 11.0)],
        ),
    )]);
    let ds = load_ok(dir.path());
    assert_eq!(
        ds.klines[0].open_time,
        vec![1_483_228_800_000, last_of_2099]
    );
    // Filling those 83 years of 1h bars would add 727,558 bars: under the limit. At 1m, 2025
    // to 2099 alone is 39.4 million bars: refused before anything is allocated.
    let m = 60_000;
    let dir = folder(&[(
        "BTCUSDT-1m.csv",
        &bars_csv(
            true,
            &[flat(T0, 10.0), flat(T0 + m, 10.0), flat(last_of_2099, 11.0)],
        ),
    )]);
    let ffill = LoadOptions {
        gap_policy: GapPolicy::ForwardFill,
        ..Default::default()
    };
    let msg = load(dir.path(), &ffill).unwrap_err().to_string();
    assert!(
        msg.contains("BTCUSDT klines 1m: --gaps ffill would add 39445858 bars")
            && msg.contains("largest gap is 39445858 bars, 2025-01-01 00:02 .. 2099-12-31 22:59")
            && msg.contains("over the limit of 10000000")
            && msg.contains("BTCUSDT-1m.csv"),
        "{msg}"
    );
    // Without the fill, the same data loads and reports its gap.
    assert_eq!(load_ok(dir.path()).gaps[0][0].bars, 39_445_858);
    // Funding times are held to the same window.
    check_err(
        &[(
            "BTCUSDT-funding.csv",
            "calc_time,funding_interval_hours,last_funding_rate\n1735689600000,8,0.0001\n99999999999999,8,0.0001\n",
        )],
        &[
            "BTCUSDT-funding.csv:3:",
            "column `calc_time`: time 5138-11-16",
            "is outside the plausible window",
        ],
    );
}

fn two_symbols() -> tempfile::TempDir {
    // BTC: 0..6h complete. ETH: listed at 2h, missing 4h.
    let btc: Vec<_> = (0..6).map(|i| flat(T0 + i * H, 100.0 + i as f64)).collect();
    let eth: Vec<_> = [2, 3, 5]
        .iter()
        .map(|&i| flat(T0 + i * H, 10.0 + i as f64))
        .collect();
    folder(&[
        ("BTCUSDT-1h.csv", &bars_csv(true, &btc)),
        ("ETHUSDT-1h.csv", &bars_csv(true, &eth)),
        (
            "BTCUSDT-1h-markprice.csv",
            "open_time,open,high,low,close\n1735689600000,100,101,99,100\n1735696800000,102,103,101,102\n",
        ),
        (
            "ETHUSDT-funding.csv",
            "calc_time,funding_interval_hours,last_funding_rate\n1735660800000,8,0.1\n1735689600000,8,0.0001\n1735718400000,8,0.0002\n",
        ),
        (
            "BTCUSDT-funding.csv",
            "calc_time,funding_interval_hours,last_funding_rate\n1735689600000,8,0.0003\n",
        ),
    ])
}

#[test]
fn intersection_alignment() {
    let dir = two_symbols();
    let ds = load_ok(dir.path());
    let p = ds
        .panel(None, AlignPolicy::Intersection, GapPolicy::Keep)
        .unwrap();
    assert_eq!(p.symbols, ["BTCUSDT", "ETHUSDT"]);
    assert_eq!(p.open_time, vec![T0 + 2 * H, T0 + 3 * H, T0 + 5 * H]);
    let btc = p.bars(0);
    assert_eq!(btc.close, &[102.0, 103.0, 105.0]);
    assert_eq!(p.bars(1).close, &[12.0, 13.0, 15.0]);
    assert_eq!(p.stats[0].dropped_bars, 3);
    // Mark price only at 0h and 2h: placed at 2h, NaN elsewhere.
    assert_eq!(btc.mark_close[0], 102.0);
    assert!(btc.mark_close[1].is_nan());
    assert_eq!(p.stats[0].mark_bars, 1);
    // BTC funding at 00:00 is before the panel starts (2h): outside.
    assert!(btc.funding.is_empty());
    assert_eq!(p.stats[0].funding_outside, 1);
}

#[test]
fn union_alignment_fills_inside_and_nan_before_listing() {
    let dir = two_symbols();
    let ds = load_ok(dir.path());
    let p = ds.panel(None, AlignPolicy::Union, GapPolicy::Keep).unwrap();
    assert_eq!(p.n_bars(), 6);
    let eth = p.bars(1);
    assert!(
        eth.close[0].is_nan() && eth.close[1].is_nan(),
        "not listed yet"
    );
    assert_eq!(eth.close[2], 12.0);
    // 4h is missing inside ETH's span: flat at the 3h close, volume 0.
    assert_eq!(
        [
            eth.open[4],
            eth.high[4],
            eth.low[4],
            eth.close[4],
            eth.volume[4]
        ],
        [13.0, 13.0, 13.0, 13.0, 0.0]
    );
    assert_eq!((p.stats[1].nan_bars, p.stats[1].filled_bars), (2, 1));
    // ETH funding: 2024-12-31 16:00 is before the panel (outside), 00:00 goes on bar 0.
    let f: Vec<_> = eth.funding.iter().map(|e| (e.bar, e.rate)).collect();
    assert_eq!(f, vec![(0, 0.0001)]);
    assert_eq!(p.stats[1].funding_outside, 2);
    assert_eq!(p.bars(0).funding[0].bar, 0);
}

#[test]
fn funding_in_a_hole_goes_to_the_next_bar_and_coarse_bars_hold_their_events() {
    let rows: Vec<_> = [0, 1, 2, 9, 10]
        .iter()
        .map(|&i| flat(T0 + i * H, 10.0))
        .collect();
    let dir = folder(&[
        ("BTCUSDT-1h.csv", &bars_csv(true, &rows)),
        (
            "BTCUSDT-funding.csv",
            "calc_time,funding_interval_hours,last_funding_rate\n1735689600000,8,0.0001\n1735718400000,8,0.0002\n",
        ),
    ]);
    let p = load_ok(dir.path())
        .panel(None, AlignPolicy::Intersection, GapPolicy::Keep)
        .unwrap();
    let bars: Vec<u32> = p.bars(0).funding.iter().map(|e| e.bar).collect();
    // 00:00 on bar 0; 08:00 falls in the hole 3h..8h, so on the next bar (9h, index 3).
    assert_eq!(bars, vec![0, 3]);
    let d = load(
        dir.path(),
        &LoadOptions {
            resample: Some("1d".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    let p = d
        .panel(None, AlignPolicy::Intersection, GapPolicy::Keep)
        .unwrap();
    assert_eq!(
        p.bars(0).funding.iter().map(|e| e.bar).collect::<Vec<_>>(),
        vec![0, 0]
    );
}

#[test]
fn resampling_15m_to_1h_and_4h() {
    // Two hours of 15m bars, hand-made:
    //   00:00 o10 h12 l9  c11 v1 | 00:15 o11 h13 l10 c12 v2 | 00:30 o12 h12.5 l8 c9 v3 | 00:45 o9 h10 l8.5 c9.5 v4
    //   01:00 o9.5 h11 l9 c10 v5 | (01:15 missing) | 01:30 o10 h15 l10 c14 v6 | 01:45 o14 h14 l13 c13.5 v7
    // 1h bars: 00:00 o10 h13 l8 c9.5 v10;  01:00 o9.5 h15 l9 c13.5 v18 (partial: 3 of 4 bars)
    let q = H / 4;
    let rows = vec![
        (T0, [10.0, 12.0, 9.0, 11.0], 1.0),
        (T0 + q, [11.0, 13.0, 10.0, 12.0], 2.0),
        (T0 + 2 * q, [12.0, 12.5, 8.0, 9.0], 3.0),
        (T0 + 3 * q, [9.0, 10.0, 8.5, 9.5], 4.0),
        (T0 + 4 * q, [9.5, 11.0, 9.0, 10.0], 5.0),
        (T0 + 6 * q, [10.0, 15.0, 10.0, 14.0], 6.0),
        (T0 + 7 * q, [14.0, 14.0, 13.0, 13.5], 7.0),
    ];
    let dir = folder(&[("BTCUSDT-15m.csv", &bars_csv(true, &rows))]);
    let h1 = load(
        dir.path(),
        &LoadOptions {
            resample: Some("1h".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    let k = &h1.klines[0];
    assert_eq!(k.interval.to_string(), "1h");
    assert_eq!(k.open_time, vec![T0, T0 + H]);
    assert_eq!(
        (
            k.open.clone(),
            k.high.clone(),
            k.low.clone(),
            k.close.clone(),
            k.volume.clone()
        ),
        (
            vec![10.0, 9.5],
            vec![13.0, 15.0],
            vec![8.0, 9.0],
            vec![9.5, 13.5],
            vec![10.0, 18.0]
        )
    );
    assert_eq!(k.partial_buckets, 1);
    let h4 = load(
        dir.path(),
        &LoadOptions {
            resample: Some("4h".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    let k = &h4.klines[0];
    assert_eq!(
        (
            k.open_time.clone(),
            k.open[0],
            k.high[0],
            k.low[0],
            k.close[0],
            k.volume[0]
        ),
        (vec![T0], 10.0, 15.0, 8.0, 13.5, 28.0)
    );
    let bad = load(
        dir.path(),
        &LoadOptions {
            resample: Some("25m".parse().unwrap()),
            ..Default::default()
        },
    );
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("cannot resample 15m bars to 25m")
    );
}

// ---------------------------------------------------------------- hash

fn panel_of(dir: &Path) -> Panel {
    load_panel(
        &[dir.to_path_buf()],
        &LoadOptions::default(),
        AlignPolicy::Intersection,
    )
    .unwrap()
    .0
}

#[test]
fn hash_is_stable_across_file_splitting_and_format() {
    let rows: Vec<_> = (0..72)
        .map(|i| {
            (
                T0 + i * H,
                [
                    100.0 + i as f64,
                    101.5 + i as f64,
                    99.25 + i as f64,
                    100.5 + i as f64,
                ],
                1.0 + i as f64,
            )
        })
        .collect();
    let whole = folder(&[("BTCUSDT-1h.csv", &bars_csv(true, &rows))]);
    // Split into three daily files, one without header, one as a 12-column camelCase export.
    let day = |d: usize| &rows[d * 24..(d + 1) * 24];
    let camel: String = std::iter::once("openTime,open,high,low,close,volume,closeTime,quoteVolume,trades,takerBuyBase,takerBuyQuote,ignore\n".to_string())
        .chain(day(2).iter().map(|(t, [o, h, l, c], v)| format!("{t},{o:.2},{h:.2},{l:.2},{c:.2},{v:.3},{},0,0,0,0,0\n", t + H - 1)))
        .collect();
    let split = folder(&[
        ("d/BTCUSDT-1h-2025-01-03.csv", &camel),
        ("d/BTCUSDT-1h-2025-01-02.csv", &bars_csv(false, day(1))),
        ("d/BTCUSDT-1h-2025-01-01.csv", &bars_csv(true, day(0))),
    ]);
    let a = panel_of(whole.path()).content_hash();
    assert_eq!(a, panel_of(split.path()).content_hash());
    assert_eq!(a.len(), 64);
    let mut changed = rows.clone();
    changed[40].2 += 0.001;
    let other = folder(&[("BTCUSDT-1h.csv", &bars_csv(true, &changed))]);
    assert_ne!(a, panel_of(other.path()).content_hash());
}

// ---------------------------------------------------------------- synthetic data

#[test]
fn synth_is_seeded_valid_and_loads_from_zips() {
    let opts = |seed, zip| SynthOptions {
        symbols: vec!["BTCUSDT".into(), "XRPUSDT".into()],
        interval: "1h".parse::<Interval>().unwrap(),
        from: (2024, 1),
        to: (2024, 3),
        seed,
        zip,
        header: true,
        mark_price: true,
        funding: true,
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sa = generate(a.path(), &opts(7, false)).unwrap();
    generate(b.path(), &opts(7, true)).unwrap();
    // 2 symbols x 3 months x (klines, mark, funding).
    assert_eq!(sa.files, 18);
    assert_eq!(sa.kline_rows, 2 * (31 + 29 + 31) * 24);
    let (pa, da) = load_panel(
        &[a.path().to_path_buf()],
        &LoadOptions::default(),
        AlignPolicy::Intersection,
    )
    .unwrap();
    let (pb, _) = load_panel(
        &[b.path().to_path_buf()],
        &LoadOptions::default(),
        AlignPolicy::Intersection,
    )
    .unwrap();
    assert_eq!(
        pa.content_hash(),
        pb.content_hash(),
        "zip and csv hold the same data"
    );
    assert_eq!(pa.n_bars(), 2184);
    assert_eq!(pa.bars(0).funding.len(), 91 * 3);
    assert!(da.gaps.iter().all(Vec::is_empty));
    let c = tempfile::tempdir().unwrap();
    generate(c.path(), &opts(7, false)).unwrap();
    assert_eq!(
        pa.content_hash(),
        panel_of(c.path()).content_hash(),
        "same seed, same data"
    );
    let d = tempfile::tempdir().unwrap();
    generate(d.path(), &opts(8, false)).unwrap();
    assert_ne!(pa.content_hash(), panel_of(d.path()).content_hash());
    // Fat tails: the largest 1h move is well beyond 4 standard deviations.
    let close = pa.bars(0).close;
    let r: Vec<f64> = close.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
    let sd = (r.iter().map(|x| x * x).sum::<f64>() / r.len() as f64).sqrt();
    let max = r.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(max > 4.0 * sd, "max |r| {max} vs sd {sd}");
}

// ---------------------------------------------------------------- property test

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, rng_seed: proptest::test_runner::RngSeed::Fixed(20251121), ..ProptestConfig::default() })]
        /// A valid series cut into overlapping files in any order loads back identically.
        #[test]
        fn split_files_merge_back(n in 2usize..200, cuts in proptest::collection::vec(0usize..200, 0..5), overlap in 0usize..5, gap_at in 0usize..200) {
            let mut rows: Vec<_> = (0..n as i64).map(|i| (T0 + i * H, [50.0 + (i % 7) as f64, 60.0, 40.0, 51.0], i as f64)).collect();
            if gap_at < n && gap_at > 0 { rows.remove(gap_at); }
            let whole = folder(&[("BTCUSDT-1h.csv", &bars_csv(true, &rows))]);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % rows.len()).collect();
            points.push(0);
            points.push(rows.len());
            points.sort_unstable();
            points.dedup();
            let files: Vec<(String, String)> = points.windows(2).enumerate().map(|(k, w)| {
                let lo = w[0].saturating_sub(overlap);
                (format!("p{}/BTCUSDT-1h-part.csv", 9 - k), bars_csv(k % 2 == 0, &rows[lo..w[1]]))
            }).collect();
            let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let split = folder(&refs);
            let a = load_ok(whole.path());
            let b = load_ok(split.path());
            prop_assert_eq!(&a.klines[0].open_time, &b.klines[0].open_time);
            prop_assert_eq!(&a.klines[0].close, &b.klines[0].close);
            prop_assert_eq!(panel_of(whole.path()).content_hash(), panel_of(split.path()).content_hash());
        }
    }
}
