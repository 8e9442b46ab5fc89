//! The fuzz targets: one per parser, each driving a parser's public API with arbitrary bytes and,
//! when the input is accepted, the code that consumes its result. A target returns the
//! input's [`Outcome`] (which the engine uses to keep inputs that behave in a new way); it
//! panics only when the code under test does, or when two paths that must agree disagree.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use etrading_data::parse::{parse_funding, parse_klines};
use etrading_data::series::Part;
use etrading_data::source::{classify, read_csv_bytes_limited};
use etrading_data::{AlignPolicy, FundingSeries, GapPolicy, Interval, Kind, KlineSeries, Panel};
use etrading_kernels::expr::{self, ExprErrorKind, NameResolver, Operand, ParamKind, RuleInputs};
use etrading_kernels::series::{BarColumns, Series};
use etrading_kernels::spec::{ParamValue, Spec};

/// A fuzz target, named as its corpus folder `fuzz/corpus/<name>/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `data::parse::parse_klines`, then merging, gaps, forward fill, resampling, alignment.
    Klines,
    /// `data::parse::parse_funding`, then merging and coverage.
    Funding,
    /// `data::source::read_csv_bytes_limited` on the input written as a `.zip`, then the CSV.
    Zip,
    /// `kernels::spec::Spec::parse` (TOML, validation, rule compilation), then the grid's
    /// first and last param sets resolved and bound into every rule.
    Spec,
    /// `kernels::expr::compile` against a fixed set of names, then bound and evaluated both
    /// bar by bar and column-wise (the two must agree).
    Expr,
}

/// What one input did, reduced to a hash of its shape: the kind of result, or the words of
/// the error message (its first 64 letters, without digits and without what it quotes), so
/// "line 3" and "line 4", or two unknown names, count as one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Outcome(pub u64);

impl Outcome {
    fn ok(features: &[u64]) -> Outcome {
        let mut h = Fnv::new();
        h.write(b"ok");
        for f in features {
            h.write(&f.to_le_bytes());
        }
        Outcome(h.finish())
    }

    fn error(message: &str) -> Outcome {
        let mut h = Fnv::new();
        h.write(b"err");
        let mut quote = None;
        let mut escaped = false;
        let mut kept = 0;
        for c in message.chars() {
            match quote {
                Some(_) if escaped => escaped = false,
                Some(_) if c == '\\' => escaped = true,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '`' => quote = Some(c),
                None if c.is_ascii_alphabetic() || c == ' ' => {
                    h.write(&[c as u8]);
                    kept += 1;
                    if kept == 64 {
                        break;
                    }
                }
                None => {}
            }
        }
        Outcome(h.finish())
    }

    fn of<T, E: std::fmt::Display>(r: &Result<T, E>, ok: impl FnOnce(&T) -> Vec<u64>) -> Outcome {
        match r {
            Ok(v) => Outcome::ok(&ok(v)),
            Err(e) => Outcome::error(&e.to_string()),
        }
    }
}

/// FNV-1a, 64 bits: a stable hash for outcomes and crash file names.
#[derive(Debug)]
pub struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv::new()
    }
}

/// The most bytes a zip's CSV may inflate to inside the fuzzer: the bound is exercised at a
/// size that keeps each input fast (the library's own is 1 GiB).
const ZIP_INFLATE_LIMIT: u64 = 4 << 20;

/// A forward fill is run only when it adds at most this many bars (the library bounds it at
/// 10 million, which is correct but too slow to run per input).
const FUZZ_FILL_BARS: u64 = 100_000;

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Klines,
        Target::Funding,
        Target::Zip,
        Target::Spec,
        Target::Expr,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Klines => "klines",
            Target::Funding => "funding",
            Target::Zip => "zip",
            Target::Spec => "spec",
            Target::Expr => "expr",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The longest input the engine generates for this target.
    pub fn max_len(self) -> usize {
        match self {
            Target::Zip => 64 << 10,
            _ => 16 << 10,
        }
    }

    /// Tokens of the input's grammar, inserted whole by the mutator.
    pub fn dictionary(self) -> &'static [&'static [u8]] {
        match self {
            Target::Klines | Target::Funding | Target::Zip => CSV_TOKENS,
            Target::Spec => SPEC_TOKENS,
            Target::Expr => EXPR_TOKENS,
        }
    }

    /// Runs one input. `work` is a folder the target may write scratch files into.
    pub fn run(self, input: &[u8], work: &Path) -> Outcome {
        match self {
            Target::Klines => klines(input),
            Target::Funding => funding(input),
            Target::Zip => zip(input, work),
            Target::Spec => spec(input),
            Target::Expr => expression(input),
        }
    }
}

const CSV_TOKENS: &[&[u8]] = &[
    b",",
    b"\n",
    b"\r\n",
    b"\"",
    b"\xEF\xBB\xBF",
    b"open_time,open,high,low,close,volume\n",
    b"openTime,open,high,low,close,volume,closeTime,quoteVolume,trades,takerBuyBase,takerBuyQuote,ignore\n",
    b"date,open,high,low,close,volume\n",
    b"calc_time,funding_interval_hours,last_funding_rate\n",
    b"fundingTime,fundingIntervalHours,fundingRate\n",
    b"funding_time,funding_rate\n",
    b"1735689600000",
    b"1735693200000",
    b"1735689600000000",
    b"1735689600",
    b"1483228800000",
    b"4102444799999",
    b"2025-01-01",
    b"2025-01-01T00:00:00Z",
    b"2025-01-01 01:00:00+01:00",
    b"0E-8",
    b"NaN",
    b"inf",
    b"-1",
    b"0",
    b"1e308",
    b"8",
    b"24",
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b".csv",
];

const SPEC_TOKENS: &[&[u8]] = &[
    b"[strategy]\n",
    b"[indicators]\n",
    b"[params]\n",
    b"[rules]\n",
    b"[risk]\n",
    b"[execution]\n",
    b"[walk_forward]\n",
    b"[objective]\n",
    b" = ",
    b"\"",
    b"'''",
    b"\"\"\"",
    b"{ ",
    b" }",
    b"[",
    b"]",
    b", ",
    b"\n",
    b"#",
    b"id",
    b"symbols = [\"BTCUSDT\"]",
    b"interval = \"1h\"",
    b"fn = \"RSI\"",
    b"fn = \"BBANDS\"",
    b"fn = \"MACD\"",
    b"input = \"close\"",
    b"timeperiod",
    b"low = 1, high = 10, step = 1",
    b"log = true",
    b"choices = [\"a\", \"b\"]",
    b"long_entry",
    b"long_exit",
    b"short_entry",
    b"short_exit",
    b"margin_mode = \"isolated\"",
    b"position_size = 0.25",
    b"max_concurrent_positions",
    b"max_leverage = { BTCUSDT = 5 }",
    b"stop_loss",
    b"take_profit",
    b"fill = \"next_open\"",
    b"taker_fee",
    b"slippage",
    b"funding = \"data\"",
    b"mode = \"rolling\"",
    b"mode = \"anchored\"",
    b"windows = 3",
    b"in_sample = \"40d\"",
    b"out_of_sample = \"20d\"",
    b"gap = \"1d\"",
    b"name = \"robust\"",
    b"min_trades",
    b"max_drawdown_by_leverage = { 1 = 0.5, 10 = 0.15 }",
    b"leverage",
    b"prev(close, 1)",
    b"cross_above(",
    b" and ",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"1e308",
    b"nan",
    b"inf",
    b"0",
];

const EXPR_TOKENS: &[&[u8]] = &[
    b"(",
    b")",
    b",",
    b" and ",
    b" or ",
    b"not ",
    b" < ",
    b" <= ",
    b" > ",
    b" >= ",
    b" == ",
    b" != ",
    b" + ",
    b" - ",
    b" * ",
    b" / ",
    b"-",
    b"cross_above(",
    b"cross_below(",
    b"prev(",
    b"true",
    b"false",
    b"open",
    b"high",
    b"low",
    b"close",
    b"volume",
    b"rsi",
    b"ema",
    b"bb.upper",
    b"bb.lower",
    b"macd.hist",
    b"n",
    b"lag",
    b"band",
    b"flag",
    b"1000000",
    b"1000001",
    b"18446744073709551616",
    b"1e-3",
    b"1e308",
    b"0.5",
    b".",
];

fn klines(input: &[u8]) -> Outcome {
    let one_hour = Interval::from_ms(3_600_000);
    let mark = parse_klines(input, "fuzz-1h-markprice.csv", Kind::MarkPrice, one_hour);
    let r = parse_klines(input, "fuzz.csv", Kind::Klines, None);
    let (chunk, interval) = match r {
        Ok(v) => v,
        Err(e) => {
            let mut h = Fnv::new();
            h.write(&Outcome::error(&e.to_string()).0.to_le_bytes());
            h.write(&[u8::from(mark.is_ok())]);
            return Outcome(h.finish());
        }
    };
    let rows = chunk.open_time.len();
    // The file twice: the merge's overlap path, every bar a duplicate.
    let parts = vec![
        Part {
            file: "a.csv".to_string(),
            chunk: chunk.clone(),
        },
        Part {
            file: "b.csv".to_string(),
            chunk,
        },
    ];
    let mut series = KlineSeries::merge("BTCUSDT", Kind::Klines, interval, parts)
        .expect("a file merged with itself has no conflicting bar");
    assert_eq!(series.len(), rows, "merging a file with itself");
    assert_eq!(series.duplicates_merged, rows as u64);
    let gaps = series.gaps();
    let missing: u64 = gaps.iter().map(|g| g.bars).sum();
    let filled = if missing <= FUZZ_FILL_BARS {
        series
            .forward_fill()
            .expect("a small fill is within the bound");
        assert!(series.gaps().is_empty(), "gaps left after a forward fill");
        assert_eq!(series.len() as u64, rows as u64 + missing);
        true
    } else {
        false
    };
    let day = Interval::from_ms(86_400_000).expect("1d is an interval");
    let resampled = series.resample(day);
    if let Ok(daily) = &resampled {
        assert!(daily.open_time.windows(2).all(|w| w[0] < w[1]));
    }
    let panel = Panel::align(
        &[&series],
        &[],
        &[],
        AlignPolicy::Union,
        GapPolicy::ForwardFill,
    )
    .expect("one series aligns with itself");
    assert_eq!(panel.n_bars(), series.len());
    let _ = panel.content_hash();
    Outcome::ok(&[
        interval.ms() as u64,
        rows.min(3) as u64,
        gaps.len().min(3) as u64,
        u64::from(filled),
        u64::from(resampled.is_ok()),
        u64::from(mark.is_ok()),
    ])
}

fn funding(input: &[u8]) -> Outcome {
    let chunk = match parse_funding(input, "fuzz-funding.csv") {
        Ok(c) => c,
        Err(e) => return Outcome::error(&e.to_string()),
    };
    let n = chunk.time.len();
    let (first, last) = (chunk.time[0], chunk.time[n - 1]);
    let parts = vec![
        Part {
            file: "a.csv".to_string(),
            chunk: chunk.clone(),
        },
        Part {
            file: "b.csv".to_string(),
            chunk,
        },
    ];
    let series =
        FundingSeries::merge("BTCUSDT", parts).expect("a file merged with itself has no conflict");
    assert_eq!(series.len(), n, "merging a funding file with itself");
    let (present, expected) = series.coverage(first, last + 1);
    assert_eq!(present, n as u64);
    assert!(expected >= present);
    let mut hours = series.interval_hours.clone();
    hours.sort_unstable();
    hours.dedup();
    Outcome::ok(&[n.min(3) as u64, hours.len() as u64])
}

fn zip(input: &[u8], work: &Path) -> Outcome {
    let path: PathBuf = work.join("BTCUSDT-1h-2025-01.zip");
    // Overwritten in place, never truncated to zero: ext4 flushes a file rewritten after a
    // truncation to zero on close, which made every input wait for the disk.
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .expect("opening the work file");
    file.write_all(input)
        .and_then(|()| file.set_len(input.len() as u64))
        .expect("writing the fuzz input to the work folder");
    drop(file);
    let file = classify(&path)
        .expect("the name is a data file's")
        .expect("a .zip is a data file");
    match read_csv_bytes_limited(&file, ZIP_INFLATE_LIMIT) {
        Ok(csv) => {
            assert!(csv.bytes.len() as u64 <= ZIP_INFLATE_LIMIT);
            let parsed = parse_klines(&csv.bytes, &file.display(), Kind::Klines, None);
            let mut h = Fnv::new();
            h.write(b"unzipped");
            h.write(&Outcome::of(&parsed, |_| vec![]).0.to_le_bytes());
            Outcome(h.finish())
        }
        Err(e) => Outcome::error(&e.to_string()),
    }
}

fn spec(input: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(input) else {
        return Outcome::error("not UTF-8");
    };
    let spec = match Spec::parse("fuzz.toml", text) {
        Ok(s) => s,
        Err(e) => return Outcome::error(&e.to_string()),
    };
    let grid = spec.params.grid_len();
    let mut resolved = 0;
    if let Ok(len) = grid
        && len > 0
    {
        for index in [0, len - 1] {
            let set = spec
                .params
                .decode(index)
                .expect("an index below grid_len decodes");
            if spec.resolve(&set).is_ok() {
                resolved += 1;
            }
            for (_, rule) in spec.rules.iter() {
                let _ = rule.bind(&set.values);
            }
        }
    }
    Outcome::ok(&[
        spec.indicators.len() as u64,
        spec.params.params.len().min(4) as u64,
        spec.rules.iter().count() as u64,
        u64::from(spec.walk_forward.is_some()),
        u64::from(grid.is_ok()),
        resolved,
    ])
}

/// The names an expression may use in the expression target: the five series, three
/// indicators (one with one output, two with several) and four params of each kind.
#[derive(Debug)]
struct FuzzNames;

const PARAMS: [(&str, ParamKind); 4] = [
    ("n", ParamKind::Int { min_value: 0 }),
    ("lag", ParamKind::Int { min_value: 1 }),
    ("band", ParamKind::Float),
    ("flag", ParamKind::Bool),
];

const INDICATORS: [(&str, &[&str]); 4] = [
    ("rsi", &["real"]),
    ("ema", &["real"]),
    ("bb", &["upper", "middle", "lower"]),
    ("macd", &["macd", "signal", "hist"]),
];

impl NameResolver for FuzzNames {
    fn resolve(&self, name: &str, field: Option<&str>) -> Result<Operand, (ExprErrorKind, String)> {
        let unknown = |what: String| Err((ExprErrorKind::UnknownName, what));
        if let Some(series) = Series::from_name(name) {
            return match field {
                None => Ok(Operand::Series(series)),
                Some(f) => unknown(format!("series `{name}` has no output `{f}`")),
            };
        }
        let mut slot = 0;
        for (indicator, outputs) in INDICATORS {
            if indicator == name {
                return match (field, outputs.len()) {
                    (None, 1) => Ok(Operand::Indicator { slot }),
                    (None, _) => unknown(format!("`{name}` has several outputs")),
                    (Some(f), _) => match outputs.iter().position(|o| *o == f) {
                        Some(k) => Ok(Operand::Indicator { slot: slot + k }),
                        None => unknown(format!("`{name}` has no output `{f}`")),
                    },
                };
            }
            slot += outputs.len();
        }
        match (PARAMS.iter().position(|(p, _)| *p == name), field) {
            (Some(index), None) => Ok(Operand::Param {
                index,
                kind: PARAMS[index].1,
            }),
            (Some(_), Some(f)) => unknown(format!("param `{name}` has no field `{f}`")),
            (None, _) => unknown(format!("unknown name `{name}`")),
        }
    }
}

/// Bars for the expression target: 150 bars (more than one column block) with NaNs, flat
/// stretches and crossings.
fn columns() -> [Vec<f64>; 5] {
    let n = 150;
    let wave = |k: usize, phase: f64| -> f64 {
        if k % 37 == 5 {
            f64::NAN
        } else {
            100.0 + 10.0 * ((k as f64) * 0.3 + phase).sin().round()
        }
    };
    [0.0, 0.5, 1.0, 1.5, 2.0].map(|phase| (0..n).map(|k| wave(k, phase)).collect())
}

fn expression(input: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(input) else {
        return Outcome::error("not UTF-8");
    };
    let parsed = expr::parse(text);
    let rule = match expr::compile(text, &FuzzNames) {
        Ok(rule) => rule,
        Err(e) => {
            assert!(
                parsed.is_err() || e.kind != ExprErrorKind::Syntax,
                "{text:?} parses, but compiling it reports a syntax error: {e}"
            );
            return Outcome::error(&e.to_string());
        }
    };
    assert!(parsed.is_ok(), "{text:?} compiles but does not parse");
    let params = [
        ParamValue::Int(3),
        ParamValue::Int(2),
        ParamValue::Float(0.5),
        ParamValue::Bool(true),
    ];
    let bound = match rule.bind(&params) {
        Ok(b) => b,
        Err(e) => return Outcome::error(&e.to_string()),
    };
    let [open, high, low, close, volume] = columns();
    let indicator_columns: Vec<Vec<f64>> = (0..8)
        .map(|s| close.iter().map(|c| c - 2.0 * s as f64).collect())
        .collect();
    let indicators: Vec<&[f64]> = indicator_columns.iter().map(Vec::as_slice).collect();
    let inputs = RuleInputs {
        bars: BarColumns {
            open: &open,
            high: &high,
            low: &low,
            close: &close,
            volume: &volume,
        },
        indicators: &indicators,
    };
    let mut by_bar = vec![false; close.len()];
    bound
        .eval_into(&inputs, &mut by_bar)
        .expect("the columns fit every compiled rule");
    let mut by_column = vec![true; close.len()];
    let mut stack = Vec::new();
    bound
        .eval_columns(&inputs, &mut by_column, &mut stack)
        .expect("the columns fit every compiled rule");
    if let Some(bar) = (0..by_bar.len()).find(|&k| by_bar[k] != by_column[k]) {
        panic!(
            "{text:?}: eval_into and eval_columns differ at bar {bar}: {} vs {}",
            by_bar[bar], by_column[bar]
        );
    }
    Outcome::ok(&[
        rule.op_count().min(16) as u64,
        by_bar.iter().filter(|&&b| b).count().min(2) as u64,
        bound.lookback_bars().min(3) as u64,
    ])
}
