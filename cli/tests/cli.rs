//! End-to-end tests of the `etrading` binary: golden files for its text and JSON output
//! (refresh with `UPDATE_GOLDEN=1 cargo test -p etrading-cli`), exit codes and error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `etrading args...` from the repository root.
fn etrading(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etrading"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

/// Compares `actual` with the golden file `name`, or rewrites it under `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {}:\n expected: {:?}\n   actual: {:?}\n(UPDATE_GOLDEN=1 refreshes it)",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn inspect_sample_text() {
    check_golden(
        "inspect_sample.txt",
        &stdout(&etrading(&["data", "inspect", "data/sample"])),
    );
}

#[test]
fn inspect_sample_json() {
    let out = stdout(&etrading(&["data", "inspect", "data/sample", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], "etrading.inspect/1");
    assert_eq!(v["panels"][0]["bars"], 8760);
    check_golden("inspect_sample.json", &out);
}

#[test]
fn inspect_resampled_union_text() {
    check_golden(
        "inspect_sample_4h_union_q1.txt",
        &stdout(&etrading(&[
            "data",
            "inspect",
            "data/sample",
            "--resample",
            "4h",
            "--align",
            "union",
            "--from",
            "2025-01-01",
            "--to",
            "2025-04-01",
            "--symbols",
            "BTCUSDT,XRPUSDT",
        ])),
    );
}

#[test]
fn invalid_data_exits_non_zero_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ETHUSDT-1h.csv");
    std::fs::write(&f, "open_time,open,high,low,close,volume\n1735689600000,1,2,0.5,1,1\n1735693200000,1,0.9,0.5,1,1\n").unwrap();
    let o = etrading(&["data", "inspect", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: loading market data: {}:3: high 0.9 is below max(open 1, close 1)",
            f.display()
        )
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn bad_flags_are_usage_errors() {
    let o = etrading(&["data", "inspect", "data/sample", "--interval", "7x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown interval \"7x\""));
    let o = etrading(&["data", "inspect", "data/sample", "--from", "2025-02-30"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--from \"2025-02-30\": expected a UTC date")
    );
    let o = etrading(&["data", "inspect", "does/not/exist"]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("does/not/exist: No such file or directory"),
        "{stderr}"
    );
    // The I/O error is said once, not again by the error chain.
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
}

/// A storage that is not an SQLite file is named with SQLite's reason, said once.
#[test]
fn a_study_storage_that_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.db");
    std::fs::write(
        &file,
        "not a database, just text that is long enough to have a header\n",
    )
    .unwrap();
    let storage = format!("sqlite:///{}", file.display());
    for args in [
        vec!["study", "list", "--storage", &storage],
        vec!["report", "--study", "x", "--storage", &storage],
    ] {
        let o = etrading(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains(&format!("{}: file is not a database", file.display())),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            stderr.matches("not a database").count(),
            1,
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn synth_then_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = etrading(&[
        "data",
        "synth",
        "--out",
        out,
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--interval",
        "1h",
        "--from",
        "2024-02",
        "--to",
        "2024-02",
        "--zip",
        "--seed",
        "3",
    ]);
    let text = stdout(&o);
    assert!(
        text.starts_with("wrote 12 files (1392 kline rows per kind, 174 funding events"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&etrading(&["data", "inspect", out, "--json"]))).unwrap();
    assert_eq!(v["panels"][0]["bars"], 696);
    assert_eq!(v["funding"][0]["coverage"]["ratio"], 1.0);
    assert_eq!(v["unverified"], serde_json::json!([]));
    // A zip without its .CHECKSUM still loads, but the report and every command say so.
    let zip = dir
        .path()
        .join("futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-02.zip");
    std::fs::remove_file(format!("{}.CHECKSUM", zip.display())).unwrap();
    let zip = zip.display().to_string();
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&etrading(&["data", "inspect", out, "--json"]))).unwrap();
    assert_eq!(v["unverified"], serde_json::json!([zip]));
    let text = stdout(&etrading(&["data", "inspect", out]));
    assert!(
        text.ends_with(&format!(
            "unverified 1 zip file(s) (no .CHECKSUM beside them):\n  {zip}\n"
        )),
        "{text}"
    );
    let mut args = RSI_EMA.to_vec();
    args.extend(["--data", out, "--symbols", "BTCUSDT,ETHUSDT"]);
    let o = etrading(&args);
    stdout(&o);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        format!("warning: 1 zip file(s) have no .CHECKSUM, so their content is unverified: {zip}")
    );
    let o = etrading(&["data", "synth", "--out", out, "--symbols", "btc"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"btc\" is not a USDT-M symbol"));
}

const RSI_EMA: [&str; 12] = [
    "backtest",
    "examples/rsi_ema.toml",
    "--set",
    "rsi_window=14",
    "--set",
    "rsi_lower=30",
    "--set",
    "rsi_upper=70",
    "--set",
    "ema_long=200",
    "--set",
    "leverage=5",
];

#[test]
fn backtest_rsi_ema_on_the_sample() {
    check_golden("backtest_rsi_ema.txt", &stdout(&etrading(&RSI_EMA)));
    let mut args = RSI_EMA.to_vec();
    args.push("--json");
    let v: serde_json::Value = serde_json::from_str(&stdout(&etrading(&args))).unwrap();
    assert_eq!(v["schema"], "etrading.backtest/1");
    let p = &v["provenance"];
    assert_eq!(p["talib_version"], "0.4.0");
    assert_eq!(p["params"]["leverage"], 5);
    assert_eq!(p["bars"], 8760);
    // The equity identity: initial capital + sum of trade PnL = final equity (every trade is
    // closed by the end).
    let pnl: f64 = v["trades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pnl"].as_f64().unwrap())
        .sum();
    let fin = v["metrics"]["final_equity"].as_f64().unwrap();
    assert!((10_000.0 + pnl - fin).abs() < 1e-6, "{pnl} {fin}");
    assert_eq!(
        v["metrics"]["n_trades"].as_u64().unwrap() as usize,
        v["trades"].as_array().unwrap().len()
    );
}

#[test]
fn backtest_errors_are_one_clear_line() {
    let o = etrading(&[
        "backtest",
        "examples/rsi_ema.toml",
        "--set",
        "rsi_window=14",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        "error: set a value for each of these params with --set NAME=VALUE: rsi_lower (20, 25, 30, 35, 40); rsi_upper (60, 65, 70, 75, 80); ema_long (50, 100, 200); leverage (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)"
    );
    let mut args = RSI_EMA.to_vec();
    args[3] = "rsi_window=15";
    let o = etrading(&args);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("--set rsi_window=15: not one of its values 14, 21")
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.toml");
    std::fs::write(
        &spec,
        std::fs::read_to_string(root().join("examples/rsi_ema.toml"))
            .unwrap()
            .replace("close > ema", "close > emma"),
    )
    .unwrap();
    let o = etrading(&["backtest", spec.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {}:19:44: long_entry: unknown name `emma`; expected a series (open, high, low, close, volume), an indicator (rsi, ema) or a param (rsi_window, rsi_lower, rsi_upper, ema_long, leverage)",
            spec.display()
        )
    );
}

/// A small grid of the RSI+EMA spec on the sample: 10 leverage values of one signal setting
/// and 2 EMA lengths (20 sets).
const SMALL_GRID: [&str; 8] = [
    "--set",
    "rsi_window=14",
    "--set",
    "rsi_lower=30",
    "--set",
    "rsi_upper=70",
    "--quiet",
    "--json",
];

fn sweep_json(extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["sweep", "examples/rsi_ema.toml", "--set", "ema_long=200"];
    args.extend(SMALL_GRID);
    args.extend(extra);
    let out = etrading(&args);
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn sweep_ranks_a_grid_and_resumes_from_its_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sweep.csv");
    let csv_arg = csv.to_str().unwrap();
    let full = sweep_json(&["--out", csv_arg]);
    assert_eq!(full["sets"], 10);
    assert_eq!(full["computed"], 10);
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(rows.lines().count(), 11, "header + 10 sets");
    // Simulate a sweep killed after two sets, mid-way through the third row.
    let lines: Vec<&str> = rows.lines().collect();
    let cut = format!(
        "{}\n{}\n{}\n{}",
        lines[0],
        lines[1],
        lines[2],
        &lines[3][..10]
    );
    std::fs::write(&csv, cut).unwrap();
    let resumed = sweep_json(&["--out", csv_arg, "--resume"]);
    assert_eq!(resumed["resumed"], 2);
    assert_eq!(resumed["computed"], 8);
    let again = std::fs::read_to_string(&csv).unwrap();
    let mut a: Vec<&str> = rows.lines().collect();
    let mut b: Vec<&str> = again.lines().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "the resumed file holds the same rows");
    // The same ranking either way, deflated Sharpe ratios included: a resumed sweep takes
    // the earlier sets' Sharpe ratios from its output.
    assert_eq!(full["top"], resumed["top"]);
    assert_eq!(full["deflated_sharpe"], resumed["deflated_sharpe"]);
    assert_eq!(full["deflated_sharpe"]["trials"], 10);
    for set in full["top"].as_array().unwrap() {
        let dsr = set["dsr"]
            .as_f64()
            .expect("a deflated Sharpe ratio per ranked set");
        assert!((0.0..=1.0).contains(&dsr), "dsr {dsr}");
    }
    // Without --resume an existing output is never overwritten.
    let mut args = vec!["sweep", "examples/rsi_ema.toml", "--set", "ema_long=200"];
    args.extend(SMALL_GRID);
    args.extend(["--out", csv_arg]);
    let refused = etrading(&args);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pass --resume"));
    // The CSV's sweep record refuses a resume in another precision, or of edited data...
    let record = dir.path().join("sweep.csv.sweep.json");
    let f32 = sweep_hooked(None, &["--out", csv_arg, "--resume", "--precision", "f32"]);
    assert!(!f32.status.success());
    let err = stderr(&f32);
    assert!(
        err.contains(&format!(
            "{}: another sweep's output: the precision differs (stored f64 results, this run f32",
            record.display()
        )),
        "{err}"
    );
    // ... and without the record a CSV cannot be checked, so it is never resumed.
    std::fs::remove_file(&record).unwrap();
    let unchecked = sweep_hooked(None, &["--out", csv_arg, "--resume"]);
    assert!(!unchecked.status.success());
    assert!(
        stderr(&unchecked).contains("sweep.csv.sweep.json is missing"),
        "{}",
        stderr(&unchecked)
    );
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        again,
        "left as it was"
    );
}

#[test]
fn sweep_backends_agree() {
    let simd = sweep_json(&["--backend", "simd"]);
    let scalar = sweep_json(&["--backend", "scalar"]);
    assert_eq!(simd["top"], scalar["top"]);
    assert!(simd["backend"].as_str().unwrap().starts_with("simd"));
}

#[test]
fn sweep_memory_guard_refuses_a_budget_below_the_inputs() {
    let mut args = vec!["sweep", "examples/rsi_ema.toml", "--max-memory", "1M"];
    args.extend(SMALL_GRID);
    let out = etrading(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not enough memory"), "{err}");
}

#[test]
fn parity_of_sampled_sets_passes_on_the_sample() {
    let out = etrading(&[
        "parity",
        "examples/bb_atr_breakout.toml",
        "--backend",
        "simd",
        "--samples",
        "6",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["backends"][0]["trade_disagreements"], 0);
    assert!(v["backends"][0]["reference_trades"].as_u64().unwrap() > 0);
}

#[test]
fn sweep_writes_an_optuna_study_and_resume_stores_no_set_twice() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite:///{}", dir.path().join("s.db").display());
    let first = sweep_json(&["--study", "grid", "--storage", &storage]);
    assert_eq!(first["computed"], 10);
    // The best set's deflated Sharpe ratio is stored with the study: `study best` shows it.
    let best: serde_json::Value = serde_json::from_str(&stdout(&etrading(&[
        "study",
        "best",
        "grid",
        "--storage",
        &storage,
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        best["system_attrs"]["grid_index"], first["top"][0]["grid_index"],
        "{best}"
    );
    assert_eq!(best["dsr"], first["top"][0]["dsr"]);
    assert!(best["dsr"].as_f64().is_some());
    let again = sweep_json(&["--study", "grid", "--storage", &storage, "--resume"]);
    assert_eq!(again["computed"], 0, "every grid point is already a trial");
    let list = stdout(&etrading(&["study", "list", "--storage", &storage]));
    let row = list.lines().find(|l| l.starts_with("grid")).unwrap();
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[2], "10", "{list}");
    // Trials computed in f32 never join a study of f64 trials.
    let mixed = sweep_hooked(
        None,
        &[
            "--study",
            "grid",
            "--storage",
            &storage,
            "--resume",
            "--precision",
            "f32",
        ],
    );
    assert!(!mixed.status.success());
    let err = stderr(&mixed);
    assert!(
        err.contains(
            r#"study "grid" was computed with precision = "f64", this run has precision = "f32""#
        ),
        "{err}"
    );
}

/// `etrading sweep` of [`SMALL_GRID`] with `extra` flags and `ETRADING_SWEEP_TEST=hook` (when
/// given: batches of a few sets and a deterministic Ctrl-C or SIGKILL, see sweep_cmd.rs).
fn sweep_hooked(hook: Option<&str>, extra: &[&str]) -> Output {
    let mut args = vec!["sweep", "examples/rsi_ema.toml", "--set", "ema_long=200"];
    args.extend(SMALL_GRID);
    args.extend(extra);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etrading"));
    cmd.args(&args).current_dir(root());
    match hook {
        Some(hook) => cmd.env("ETRADING_SWEEP_TEST", hook),
        None => cmd.env_remove("ETRADING_SWEEP_TEST"),
    };
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every row of a sweep's Parquet output as text (grid index first), in file order; checks
/// that the file is a closed sweep table with no grid point twice and no parts left beside it.
fn parquet_rows(path: &Path) -> Vec<String> {
    use etrading_reports::table::{ParquetCheckpoint, ParquetTable, read_parquet};
    assert!(
        !ParquetCheckpoint::parts_dir(path).exists(),
        "{}: parts left after the sweep ended",
        path.display()
    );
    let table = ParquetTable::open(path).unwrap();
    let meta = table.metadata();
    let schema = meta.iter().find(|(k, _)| k == "etrading.schema");
    assert_eq!(schema.map(|(_, v)| v.as_str()), Some("etrading.sweep/1"));
    let (fields, columns) = read_parquet(path).unwrap();
    assert_eq!(fields[0].name, "grid_index");
    let rows: Vec<String> = (0..columns[0].len())
        .map(|r| {
            columns
                .iter()
                .map(|c| format!("{:?}", cell(c, r)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let mut ids: Vec<&str> = rows.iter().map(|r| r.split(',').next().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        rows.len(),
        "a grid point twice in {}",
        path.display()
    );
    rows
}

fn cell(c: &etrading_reports::table::Column, r: usize) -> String {
    use etrading_reports::table::Column;
    match c {
        Column::Int64(v) => format!("{:?}", v[r]),
        // Bits, so that NaN equals NaN.
        Column::Float64(v) => format!("{:?}", v[r].map(f64::to_bits)),
        Column::Utf8(v) => format!("{:?}", v[r]),
        Column::Bool(v) => format!("{:?}", v[r]),
    }
}

/// An uninterrupted Parquet sweep of the small grid: its rows and its JSON summary.
fn parquet_reference(dir: &Path) -> (Vec<String>, serde_json::Value) {
    let path = dir.join("reference.parquet");
    let out = sweep_hooked(None, &["--out", path.to_str().unwrap()]);
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(summary["computed"], 10);
    let rows = parquet_rows(&path);
    assert_eq!(rows.len(), 10);
    (rows, summary)
}

#[test]
fn sweep_parquet_resumes_after_ctrl_c_and_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, full) = parquet_reference(dir.path());
    let path = dir.path().join("sweep.parquet");
    let out = path.to_str().unwrap();
    let parts = dir.path().join("sweep.parquet.parts");

    // Ctrl-C after two batches of 3 sets: the 6 finished sets are in a closed file.
    let stopped = sweep_hooked(Some("batch=3,interrupt=2"), &["--out", out]);
    assert!(!stopped.status.success());
    let err = stderr(&stopped);
    assert!(
        err.contains(&format!(
            "interrupted: 4 of 10 sets not run; {out} holds the 6 sets finished (closed, readable); `--resume --out {out}` continues"
        )),
        "{err}"
    );
    assert_eq!(parquet_rows(&path), reference[..6]);

    // Resumed, then killed after one batch: the file is untouched, the batch waits in a part.
    let killed = sweep_hooked(Some("batch=3,abort=1"), &["--out", out, "--resume"]);
    assert_eq!(killed.status.code(), Some(137), "{}", stderr(&killed));
    let table = etrading_reports::table::ParquetTable::open(&path).unwrap();
    assert_eq!(table.rows(), 6, "the killed run never rewrote the file");
    assert!(parts.join("part-000001.parquet").exists());

    // Without --resume the interrupted sweep is never overwritten.
    let refused = sweep_hooked(None, &["--out", out]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("exists; pass --resume"),
        "{}",
        stderr(&refused)
    );

    // Resumed to the end: only the last set is computed; the file equals the reference.
    let resumed = sweep_hooked(None, &["--out", out, "--resume"]);
    let resumed: serde_json::Value = serde_json::from_str(&stdout(&resumed)).unwrap();
    assert_eq!(
        (resumed["resumed"].as_u64(), resumed["computed"].as_u64()),
        (Some(9), Some(1))
    );
    assert_eq!(parquet_rows(&path), reference);
    assert_eq!(resumed["top"], full["top"]);

    // Resuming a finished sweep computes nothing and leaves the file as it is.
    let before = std::fs::read(&path).unwrap();
    let again = sweep_hooked(None, &["--out", out, "--resume"]);
    let again: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(again["computed"], 0);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn sweep_parquet_resume_discards_a_torn_part() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, _) = parquet_reference(dir.path());
    let path = dir.path().join("sweep.parquet");
    let out = path.to_str().unwrap();
    let parts = dir.path().join("sweep.parquet.parts");

    // Killed after three batches of 2 sets, before any merge: no file, three closed parts.
    let killed = sweep_hooked(Some("batch=2,abort=3"), &["--out", out]);
    assert_eq!(killed.status.code(), Some(137), "{}", stderr(&killed));
    assert!(!path.exists(), "never a footerless {out}");
    // A power cut tore the last part, and a kill left a part being written.
    let last = parts.join("part-000003.parquet");
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(&last, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(parts.join("part-000004.parquet.tmp"), b"PAR1").unwrap();

    let resumed = sweep_hooked(None, &["--out", out, "--resume"]);
    let err = stderr(&resumed);
    let summary: serde_json::Value = serde_json::from_str(&stdout(&resumed)).unwrap();
    assert_eq!(
        (summary["resumed"].as_u64(), summary["computed"].as_u64()),
        (Some(4), Some(6))
    );
    let note = |name: &str, why: &str| format!("note: {}: {why}", parts.join(name).display());
    assert!(
        err.contains(&note("part-000003.parquet", "torn (")),
        "{err}"
    );
    assert!(
        err.contains(&note("part-000004.parquet.tmp", "unfinished")),
        "{err}"
    );
    assert!(err.contains("discarded, its sets run again"), "{err}");
    assert_eq!(parquet_rows(&path), reference);
}

#[test]
fn sweep_parquet_resume_refuses_another_sweeps_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sweep.parquet");
    let out = path.to_str().unwrap();
    let stopped = sweep_hooked(Some("batch=4,interrupt=1"), &["--out", out]);
    assert!(!stopped.status.success());
    let stored = std::fs::read(&path).unwrap();
    let check = |spec: Option<&Path>, extra: &[&str], expect: &str| {
        let mut args = vec!["--out", out, "--resume"];
        args.extend(extra);
        let o = match spec {
            None => sweep_hooked(None, &args),
            // The same flags on another spec file.
            Some(spec) => Command::new(env!("CARGO_BIN_EXE_etrading"))
                .args(["sweep", spec.to_str().unwrap(), "--set", "ema_long=200"])
                .args(SMALL_GRID)
                .args(&args)
                .current_dir(root())
                .env_remove("ETRADING_SWEEP_TEST")
                .output()
                .unwrap(),
        };
        assert!(!o.status.success(), "{expect}: accepted");
        let err = stderr(&o);
        assert!(err.starts_with(&format!("error: {out}: ")), "{err}");
        assert!(err.contains(expect), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            stored,
            "a refused resume left the file as it was"
        );
    };
    check(
        None,
        &["--set", "leverage=3"],
        "another sweep's output: --set differs (stored ema_long=200 rsi_lower=30 rsi_upper=70 rsi_window=14, this run ema_long=200 leverage=3 rsi_lower=30",
    );
    let edited = dir.path().join("edited.toml");
    let spec = std::fs::read_to_string(root().join("examples/rsi_ema.toml")).unwrap();
    std::fs::write(&edited, format!("{spec}# tuned\n")).unwrap();
    check(
        Some(&edited),
        &[],
        &format!("the spec text differs at line {}", spec.lines().count() + 1),
    );
    check(
        None,
        &["--walk-forward", "rolling:2:120d:60d"],
        "its columns are not this sweep's (",
    );
    check(
        None,
        &["--capital", "5000"],
        "the capital differs (stored \"10000\", this run \"5000\")",
    );
}

#[test]
fn sweep_precision_f32_runs_the_f32_lanes_within_the_f32_tolerance() {
    let exact = sweep_json(&["--backend", "simd"]);
    let fast = sweep_json(&["--backend", "simd", "--precision", "f32"]);
    assert!(
        exact["backend"].as_str().unwrap().contains(" f64x"),
        "{}",
        exact["backend"]
    );
    assert!(
        fast["backend"].as_str().unwrap().contains(" f32x"),
        "{}",
        fast["backend"]
    );
    // The same sets ranked, with the same trades, and equity within `f32` (rel 2e-3, abs 2e-4).
    let rows = |v: &serde_json::Value| {
        let mut rows: Vec<(u64, f64, f64)> = v["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let full = &t["full"];
                (
                    t["grid_index"].as_u64().unwrap(),
                    full["n_trades"].as_f64().unwrap(),
                    full["final_equity"].as_f64().unwrap(),
                )
            })
            .collect();
        rows.sort_by_key(|r| r.0);
        rows
    };
    let (a, b) = (rows(&exact), rows(&fast));
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len());
    for ((ia, ta, ea), (ib, tb, eb)) in a.iter().zip(&b) {
        assert_eq!((ia, ta), (ib, tb));
        assert!((ea - eb).abs() <= 2e-4 + 2e-3 * ea.abs(), "{ea} vs {eb}");
    }
    let mut args = vec!["sweep", "examples/rsi_ema.toml", "--set", "ema_long=200"];
    args.extend(SMALL_GRID);
    args.extend(["--backend", "scalar", "--precision", "f32"]);
    let refused = etrading(&args);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("the scalar reference engine computes in f64 only"),
        "{err}"
    );
}

#[test]
fn parity_checks_the_f32_lanes_under_the_f32_policy() {
    let out = etrading(&[
        "parity",
        "examples/bb_atr_breakout.toml",
        "--backend",
        "simd",
        "--precision",
        "f32",
        "--samples",
        "6",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["ok"], true);
    let backends = v["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 1, "{backends:?}");
    let b = &backends[0];
    assert_eq!(b["backend"], "simd f32");
    assert_eq!(b["tolerance"], "f32 (rel 2e-3, abs 2e-4)");
    assert_eq!(b["rows"]["rows"], 6);
    assert!(b["reference_trades"].as_u64().unwrap() > 0);
    // auto checks both precisions of the SIMD kernel, f64 first.
    let out = etrading(&[
        "parity",
        "examples/bb_atr_breakout.toml",
        "--backend",
        "simd",
        "--samples",
        "2",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["backend"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["simd f64", "simd f32"]);
}

/// `etrading ARGS` with extra environment variables.
fn etrading_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etrading"));
    cmd.args(args)
        .current_dir(root())
        .env_remove("ETRADING_SWEEP_TEST");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The RSI+EMA spec with `min_trades` set, written into `dir`; its grid (after [`BANDS`])
/// is the 25 RSI bands at one leverage and EMA.
fn banded_spec(dir: &Path, min_trades: u64) -> PathBuf {
    let text = std::fs::read_to_string(root().join("examples/rsi_ema.toml")).unwrap();
    let path = dir.join(format!("rsi_ema_min{min_trades}.toml"));
    std::fs::write(
        &path,
        format!(
            "{text}\n[objective]\nname = \"return_over_drawdown\"\nmin_trades = {min_trades}\n"
        ),
    )
    .unwrap();
    path
}

const BANDS: [&str; 8] = [
    "--set",
    "rsi_window=14",
    "--set",
    "ema_long=200",
    "--set",
    "leverage=2",
    "--quiet",
    "--json",
];

/// A sweep of [`banded_spec`] with `extra` flags.
fn banded_sweep(spec: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["sweep", spec.to_str().unwrap()];
    args.extend(BANDS);
    args.extend(extra);
    etrading_env(&args, env)
}

/// The CSV's data lines, sorted.
fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    lines.sort_unstable();
    lines
}

/// A sweep output whose rows hold quoted prune reasons with commas: the spec's `min_trades`
/// is the median trade count of the grid, so about half the sets are pruned.
fn pruned_reference(dir: &Path) -> (PathBuf, PathBuf, String) {
    let probe = dir.join("probe.csv");
    let out = banded_sweep(
        &banded_spec(dir, 1),
        &["--out", probe.to_str().unwrap()],
        &[],
    );
    stdout(&out);
    let text = std::fs::read_to_string(&probe).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    // Counted from the end: the columns after the (quoted) prune reason hold no comma.
    let from_end = header.len() - 1 - header.iter().position(|h| *h == "full_n_trades").unwrap();
    let mut trades: Vec<u64> = text
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').nth(from_end).unwrap().parse().unwrap())
        .collect();
    trades.sort_unstable();
    let spec = banded_spec(dir, trades[trades.len() / 2]);
    let reference = dir.join("reference.csv");
    stdout(&banded_sweep(
        &spec,
        &["--out", reference.to_str().unwrap()],
        &[],
    ));
    let text = std::fs::read_to_string(&reference).unwrap();
    assert_eq!(text.lines().count(), 26, "header + 25 sets");
    assert!(
        text.contains("\"min_trades: ") && text.contains(" needed\""),
        "quoted reasons: {text}"
    );
    (spec, reference, text)
}

#[test]
fn sweep_csv_resume_keeps_the_complete_records_wherever_a_kill_cut_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, reference, text) = pruned_reference(dir.path());
    let expected = sorted_lines(&reference);
    let bytes = text.as_bytes();
    let ends: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    // Cuts: at row ends, one byte before (the last field without its line end), one after,
    // inside a quoted reason (after its comma), and zero padding after a complete row.
    let mut cuts: Vec<(usize, bool)> = Vec::new();
    for (k, &end) in ends.iter().enumerate().skip(1).step_by(3) {
        cuts.extend([
            (end, false),
            (end - 1, false),
            (end + 1, false),
            (end, true),
        ]);
        if let Some(quote) = text[ends[k - 1]..end].find(", at least") {
            cuts.push((ends[k - 1] + quote + 1, false));
        }
    }
    let out = dir.path().join("cut.csv");
    let record = dir.path().join("cut.csv.sweep.json");
    std::fs::copy(dir.path().join("reference.csv.sweep.json"), &record).unwrap();
    for (cut, zeros) in cuts {
        let cut = cut.min(bytes.len());
        let mut written = bytes[..cut].to_vec();
        if zeros {
            written.extend([0u8; 100]);
        }
        std::fs::write(&out, &written).unwrap();
        let complete = ends.iter().filter(|&&e| e <= cut).count() - 1;
        let resumed = banded_sweep(&spec, &["--out", out.to_str().unwrap(), "--resume"], &[]);
        let summary: serde_json::Value = serde_json::from_str(&stdout(&resumed)).unwrap();
        assert_eq!(summary["resumed"], complete as u64, "cut at {cut}");
        assert_eq!(summary["computed"], 25 - complete as u64, "cut at {cut}");
        assert_eq!(
            sorted_lines(&out),
            expected,
            "cut at {cut} (zeros: {zeros})"
        );
    }
}

#[test]
fn sweep_out_and_study_each_fill_the_others_gaps_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, reference, _) = pruned_reference(dir.path());
    let db = dir.path().join("s.db");
    let storage = format!("sqlite:///{}", db.display());
    let out = dir.path().join("both.csv");
    let args = [
        "--out",
        out.to_str().unwrap(),
        "--study",
        "both",
        "--storage",
        &storage,
    ];
    stdout(&banded_sweep(&spec, &args, &[]));
    let count_trials = || -> (i64, i64) {
        let con = rusqlite::Connection::open(&db).unwrap();
        con.query_row(
            "SELECT COUNT(*), COUNT(DISTINCT value_json) FROM trial_system_attributes WHERE key = 'grid_index'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    assert_eq!(count_trials(), (25, 25));
    let mut resume = args.to_vec();
    resume.push("--resume");

    // The study committed, the out file lost its last rows: they are written to the file only.
    let text = std::fs::read_to_string(&out).unwrap();
    let keep: String = text
        .lines()
        .take(1 + 10)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&out, keep).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&stdout(&banded_sweep(&spec, &resume, &[]))).unwrap();
    assert_eq!(
        (summary["resumed"].as_u64(), summary["computed"].as_u64()),
        (Some(10), Some(15))
    );
    assert_eq!(sorted_lines(&out), sorted_lines(&reference));
    assert_eq!(count_trials(), (25, 25), "no trial stored twice");

    // The out file is whole, the study lost trials (a power cut before its WAL was synced):
    // they are written to the study only.
    {
        let con = rusqlite::Connection::open(&db).unwrap();
        let ids = "SELECT trial_id FROM trials WHERE number >= 18";
        for table in [
            "trial_params",
            "trial_values",
            "trial_user_attributes",
            "trial_system_attributes",
            "trial_intermediate_values",
            "trial_heartbeats",
        ] {
            con.execute(
                &format!("DELETE FROM {table} WHERE trial_id IN ({ids})"),
                [],
            )
            .unwrap();
        }
        con.execute("DELETE FROM trials WHERE number >= 18", [])
            .unwrap();
    }
    assert_eq!(count_trials(), (18, 18));
    let before = std::fs::read(&out).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&stdout(&banded_sweep(&spec, &resume, &[]))).unwrap();
    assert_eq!(
        (summary["resumed"].as_u64(), summary["computed"].as_u64()),
        (Some(18), Some(7))
    );
    assert_eq!(count_trials(), (25, 25));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the out file was whole"
    );
}

#[test]
fn a_resumed_study_sweep_ranks_the_sets_of_earlier_runs() {
    let dir = tempfile::tempdir().unwrap();
    let full = sweep_json(&[]);
    let storage = format!("sqlite:///{}", dir.path().join("s.db").display());
    let study = ["--study", "ranked", "--storage", &storage];
    let stopped = sweep_hooked(Some("batch=3,interrupt=2"), &study);
    assert!(!stopped.status.success(), "interrupted");
    let mut resume = study.to_vec();
    resume.push("--resume");
    let resumed: serde_json::Value =
        serde_json::from_str(&stdout(&sweep_hooked(None, &resume))).unwrap();
    assert_eq!(
        (resumed["resumed"].as_u64(), resumed["computed"].as_u64()),
        (Some(6), Some(4))
    );
    assert_eq!(resumed["ranked"], full["ranked"]);
    assert_eq!(
        resumed["top"], full["top"],
        "the 6 sets of the first run are ranked too"
    );
}

#[test]
fn a_second_writer_of_a_sweep_output_or_study_is_refused_while_the_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("locked.csv");
    let storage = format!("sqlite:///{}", dir.path().join("s.db").display());
    let mut args = vec!["sweep", "examples/rsi_ema.toml", "--set", "ema_long=200"];
    args.extend(SMALL_GRID);
    args.extend([
        "--out",
        out.to_str().unwrap(),
        "--study",
        "locked",
        "--storage",
        &storage,
    ]);
    let mut first = Command::new(env!("CARGO_BIN_EXE_etrading"))
        .args(&args)
        .current_dir(root())
        .env("ETRADING_SWEEP_TEST", "batch=1,sleep_ms=500")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lock = dir.path().join("locked.csv.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(lock.exists() && out.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first sweep never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut second = args.clone();
    second.push("--resume");
    let refused = etrading_env(&second, &[]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains(&format!(
            "error: the sweep output {} is being written by another etrading process (pid {}; lock {})",
            out.display(),
            first.id(),
            lock.display()
        )),
        "{err}"
    );
    // The study alone is locked too: a resume would fail the first one's trials.
    let study_only: Vec<&str> = second
        .iter()
        .copied()
        .filter(|a| *a != "--out" && *a != out.to_str().unwrap())
        .collect();
    let refused = etrading_env(&study_only, &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("study \"locked\" in ")
            && stderr(&refused).contains("is being written by another etrading process"),
        "{}",
        stderr(&refused)
    );
    let status = first.wait().unwrap();
    assert!(status.success(), "the first sweep finished");
    assert!(!lock.exists(), "its lock file is removed");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 11);
    // Now the resume runs, and finds everything done.
    let again: serde_json::Value =
        serde_json::from_str(&stdout(&etrading_env(&second, &[]))).unwrap();
    assert_eq!(again["computed"], 0);
}

/// `etrading optimize examples/rsi_ema.toml --study NAME` into `storage` with `extra` flags.
fn optimize(storage: &str, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "optimize",
        "examples/rsi_ema.toml",
        "--study",
        name,
        "--storage",
        storage,
        "--quiet",
        "--jobs",
        "1",
    ];
    args.extend(extra);
    etrading_env(&args, env)
}

#[test]
fn optimize_stops_with_an_error_when_every_trial_fails() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite:///{}", dir.path().join("s.db").display());
    let out = optimize(
        &storage,
        "failing",
        &["--trials", "10", "--batch", "8", "--sampler", "random"],
        &[("ETRADING_OPTIMIZE_TEST_FAIL_ALL", "1")],
    );
    assert!(!out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: study \"failing\": stopped after 104 FAIL trials in a row (the last: ETRADING_OPTIMIZE_TEST_FAIL_ALL=1); FAIL trials do not count towards --trials, so the search would never end (they are stored; fix the spec or data, then --resume)"
    );
    let con = rusqlite::Connection::open(dir.path().join("s.db")).unwrap();
    let states: Vec<(String, i64)> = con
        .prepare("SELECT state, COUNT(*) FROM trials GROUP BY state")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        states,
        [("FAIL".to_string(), 104)],
        "stored, none left RUNNING"
    );
}

#[test]
fn optimize_reports_the_deflated_sharpe_ratio_of_its_best() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite:///{}", dir.path().join("s.db").display());
    let flags = [
        "--trials",
        "24",
        "--batch",
        "8",
        "--sampler",
        "random",
        "--json",
    ];
    let out = optimize(&storage, "dsr", &flags, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let evaluated = doc["complete"].as_u64().unwrap() + doc["pruned"].as_u64().unwrap();
    assert!(doc["complete"].as_u64().unwrap() >= 2, "a weak case: {doc}");
    assert_eq!(doc["deflated_sharpe"]["trials"], evaluated);
    let dsr = doc["best"]["dsr"]
        .as_f64()
        .expect("the best's deflated Sharpe ratio");
    assert!((0.0..=1.0).contains(&dsr), "dsr {dsr}");
    assert!(
        doc["deflated_sharpe"]["expected_max_sharpe"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // The text summary says it too.
    let text = optimize(&storage, "dsr", &["--trials", "24", "--resume"], &[]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(stdout(&text).contains("dsr      "), "{}", stdout(&text));
    // Stored with the study: `study best` shows the same value.
    let best = etrading(&["study", "best", "dsr", "--storage", &storage, "--json"]);
    assert!(best.status.success(), "{}", stderr(&best));
    let best: serde_json::Value = serde_json::from_str(&stdout(&best)).unwrap();
    assert_eq!(best["number"], doc["best"]["number"]);
    assert_eq!(best["dsr"].as_f64(), Some(dsr));
    let best = etrading(&["study", "best", "dsr", "--storage", &storage]);
    assert!(
        stdout(&best).contains(&format!(
            "dsr      {dsr:.3}: deflated Sharpe ratio as the best of {evaluated} trials"
        )),
        "{}",
        stdout(&best)
    );
}

#[test]
fn optimize_resume_with_another_objective_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite:///{}", dir.path().join("s.db").display());
    let flags = ["--trials", "4", "--batch", "4", "--sampler", "random"];
    let first = optimize(&storage, "obj", &flags, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let mut again = flags.to_vec();
    again.extend(["--resume", "--objective", "robust"]);
    let refused = optimize(&storage, "obj", &again, &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(
            r#"study "obj" was computed with objective = "risk_adjusted", this run has objective = "robust""#
        ),
        "{}",
        stderr(&refused)
    );
    // The same objective resumes.
    let same = [
        "--trials",
        "8",
        "--batch",
        "4",
        "--sampler",
        "random",
        "--resume",
        "--objective",
        "risk_adjusted",
    ];
    let resumed = optimize(&storage, "obj", &same, &[]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
}

#[test]
fn a_study_report_re_runs_the_stored_spec_and_refuses_other_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("rsi_ema.toml");
    std::fs::copy(root().join("examples/rsi_ema.toml"), &spec).unwrap();
    let storage = format!("sqlite:///{}", dir.path().join("s.db").display());
    let mut args = vec!["sweep", spec.to_str().unwrap(), "--set", "ema_long=200"];
    args.extend(SMALL_GRID);
    args.extend(["--study", "rep", "--storage", &storage]);
    stdout(&etrading_env(&args, &[]));
    let report_dir = dir.path().join("report");
    let report = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "--study",
            "rep",
            "--storage",
            &storage,
            "--out",
            report_dir.to_str().unwrap(),
        ];
        args.extend(extra);
        etrading_env(&args, &[])
    };
    let plain = stdout(&report(&[]));
    let page = plain.lines().nth(1).expect("a trial page");
    let html = std::fs::read_to_string(page).unwrap();
    // The spec file is edited after the sweep: the report still re-runs the stored text.
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("stop_loss = 0.05", "stop_loss = 0.02")).unwrap();
    let again = stdout(&report(&[]));
    assert_eq!(std::fs::read_to_string(page).unwrap(), html, "{again}");
    // An edited --spec is refused, unless --force.
    let refused = report(&["--spec", spec.to_str().unwrap()]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("its text differs from the spec study \"rep\" was run with (first at line")
            && err.contains("leave out --spec to use the stored text, or pass --force"),
        "{err}"
    );
    let forced = report(&["--spec", spec.to_str().unwrap(), "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(stderr(&forced).contains("(--force)"));
    // Other data: refused, unless --force.
    let other = report(&["--from", "2025-06-01"]);
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains("so its pages would not show the trials' own runs"),
        "{}",
        stderr(&other)
    );
    let forced = report(&["--from", "2025-06-01", "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
}

#[test]
fn simd_width_is_chosen_by_flag_and_every_width_agrees() {
    let default = sweep_json(&["--backend", "simd"]);
    #[cfg(target_arch = "x86_64")]
    let widths = [
        ("sse2", "sse2 f64x2"),
        ("avx2", "avx2 f64x4"),
        ("avx512", "avx512 f64x8"),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    let widths = [("neon", "neon f64x2")];
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    for (flag, label) in widths {
        if (flag == "avx2" && !cpu.contains(" avx2"))
            || (flag == "avx512" && !cpu.contains(" avx512f"))
        {
            // A width this CPU lacks is refused, naming the widest it has.
            let out = sweep_hooked(None, &["--backend", "simd", "--simd-width", flag]);
            assert!(
                stderr(&out).contains(&format!("--simd-width {flag}: this CPU has no")),
                "{}",
                stderr(&out)
            );
            continue;
        }
        let run = sweep_json(&["--backend", "simd", "--simd-width", flag]);
        assert!(
            run["backend"].as_str().unwrap().contains(label),
            "{flag}: {}",
            run["backend"]
        );
        assert_eq!(
            run["top"], default["top"],
            "{flag}: f64 lanes of every width are bit-identical"
        );
    }
    #[cfg(target_arch = "x86_64")]
    {
        let out = sweep_hooked(None, &["--simd-width", "neon"]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(
                "--simd-width neon: not this architecture's (x86_64: use --simd-width sse2)"
            ),
            "{}",
            stderr(&out)
        );
    }
}
