//! The parameter space: domains, grid enumeration by mixed-radix decoding, and distributions
//! precise enough to be written as Optuna distributions.

use std::fmt;

/// The most values one stepped range (`{ low, high, step }`) may hold: 1,000,000. Samplers,
/// validation and `--set` enumerate a range's values, so a range of 10^12 steps aborted the
/// process for want of memory; a search that fine wants a continuous range `{ low, high }`.
/// Grids stay unmaterialised: several ranges multiply to any grid size up to 2^64.
pub const MAX_RANGE_VALUES: u64 = 1_000_000;

/// One param value.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string (categorical choice).
    Str(String),
}

impl ParamValue {
    /// The value as a number, when it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            ParamValue::Int(value) => Some(value as f64),
            ParamValue::Float(value) => Some(value),
            ParamValue::Bool(_) | ParamValue::Str(_) => None,
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(value) => write!(f, "{value}"),
            ParamValue::Float(value) => write!(f, "{value:?}"),
            ParamValue::Bool(value) => write!(f, "{value}"),
            ParamValue::Str(value) => write!(f, "{value:?}"),
        }
    }
}

/// The value type every value of a param shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// Integers.
    Int,
    /// Floats (a list mixing integers and floats is float).
    Float,
    /// Booleans.
    Bool,
    /// Strings.
    Str,
}

/// The values a param may take, as written in `[params]`.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamDomain {
    /// `name = 14`: one value.
    Fixed(ParamValue),
    /// `name = [14, 21]` or `name = { choices = [...] }`: categorical values, in order.
    Categorical(Vec<ParamValue>),
    /// `{ low = 1, high = 10, step = 1 }` with three integers: `low, low+step, ..., high`.
    IntRange {
        /// First value.
        low: i64,
        /// Last value (`high - low` is a multiple of `step`).
        high: i64,
        /// Step, > 0.
        step: i64,
    },
    /// `{ low = 0.5, high = 2.0, step = 0.5 }`: `low + i*step` up to `high`.
    FloatRange {
        /// First value.
        low: f64,
        /// Last value (`high - low` is a multiple of `step`).
        high: f64,
        /// Step, > 0.
        step: f64,
    },
    /// `{ low, high }` (uniform) or `{ low, high, log = true }` (log-uniform, `low > 0`):
    /// continuous, so it has no grid; `integer` when `low` and `high` are both integers and
    /// `log = true` (Optuna's `IntDistribution(log=True)`).
    Continuous {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
        /// Sample on a log scale.
        log: bool,
        /// Integer-valued (log integer range).
        integer: bool,
    },
}

impl ParamDomain {
    /// Number of grid points, or `None` for a continuous domain.
    pub fn grid_len(&self) -> Option<u64> {
        match self {
            ParamDomain::Fixed(_) => Some(1),
            ParamDomain::Categorical(values) => Some(values.len() as u64),
            ParamDomain::IntRange { low, high, step } => {
                Some(((i128::from(*high) - i128::from(*low)) / i128::from(*step)) as u64 + 1)
            }
            ParamDomain::FloatRange { low, high, step } => {
                Some(float_steps(*low, *high, *step) + 1)
            }
            ParamDomain::Continuous { .. } => None,
        }
    }

    /// The `index`-th grid value; `index < grid_len()`.
    fn grid_value(&self, index: u64) -> ParamValue {
        match self {
            ParamDomain::Fixed(value) => value.clone(),
            ParamDomain::Categorical(values) => values[index as usize].clone(),
            ParamDomain::IntRange { low, step, .. } => ParamValue::Int(low + step * index as i64),
            ParamDomain::FloatRange { low, step, .. } => {
                ParamValue::Float(round_grid_float(low + step * index as f64))
            }
            ParamDomain::Continuous { low, .. } => ParamValue::Float(*low),
        }
    }

    /// Smallest and largest numeric value, when the domain is numeric.
    pub fn numeric_bounds(&self) -> Option<(f64, f64)> {
        match self {
            ParamDomain::Fixed(value) => value.as_f64().map(|value| (value, value)),
            ParamDomain::Categorical(values) => {
                let numbers: Option<Vec<f64>> = values.iter().map(ParamValue::as_f64).collect();
                let numbers = numbers?;
                let low = numbers.iter().copied().fold(f64::INFINITY, f64::min);
                let high = numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                Some((low, high))
            }
            ParamDomain::IntRange { low, high, .. } => Some((*low as f64, *high as f64)),
            ParamDomain::FloatRange { low, high, .. }
            | ParamDomain::Continuous { low, high, .. } => Some((*low, *high)),
        }
    }

    /// Every value of a discrete domain (for validation), or `None` when continuous.
    pub fn discrete_values(&self) -> Option<Vec<ParamValue>> {
        let len = self.grid_len()?;
        Some((0..len).map(|index| self.grid_value(index)).collect())
    }

    /// The Optuna-style distribution of this domain.
    pub fn distribution(&self) -> Distribution {
        match self {
            ParamDomain::Fixed(value) => Distribution::Categorical {
                choices: vec![value.clone()],
            },
            ParamDomain::Categorical(values) => Distribution::Categorical {
                choices: values.clone(),
            },
            ParamDomain::IntRange { low, high, step } => Distribution::Int {
                low: *low,
                high: *high,
                step: *step,
                log: false,
            },
            ParamDomain::FloatRange { low, high, step } => Distribution::Float {
                low: *low,
                high: *high,
                step: Some(*step),
                log: false,
            },
            ParamDomain::Continuous {
                low,
                high,
                log,
                integer: true,
            } => Distribution::Int {
                low: *low as i64,
                high: *high as i64,
                step: 1,
                log: *log,
            },
            ParamDomain::Continuous { low, high, log, .. } => Distribution::Float {
                low: *low,
                high: *high,
                step: None,
                log: *log,
            },
        }
    }
}

/// Number of whole steps from `low` to `high` (validated to be near-integral).
fn float_steps(low: f64, high: f64, step: f64) -> u64 {
    ((high - low) / step + 1e-9).floor() as u64
}

/// Grid floats are rounded to 12 decimals so `0.1 + 2*0.1` reads `0.3`.
fn round_grid_float(value: f64) -> f64 {
    (value * 1e12).round() / 1e12
}

/// A param distribution in Optuna's terms.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "type")]
pub enum Distribution {
    /// `IntDistribution(low, high, step, log)`; `step` is 1 when `log`.
    Int {
        /// Lower bound, inclusive.
        low: i64,
        /// Upper bound, inclusive.
        high: i64,
        /// Step.
        step: i64,
        /// Log scale.
        log: bool,
    },
    /// `FloatDistribution(low, high, step, log)`; `step` is `None` for continuous.
    Float {
        /// Lower bound, inclusive.
        low: f64,
        /// Upper bound, inclusive.
        high: f64,
        /// Step, or `None`.
        step: Option<f64>,
        /// Log scale.
        log: bool,
    },
    /// `CategoricalDistribution(choices)` (a fixed value is a single choice).
    Categorical {
        /// The choices, in spec order.
        choices: Vec<ParamValue>,
    },
}

/// One named param.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// The name used in indicators, rules, risk and execution.
    pub name: String,
    /// Its values.
    pub domain: ParamDomain,
    /// Their shared type.
    pub value_type: ParamType,
}

/// One value per param, in [`ParamSpace`] order.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct ParamSet {
    /// The values, indexed like `ParamSpace::params`.
    pub values: Vec<ParamValue>,
}

/// Why a grid cannot be enumerated or indexed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    /// A param is continuous.
    #[error(
        "param `{param}` is continuous ({{low, high}} without step); grid search needs a step, a list or choices"
    )]
    Continuous {
        /// The param's name.
        param: String,
    },
    /// The number of grid points does not fit in u64.
    #[error("the parameter grid has more than 2^64 points")]
    Overflow,
    /// The index is not below the grid length.
    #[error("grid index {index} is out of range for a grid of {len} points")]
    IndexOutOfRange {
        /// Requested index.
        index: u64,
        /// Grid length.
        len: u64,
    },
}

/// The params of a spec, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamSpace {
    /// The params, in the order they appear in `[params]`.
    pub params: Vec<ParamSpec>,
}

impl ParamSpace {
    /// Index of the param called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|param| param.name == name)
    }

    /// Number of grid points (the product of every param's grid length).
    pub fn grid_len(&self) -> Result<u64, GridError> {
        self.params.iter().try_fold(1_u64, |len, param| {
            let param_len = param
                .domain
                .grid_len()
                .ok_or_else(|| GridError::Continuous {
                    param: param.name.clone(),
                })?;
            len.checked_mul(param_len).ok_or(GridError::Overflow)
        })
    }

    /// The `index`-th grid point, mixed-radix with the LAST param varying fastest (index 0 is
    /// every param at its first value; index 1 moves the last param to its second value).
    pub fn decode(&self, index: u64) -> Result<ParamSet, GridError> {
        let mut set = ParamSet::default();
        self.decode_into(index, &mut set)?;
        Ok(set)
    }

    /// [`ParamSpace::decode`] into an existing set, reusing its allocation.
    pub fn decode_into(&self, index: u64, set: &mut ParamSet) -> Result<(), GridError> {
        let len = self.grid_len()?;
        if index >= len {
            return Err(GridError::IndexOutOfRange { index, len });
        }
        set.values.clear();
        set.values
            .resize(self.params.len(), ParamValue::Bool(false));
        let mut rest = index;
        for (param, slot) in self.params.iter().zip(set.values.iter_mut()).rev() {
            let radix = param.domain.grid_len().unwrap_or(1);
            *slot = param.domain.grid_value(rest % radix);
            rest /= radix;
        }
        Ok(())
    }

    /// `name=value` pairs for logs and reports (`rsi_window=14 rsi_lower=20`).
    pub fn describe(&self, set: &ParamSet) -> String {
        self.params
            .iter()
            .zip(&set.values)
            .map(|(param, value)| format!("{}={value}", param.name))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
