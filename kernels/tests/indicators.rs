//! The streaming indicators of `batch::indicators` against TA-Lib itself: every supported
//! function, several parameter sets each (period 1 or 2 where TA-Lib allows, periods longer
//! than the data), on seeded random walks with flat stretches and spikes, on near-zero
//! prices and on real BTCUSDT hourly bars. Values must be bit-identical and NaN in the same
//! places. `INDICATORS_FILTER=RSI` limits a run to the functions whose name contains it.

use std::sync::OnceLock;

use etrading_kernels::batch::indicators::{self, Ema, MaType, Sma, StreamError};
use etrading_kernels::indicator;
use etrading_kernels::series::{BarColumns, Series};
use etrading_kernels::spec::ResolvedIndicator;
use etrading_kernels::talib;

/// One named set of OHLCV columns.
struct Dataset {
    label: String,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
}

impl Dataset {
    fn bars(&self) -> BarColumns<'_> {
        BarColumns {
            open: &self.open,
            high: &self.high,
            low: &self.low,
            close: &self.close,
            volume: &self.volume,
        }
    }

    fn len(&self) -> usize {
        self.close.len()
    }
}

/// SplitMix64: a tiny seeded generator, so the walks are the same on every machine.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Roughly normal (sum of four uniforms, centred).
    fn normal(&mut self) -> f64 {
        (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * 1.7
    }
}

/// A random walk of `len` bars around `start`, relative step `volatility`, with flat
/// stretches (several bars with open = high = low = close, longer than most periods), single
/// spikes, and gaps between one close and the next open.
fn walk(label: &str, seed: u64, len: usize, start: f64, volatility: f64) -> Dataset {
    let mut rng = Rng(seed);
    let mut data = Dataset {
        label: format!("{label} (seed {seed}, {len} bars)"),
        open: Vec::with_capacity(len),
        high: Vec::with_capacity(len),
        low: Vec::with_capacity(len),
        close: Vec::with_capacity(len),
        volume: Vec::with_capacity(len),
    };
    let mut price = start;
    let mut flat_left = 0_usize;
    for _ in 0..len {
        if flat_left == 0 && rng.unit() < 0.01 {
            flat_left = 5 + (rng.next_u64() % 60) as usize;
        }
        let (open, high, low, close);
        if flat_left > 0 {
            flat_left -= 1;
            (open, high, low, close) = (price, price, price, price);
        } else {
            let gap = if rng.unit() < 0.02 {
                1.0 + rng.normal() * volatility * 5.0
            } else {
                1.0
            };
            open = price * gap;
            let spike = if rng.unit() < 0.01 { 8.0 } else { 1.0 };
            close = (open * (1.0 + rng.normal() * volatility * spike)).abs();
            high = open.max(close) * (1.0 + rng.unit() * volatility * spike);
            low = open.min(close) * (1.0 - rng.unit() * volatility).max(0.0);
            price = close;
        }
        data.open.push(open);
        data.high.push(high);
        data.low.push(low);
        data.close.push(close);
        data.volume.push(1.0 + rng.unit() * 100.0);
    }
    data
}

/// The bars of `data/sample/BTCUSDT-1h.csv` (header `open_time,open,high,low,close,volume`).
fn btc_sample() -> Dataset {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample/BTCUSDT-1h.csv");
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let mut data = Dataset {
        label: "BTCUSDT-1h sample".to_string(),
        open: Vec::new(),
        high: Vec::new(),
        low: Vec::new(),
        close: Vec::new(),
        volume: Vec::new(),
    };
    for (number, line) in text.lines().enumerate().skip(1) {
        let fields: Vec<f64> = line
            .split(',')
            .map(|field| {
                field.parse().unwrap_or_else(|error| {
                    panic!("{path}:{}: `{field}` is not a number: {error}", number + 1)
                })
            })
            .collect();
        assert_eq!(fields.len(), 6, "{path}:{}: expected 6 fields", number + 1);
        data.open.push(fields[1]);
        data.high.push(fields[2]);
        data.low.push(fields[3]);
        data.close.push(fields[4]);
        data.volume.push(fields[5]);
    }
    assert!(data.len() > 8000, "{path}: only {} bars", data.len());
    data
}

fn datasets() -> &'static [Dataset] {
    static DATA: OnceLock<Vec<Dataset>> = OnceLock::new();
    DATA.get_or_init(|| {
        vec![
            walk("one bar", 1, 1, 100.0, 0.01),
            walk("two bars", 2, 2, 100.0, 0.01),
            walk("short walk", 3, 7, 100.0, 0.02),
            walk("walk", 4, 33, 50.0, 0.02),
            walk("walk", 5, 257, 30_000.0, 0.01),
            walk("volatile walk", 6, 1_001, 1.0, 0.05),
            walk("near-zero prices", 7, 503, 0.001, 0.0001),
            walk("long walk", 8, 3_001, 90_000.0, 0.004),
            btc_sample(),
        ]
    })
}

/// TA-Lib's function `function` with `overrides` on top of its defaults, every parameter
/// listed in TA-Lib order as the spec resolver does.
fn resolved(function: &str, overrides: &[(&str, f64)]) -> ResolvedIndicator {
    let info = indicator::lookup(function).unwrap_or_else(|| panic!("no TA-Lib {function}"));
    for (name, _) in overrides {
        assert!(info.arg(name).is_some(), "{function} has no `{name}`");
    }
    let args = info
        .args
        .iter()
        .map(|arg| {
            let value = overrides
                .iter()
                .find(|(name, _)| *name == arg.name)
                .map_or(arg.default_value, |&(_, value)| value);
            (arg.name.clone(), value)
        })
        .collect();
    ResolvedIndicator {
        name: function.to_ascii_lowercase(),
        function: info.name.clone(),
        real_inputs: vec![Series::Close; info.real_input_count()],
        args,
        output_names: info
            .outputs
            .iter()
            .map(|output| output.name.clone())
            .collect(),
        first_slot: 0,
    }
}

/// The first index where `expected` and `actual` differ bit for bit (NaN equals NaN), or a
/// length mismatch at the shorter length.
fn first_difference(expected: &[f64], actual: &[f64]) -> Option<usize> {
    let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    expected
        .iter()
        .zip(actual)
        .position(|(&a, &b)| !same(a, b))
        .or_else(|| (expected.len() != actual.len()).then(|| expected.len().min(actual.len())))
}

/// Asserts `actual` equals `expected` bit for bit, naming the first differing index.
fn assert_identical(label: &str, expected: &[f64], actual: &[f64]) {
    if let Some(index) = first_difference(expected, actual) {
        let show = |values: &[f64]| {
            values.get(index).map_or("(missing)".to_string(), |v| {
                format!("{v:?} (bits {:#018x})", v.to_bits())
            })
        };
        panic!(
            "{label}: first difference at bar {index} of {}: TA-Lib {}, streaming {}",
            expected.len(),
            show(expected),
            show(actual),
        );
    }
}

/// Runs `function` with each parameter set over every dataset through TA-Lib and through
/// the streaming twin; asserts identical outputs and look-backs. Returns the number of
/// non-NaN values compared, so a caller can check the comparison was not vacuous.
fn check(function: &str, param_sets: &[&[(&str, f64)]]) -> usize {
    if let Ok(filter) = std::env::var("INDICATORS_FILTER")
        && !function.contains(filter.as_str())
    {
        return usize::MAX;
    }
    assert!(indicators::supports(function), "{function} not supported");
    let mut compared = 0;
    for data in datasets() {
        let mut sets: Vec<Vec<(&str, f64)>> = param_sets.iter().map(|set| set.to_vec()).collect();
        // A period longer than the data: everything NaN in both.
        let period_name = resolved(function, &[])
            .args
            .iter()
            .map(|(name, _)| name.clone())
            .find(|name| name == "timeperiod");
        if period_name.is_some() {
            sets.push(vec![("timeperiod", (data.len() + 3) as f64)]);
        }
        for set in &sets {
            let ind = resolved(function, set);
            let label = format!("{function} {:?} on {}", ind.args, data.label);
            let bars = data.bars();
            let n = data.len();
            let outputs = ind.output_names.len();
            let mut expected = vec![vec![f64::NAN; n]; outputs];
            let mut actual = vec![vec![-1.0; n]; outputs];
            {
                let mut slices: Vec<&mut [f64]> =
                    expected.iter_mut().map(Vec::as_mut_slice).collect();
                ind.compute(&bars, &mut slices)
                    .unwrap_or_else(|error| panic!("{label}: TA-Lib: {error}"));
            }
            {
                let mut slices: Vec<&mut [f64]> =
                    actual.iter_mut().map(Vec::as_mut_slice).collect();
                indicators::compute(&ind, &bars, &mut slices)
                    .unwrap_or_else(|error| panic!("{label}: streaming: {error}"));
            }
            for (index, name) in ind.output_names.iter().enumerate() {
                assert_identical(
                    &format!("{label} output {name}"),
                    &expected[index],
                    &actual[index],
                );
                compared += expected[index].iter().filter(|v| !v.is_nan()).count();
            }
            let pairs = ind.arg_pairs();
            let talib_lookback = talib::lookback(function, &pairs)
                .unwrap_or_else(|error| panic!("{label}: TA-Lib lookback: {error}"));
            assert_eq!(
                indicators::lookback(function, &ind.args),
                Some(talib_lookback),
                "{label}: look-back"
            );
            // The first value sits exactly at the look-back (when the data reaches it).
            if talib_lookback < n {
                assert!(
                    !expected[0][talib_lookback].is_nan(),
                    "{label}: no value at the look-back"
                );
            }
        }
    }
    assert!(
        compared > 10_000,
        "{function}: only {compared} values compared"
    );
    compared
}

#[test]
fn sma_matches_talib() {
    check(
        "SMA",
        &[
            &[("timeperiod", 2.0)],
            &[("timeperiod", 3.0)],
            &[("timeperiod", 14.0)],
            &[("timeperiod", 30.0)],
            &[("timeperiod", 200.0)],
        ],
    );
}

#[test]
fn ema_matches_talib() {
    check(
        "EMA",
        &[
            &[("timeperiod", 2.0)],
            &[("timeperiod", 5.0)],
            &[("timeperiod", 21.0)],
            &[("timeperiod", 50.0)],
            &[("timeperiod", 200.0)],
        ],
    );
}

#[test]
fn wma_matches_talib() {
    check(
        "WMA",
        &[
            &[("timeperiod", 2.0)],
            &[("timeperiod", 3.0)],
            &[("timeperiod", 10.0)],
            &[("timeperiod", 30.0)],
            &[("timeperiod", 150.0)],
        ],
    );
}

#[test]
fn wma_divider_wraps_like_talib_for_huge_periods() {
    // TA-Lib's divider `(p * (p + 1)) >> 1` overflows a 32-bit int above p = 46340.
    let data = walk("huge-period walk", 9, 52_561, 100.0, 0.01);
    for period in [46_340.0, 46_341.0, 50_000.0] {
        let ind = resolved("WMA", &[("timeperiod", period)]);
        let n = data.len();
        let mut expected = vec![f64::NAN; n];
        let mut actual = vec![-1.0; n];
        ind.compute(&data.bars(), &mut [expected.as_mut_slice()])
            .unwrap();
        indicators::compute(&ind, &data.bars(), &mut [actual.as_mut_slice()]).unwrap();
        assert!(!expected[n - 1].is_nan());
        assert_identical(
            &format!("WMA {period} on {}", data.label),
            &expected,
            &actual,
        );
    }
}

#[test]
fn rsi_matches_talib() {
    check(
        "RSI",
        &[
            &[("timeperiod", 2.0)],
            &[("timeperiod", 3.0)],
            &[("timeperiod", 14.0)],
            &[("timeperiod", 21.0)],
            &[("timeperiod", 100.0)],
        ],
    );
}

#[test]
fn atr_matches_talib() {
    check(
        "ATR",
        &[
            &[("timeperiod", 1.0)],
            &[("timeperiod", 2.0)],
            &[("timeperiod", 14.0)],
            &[("timeperiod", 50.0)],
        ],
    );
}

#[test]
fn natr_matches_talib() {
    check(
        "NATR",
        &[
            &[("timeperiod", 1.0)],
            &[("timeperiod", 2.0)],
            &[("timeperiod", 14.0)],
            &[("timeperiod", 50.0)],
        ],
    );
}

#[test]
fn bbands_matches_talib() {
    let mut sets: Vec<Vec<(&str, f64)>> = Vec::new();
    for matype in [0.0, 1.0, 2.0] {
        for period in [2.0, 5.0, 20.0, 30.0] {
            for (up, down) in [(2.0, 2.0), (1.0, 1.0), (1.0, 2.5), (1.5, 1.0), (2.5, 3.0)] {
                sets.push(vec![
                    ("timeperiod", period),
                    ("nbdevup", up),
                    ("nbdevdn", down),
                    ("matype", matype),
                ]);
            }
        }
    }
    let sets: Vec<&[(&str, f64)]> = sets.iter().map(Vec::as_slice).collect();
    check("BBANDS", &sets);
}

#[test]
fn macd_matches_talib() {
    check(
        "MACD",
        &[
            &[
                ("fastperiod", 12.0),
                ("slowperiod", 26.0),
                ("signalperiod", 9.0),
            ],
            // slow < fast: TA-Lib swaps them.
            &[
                ("fastperiod", 26.0),
                ("slowperiod", 12.0),
                ("signalperiod", 9.0),
            ],
            &[
                ("fastperiod", 2.0),
                ("slowperiod", 3.0),
                ("signalperiod", 2.0),
            ],
            &[
                ("fastperiod", 5.0),
                ("slowperiod", 5.0),
                ("signalperiod", 2.0),
            ],
            &[
                ("fastperiod", 3.0),
                ("slowperiod", 30.0),
                ("signalperiod", 3.0),
            ],
            &[
                ("fastperiod", 2.0),
                ("slowperiod", 2.0),
                ("signalperiod", 2.0),
            ],
            &[
                ("fastperiod", 8.0),
                ("slowperiod", 200.0),
                ("signalperiod", 50.0),
            ],
        ],
    );
}

#[test]
fn stddev_matches_talib() {
    check(
        "STDDEV",
        &[
            &[("timeperiod", 2.0), ("nbdev", 1.0)],
            &[("timeperiod", 5.0), ("nbdev", 1.0)],
            &[("timeperiod", 20.0), ("nbdev", 2.0)],
            &[("timeperiod", 30.0), ("nbdev", 0.5)],
            &[("timeperiod", 14.0), ("nbdev", -1.5)],
        ],
    );
}

#[test]
fn adx_matches_talib() {
    check(
        "ADX",
        &[
            &[("timeperiod", 2.0)],
            &[("timeperiod", 3.0)],
            &[("timeperiod", 14.0)],
            &[("timeperiod", 30.0)],
        ],
    );
}

#[test]
fn stoch_matches_talib() {
    let stoch = |fastk: f64, slowk: f64, slowk_type: f64, slowd: f64, slowd_type: f64| {
        vec![
            ("fastk_period", fastk),
            ("slowk_period", slowk),
            ("slowk_matype", slowk_type),
            ("slowd_period", slowd),
            ("slowd_matype", slowd_type),
        ]
    };
    let sets = [
        stoch(5.0, 3.0, 0.0, 3.0, 0.0),
        stoch(1.0, 1.0, 0.0, 1.0, 0.0),
        stoch(2.0, 2.0, 1.0, 2.0, 1.0),
        stoch(14.0, 3.0, 1.0, 3.0, 1.0),
        stoch(5.0, 3.0, 2.0, 4.0, 2.0),
        stoch(9.0, 5.0, 0.0, 7.0, 1.0),
        // Period 1 copies whatever the type (here DEMA and MAMA).
        stoch(9.0, 1.0, 3.0, 3.0, 0.0),
        stoch(21.0, 4.0, 2.0, 1.0, 7.0),
    ];
    let sets: Vec<&[(&str, f64)]> = sets.iter().map(Vec::as_slice).collect();
    check("STOCH", &sets);
}

#[test]
fn cci_matches_talib() {
    check(
        "CCI",
        &[
            &[("timeperiod", 2.0)],
            &[("timeperiod", 3.0)],
            &[("timeperiod", 14.0)],
            &[("timeperiod", 20.0)],
            &[("timeperiod", 45.0)],
        ],
    );
}

#[test]
fn roc_matches_talib() {
    check(
        "ROC",
        &[
            &[("timeperiod", 1.0)],
            &[("timeperiod", 2.0)],
            &[("timeperiod", 10.0)],
            &[("timeperiod", 50.0)],
        ],
    );
}

#[test]
fn mom_matches_talib() {
    check(
        "MOM",
        &[
            &[("timeperiod", 1.0)],
            &[("timeperiod", 2.0)],
            &[("timeperiod", 10.0)],
            &[("timeperiod", 50.0)],
        ],
    );
}

#[test]
fn every_supported_function_is_tested_and_known_to_talib() {
    let tested = [
        "SMA", "EMA", "WMA", "RSI", "ATR", "NATR", "BBANDS", "MACD", "STDDEV", "ADX", "STOCH",
        "CCI", "ROC", "MOM",
    ];
    assert_eq!(indicators::SUPPORTED, tested);
    for function in tested {
        assert!(indicator::lookup(function).is_some(), "{function}");
        assert!(indicators::supports(&function.to_ascii_lowercase()));
    }
    assert!(!indicators::supports("KAMA"));
}

/// `check_error(function, overrides, expect)`: streaming refuses the call with `expect`.
fn check_error(function: &str, overrides: &[(&str, f64)], expect: StreamError) {
    let ind = resolved(function, overrides);
    assert_eq!(indicators::check(function, &ind.args), Err(expect.clone()));
    assert_eq!(indicators::lookback(function, &ind.args), None);
    let data = &datasets()[3];
    let n = data.len();
    let mut outputs = vec![vec![0.0; n]; ind.output_names.len()];
    let mut slices: Vec<&mut [f64]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
    assert_eq!(
        indicators::compute(&ind, &data.bars(), &mut slices),
        Err(expect)
    );
}

#[test]
fn unsupported_calls_are_clear_errors() {
    check_error(
        "BBANDS",
        &[("timeperiod", 5.0), ("matype", 3.0)],
        StreamError::UnsupportedMaType {
            function: "BBANDS".to_string(),
            name: "matype".to_string(),
            value: 3.0,
        },
    );
    check_error(
        "STOCH",
        &[("slowd_period", 3.0), ("slowd_matype", 8.0)],
        StreamError::UnsupportedMaType {
            function: "STOCH".to_string(),
            name: "slowd_matype".to_string(),
            value: 8.0,
        },
    );
    // TA-Lib 0.4.0 reads before its buffer for signal period 1 (EMA look-back -1).
    check_error(
        "MACD",
        &[("signalperiod", 1.0)],
        StreamError::UndefinedInTalib {
            function: "MACD".to_string(),
            reason: "signalperiod 1 makes TA-Lib 0.4.0 read before its buffer (EMA look-back \
                     of period 1 is -1); use signalperiod >= 2"
                .to_string(),
        },
    );
    check_error(
        "KAMA",
        &[],
        StreamError::UnsupportedFunction("KAMA".to_string()),
    );
    let args = vec![("timeperiod".to_string(), 1.0)];
    assert_eq!(
        indicators::check("RSI", &args),
        Err(StreamError::ArgOutOfRange {
            function: "RSI".to_string(),
            name: "timeperiod".to_string(),
            value: 1.0,
            range: "2..=100000".to_string(),
        })
    );
    let args = vec![("period".to_string(), 5.0)];
    assert_eq!(
        indicators::check("SMA", &args),
        Err(StreamError::UnknownArg {
            function: "SMA".to_string(),
            name: "period".to_string(),
        })
    );
    let ind = resolved("RSI", &[]);
    let data = &datasets()[3];
    let mut short = vec![0.0; data.len() - 1];
    let error = indicators::compute(&ind, &data.bars(), &mut [short.as_mut_slice()]);
    assert!(matches!(error, Err(StreamError::Shape { .. })), "{error:?}");
}

#[test]
fn comparison_catches_one_ulp_and_nan_placement() {
    let base = [f64::NAN, 1.0, 2.0];
    assert_eq!(first_difference(&base, &base), None);
    assert_eq!(
        first_difference(
            &base,
            &[f64::NAN, 1.0, f64::from_bits(2.0_f64.to_bits() + 1)]
        ),
        Some(2)
    );
    assert_eq!(first_difference(&base, &[0.0, 1.0, 2.0]), Some(0));
    assert_eq!(first_difference(&base, &base[..2]), Some(2));
}

#[test]
fn hand_computed_moving_averages() {
    // SMA(2) of 1, 2, 4, 8: (1+2)/2 = 1.5, (2+4)/2 = 3, (4+8)/2 = 6.
    let mut sma = Sma::new(2);
    let got: Vec<f64> = [1.0, 2.0, 4.0, 8.0].map(|x| sma.update(x)).to_vec();
    assert_identical("SMA(2)", &[f64::NAN, 1.5, 3.0, 6.0], &got);
    // EMA(3), k = 2/4 = 0.5, seeded with the SMA of the first three: (1+2+4)/3 = 7/3;
    // then ((8 - 7/3) * 0.5) + 7/3 = 31/6 (TA-Lib's order of operations).
    let mut ema = Ema::new(3);
    let got: Vec<f64> = [1.0, 2.0, 4.0, 8.0].map(|x| ema.update(x)).to_vec();
    let seed = 7.0 / 3.0;
    assert_identical(
        "EMA(3)",
        &[f64::NAN, f64::NAN, seed, ((8.0 - seed) * 0.5) + seed],
        &got,
    );
    assert_eq!(MaType::from_code(1.0), Some(MaType::Ema));
    assert_eq!(MaType::from_code(3.0), None);
}
