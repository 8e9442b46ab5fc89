//! The exports against their JSON Schemas (`reports/schema/*.schema.json`): a hand-made run
//! and study are serialised, validated, and compared with the example files beside the schemas
//! (`reports/schema/examples/`, which the viewer's tests parse; `UPDATE_GOLDEN=1` refreshes
//! them). Also: the schemas reject what they must, and a study export stays compact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use etrading_kernels::engine::{ExitReason, Metrics, Side, SimResult, Trade};
use etrading_reports::backtest::Provenance;
use etrading_reports::run::{self, RunMarket, TrialRef};
use etrading_reports::study::{Distribution, StudyBuilder, StudyExport};

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema")
}

fn validator(name: &str) -> jsonschema::Validator {
    let path = schema_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Validates `doc` against schema file `schema`; returns the error messages.
fn errors(schema: &str, doc: &serde_json::Value) -> Vec<String> {
    validator(schema)
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn check_valid(schema: &str, doc: &serde_json::Value) {
    let errs = errors(schema, doc);
    assert!(errs.is_empty(), "{schema}: {errs:#?}");
}

fn check_invalid(schema: &str, doc: &serde_json::Value, expect: &str) {
    let errs = errors(schema, doc);
    assert!(
        errs.iter().any(|e| e.contains(expect)),
        "{schema}: expected an error containing {expect:?}, got {errs:#?}"
    );
}

/// Compares `text` with the example file `name`, or rewrites it under `UPDATE_GOLDEN=1`.
fn check_example(name: &str, text: &str) {
    let path = schema_dir().join("examples").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    assert_eq!(
        expected,
        text,
        "{} differs (UPDATE_GOLDEN=1 refreshes it)",
        path.display()
    );
}

const H: i64 = 3_600_000;
/// 2025-01-31 22:00 UTC.
const T0: i64 = 1_738_360_800_000;

/// Four 1h bars across a month end and one after a two-bar gap; one long trade on BTCUSDT
/// from bar 1 to bar 3 and one liquidated short on ETHUSDT.
fn hand_made_run() -> run::RunReport {
    let open_time = [T0, T0 + H, T0 + 2 * H, T0 + 3 * H, T0 + 6 * H];
    let btc = [100.0, 101.0, 103.0, 102.5, f64::NAN];
    let eth = [10.0, 10.5, 10.25, 10.125, 10.0];
    let trade = |symbol, side, entry_bar: usize, exit_bar: usize, pnl, reason| Trade {
        symbol,
        side,
        entry_bar,
        exit_bar,
        entry_time: open_time[entry_bar],
        exit_time: open_time[exit_bar],
        entry_price: 101.0,
        exit_price: 102.5,
        qty: 2.0,
        notional: 202.0,
        leverage: 5.0,
        margin: 40.4,
        fees: 0.2,
        liquidation_fee: 0.0,
        funding: 0.01,
        pnl,
        return_on_margin: pnl / 40.4,
        exit_reason: reason,
        mae: -0.01,
        mfe: 0.02,
    };
    let sim = SimResult {
        trades: vec![
            trade(0, Side::Long, 1, 3, 2.79, ExitReason::Signal),
            trade(1, Side::Short, 2, 4, -40.4, ExitReason::Liquidation),
        ],
        equity: vec![1000.0, 1000.0, 1004.5, 1002.79, 962.39],
        margin_usage: vec![0.0, 0.0404, 0.08, 0.04, 0.0],
        drawdown: vec![
            0.0,
            0.0,
            0.0,
            0.001_702_339_472_374_315_6,
            0.041_921_353_907_416_6,
        ],
        funding_paid: vec![0.0, 0.0, 0.01, 0.0, 0.0],
        skipped_entries: 1,
        metrics: Metrics {
            final_equity: 962.39,
            total_return: -0.037_61,
            max_drawdown: 0.041_921_353_907_416_6,
            sharpe: f64::NAN,
            n_trades: 2,
            liquidations: 1,
            ..Metrics::default()
        },
    };
    let provenance = Provenance {
        strategy_id: "hand_made".into(),
        spec_file: "examples/hand_made.toml".into(),
        params: BTreeMap::from([
            ("leverage".to_string(), 5.into()),
            ("side".to_string(), "both".into()),
        ]),
        symbols: vec!["BTCUSDT".into(), "ETHUSDT".into()],
        interval: "1h".into(),
        first_bar: Some(etrading_reports::iso_time(T0)),
        last_bar: Some(etrading_reports::iso_time(T0 + 6 * H)),
        bars: 5,
        data_hash: "0".repeat(64),
        engine_version: "0.1.0".into(),
        talib_version: "0.4.0".into(),
        brackets: "bundled 2026-03-05".into(),
        initial_capital: 1000.0,
    };
    let windows = run::windows_from_attrs([
        ("is_0_total_return", 0.12),
        ("oos_0_total_return", -0.03),
        ("is_1_total_return", f64::INFINITY),
    ]);
    run::run_report(
        provenance,
        RunMarket {
            open_time: &open_time,
            interval_ms: H,
            close: &[&btc, &eth],
        },
        &sim,
        Some(TrialRef {
            study_name: "hand".into(),
            number: 3,
            state: "COMPLETE".into(),
            values: vec![run::Exact(1.25)],
        }),
        windows,
    )
}

/// Three trials over a 2 x 2 grid, one failed, one multi-valued categorical.
fn hand_made_study() -> StudyExport {
    let lev = Distribution::Int {
        low: 1.0,
        high: 2.0,
        step: 1.0,
        log: false,
    };
    let side = Distribution::Categorical {
        choices: vec!["long".into(), "short".into()],
    };
    let mut b = StudyBuilder::new(
        "hand",
        vec!["MAXIMIZE".into()],
        BTreeMap::from([("spec_file".to_string(), "examples/hand_made.toml".into())]),
    );
    for (number, state, l, s, value, sharpe) in [
        (0, "COMPLETE", 1.0, 0.0, 1.5, 0.75),
        (1, "COMPLETE", 2.0, 1.0, f64::NEG_INFINITY, -0.5),
        (2, "FAIL", 2.0, 0.0, f64::NAN, f64::NAN),
    ] {
        let row = b.trial(number, state).unwrap();
        b.param(row, "leverage", &lev, l).unwrap();
        b.param(row, "side", &side, s).unwrap();
        b.value(row, 0, value);
        if !sharpe.is_nan() {
            b.metric(row, "sharpe", sharpe);
            b.metric(row, "is_0_sharpe", sharpe + 0.25);
            b.metric(row, "oos_0_sharpe", sharpe - 0.25);
        }
    }
    let mut e = b.finish();
    e.pages.insert("0".into(), "hand_made-trial-0.html".into());
    e
}

#[test]
fn run_export_matches_schema() {
    let text = serde_json::to_string(&hand_made_run()).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    check_valid("etrading.run-1.schema.json", &doc);
    assert_eq!(
        doc["bars"]["segments"],
        serde_json::json!([[T0, 4], [T0 + 6 * H, 1]])
    );
    assert_eq!(doc["prices"][0]["close"][4], serde_json::Value::Null);
    assert_eq!(doc["windows"][1]["is"]["total_return"], "inf");
    assert_eq!(doc["monthly_returns"][0]["month"], "2025-01");
    assert_eq!(doc["trades"][1]["exit_reason"], "liquidation");
    check_example("run.json", &format!("{text}\n"));
}

#[test]
fn study_export_matches_schema() {
    let text = serde_json::to_string(&hand_made_study()).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    check_valid("etrading.study-1.schema.json", &doc);
    assert_eq!(
        doc["values"][0]["values"],
        serde_json::json!([1.5, "-inf", null])
    );
    assert_eq!(doc["state"], serde_json::json!([2, 2, 4]));
    check_example("study.json", &format!("{text}\n"));
}

#[test]
fn schemas_reject_malformed_exports() {
    let run: serde_json::Value = serde_json::to_value(hand_made_run()).unwrap();
    let mut no_equity = run.clone();
    no_equity.as_object_mut().unwrap().remove("equity");
    check_invalid(
        "etrading.run-1.schema.json",
        &no_equity,
        "\"equity\" is a required",
    );
    let mut bad_side = run.clone();
    bad_side["trades"][0]["side"] = "sideways".into();
    check_invalid("etrading.run-1.schema.json", &bad_side, "/trades/0/side");
    let mut wrong_version = run;
    wrong_version["schema"] = "etrading.run/2".into();
    check_invalid("etrading.run-1.schema.json", &wrong_version, "/schema");

    let study: serde_json::Value = serde_json::to_value(hand_made_study()).unwrap();
    let mut bad_cell = study.clone();
    bad_cell["metrics"][0]["values"][0] = "NaN".into();
    check_invalid(
        "etrading.study-1.schema.json",
        &bad_cell,
        "/metrics/0/values/0",
    );
    let mut bad_state = study;
    bad_state["state"][0] = 7.into();
    check_invalid("etrading.study-1.schema.json", &bad_state, "/state/0");
}

#[test]
fn study_export_stays_compact() {
    // 100,000 trials, 3 params, 1 objective, 4 metrics; a million would be ten times this.
    let int = Distribution::Int {
        low: 1.0,
        high: 125.0,
        step: 1.0,
        log: false,
    };
    let float = Distribution::Float {
        low: 0.001,
        high: 0.1,
        step: None,
        log: true,
    };
    let mut b = StudyBuilder::new("big", vec!["MAXIMIZE".into()], BTreeMap::new());
    for i in 0..100_000u64 {
        let row = b.trial(i, "COMPLETE").unwrap();
        let x = (i as f64 * 0.618_033_988_749_895).fract();
        b.param(row, "a", &int, (i % 125 + 1) as f64).unwrap();
        b.param(row, "b", &int, (i / 125 % 125 + 1) as f64).unwrap();
        b.param(row, "c", &float, 0.001 * (100f64).powf(x)).unwrap();
        b.value(row, 0, x * 3.0 - 1.0);
        for m in ["sharpe", "calmar", "total_return", "max_drawdown"] {
            b.metric(row, m, x * 2.0 - 0.5);
        }
    }
    let text = serde_json::to_string(&b.finish()).unwrap();
    let per_trial = text.len() as f64 / 100_000.0;
    // 8 cells + number + state: at most 12 bytes a cell on average.
    assert!(
        per_trial < 120.0,
        "{per_trial:.1} bytes per trial ({} bytes)",
        text.len()
    );
}
