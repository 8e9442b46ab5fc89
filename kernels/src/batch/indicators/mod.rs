//! Streaming indicators for the batch kernels, equal to TA-Lib 0.4.0's output (its seeding,
//! look-back and unstable-period conventions with `TA_COMPATIBILITY_DEFAULT` and unstable
//! period 0).
//!
//! Each indicator is a state struct updated once per bar in O(1) (CCI: O(period) per bar, and
//! STOCH's window extremes: O(period) on the bars where the extreme leaves the window, both as
//! TA-Lib itself), holding at most O(period) state allocated at construction. The state structs
//! mirror TA-Lib's C code operation by operation (same running totals, same order of
//! summation, same divisions), so [`compute`] is bit-identical to [`crate::talib::compute`]
//! for every function and argument TA-Lib accepts; `kernels/tests/indicators.rs` checks this
//! on random walks and real bars. They are also the CPU spec for a WGSL twin: same names,
//! same state variables.
//!
//! Supported: SMA, EMA, WMA, RSI, ATR, NATR, BBANDS, MACD, STDDEV, ADX, STOCH, CCI, ROC, MOM,
//! with moving-average types SMA (0), EMA (1) and WMA (2) for BBANDS and STOCH (any type
//! with period 1, which TA-Lib copies). Everything else is a [`StreamError`], so the caller
//! falls back to TA-Lib. One known divergence, unreachable with real prices: NATR on a close
//! within 1e-8 of zero writes 0 at that bar, where TA-Lib leaves the slot unwritten.

mod ma;
mod oscillators;
mod ring;
mod trend;
mod volatility;

pub use ma::{Ema, Ma, MaType, Sma, Wma};
pub use oscillators::{Cci, Macd, Mom, Roc, Rsi, Stoch};
pub use trend::Adx;
pub use volatility::{Atr, Bbands, Natr, StdDev, TrueRange, Variance};

use crate::indicator::{FunctionInfo, builtin_lookup};
use crate::series::{BarColumns, Series};
use crate::spec::ResolvedIndicator;

/// TA-Lib's `TA_IS_ZERO`: strictly within 1e-8 of zero.
#[inline]
pub(crate) fn is_zero(value: f64) -> bool {
    -0.000_000_01 < value && value < 0.000_000_01
}

/// The TA-Lib functions with a streaming twin, upper case.
pub const SUPPORTED: [&str; 14] = [
    "SMA", "EMA", "WMA", "RSI", "ATR", "NATR", "BBANDS", "MACD", "STDDEV", "ADX", "STOCH", "CCI",
    "ROC", "MOM",
];

/// Why an indicator cannot be streamed here (the caller falls back to TA-Lib).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StreamError {
    /// The function has no streaming twin.
    #[error("no streaming implementation of `{0}` (supported: {list})", list = SUPPORTED.join(", "))]
    UnsupportedFunction(String),
    /// A moving-average type without a streaming twin.
    #[error("{function} {name} = {value}: only MA types 0 (SMA), 1 (EMA) and 2 (WMA) stream")]
    UnsupportedMaType {
        /// Function name.
        function: String,
        /// Parameter name (`matype`, `slowk_matype`, ...).
        name: String,
        /// The type code.
        value: f64,
    },
    /// The function has no parameter with this name.
    #[error("{function} has no parameter `{name}`")]
    UnknownArg {
        /// Function name.
        function: String,
        /// Parameter name.
        name: String,
    },
    /// A parameter value outside TA-Lib's declared range.
    #[error("{function} {name} = {value} is outside TA-Lib's range {range}")]
    ArgOutOfRange {
        /// Function name.
        function: String,
        /// Parameter name.
        name: String,
        /// The value.
        value: f64,
        /// The accepted range.
        range: String,
    },
    /// Arguments for which TA-Lib 0.4.0's own output is undefined, so there is nothing to
    /// mirror.
    #[error("{function}: {reason}")]
    UndefinedInTalib {
        /// Function name.
        function: String,
        /// Which arguments and why.
        reason: String,
    },
    /// Wrong number of inputs or outputs, or lengths that differ.
    #[error("{function}: {message}")]
    Shape {
        /// Function name.
        function: String,
        /// What does not fit.
        message: String,
    },
}

/// Whether a streaming implementation exists for this TA-Lib function name (upper case, as
/// in [`ResolvedIndicator::function`]; matched case-insensitively). Argument values can still
/// be refused: see [`check`].
pub fn supports(function: &str) -> bool {
    SUPPORTED
        .iter()
        .any(|name| name.eq_ignore_ascii_case(function))
}

/// Validates `function` with `args` (TA-Lib's normalised names, missing ones take TA-Lib's
/// defaults) without computing: the errors [`compute`] would raise before its loop, except
/// shape errors.
pub fn check(function: &str, args: &[(String, f64)]) -> Result<(), StreamError> {
    Plan::new(function, args).map(|_| ())
}

/// TA-Lib's look-back (bars of NaN before the first output) for these args, or `None` when
/// the function or its args do not stream (see [`check`]).
pub fn lookback(function: &str, args: &[(String, f64)]) -> Option<usize> {
    Plan::new(function, args).ok().map(|plan| plan.lookback())
}

/// Computes `ind` over the bars into one preallocated slice per output (each as long as the
/// bars): the first `lookback` values NaN, then the values, exactly as
/// [`crate::talib::compute`] aligns them (all NaN when the bars do not reach past the
/// look-back). Inputs must hold no NaN.
pub fn compute(
    ind: &ResolvedIndicator,
    bars: &BarColumns<'_>,
    outputs: &mut [&mut [f64]],
) -> Result<(), StreamError> {
    let plan = Plan::new(&ind.function, &ind.args)?;
    let shape = |message: String| StreamError::Shape {
        function: plan.info.name.clone(),
        message,
    };
    let bar_count = bars
        .bar_count()
        .ok_or_else(|| shape("bar columns differ in length".to_string()))?;
    let real_count = plan.info.real_input_count();
    if ind.real_inputs.len() != real_count {
        return Err(shape(format!(
            "takes {real_count} real input(s), got {}",
            ind.real_inputs.len()
        )));
    }
    if outputs.len() != plan.info.outputs.len()
        || outputs.iter().any(|output| output.len() != bar_count)
    {
        return Err(shape(format!(
            "needs {} output slices of {bar_count} values",
            plan.info.outputs.len()
        )));
    }
    let real = bars.get(ind.real_inputs.first().copied().unwrap_or(Series::Close));
    plan.run(real, bars, outputs);
    Ok(())
}

/// One indicator fed one bar at a time: the state structs [`compute`] runs, held between
/// calls, for a caller that receives bars as they close (the live signal engine). Fed the
/// same bars from the same first bar, its outputs are [`compute`]'s, bit for bit (same
/// state structs, same operations). Serialisable, so a restarted caller resumes where it
/// stopped.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Stream {
    kind: Kind,
    /// Index into the `[open, high, low, close, volume]` bar of the real input.
    real: usize,
    lookback: usize,
    state: StreamState,
}

/// The state struct of each [`Kind`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum StreamState {
    Sma(Sma),
    Ema(Ema),
    Wma(Wma),
    Rsi(Rsi),
    Atr(Atr),
    Natr(Natr),
    Bbands(Bbands),
    Macd(Macd),
    StdDev(StdDev),
    Adx(Adx),
    Stoch(Stoch),
    Cci(Cci),
    Roc(Roc),
    Mom(Mom),
}

impl Stream {
    /// The stream of `ind` (the errors of [`check`], or a wrong input count).
    pub fn new(ind: &ResolvedIndicator) -> Result<Stream, StreamError> {
        let plan = Plan::new(&ind.function, &ind.args)?;
        let real_count = plan.info.real_input_count();
        if ind.real_inputs.len() != real_count {
            return Err(StreamError::Shape {
                function: plan.info.name.clone(),
                message: format!(
                    "takes {real_count} real input(s), got {}",
                    ind.real_inputs.len()
                ),
            });
        }
        let real_series = ind.real_inputs.first().copied().unwrap_or(Series::Close);
        let real = Series::ALL
            .iter()
            .position(|&series| series == real_series)
            .unwrap_or(3);
        let state = match plan.kind {
            Kind::Sma(period) => StreamState::Sma(Sma::new(period)),
            Kind::Ema(period) => StreamState::Ema(Ema::new(period)),
            Kind::Wma(period) => StreamState::Wma(Wma::new(period)),
            Kind::Rsi(period) => StreamState::Rsi(Rsi::new(period)),
            Kind::Atr(period) => StreamState::Atr(Atr::new(period)),
            Kind::Natr(period) => StreamState::Natr(Natr::new(period)),
            Kind::Bbands {
                period,
                nbdev_up,
                nbdev_down,
                ma_type,
            } => StreamState::Bbands(Bbands::new(period, nbdev_up, nbdev_down, ma_type)),
            Kind::Macd { fast, slow, signal } => StreamState::Macd(Macd::new(fast, slow, signal)),
            Kind::StdDev { period, nbdev } => StreamState::StdDev(StdDev::new(period, nbdev)),
            Kind::Adx(period) => StreamState::Adx(Adx::new(period)),
            Kind::Stoch {
                fastk,
                slowk,
                slowk_type,
                slowd,
                slowd_type,
            } => StreamState::Stoch(Stoch::new(fastk, slowk, slowk_type, slowd, slowd_type)),
            Kind::Cci(period) => StreamState::Cci(Cci::new(period)),
            Kind::Roc(period) => StreamState::Roc(Roc::new(period)),
            Kind::Mom(period) => StreamState::Mom(Mom::new(period)),
        };
        Ok(Stream {
            kind: plan.kind,
            real,
            lookback: plan.lookback(),
            state,
        })
    }

    /// TA-Lib's look-back: the first `lookback()` updates return NaN.
    pub fn lookback(&self) -> usize {
        self.lookback
    }

    /// The number of outputs (the length of `out` in [`Stream::update`]).
    pub fn output_count(&self) -> usize {
        match self.state {
            StreamState::Bbands(_) | StreamState::Macd(_) => 3,
            StreamState::Stoch(_) => 2,
            _ => 1,
        }
    }

    /// Feeds one bar (`[open, high, low, close, volume]`, no NaN) and writes the outputs at
    /// that bar into `out` ([`Stream::output_count`] values, NaN during the look-back).
    #[inline]
    pub fn update(&mut self, bar: &[f64; 5], out: &mut [f64]) {
        let x = bar[self.real];
        let (high, low, close) = (bar[1], bar[2], bar[3]);
        match &mut self.state {
            StreamState::Sma(state) => out[0] = state.update(x),
            StreamState::Ema(state) => out[0] = state.update(x),
            StreamState::Wma(state) => out[0] = state.update(x),
            StreamState::Rsi(state) => out[0] = state.update(x),
            StreamState::StdDev(state) => out[0] = state.update(x),
            StreamState::Roc(state) => out[0] = state.update(x),
            StreamState::Mom(state) => out[0] = state.update(x),
            StreamState::Atr(state) => out[0] = state.update(high, low, close),
            StreamState::Natr(state) => out[0] = state.update(high, low, close),
            StreamState::Adx(state) => out[0] = state.update(high, low, close),
            StreamState::Cci(state) => out[0] = state.update(high, low, close),
            StreamState::Bbands(state) => out[..3].copy_from_slice(&state.update(x)),
            StreamState::Macd(state) => out[..3].copy_from_slice(&state.update(x)),
            StreamState::Stoch(state) => out[..2].copy_from_slice(&state.update(high, low, close)),
        }
    }

    /// Whether `other` was built from the same function and arguments (a restored state
    /// must match the spec it is restored into).
    pub fn same_call(&self, other: &Stream) -> bool {
        self.kind == other.kind && self.real == other.real
    }
}

/// A validated call: the function, its parsed arguments, ready to run.
struct Plan {
    info: FunctionInfo,
    kind: Kind,
}

/// The function with its arguments parsed into the types the state structs take.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Kind {
    Sma(usize),
    Ema(usize),
    Wma(usize),
    Rsi(usize),
    Atr(usize),
    Natr(usize),
    Bbands {
        period: usize,
        nbdev_up: f64,
        nbdev_down: f64,
        ma_type: MaType,
    },
    Macd {
        fast: usize,
        slow: usize,
        signal: usize,
    },
    StdDev {
        period: usize,
        nbdev: f64,
    },
    Adx(usize),
    Stoch {
        fastk: usize,
        slowk: usize,
        slowk_type: MaType,
        slowd: usize,
        slowd_type: MaType,
    },
    Cci(usize),
    Roc(usize),
    Mom(usize),
}

impl Plan {
    fn new(function: &str, args: &[(String, f64)]) -> Result<Plan, StreamError> {
        let unsupported = || StreamError::UnsupportedFunction(function.to_string());
        if !supports(function) {
            return Err(unsupported());
        }
        let info = builtin_lookup(function).ok_or_else(unsupported)?;
        for (name, value) in args {
            let Some(arg) = info.arg(name) else {
                return Err(StreamError::UnknownArg {
                    function: info.name.clone(),
                    name: name.clone(),
                });
            };
            if !arg.range.contains(*value) {
                return Err(StreamError::ArgOutOfRange {
                    function: info.name.clone(),
                    name: name.clone(),
                    value: *value,
                    range: arg.range.describe(),
                });
            }
        }
        let value = |name: &str| -> f64 {
            args.iter()
                .find(|(given, _)| given == name)
                .map(|&(_, value)| value)
                .or_else(|| info.arg(name).map(|arg| arg.default_value))
                .unwrap_or(f64::NAN)
        };
        // Integer ranges are checked above: whole and at least 1.
        let period = |name: &str| value(name) as usize;
        let ma_type = |name: &str, period_name: &str| -> Result<MaType, StreamError> {
            let code = value(name);
            match MaType::from_code(code) {
                Some(kind) => Ok(kind),
                // TA_MA copies the input for period 1 whatever the type.
                None if period(period_name) <= 1 => Ok(MaType::Sma),
                None => Err(StreamError::UnsupportedMaType {
                    function: info.name.clone(),
                    name: name.to_string(),
                    value: code,
                }),
            }
        };
        let kind = match info.name.as_str() {
            "SMA" => Kind::Sma(period("timeperiod")),
            "EMA" => Kind::Ema(period("timeperiod")),
            "WMA" => Kind::Wma(period("timeperiod")),
            "RSI" => Kind::Rsi(period("timeperiod")),
            "ATR" => Kind::Atr(period("timeperiod")),
            "NATR" => Kind::Natr(period("timeperiod")),
            "BBANDS" => Kind::Bbands {
                period: period("timeperiod"),
                nbdev_up: value("nbdevup"),
                nbdev_down: value("nbdevdn"),
                ma_type: ma_type("matype", "timeperiod")?,
            },
            // TA_EMA_Lookback(1) is -1 in TA-Lib 0.4.0, so TA_INT_MACD with signal period
            // 1 copies its MACD line from index -1 of its buffer (a read before the
            // allocation): garbage values, shifted by one bar.
            "MACD" if period("signalperiod") <= 1 => {
                return Err(StreamError::UndefinedInTalib {
                    function: info.name.clone(),
                    reason: "signalperiod 1 makes TA-Lib 0.4.0 read before its buffer \
                             (EMA look-back of period 1 is -1); use signalperiod >= 2"
                        .to_string(),
                });
            }
            "MACD" => Kind::Macd {
                fast: period("fastperiod"),
                slow: period("slowperiod"),
                signal: period("signalperiod"),
            },
            "STDDEV" => Kind::StdDev {
                period: period("timeperiod"),
                nbdev: value("nbdev"),
            },
            "ADX" => Kind::Adx(period("timeperiod")),
            "STOCH" => Kind::Stoch {
                fastk: period("fastk_period"),
                slowk: period("slowk_period"),
                slowk_type: ma_type("slowk_matype", "slowk_period")?,
                slowd: period("slowd_period"),
                slowd_type: ma_type("slowd_matype", "slowd_period")?,
            },
            "CCI" => Kind::Cci(period("timeperiod")),
            "ROC" => Kind::Roc(period("timeperiod")),
            "MOM" => Kind::Mom(period("timeperiod")),
            _ => return Err(unsupported()),
        };
        Ok(Plan { info, kind })
    }

    /// TA-Lib's `TA_<FUNCTION>_Lookback` for the parsed arguments.
    fn lookback(&self) -> usize {
        match self.kind {
            Kind::Sma(period)
            | Kind::Ema(period)
            | Kind::Wma(period)
            | Kind::StdDev { period, .. }
            | Kind::Cci(period) => period - 1,
            Kind::Rsi(period)
            | Kind::Atr(period)
            | Kind::Natr(period)
            | Kind::Roc(period)
            | Kind::Mom(period) => period,
            Kind::Bbands { period, .. } => Ma::lookback(period),
            Kind::Macd { fast, slow, signal } => (fast.max(slow) - 1) + (signal - 1),
            Kind::Adx(period) => 2 * period - 1,
            Kind::Stoch {
                fastk,
                slowk,
                slowd,
                ..
            } => (fastk - 1) + Ma::lookback(slowk) + Ma::lookback(slowd),
        }
    }

    /// Runs the state struct over every bar into the outputs (validated shapes).
    fn run(&self, real: &[f64], bars: &BarColumns<'_>, outputs: &mut [&mut [f64]]) {
        let hlc = || bars.high.iter().zip(bars.low).zip(bars.close);
        match self.kind {
            Kind::Sma(period) => single(real, outputs[0], Sma::new(period), Sma::update),
            Kind::Ema(period) => single(real, outputs[0], Ema::new(period), Ema::update),
            Kind::Wma(period) => single(real, outputs[0], Wma::new(period), Wma::update),
            Kind::Rsi(period) => single(real, outputs[0], Rsi::new(period), Rsi::update),
            Kind::StdDev { period, nbdev } => {
                single(real, outputs[0], StdDev::new(period, nbdev), StdDev::update)
            }
            Kind::Roc(period) => single(real, outputs[0], Roc::new(period), Roc::update),
            Kind::Mom(period) => single(real, outputs[0], Mom::new(period), Mom::update),
            Kind::Atr(period) => {
                let mut state = Atr::new(period);
                for (slot, ((&high, &low), &close)) in outputs[0].iter_mut().zip(hlc()) {
                    *slot = state.update(high, low, close);
                }
            }
            Kind::Natr(period) => {
                let mut state = Natr::new(period);
                for (slot, ((&high, &low), &close)) in outputs[0].iter_mut().zip(hlc()) {
                    *slot = state.update(high, low, close);
                }
            }
            Kind::Adx(period) => {
                let mut state = Adx::new(period);
                for (slot, ((&high, &low), &close)) in outputs[0].iter_mut().zip(hlc()) {
                    *slot = state.update(high, low, close);
                }
            }
            Kind::Cci(period) => {
                let mut state = Cci::new(period);
                for (slot, ((&high, &low), &close)) in outputs[0].iter_mut().zip(hlc()) {
                    *slot = state.update(high, low, close);
                }
            }
            Kind::Bbands {
                period,
                nbdev_up,
                nbdev_down,
                ma_type,
            } => {
                let mut state = Bbands::new(period, nbdev_up, nbdev_down, ma_type);
                let [upper, middle, lower] = outputs else {
                    unreachable!("BBANDS has three outputs (checked)");
                };
                for (index, &x) in real.iter().enumerate() {
                    let [u, m, l] = state.update(x);
                    upper[index] = u;
                    middle[index] = m;
                    lower[index] = l;
                }
            }
            Kind::Macd { fast, slow, signal } => {
                let mut state = Macd::new(fast, slow, signal);
                let [macd, signal_line, hist] = outputs else {
                    unreachable!("MACD has three outputs (checked)");
                };
                for (index, &x) in real.iter().enumerate() {
                    let [m, s, h] = state.update(x);
                    macd[index] = m;
                    signal_line[index] = s;
                    hist[index] = h;
                }
            }
            Kind::Stoch {
                fastk,
                slowk,
                slowk_type,
                slowd,
                slowd_type,
            } => {
                let mut state = Stoch::new(fastk, slowk, slowk_type, slowd, slowd_type);
                let [slowk_out, slowd_out] = outputs else {
                    unreachable!("STOCH has two outputs (checked)");
                };
                for (index, ((&high, &low), &close)) in hlc().enumerate() {
                    let [k, d] = state.update(high, low, close);
                    slowk_out[index] = k;
                    slowd_out[index] = d;
                }
            }
        }
    }
}

/// Runs a one-input, one-output state over `input` into `output`.
#[inline]
fn single<S, F>(input: &[f64], output: &mut [f64], mut state: S, mut update: F)
where
    F: FnMut(&mut S, f64) -> f64,
{
    for (slot, &x) in output.iter_mut().zip(input) {
        *slot = update(&mut state, x);
    }
}
