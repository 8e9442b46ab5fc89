//! Integration tests of the kernels crate: spec parsing and errors, parameter grids, rule
//! expressions on hand-made columns, and TA-Lib by name.

use etrading_kernels::expr::{self, ExprErrorKind, NameResolver, Operand, ParamKind, RuleInputs};
use etrading_kernels::indicator;
use etrading_kernels::series::{BarColumns, Series};
use etrading_kernels::spec::{
    Distribution, Funding, GridError, MAX_RANGE_VALUES, MarginMode, ParamSet, ParamValue, Spec,
    SpecErrorKind,
};

fn example(name: &str) -> String {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {path}: {error}"))
}

fn parse_ok(file: &str, text: &str) -> Spec {
    Spec::parse(file, text).unwrap_or_else(|error| panic!("{file} should parse: {error}"))
}

// ---------------------------------------------------------------------------------------
// Examples and grids

fn check_example_grid(name: &str, expected_grid_len: u64) {
    let spec = parse_ok(name, &example(name));
    assert_eq!(spec.params.grid_len(), Ok(expected_grid_len), "{name}");
    // Every grid point resolves (first and last are enough to hit every range end).
    for index in [0, expected_grid_len - 1] {
        let set = spec.params.decode(index).expect("decode");
        spec.resolve(&set)
            .unwrap_or_else(|error| panic!("{name} #{index}: {error}"));
    }
}

#[test]
fn examples_parse_with_hand_counted_grids() {
    // rsi_window 2 x rsi_lower 5 (20..40 by 5) x rsi_upper 5 x ema_long 3 x leverage 10.
    check_example_grid("rsi_ema.toml", 2 * 5 * 5 * 3 * 10);
    // fast_period 6 (5..30 by 5) x slow_period 4 x leverage 4.
    check_example_grid("ema_cross.toml", 6 * 4 * 4);
    // bb_period 2 x bb_width 4 (1.5..3.0 by 0.5) x min_atr_frac 3 x stop_loss_frac 3 x leverage 3.
    check_example_grid("bb_atr_breakout.toml", 2 * 4 * 3 * 3 * 3);
}

fn check_decode(index: u64, expected: &str) {
    let spec = parse_ok("rsi_ema.toml", &example("rsi_ema.toml"));
    let set = spec.params.decode(index).expect("decode");
    assert_eq!(spec.params.describe(&set), expected, "index {index}");
}

#[test]
fn grid_decode_is_mixed_radix_with_last_param_fastest() {
    check_decode(
        0,
        "rsi_window=14 rsi_lower=20 rsi_upper=60 ema_long=50 leverage=1",
    );
    check_decode(
        1,
        "rsi_window=14 rsi_lower=20 rsi_upper=60 ema_long=50 leverage=2",
    );
    check_decode(
        1499,
        "rsi_window=21 rsi_lower=40 rsi_upper=80 ema_long=200 leverage=10",
    );
    // 777 in radices [2, 5, 5, 3, 10]: 777 % 10 = 7 (leverage 8), 77 % 3 = 2 (ema 200),
    // 25 % 5 = 0 (upper 60), 5 % 5 = 0 (lower 20), 1 (window 21).
    check_decode(
        777,
        "rsi_window=21 rsi_lower=20 rsi_upper=60 ema_long=200 leverage=8",
    );
    let spec = parse_ok("rsi_ema.toml", &example("rsi_ema.toml"));
    assert_eq!(
        spec.params.decode(1500),
        Err(GridError::IndexOutOfRange {
            index: 1500,
            len: 1500
        })
    );
}

const MINIMAL: &str = r#"[strategy]
id = "t"
symbols = ["BTCUSDT"]
interval = "1h"
[params]
PARAMS
[rules]
long_entry = "close > 0"
[risk]
margin_mode = "cross"
position_size = 0.5
max_concurrent_positions = 1
[execution]
fill = "close"
taker_fee = 0.0
slippage = 0.0
funding = "none"
"#;

fn with_params(params: &str) -> Spec {
    parse_ok("grid.toml", &MINIMAL.replace("PARAMS", params))
}

#[test]
fn large_grid_decodes_without_materialising() {
    let spec = with_params(
        "a = { low = 1, high = 1000, step = 1 }\nb = { low = 1, high = 1000, step = 1 }\nc = [true, false]",
    );
    assert_eq!(spec.params.grid_len(), Ok(2_000_000));
    let last = spec.params.decode(1_999_999).expect("decode");
    assert_eq!(
        last.values,
        vec![
            ParamValue::Int(1000),
            ParamValue::Int(1000),
            ParamValue::Bool(false)
        ]
    );
    // 1_234_567 = ((a_i * 1000) + b_i) * 2 + c_i: c_i = 1, 617_283 = 617 * 1000 + 283.
    let middle = spec.params.decode(1_234_567).expect("decode");
    assert_eq!(
        middle.values,
        vec![
            ParamValue::Int(618),
            ParamValue::Int(284),
            ParamValue::Bool(false)
        ]
    );
}

#[test]
fn grid_refuses_overflow_and_continuous_params() {
    // Four params of 10^6 points each (the most a range holds): 10^24 > 2^64.
    let huge: String = (1..=4)
        .map(|index| format!("p{index} = {{ low = 0, high = 999999, step = 1 }}\n"))
        .collect();
    let spec = with_params(&huge);
    assert_eq!(spec.params.grid_len(), Err(GridError::Overflow));
    let spec = with_params("x = { low = 0.5, high = 2.0 }");
    let error = spec.params.grid_len().expect_err("continuous");
    assert_eq!(
        error,
        GridError::Continuous {
            param: "x".to_string()
        }
    );
    assert!(
        error.to_string().contains("grid search needs a step"),
        "{error}"
    );
}

fn check_distribution(param: &str, expected: Distribution) {
    let spec = with_params(&format!("p = {param}"));
    assert_eq!(
        spec.params.params[0].domain.distribution(),
        expected,
        "{param}"
    );
}

#[test]
fn distributions_map_to_optuna() {
    check_distribution(
        "{ low = 1, high = 9, step = 2 }",
        Distribution::Int {
            low: 1,
            high: 9,
            step: 2,
            log: false,
        },
    );
    check_distribution(
        "{ low = 1, high = 100, log = true }",
        Distribution::Int {
            low: 1,
            high: 100,
            step: 1,
            log: true,
        },
    );
    check_distribution(
        "{ low = 0.5, high = 1.5, step = 0.25 }",
        Distribution::Float {
            low: 0.5,
            high: 1.5,
            step: Some(0.25),
            log: false,
        },
    );
    check_distribution(
        "{ low = 0.001, high = 0.1, log = true }",
        Distribution::Float {
            low: 0.001,
            high: 0.1,
            step: None,
            log: true,
        },
    );
    check_distribution(
        "{ low = 0, high = 1 }",
        Distribution::Float {
            low: 0.0,
            high: 1.0,
            step: None,
            log: false,
        },
    );
    check_distribution(
        "{ choices = [\"a\", \"b\"] }",
        Distribution::Categorical {
            choices: vec![ParamValue::Str("a".into()), ParamValue::Str("b".into())],
        },
    );
    check_distribution(
        "[1, 2.5]",
        Distribution::Categorical {
            choices: vec![ParamValue::Float(1.0), ParamValue::Float(2.5)],
        },
    );
    check_distribution(
        "7",
        Distribution::Categorical {
            choices: vec![ParamValue::Int(7)],
        },
    );
}

#[test]
fn float_grid_values_are_rounded() {
    let spec = with_params("f = { low = 0.1, high = 0.5, step = 0.1 }");
    assert_eq!(spec.params.grid_len(), Ok(5));
    assert_eq!(
        spec.params.decode(2).expect("decode").values,
        vec![ParamValue::Float(0.3)]
    );
}

// ---------------------------------------------------------------------------------------
// Resolve

#[test]
fn resolve_gives_concrete_values() {
    let spec = parse_ok("rsi_ema.toml", &example("rsi_ema.toml"));
    let resolved = spec
        .resolve(&spec.params.decode(1499).expect("decode"))
        .expect("resolve");
    assert_eq!(
        resolved.indicators[0].args,
        vec![("timeperiod".to_string(), 21.0)]
    );
    assert_eq!(
        resolved.indicators[1].args,
        vec![("timeperiod".to_string(), 200.0)]
    );
    assert_eq!(resolved.indicators[1].first_slot, 1);
    assert_eq!(resolved.risk.margin_mode, MarginMode::Cross);
    assert_eq!(resolved.risk.leverage, 10);
    assert_eq!(resolved.risk.leverage_for("XRPUSDT"), 10);
    assert_eq!(resolved.risk.stop_loss, Some(0.05));
    assert_eq!(resolved.execution.funding, Funding::FromData);

    let spec = parse_ok("bb_atr_breakout.toml", &example("bb_atr_breakout.toml"));
    let resolved = spec
        .resolve(&spec.params.decode(215).expect("decode"))
        .expect("resolve");
    let bb: Vec<(&str, f64)> = resolved.indicators[0].arg_pairs();
    assert_eq!(
        bb,
        vec![
            ("timeperiod", 30.0),
            ("nbdevup", 3.0),
            ("nbdevdn", 3.0),
            ("matype", 0.0)
        ]
    );
    assert_eq!(
        resolved.indicators[0].output_names,
        vec!["upper", "middle", "lower"]
    );
    assert_eq!(resolved.risk.leverage_for("XRPUSDT"), 4);
    assert_eq!(resolved.risk.leverage_for("BTCUSDT"), 6);
    assert_eq!(resolved.risk.stop_loss, Some(0.06));
    assert_eq!(resolved.rules.lookback_bars(), 1);
    assert_eq!(spec.output_slot("atr", None), Some(3));
    assert_eq!(spec.output_slot("bb", Some("lower")), Some(2));
    assert_eq!(spec.output_slot("bb", None), None);

    let mut foreign = spec.params.decode(0).expect("decode");
    foreign.values[0] = ParamValue::Int(1);
    let error = spec.resolve(&foreign).expect_err("timeperiod 1");
    assert_eq!(
        error.to_string(),
        "BBANDS timeperiod: must be TA-Lib's range 2..=100000, found 1"
    );
    assert!(spec.resolve(&ParamSet::default()).is_err());
}

// ---------------------------------------------------------------------------------------
// Errors: file:line:col: message

#[test]
fn ranges_hold_at_most_a_million_values() {
    // Found by fuzzing: a range of 8 * 10^12 steps was enumerated to validate it and aborted
    // the process for want of memory (fuzz/corpus/spec/huge-float-range.toml).
    assert_eq!(MAX_RANGE_VALUES, 1_000_000);
    let spec = with_params(
        "a = { low = 1, high = 1000000, step = 1 }\nb = { low = 0.0, high = 99999.9, step = 0.1 }",
    );
    assert_eq!(spec.params.grid_len(), Ok(1_000_000_000_000));
    for (param, message) in [
        (
            "a = { low = 1, high = 1000001, step = 1 }",
            "param `a`: 1..=1000001 by 1 holds more than 1000000 values",
        ),
        (
            "a = { low = 1.5, high = 4102444800000.0, step = 0.5 }",
            "param `a`: 1.5..=4102444800000.0 by 0.5 holds more than 1000000 values",
        ),
        (
            "a = { low = -1e308, high = 1e308, step = 1e300 }",
            "param `a`: -1e308..=1e308 by 1e300 holds more than 1000000 values; use a coarser step, or a continuous range { low, high } to search it",
        ),
        (
            "a = { low = -9223372036854775808, high = 9223372036854775807, step = 1 }",
            "param `a`: -9223372036854775808..=9223372036854775807 by 1 holds more than 1000000 values",
        ),
    ] {
        let text = MINIMAL.replace("PARAMS", param);
        let error = Spec::parse("grid.toml", &text).expect_err(param);
        // Located at the `high` value.
        let line = text.lines().position(|l| l == param).unwrap() + 1;
        let column = param.find("high = ").unwrap() + 8;
        assert_eq!(error.kind, SpecErrorKind::OutOfRange, "{error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("grid.toml:{line}:{column}: {message}")),
            "{error}"
        );
    }
}

const BASE: &str = r#"[strategy]
id = "demo"
symbols = ["BTCUSDT", "XRPUSDT"]
interval = "1h"
[indicators]
rsi = { fn = "RSI", input = "close", timeperiod = "rsi_window" }
bb = { fn = "BBANDS", timeperiod = 20 }
[params]
rsi_window = [14, 21]
lower = 30
leverage = { low = 1, high = 10, step = 1 }
[rules]
long_entry = "rsi < lower and close > bb.middle"
long_exit = "rsi > 70"
[risk]
margin_mode = "cross"
position_size = 0.25
max_concurrent_positions = 2
max_leverage = { XRPUSDT = 10 }
[execution]
fill = "next_open"
taker_fee = 0.0005
slippage = 0.0005
funding = "data"
"#;

/// Replaces `from` by `to` in [`BASE`] and returns a description of the mismatch, if any,
/// so one run reports every wrong case.
fn check_error(from: &str, to: &str, expected: &str, kind: SpecErrorKind) -> Option<String> {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    let text = BASE.replacen(from, to, 1);
    match Spec::parse("demo.toml", &text) {
        Ok(_) => Some(format!("{to:?} parsed; expected {expected}")),
        Err(error) if error.to_string() != expected || error.kind != kind => Some(format!(
            "{to:?}:\n  got  {error} ({:?})\n  want {expected} ({kind:?})",
            error.kind
        )),
        Err(_) => None,
    }
}

#[test]
fn base_spec_parses() {
    let spec = parse_ok("demo.toml", BASE);
    assert_eq!(spec.output_slot_count(), 4);
    assert_eq!(spec.params.grid_len(), Ok(20));
}

#[test]
fn errors_name_file_line_column_and_expectation() {
    let failures: Vec<String> = [
        check_error(
        "slippage = 0.0005",
        "slipage = 0.0005",
        "demo.toml:23:1: unknown key `slipage` in [execution]; expected one of: fill, taker_fee, slippage, funding",
        SpecErrorKind::UnknownKey,
    ),
        check_error(
        "position_size = 0.25",
        "position_size = true",
        "demo.toml:17:17: position_size must be a number or a param name, found a boolean",
        SpecErrorKind::WrongType,
    ),
    // Column inside the expression: `long_entry = "` is 14 characters, `rsi < lowr` puts
    // `lowr` at offset 6, so column 14 + 6 + 1 = 21.
        check_error(
        "rsi < lower and",
        "rsi < lowr and",
        "demo.toml:13:21: long_entry: unknown name `lowr`; expected a series (open, high, low, close, volume), an indicator (rsi, bb) or a param (rsi_window, lower, leverage)",
        SpecErrorKind::UnknownName,
    ),
        check_error(
        "long_exit = \"rsi > 70\"",
        "long_exit = \"rsi + 70\"",
        "demo.toml:14:14: long_exit: a rule must be a condition (true/false), found a number; compare it, e.g. `x > 0`",
        SpecErrorKind::ExprType,
    ),
        check_error(
        "long_exit = \"rsi > 70\"",
        "long_exit = \"rsi > 70 and close\"",
        "demo.toml:14:27: long_exit: `and` needs a condition, found a number",
        SpecErrorKind::ExprType,
    ),
        check_error(
        "long_exit = \"rsi > 70\"",
        "long_exit = \"rsi > (70\"",
        "demo.toml:14:23: long_exit: expected `)`, found end of expression",
        SpecErrorKind::ExprSyntax,
    ),
        check_error(
        "close > bb.middle",
        "close > bb",
        "demo.toml:13:39: long_entry: indicator `bb` has 3 outputs; write one of bb.upper, bb.middle, bb.lower",
        SpecErrorKind::UnknownName,
    ),
        check_error(
        "fn = \"RSI\"",
        "fn = \"RSX\"",
        "demo.toml:6:14: unknown TA-Lib function `RSX`",
        SpecErrorKind::UnknownFunction,
    ),
        check_error(
        "timeperiod = 20",
        "period = 20",
        "demo.toml:7:23: BBANDS has no parameter `period`; expected one of: timeperiod, nbdevup, nbdevdn, matype",
        SpecErrorKind::UnknownParameter,
    ),
        check_error(
        "timeperiod = 20",
        "timeperiod = 1",
        "demo.toml:7:36: BBANDS timeperiod must be an integer in TA-Lib's range 2..=100000, found 1",
        SpecErrorKind::OutOfRange,
    ),
        check_error(
        "rsi_window = [14, 21]",
        "rsi_window = [1, 14]",
        "demo.toml:6:51: RSI timeperiod must be an integer in TA-Lib's range 2..=100000, but param `rsi_window` takes 1",
        SpecErrorKind::OutOfRange,
    ),
        check_error(
        "high = 10, step",
        "high = 25, step",
        "demo.toml:11:12: leverage must be an integer in 1..=20, found 1..=25",
        SpecErrorKind::OutOfRange,
    ),
        check_error(
        "bb = { fn = \"BBANDS\", timeperiod = 20 }",
        "bb = { fn = \"ATR\", input = \"close\" }",
        "demo.toml:7:28: ATR reads high, low, close from the bars; remove `input`",
        SpecErrorKind::Invalid,
    ),
        check_error(
        "bb = { fn = \"BBANDS\", timeperiod = 20 }",
        "bb = { fn = \"BBANDS\", input = [\"close\", \"open\"] }",
        "demo.toml:7:31: BBANDS needs 1 input series, found 2",
        SpecErrorKind::MissingInput,
    ),
        check_error(
        "position_size = 0.25",
        "position_size = 1.5",
        "demo.toml:17:17: position_size must be in (0, 1], found 1.5",
        SpecErrorKind::OutOfRange,
    ),
        check_error(
        "XRPUSDT = 10",
        "XRPUSDT = 200",
        "demo.toml:19:28: max_leverage XRPUSDT must be an integer in 1..=125, found 200",
        SpecErrorKind::OutOfRange,
    ),
        check_error(
        "XRPUSDT = 10",
        "ETHUSDT = 10",
        "demo.toml:19:18: max_leverage names ETHUSDT, which is not in [strategy] symbols",
        SpecErrorKind::UnknownName,
    ),
        check_error(
        "margin_mode = \"cross\"",
        "margin_mode = \"portfolio\"",
        "demo.toml:16:15: margin_mode must be \"isolated\" or \"cross\", found \"portfolio\"",
        SpecErrorKind::Invalid,
    ),
        check_error(
        "fill = \"next_open\"",
        "fill = \"open\"",
        "demo.toml:21:8: fill must be \"next_open\" or \"close\", found \"open\"",
        SpecErrorKind::Invalid,
    ),
        check_error(
        "taker_fee = 0.0005",
        "taker_fee = \"fee\"",
        "demo.toml:22:13: taker_fee names unknown param `fee`",
        SpecErrorKind::UnknownName,
    ),
        check_error(
        "interval = \"1h\"",
        "interval = 1",
        "demo.toml:4:12: interval must be a string, found an integer",
        SpecErrorKind::WrongType,
    ),
        check_error(
        "lower = 30",
        "lower = { low = 1, high = 10, stp = 1 }",
        "demo.toml:10:31: unknown key `stp` in param `lower`; expected one of: low, high, step, log, choices",
        SpecErrorKind::UnknownKey,
    ),
        check_error(
        "[risk]",
        "[risk\n",
        "demo.toml:15:6: unclosed table, expected `]`",
        SpecErrorKind::Toml,
    ),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn expression_errors_inside_multiline_strings_point_at_the_character() {
    let text = BASE.replacen(
        "long_exit = \"rsi > 70\"",
        "long_exit = \"\"\"\nrsi > 70 or\n  rsii > 1\"\"\"",
        1,
    );
    let error = Spec::parse("demo.toml", &text).expect_err("unknown name");
    assert_eq!((error.line, error.column), (16, 3), "{error}");
}

// ---------------------------------------------------------------------------------------
// Expressions on hand-made columns

/// Names for expression tests: `a`, `b` are indicator slots 0 and 1; `k` an int param
/// (index 0, value 2), `x` a float param (index 1, value 1.5), `flag` a bool param (index 2).
struct TestNames;

impl NameResolver for TestNames {
    fn resolve(&self, name: &str, field: Option<&str>) -> Result<Operand, (ExprErrorKind, String)> {
        match (name, field) {
            ("a", None) => Ok(Operand::Indicator { slot: 0 }),
            ("b", None) => Ok(Operand::Indicator { slot: 1 }),
            ("k", None) => Ok(Operand::Param {
                index: 0,
                kind: ParamKind::Int { min_value: 0 },
            }),
            ("x", None) => Ok(Operand::Param {
                index: 1,
                kind: ParamKind::Float,
            }),
            ("flag", None) => Ok(Operand::Param {
                index: 2,
                kind: ParamKind::Bool,
            }),
            _ => Series::from_name(name)
                .filter(|_| field.is_none())
                .map(Operand::Series)
                .ok_or((ExprErrorKind::UnknownName, format!("unknown `{name}`"))),
        }
    }
}

const NAN: f64 = f64::NAN;

/// Evaluates `rule` over `close` (other series equal to it) and indicators `a`, `b`, bar by
/// bar (`eval_into`) and by columns (`eval_columns`); the two must agree on every bar.
fn evaluate(rule: &str, close: &[f64], a: &[f64], b: &[f64]) -> Vec<bool> {
    let params = [
        ParamValue::Int(2),
        ParamValue::Float(1.5),
        ParamValue::Bool(true),
    ];
    let compiled =
        expr::compile(rule, &TestNames).unwrap_or_else(|error| panic!("{rule}: {error}"));
    let bound = compiled.bind(&params).expect("bind");
    let bars = BarColumns {
        open: close,
        high: close,
        low: close,
        close,
        volume: close,
    };
    let indicators: [&[f64]; 2] = [a, b];
    let inputs = RuleInputs {
        bars,
        indicators: &indicators,
    };
    let mut per_bar = vec![false; close.len()];
    bound.eval_into(&inputs, &mut per_bar).expect("eval_into");
    let mut columns = vec![true; close.len()];
    bound
        .eval_columns(&inputs, &mut columns, &mut Vec::new())
        .expect("eval_columns");
    let first = per_bar.iter().zip(&columns).position(|(p, c)| p != c);
    assert_eq!(
        first, None,
        "{rule}: columns differ from bars first at bar {first:?}"
    );
    per_bar
}

/// [`evaluate`], compared with `expected` written as `T`/`F` per bar.
fn check_eval(rule: &str, close: &[f64], a: &[f64], b: &[f64], expected: &str) {
    let got: String = evaluate(rule, close, a, b)
        .iter()
        .map(|&flag| if flag { 'T' } else { 'F' })
        .collect();
    assert_eq!(got, expected, "{rule}");
}

const CLOSE: [f64; 5] = [1.0, 2.0, 3.0, 4.0, 5.0];
const FLAT: [f64; 5] = [2.0; 5];

#[test]
fn comparisons_with_nan_are_false() {
    let warm = [NAN, NAN, 3.0, 4.0, 5.0];
    check_eval("a > 2", &CLOSE, &warm, &FLAT, "FFTTT");
    check_eval("a <= 100", &CLOSE, &warm, &FLAT, "FFTTT");
    check_eval("a != 3", &CLOSE, &warm, &FLAT, "FFFTT");
    check_eval("a == a", &CLOSE, &warm, &FLAT, "FFTTT");
    // `not` of a NaN comparison is true: the policy the module doc warns about.
    check_eval("not (a > 2)", &CLOSE, &warm, &FLAT, "TTFFF");
    // Arithmetic propagates NaN: a - a is NaN during warm-up, so even `>= 0` is false.
    check_eval("a - a >= 0", &CLOSE, &warm, &FLAT, "FFTTT");
}

#[test]
fn cross_above_and_below() {
    let a = [3.0, 3.0, 1.0, 3.0, NAN, 3.0];
    let b = [2.0; 6];
    let close = [1.0; 6];
    // t0: no previous bar; t1: 3 > 2 but 3 <= 2 fails at t0; t3: 1 <= 2 then 3 > 2;
    // t4: NaN; t5: previous is NaN.
    check_eval("cross_above(a, b)", &close, &a, &b, "FFFTFF");
    check_eval("cross_above(a, 2)", &close, &a, &b, "FFFTFF");
    check_eval("cross_below(a, b)", &close, &a, &b, "FFTFFF");
    let a = [1.0, 3.0, 3.0, 1.0, 3.0, 3.0];
    check_eval("cross_above(a, b)", &close, &a, &b, "FTFFTF");
    // Lagged cross: true two bars after each cross; never before bar 3.
    check_eval("prev(cross_above(a, b), 2)", &close, &a, &b, "FFFTFF");
}

#[test]
fn prev_shifts_and_guards_warm_up() {
    check_eval("prev(close, 2) > 1", &CLOSE, &FLAT, &FLAT, "FFFTT");
    check_eval("prev(close, 0) > 1", &CLOSE, &FLAT, &FLAT, "FTTTT");
    check_eval("prev(close > 2, 1)", &CLOSE, &FLAT, &FLAT, "FFFTT");
    // A condition that is true on every bar is still false before its look-back.
    check_eval("prev(not (close > 100), 1)", &CLOSE, &FLAT, &FLAT, "FTTTT");
    check_eval("prev(true, 3)", &CLOSE, &FLAT, &FLAT, "FFFTT");
    // k = 2 (an int param).
    check_eval("prev(close, k) >= 1", &CLOSE, &FLAT, &FLAT, "FFTTT");
    check_eval("close - prev(close, 1) == 1", &CLOSE, &FLAT, &FLAT, "FTTTT");
    check_eval(
        "prev(prev(close, 1), 1) == close - 2",
        &CLOSE,
        &FLAT,
        &FLAT,
        "FFTTT",
    );
}

#[test]
fn precedence_and_associativity() {
    let all = "TTTTT";
    check_eval("1 + 2 * 3 == 7", &CLOSE, &FLAT, &FLAT, all);
    check_eval("(1 + 2) * 3 == 9", &CLOSE, &FLAT, &FLAT, all);
    check_eval("10 - 4 - 3 == 3", &CLOSE, &FLAT, &FLAT, all);
    check_eval("8 / 4 / 2 == 1", &CLOSE, &FLAT, &FLAT, all);
    check_eval("-2 * -3 == 6", &CLOSE, &FLAT, &FLAT, all);
    check_eval("- 2 - 3 == -5", &CLOSE, &FLAT, &FLAT, all);
    // or < and: `F or (T and F)` is F, `(F or T) and F` would also be F, so use T or ...
    check_eval("1 > 2 or 2 > 1 and 1 > 2", &CLOSE, &FLAT, &FLAT, "FFFFF");
    check_eval("2 > 1 or 2 > 1 and 1 > 2", &CLOSE, &FLAT, &FLAT, all);
    // not binds looser than comparison, tighter than and.
    check_eval("not 1 > 2 and 2 > 1", &CLOSE, &FLAT, &FLAT, all);
    check_eval("not not true", &CLOSE, &FLAT, &FLAT, all);
    check_eval("close * 2 > x + 2", &CLOSE, &FLAT, &FLAT, "FTTTT");
    check_eval("flag and close > x", &CLOSE, &FLAT, &FLAT, "FTTTT");
    check_eval("flag == (close > 3)", &CLOSE, &FLAT, &FLAT, "FFFTT");
}

fn check_expr_error(rule: &str, expected_column: usize, kind: ExprErrorKind, message: &str) {
    let error = expr::compile(rule, &TestNames).expect_err(rule);
    assert_eq!(
        (error.span.start + 1, error.kind, error.message.as_str()),
        (expected_column, kind, message),
        "{rule}"
    );
}

#[test]
fn expression_errors() {
    check_expr_error(
        "a > 1 <= 2",
        7,
        ExprErrorKind::Syntax,
        "comparisons do not chain; join them with `and`",
    );
    check_expr_error(
        "a >",
        4,
        ExprErrorKind::Syntax,
        "expected a number, name, `(` or `-`, found end of expression",
    );
    check_expr_error(
        "a = 1",
        3,
        ExprErrorKind::Syntax,
        "unexpected `=`; expected `==` for equality",
    );
    check_expr_error(
        "a > 1 $",
        7,
        ExprErrorKind::Syntax,
        "unexpected character `$`",
    );
    check_expr_error(
        "maxx(a, b) > 1",
        1,
        ExprErrorKind::UnknownName,
        "unknown function `maxx`; expected cross_above, cross_below or prev",
    );
    check_expr_error("c > 1", 1, ExprErrorKind::UnknownName, "unknown `c`");
    check_expr_error(
        "(a > 1) + 1 > 0",
        1,
        ExprErrorKind::Type,
        "`+` needs a number, found a condition",
    );
    check_expr_error(
        "a > 1 and b",
        11,
        ExprErrorKind::Type,
        "`and` needs a condition, found a number",
    );
    check_expr_error(
        "cross_above(a) ",
        1,
        ExprErrorKind::Type,
        "cross_above() takes 2 arguments, found 1",
    );
    check_expr_error(
        "cross_above(a > 1, b)",
        13,
        ExprErrorKind::Type,
        "cross_above() argument 1 needs a number, found a condition",
    );
    check_expr_error(
        "prev(a, 1.5) > 0",
        9,
        ExprErrorKind::Type,
        "prev() look-back must be a non-negative integer literal or an integer param",
    );
    check_expr_error(
        "prev(a, x) > 0",
        9,
        ExprErrorKind::Type,
        "prev() look-back must be a non-negative integer literal or an integer param",
    );
    check_expr_error(
        "flag == 1",
        9,
        ExprErrorKind::Type,
        "`==` compares like with like: the left side is a condition, the right side is a number",
    );
    check_expr_error(
        "a + 1",
        1,
        ExprErrorKind::Type,
        "a rule must be a condition (true/false), found a number; compare it, e.g. `x > 0`",
    );
}

#[test]
fn rules_expose_reads_and_lookback() {
    let spec = parse_ok("ema_cross.toml", &example("ema_cross.toml"));
    let rule = spec.rules.long_entry.as_ref().expect("long_entry");
    assert_eq!(rule.reads().indicator_slots, vec![0, 1]);
    assert!(rule.reads().series.is_empty());
    let bound = rule
        .bind(&spec.params.decode(0).expect("decode").values)
        .expect("bind");
    assert_eq!(bound.lookback_bars(), 1);

    let rule = expr::compile(
        "prev(close, k) > prev(a, 3) and cross_above(a, x)",
        &TestNames,
    )
    .expect("compile");
    assert_eq!(rule.reads().series, vec![Series::Close]);
    assert_eq!(rule.reads().indicator_slots, vec![0]);
    assert_eq!(rule.reads().params, vec![0, 1]);
    let params = [
        ParamValue::Int(7),
        ParamValue::Float(1.5),
        ParamValue::Bool(true),
    ];
    assert_eq!(rule.bind(&params).expect("bind").lookback_bars(), 7);
    let params = [
        ParamValue::Int(-1),
        ParamValue::Float(1.5),
        ParamValue::Bool(true),
    ];
    assert!(rule.bind(&params).is_err());
}

#[test]
fn eval_checks_columns_before_the_loop() {
    let rule = expr::compile("a > b", &TestNames)
        .expect("compile")
        .bind(&[])
        .expect("bind");
    let bars = BarColumns {
        open: &CLOSE,
        high: &CLOSE,
        low: &CLOSE,
        close: &CLOSE,
        volume: &CLOSE,
    };
    let short: [f64; 2] = [1.0, 2.0];
    let indicators: [&[f64]; 2] = [&FLAT, &short];
    let mut out = [false; 5];
    assert!(
        rule.eval_into(
            &RuleInputs {
                bars,
                indicators: &indicators
            },
            &mut out
        )
        .is_err()
    );
    let indicators: [&[f64]; 2] = [&FLAT, &FLAT];
    let mut out = [false; 4];
    assert!(
        rule.eval_into(
            &RuleInputs {
                bars,
                indicators: &indicators
            },
            &mut out
        )
        .is_err()
    );
}

// ---------------------------------------------------------------------------------------
// Indicator registry

#[test]
fn output_names_follow_the_rule() {
    let check = |ta_names: &[&str], expected: &[&str]| {
        assert_eq!(
            indicator::normalise_output_names(ta_names),
            expected,
            "{ta_names:?}"
        );
    };
    check(
        &["outRealUpperBand", "outRealMiddleBand", "outRealLowerBand"],
        &["upper", "middle", "lower"],
    );
    check(
        &["outMACD", "outMACDSignal", "outMACDHist"],
        &["macd", "signal", "hist"],
    );
    check(&["outSlowK", "outSlowD"], &["slowk", "slowd"]);
    check(&["outReal"], &["real"]);
    check(&["outAroonDown", "outAroonUp"], &["aroondown", "aroonup"]);
    assert_eq!(indicator::normalise_arg_name("optInNbDevUp"), "nbdevup");
    assert_eq!(
        indicator::normalise_arg_name("optInSlowK_Period"),
        "slowk_period"
    );
}

fn check_signature(name: &str, inputs: &[Option<&[Series]>], args: &[&str], outputs: &[&str]) {
    let info = indicator::lookup(name).unwrap_or_else(|| panic!("{name} unknown"));
    let got_inputs: Vec<Option<Vec<Series>>> = info
        .inputs
        .iter()
        .map(|input| match &input.kind {
            indicator::InputKind::Price(series) => Some(series.clone()),
            _ => None,
        })
        .collect();
    let want_inputs: Vec<Option<Vec<Series>>> = inputs
        .iter()
        .map(|input| input.map(<[Series]>::to_vec))
        .collect();
    assert_eq!(got_inputs, want_inputs, "{name} inputs");
    let got_args: Vec<&str> = info.args.iter().map(|arg| arg.name.as_str()).collect();
    assert_eq!(got_args, args, "{name} args");
    let got_outputs: Vec<&str> = info
        .outputs
        .iter()
        .map(|output| output.name.as_str())
        .collect();
    assert_eq!(got_outputs, outputs, "{name} outputs");
}

const HLC: &[Series] = &[Series::High, Series::Low, Series::Close];

#[test]
fn signatures_of_common_functions() {
    check_signature(
        "BBANDS",
        &[None],
        &["timeperiod", "nbdevup", "nbdevdn", "matype"],
        &["upper", "middle", "lower"],
    );
    check_signature(
        "macd",
        &[None],
        &["fastperiod", "slowperiod", "signalperiod"],
        &["macd", "signal", "hist"],
    );
    check_signature(
        "STOCH",
        &[Some(HLC)],
        &[
            "fastk_period",
            "slowk_period",
            "slowk_matype",
            "slowd_period",
            "slowd_matype",
        ],
        &["slowk", "slowd"],
    );
    check_signature("RSI", &[None], &["timeperiod"], &["real"]);
    check_signature("ATR", &[Some(HLC)], &["timeperiod"], &["real"]);
    check_signature("ADX", &[Some(HLC)], &["timeperiod"], &["real"]);
    assert!(indicator::lookup("NOPE").is_none());
}

#[cfg(feature = "talib")]
mod talib {
    use etrading_kernels::indicator;
    use etrading_kernels::series::{BarColumns, Series};
    use etrading_kernels::talib;

    #[test]
    fn builtin_table_matches_talib() {
        let mut count = 0;
        for name in indicator::builtin_names() {
            let builtin = indicator::builtin_lookup(name).expect("builtin");
            let real = talib::function_info(name).expect("talib");
            assert_eq!(builtin, real, "{name}");
            count += 1;
        }
        assert_eq!(count, 14);
    }

    #[test]
    fn version_is_recorded() {
        assert!(
            talib::version().starts_with("0.4.0"),
            "{}",
            talib::version()
        );
        assert!(indicator::registry_description().starts_with("TA-Lib 0.4.0"));
    }

    /// Runs `function` on `close` (high = close + 1, low = close - 1) and compares output
    /// `output` with `expected` (NaN matches NaN) within `tolerance`.
    fn check_values(
        function: &str,
        args: &[(&str, f64)],
        close: &[f64],
        output: usize,
        expected: &[f64],
        tolerance: f64,
    ) {
        let high: Vec<f64> = close.iter().map(|value| value + 1.0).collect();
        let low: Vec<f64> = close.iter().map(|value| value - 1.0).collect();
        let bars = BarColumns {
            open: close,
            high: &high,
            low: &low,
            close,
            volume: close,
        };
        let info = talib::function_info(function).expect("info");
        let mut columns = vec![vec![0.0; close.len()]; info.outputs.len()];
        let mut slices: Vec<&mut [f64]> = columns.iter_mut().map(Vec::as_mut_slice).collect();
        let real_inputs = vec![Series::Close; info.real_input_count()];
        talib::compute(function, args, &real_inputs, &bars, &mut slices).expect("compute");
        let got = &columns[output];
        assert_eq!(got.len(), expected.len());
        for (index, (&got, &want)) in got.iter().zip(expected).enumerate() {
            let same = (got.is_nan() && want.is_nan()) || (got - want).abs() <= tolerance;
            assert!(
                same,
                "{function} output {output} bar {index}: got {got}, want {want} (tolerance {tolerance})"
            );
        }
    }

    const NAN: f64 = f64::NAN;

    #[test]
    fn ema_is_seeded_by_sma() {
        // EMA(3): alpha = 2 / (3 + 1) = 0.5. Seed at bar 2 = SMA(2, 4, 6) = 4;
        // bar 3 = 0.5*8 + 0.5*4 = 6; bar 4 = 0.5*4 + 0.5*6 = 5; bar 5 = 0.5*2 + 0.5*5 = 3.5.
        check_values(
            "EMA",
            &[("timeperiod", 3.0)],
            &[2.0, 4.0, 6.0, 8.0, 4.0, 2.0],
            0,
            &[NAN, NAN, 4.0, 6.0, 5.0, 3.5],
            1e-12,
        );
        // SMA(3) of the same: (2+4+6)/3, (4+6+8)/3, (6+8+4)/3, (8+4+2)/3.
        check_values(
            "SMA",
            &[("timeperiod", 3.0)],
            &[2.0, 4.0, 6.0, 8.0, 4.0, 2.0],
            0,
            &[NAN, NAN, 4.0, 6.0, 6.0, 14.0 / 3.0],
            1e-12,
        );
    }

    #[test]
    fn rsi_by_hand_and_published() {
        // RSI(2) on 1, 2, 3, 2, 4: changes +1, +1, -1, +2. Bar 2: avg gain (1+1)/2 = 1,
        // avg loss 0 -> 100. Bar 3: gain (1*1 + 0)/2 = 0.5, loss (0*1 + 1)/2 = 0.5 -> 50.
        // Bar 4: gain (0.5 + 2)/2 = 1.25, loss 0.5/2 = 0.25 -> 100 * 1.25 / 1.5 = 83.33.
        check_values(
            "RSI",
            &[("timeperiod", 2.0)],
            &[1.0, 2.0, 3.0, 2.0, 4.0],
            0,
            &[NAN, NAN, 100.0, 50.0, 100.0 * 1.25 / 1.5],
            1e-9,
        );
        // Wilder's RSI(14) example as published by StockCharts ("RSI" ChartSchool article):
        // 70.53, 66.32, 66.55, 69.41, 66.36 from the 15th close on. StockCharts rounds its
        // running averages to 2 decimals, hence the 0.1 tolerance.
        let close = [
            44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03,
            45.61, 46.28, 46.28, 46.00, 46.03, 46.41, 46.22, 45.64,
        ];
        let mut expected = vec![NAN; 14];
        expected.extend([70.53, 66.32, 66.55, 69.41, 66.36, 57.97]);
        check_values("RSI", &[("timeperiod", 14.0)], &close, 0, &expected, 0.1);
    }

    #[test]
    fn bbands_use_population_stddev() {
        // BBANDS(3, 2, 2) on 1, 2, 3, 5: window (1,2,3) mean 2, variance (1+0+1)/3, sd 0.8165;
        // window (2,3,5) mean 10/3, variance ((4/3)^2 + (1/3)^2 + (5/3)^2)/3 = 42/27.
        let sd1 = (2.0_f64 / 3.0).sqrt();
        let sd2 = (42.0_f64 / 27.0).sqrt();
        let close = [1.0, 2.0, 3.0, 5.0];
        let args = [("timeperiod", 3.0), ("nbdevup", 2.0), ("nbdevdn", 2.0)];
        check_values(
            "BBANDS",
            &args,
            &close,
            0,
            &[NAN, NAN, 2.0 + 2.0 * sd1, 10.0 / 3.0 + 2.0 * sd2],
            1e-9,
        );
        check_values(
            "BBANDS",
            &args,
            &close,
            1,
            &[NAN, NAN, 2.0, 10.0 / 3.0],
            1e-9,
        );
        check_values(
            "BBANDS",
            &args,
            &close,
            2,
            &[NAN, NAN, 2.0 - 2.0 * sd1, 10.0 / 3.0 - 2.0 * sd2],
            1e-9,
        );
    }

    #[test]
    fn macd_on_a_ramp() {
        // On a ramp x_t = t an SMA-seeded EMA(n) is exactly x_t - (n - 1)/2 from its seed on,
        // so MACD(12, 26, 9) = -11/2 + 25/2 = 7, its signal EMA(9) of 7 is 7, hist 0.
        // Look-back: 25 (slow EMA) + 8 (signal EMA) = 33.
        let close: Vec<f64> = (0..60).map(f64::from).collect();
        let expect = |value: f64| -> Vec<f64> {
            (0..60)
                .map(|bar| if bar < 33 { NAN } else { value })
                .collect()
        };
        check_values("MACD", &[], &close, 0, &expect(7.0), 1e-9);
        check_values("MACD", &[], &close, 1, &expect(7.0), 1e-9);
        check_values("MACD", &[], &close, 2, &expect(0.0), 1e-9);
        assert_eq!(talib::lookback("MACD", &[]), Ok(33));
    }

    #[test]
    fn atr_wires_price_inputs() {
        // Bars (high, low, close): (10,8,9) (11,9,10) (12,9,11) (11,10,10.5).
        // TR1 = max(2, |11-9|, |9-9|) = 2; TR2 = max(3, |12-10|, |9-10|) = 3;
        // TR3 = max(1, |11-11|, |10-11|) = 1. ATR(2): bar 2 = (2+3)/2 = 2.5; bar 3 = (2.5*1 + 1)/2.
        let bars = BarColumns {
            open: &[9.0, 10.0, 11.0, 10.5],
            high: &[10.0, 11.0, 12.0, 11.0],
            low: &[8.0, 9.0, 9.0, 10.0],
            close: &[9.0, 10.0, 11.0, 10.5],
            volume: &[1.0; 4],
        };
        let mut atr = [0.0; 4];
        talib::compute("ATR", &[("timeperiod", 2.0)], &[], &bars, &mut [&mut atr])
            .expect("compute");
        assert!(atr[0].is_nan() && atr[1].is_nan(), "{atr:?}");
        assert_eq!(&atr[2..], &[2.5, 1.75]);
    }

    #[test]
    fn lookback_bars_are_nan() {
        let close: Vec<f64> = (0..40).map(|bar| 100.0 + f64::from(bar % 7)).collect();
        let bars = BarColumns {
            open: &close,
            high: &close,
            low: &close,
            close: &close,
            volume: &close,
        };
        for (function, args) in [
            ("RSI", vec![("timeperiod", 14.0)]),
            ("STDDEV", vec![]),
            ("ADX", vec![("timeperiod", 5.0)]),
        ] {
            let lookback = talib::lookback(function, &args).expect("lookback");
            let mut out = vec![0.0; close.len()];
            let real_inputs = vec![
                Series::Close;
                talib::function_info(function)
                    .expect("info")
                    .real_input_count()
            ];
            talib::compute(function, &args, &real_inputs, &bars, &mut [&mut out]).expect("compute");
            let first_value = out.iter().position(|value| !value.is_nan());
            assert_eq!(first_value, Some(lookback), "{function}: {out:?}");
        }
        assert_eq!(talib::lookback("RSI", &[("timeperiod", 14.0)]), Ok(14));
    }

    #[test]
    fn compute_rejects_bad_calls() {
        let close = [1.0; 10];
        let bars = BarColumns {
            open: &close,
            high: &close,
            low: &close,
            close: &close,
            volume: &close,
        };
        let mut out = [0.0; 10];
        let error = talib::compute("NOPE", &[], &[], &bars, &mut [&mut out]).expect_err("unknown");
        assert_eq!(error.to_string(), "unknown TA-Lib function `NOPE`");
        let error = talib::compute(
            "RSI",
            &[("timeperiod", 1.0)],
            &[Series::Close],
            &bars,
            &mut [&mut out],
        )
        .expect_err("range");
        assert_eq!(
            error.to_string(),
            "RSI timeperiod = 1 is outside TA-Lib's range 2..=100000"
        );
        let error = talib::compute(
            "RSI",
            &[("period", 3.0)],
            &[Series::Close],
            &bars,
            &mut [&mut out],
        )
        .expect_err("name");
        assert_eq!(error.to_string(), "RSI has no parameter `period`");
    }

    #[test]
    fn spec_rules_give_no_signal_during_warm_up() {
        // rsi_ema at grid index 0 (RSI 14, EMA 50) on a rising ramp: RSI is 100 once warm.
        let spec = super::parse_ok("rsi_ema.toml", &super::example("rsi_ema.toml"));
        let resolved = spec
            .resolve(&spec.params.decode(0).expect("decode"))
            .expect("resolve");
        let close: Vec<f64> = (0..300).map(|bar| 100.0 + f64::from(bar)).collect();
        let bars = BarColumns {
            open: &close,
            high: &close,
            low: &close,
            close: &close,
            volume: &close,
        };
        let mut columns = vec![vec![0.0; close.len()]; spec.output_slot_count()];
        for indicator in &resolved.indicators {
            let slots = &mut columns
                [indicator.first_slot..indicator.first_slot + indicator.output_names.len()];
            let mut slices: Vec<&mut [f64]> = slots.iter_mut().map(Vec::as_mut_slice).collect();
            indicator.compute(&bars, &mut slices).expect("compute");
        }
        let indicators: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
        let inputs = etrading_kernels::expr::RuleInputs {
            bars,
            indicators: &indicators,
        };
        let check_rule = |rule: Option<&etrading_kernels::expr::BoundRule>,
                          first_true: Option<usize>| {
            let mut signal = vec![false; close.len()];
            rule.expect("rule")
                .eval_into(&inputs, &mut signal)
                .expect("eval");
            let expected: Vec<bool> = (0..close.len())
                .map(|bar| first_true.is_some_and(|first| bar >= first))
                .collect();
            assert_eq!(signal, expected);
        };
        // long_exit = "rsi > rsi_upper": RSI(14) look-back is 14 bars.
        check_rule(resolved.rules.long_exit.as_ref(), Some(14));
        // short_entry = "rsi > rsi_upper and close < ema": the ramp stays above its EMA.
        check_rule(resolved.rules.short_entry.as_ref(), None);
        // long_entry = "rsi < rsi_lower and close > ema": RSI is 100, never below 20.
        check_rule(resolved.rules.long_entry.as_ref(), None);
    }
}

// ---------------------------------------------------------------------------------------
// The columnar evaluator against the per-bar one

/// A random condition over `a`, `b`, `close`, the params and constants: comparisons of
/// arithmetic, `and`/`or`/`not`, `prev` of numbers and conditions, crosses.
fn random_condition(rng: &mut u64, depth: u32) -> String {
    let mut next = |n: u64| {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng % n
    };
    fn number(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> String {
        let leaf = ["a", "b", "close", "k", "x", "2", "0.5", "-1"];
        if depth == 0 || next(3) == 0 {
            return leaf[next(leaf.len() as u64) as usize].to_string();
        }
        match next(4) {
            0 => format!("prev({}, {})", number(next, depth - 1), next(300)),
            1 => format!("-({})", number(next, depth - 1)),
            _ => {
                let op = ["+", "-", "*", "/"][next(4) as usize];
                format!(
                    "({} {op} {})",
                    number(next, depth - 1),
                    number(next, depth - 1)
                )
            }
        }
    }
    fn condition(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> String {
        match next(if depth == 0 { 2 } else { 7 }) {
            0 => {
                let op = ["<", "<=", ">", ">=", "==", "!="][next(6) as usize];
                format!(
                    "{} {op} {}",
                    number(next, depth.saturating_sub(1)),
                    number(next, depth.saturating_sub(1))
                )
            }
            1 => ["true", "false", "flag"][next(3) as usize].to_string(),
            2 => format!("not ({})", condition(next, depth - 1)),
            3 => format!("prev({}, k)", condition(next, depth - 1)),
            4 => format!(
                "cross_{}({}, {})",
                ["above", "below"][next(2) as usize],
                number(next, depth - 1),
                number(next, depth - 1)
            ),
            _ => {
                let op = ["and", "or"][next(2) as usize];
                format!(
                    "({}) {op} ({})",
                    condition(next, depth - 1),
                    condition(next, depth - 1)
                )
            }
        }
    }
    condition(&mut next, depth)
}

/// Column `seed`: a random walk with NaN warm-up and holes, and repeated values (ties).
fn random_column(rng: &mut u64, len: usize) -> Vec<f64> {
    let mut v = 1.0;
    (0..len)
        .map(|bar| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            let r = *rng % 100;
            v += (r as f64 - 49.5) / 50.0;
            if bar < (*rng >> 40) as usize % 40 || r < 3 {
                f64::NAN
            } else if r < 10 {
                1.0
            } else {
                v
            }
        })
        .collect()
}

#[test]
fn columnar_evaluation_equals_per_bar_evaluation() {
    // Lengths around the 256-bar block: shorter, exact, and crossing several blocks.
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    for case in 0..400 {
        let len = [1, 7, 255, 256, 257, 700][case % 6];
        let (close, a, b) = (
            random_column(&mut rng, len),
            random_column(&mut rng, len),
            random_column(&mut rng, len),
        );
        let rule = random_condition(&mut rng, 3);
        evaluate(&rule, &close, &a, &b);
    }
    // The bench's rules, whose loads are never copied.
    let (close, a, b) = (
        random_column(&mut rng, 1000),
        random_column(&mut rng, 1000),
        random_column(&mut rng, 1000),
    );
    for rule in ["a < x and close > b", "a > k", "prev(a, 300) > b", "true"] {
        evaluate(rule, &close, &a, &b);
    }
}
