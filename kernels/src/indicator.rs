//! Indicator functions by name: their inputs, parameters and outputs, from TA-Lib's abstract
//! interface (feature `talib`) or, without it, from a built-in table of the common functions.
//!
//! # Naming rule
//! Parameter names follow Python's TA-Lib: drop the `optIn` prefix and lowercase
//! (`optInTimePeriod` -> `timeperiod`, `optInNbDevUp` -> `nbdevup`, `optInMAType` -> `matype`,
//! `optInSlowK_Period` -> `slowk_period`). Output names: drop the `out` prefix; drop a leading
//! `Real` when more follows; drop a trailing `Band`; drop a leading copy of the first output's
//! name when more follows; lowercase. So `outRealUpperBand` -> `upper`, `outMACD` -> `macd`,
//! `outMACDSignal` -> `signal`, `outMACDHist` -> `hist`, `outSlowK` -> `slowk`, and the
//! single output `outReal` -> `real` (a single output is read by the indicator's name alone).

use crate::series::Series;

/// Where a function's input comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// Price columns wired automatically from the bars (e.g. ATR reads high, low, close).
    Price(Vec<Series>),
    /// One real series chosen by the spec's `input` (default `close`).
    Real,
    /// An integer series (no spec syntax supplies one).
    Integer,
}

/// One input of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputInfo {
    /// TA-Lib's name (`inPriceHLC`, `inReal`).
    pub ta_name: String,
    /// Its kind.
    pub kind: InputKind,
}

/// The declared range of an optional parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgRange {
    /// Integers in `min..=max`.
    Integer {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// One of these integers (e.g. `matype`).
    IntegerList(Vec<i64>),
    /// Reals in `min..=max`.
    Real {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// One of these reals.
    RealList(Vec<f64>),
}

impl ArgRange {
    /// True when the parameter takes integers.
    pub fn is_integer(&self) -> bool {
        matches!(self, ArgRange::Integer { .. } | ArgRange::IntegerList(_))
    }

    /// True when `value` is accepted (integers must be whole).
    pub fn contains(&self, value: f64) -> bool {
        match self {
            ArgRange::Integer { min, max } => {
                value.fract() == 0.0 && value >= *min as f64 && value <= *max as f64
            }
            ArgRange::IntegerList(values) => values.iter().any(|&allowed| allowed as f64 == value),
            ArgRange::Real { min, max } => value >= *min && value <= *max,
            ArgRange::RealList(values) => values.contains(&value),
        }
    }

    /// The range as written in error messages (`2..=100000`).
    pub fn describe(&self) -> String {
        let list = |values: Vec<String>| values.join(", ");
        match self {
            ArgRange::Integer { min, max } => format!("{min}..={max}"),
            ArgRange::IntegerList(values) => {
                format!(
                    "one of {}",
                    list(values.iter().map(i64::to_string).collect())
                )
            }
            ArgRange::Real { min, max } => format!("{min:e}..={max:e}"),
            ArgRange::RealList(values) => {
                format!(
                    "one of {}",
                    list(values.iter().map(f64::to_string).collect())
                )
            }
        }
    }
}

/// One optional parameter of a function.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgInfo {
    /// TA-Lib's name (`optInTimePeriod`).
    pub ta_name: String,
    /// The spec name (`timeperiod`).
    pub name: String,
    /// Accepted values.
    pub range: ArgRange,
    /// TA-Lib's default value.
    pub default_value: f64,
}

/// One output of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputInfo {
    /// TA-Lib's name (`outRealUpperBand`).
    pub ta_name: String,
    /// The spec name (`upper`).
    pub name: String,
    /// True when TA-Lib writes integers (converted to `f64` columns).
    pub is_integer: bool,
}

/// A function's signature as the spec sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionInfo {
    /// Upper-case TA-Lib name (`BBANDS`).
    pub name: String,
    /// Inputs in TA-Lib order.
    pub inputs: Vec<InputInfo>,
    /// Optional parameters in TA-Lib order.
    pub args: Vec<ArgInfo>,
    /// Outputs in TA-Lib order.
    pub outputs: Vec<OutputInfo>,
}

impl FunctionInfo {
    /// Number of real inputs the spec's `input` selects.
    pub fn real_input_count(&self) -> usize {
        self.inputs
            .iter()
            .filter(|input| input.kind == InputKind::Real)
            .count()
    }

    /// The parameter with spec name `name`.
    pub fn arg(&self, name: &str) -> Option<&ArgInfo> {
        self.args.iter().find(|arg| arg.name == name)
    }

    /// Index of the output with spec name `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|output| output.name == name)
    }
}

/// `optInTimePeriod` -> `timeperiod`.
pub fn normalise_arg_name(ta_name: &str) -> String {
    ta_name
        .strip_prefix("optIn")
        .unwrap_or(ta_name)
        .to_ascii_lowercase()
}

/// Output spec names for a function's TA-Lib output names, by the rule in the module doc.
pub fn normalise_output_names(ta_names: &[&str]) -> Vec<String> {
    let stem = |ta_name: &str| -> String {
        let mut stem = ta_name.strip_prefix("out").unwrap_or(ta_name);
        if let Some(rest) = stem.strip_prefix("Real")
            && !rest.is_empty()
        {
            stem = rest;
        }
        if let Some(rest) = stem.strip_suffix("Band")
            && !rest.is_empty()
        {
            stem = rest;
        }
        stem.to_string()
    };
    let first = ta_names.first().map(|name| stem(name)).unwrap_or_default();
    ta_names
        .iter()
        .enumerate()
        .map(|(index, ta_name)| {
            let stem = stem(ta_name);
            let stem = match stem.strip_prefix(first.as_str()) {
                Some(rest) if index > 0 && !rest.is_empty() => rest.to_string(),
                _ => stem,
            };
            stem.to_ascii_lowercase()
        })
        .collect()
}

/// Which registry answers [`lookup`]: TA-Lib with its version, or the built-in table.
pub fn registry_description() -> String {
    #[cfg(feature = "talib")]
    {
        format!("TA-Lib {}", crate::talib::version())
    }
    #[cfg(not(feature = "talib"))]
    {
        "built-in table (TA-Lib disabled)".to_string()
    }
}

/// Looks a function up by name (case-insensitive) in TA-Lib, or in the built-in table when
/// the `talib` feature is off.
pub fn lookup(name: &str) -> Option<FunctionInfo> {
    #[cfg(feature = "talib")]
    {
        crate::talib::function_info(name).ok()
    }
    #[cfg(not(feature = "talib"))]
    {
        builtin_lookup(name)
    }
}

/// Looks a function up in the built-in table only (compiled in every build).
pub fn builtin_lookup(name: &str) -> Option<FunctionInfo> {
    let upper = name.to_ascii_uppercase();
    BUILTIN
        .iter()
        .find(|entry| entry.name == upper)
        .map(BuiltinFunction::to_info)
}

/// Names of the functions in the built-in table.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|entry| entry.name)
}

const PERIOD_MAX: i64 = 100_000;
const REAL_LIMIT: f64 = 3.0e37;
const MA_TYPES: [i64; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 8];

#[derive(Clone, Copy)]
enum BuiltinArg {
    Int(&'static str, i64, i64),
    Real(&'static str, f64),
    MaType(&'static str),
}

struct BuiltinFunction {
    name: &'static str,
    price: &'static [Series],
    args: &'static [BuiltinArg],
    outputs: &'static [&'static str],
}

impl BuiltinFunction {
    fn to_info(&self) -> FunctionInfo {
        let inputs = if self.price.is_empty() {
            vec![InputInfo {
                ta_name: "inReal".to_string(),
                kind: InputKind::Real,
            }]
        } else {
            let letters: String = self
                .price
                .iter()
                .map(|series| series.name()[..1].to_ascii_uppercase())
                .collect();
            vec![InputInfo {
                ta_name: format!("inPrice{letters}"),
                kind: InputKind::Price(self.price.to_vec()),
            }]
        };
        let args = self
            .args
            .iter()
            .map(|&arg| {
                let (ta_name, range, default_value) = match arg {
                    BuiltinArg::Int(ta_name, min, default) => (
                        ta_name,
                        ArgRange::Integer {
                            min,
                            max: PERIOD_MAX,
                        },
                        default as f64,
                    ),
                    BuiltinArg::Real(ta_name, default) => (
                        ta_name,
                        ArgRange::Real {
                            min: -REAL_LIMIT,
                            max: REAL_LIMIT,
                        },
                        default,
                    ),
                    BuiltinArg::MaType(ta_name) => {
                        (ta_name, ArgRange::IntegerList(MA_TYPES.to_vec()), 0.0)
                    }
                };
                ArgInfo {
                    ta_name: ta_name.to_string(),
                    name: normalise_arg_name(ta_name),
                    range,
                    default_value,
                }
            })
            .collect();
        let names = normalise_output_names(self.outputs);
        let outputs = self
            .outputs
            .iter()
            .zip(names)
            .map(|(ta_name, name)| OutputInfo {
                ta_name: (*ta_name).to_string(),
                name,
                is_integer: false,
            })
            .collect();
        FunctionInfo {
            name: self.name.to_string(),
            inputs,
            args,
            outputs,
        }
    }
}

const HLC: &[Series] = &[Series::High, Series::Low, Series::Close];

/// The common functions with TA-Lib 0.4.0's names, ranges and defaults (checked against
/// TA-Lib by a test when the `talib` feature is on).
static BUILTIN: [BuiltinFunction; 14] = [
    BuiltinFunction {
        name: "SMA",
        price: &[],
        args: &[BuiltinArg::Int("optInTimePeriod", 2, 30)],
        outputs: &["outReal"],
    },
    BuiltinFunction {
        name: "EMA",
        price: &[],
        args: &[BuiltinArg::Int("optInTimePeriod", 2, 30)],
        outputs: &["outReal"],
    },
    BuiltinFunction {
        name: "WMA",
        price: &[],
        args: &[BuiltinArg::Int("optInTimePeriod", 2, 30)],
        outputs: &["outReal"],
    },
    BuiltinFunction {
        name: "RSI",
        price: &[],
        args: &[BuiltinArg::Int("optInTimePeriod", 2, 14)],
        outputs: &["outReal"],
    },
    BuiltinFunction {
        name: "ATR",
        price: HLC,
        args: &[BuiltinArg::Int("optInTimePeriod", 1, 14)],
        outputs: &["outReal"],
    },
    BuiltinFunction {
        name: "NATR",
        price: HLC,
        args: &[BuiltinArg::Int("optInTimePeriod", 1, 14)],
        outputs: &["outReal"],
    },
    BuiltinFunction {
        name: "BBANDS",
        price: &[],
        args: &[
            BuiltinArg::Int("optInTimePeriod", 2, 5),
            BuiltinArg::Real("optInNbDevUp", 2.0),
            BuiltinArg::Real("optInNbDevDn", 2.0),
            BuiltinArg::MaType("optInMAType"),
        ],
        outputs: &["outRealUpperBand", "outRealMiddleBand", "outRealLowerBand"],
    },
    BuiltinFunction {
        name: "MACD",
        price: &[],
        args: &[
            BuiltinArg::Int("optInFastPeriod", 2, 12),
            BuiltinArg::Int("optInSlowPeriod", 2, 26),
            BuiltinArg::Int("optInSignalPeriod", 1, 9),
        ],
        outputs: &["outMACD", "outMACDSignal", "outMACDHist"],
    },
    BuiltinFunction {
        name: "STDDEV",
        price: &[],
        args: &[
            BuiltinArg::Int("optInTimePeriod", 2, 5),
            BuiltinArg::Real("optInNbDev", 1.0),
        ],
        outputs: &["outReal"],
    },
    BuiltinFunction {
        name: "ADX",
        price: HLC,
        args: &[BuiltinArg::Int("optInTimePeriod", 2, 14)],
        outputs: &["outReal"],
    },
    BuiltinFunction {
        name: "STOCH",
        price: HLC,
        args: &[
            BuiltinArg::Int("optInFastK_Period", 1, 5),
            BuiltinArg::Int("optInSlowK_Period", 1, 3),
            BuiltinArg::MaType("optInSlowK_MAType"),
            BuiltinArg::Int("optInSlowD_Period", 1, 3),
            BuiltinArg::MaType("optInSlowD_MAType"),
        ],
        outputs: &["outSlowK", "outSlowD"],
    },
    BuiltinFunction {
        name: "CCI",
        price: HLC,
        args: &[BuiltinArg::Int("optInTimePeriod", 2, 14)],
        outputs: &["outReal"],
    },
    BuiltinFunction {
        name: "ROC",
        price: &[],
        args: &[BuiltinArg::Int("optInTimePeriod", 1, 10)],
        outputs: &["outReal"],
    },
    BuiltinFunction {
        name: "MOM",
        price: &[],
        args: &[BuiltinArg::Int("optInTimePeriod", 1, 10)],
        outputs: &["outReal"],
    },
];
