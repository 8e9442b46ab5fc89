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
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does/not/exist: No such file or directory")
    );
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
    // The same ranking either way.
    assert_eq!(full["top"], resumed["top"]);
    // Without --resume an existing output is never overwritten.
    let mut args = vec!["sweep", "examples/rsi_ema.toml", "--set", "ema_long=200"];
    args.extend(SMALL_GRID);
    args.extend(["--out", csv_arg]);
    let refused = etrading(&args);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pass --resume"));
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
    let again = sweep_json(&["--study", "grid", "--storage", &storage, "--resume"]);
    assert_eq!(again["computed"], 0, "every grid point is already a trial");
    let list = stdout(&etrading(&["study", "list", "--storage", &storage]));
    let row = list.lines().find(|l| l.starts_with("grid")).unwrap();
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[2], "10", "{list}");
}
