//! The resolved form engines run: one param set turned into concrete, validated values for
//! every indicator argument, rule, risk and execution field.

use std::collections::BTreeMap;

use super::{
    ExecutionSpec, FillPrice, FundingSpec, LEVERAGE_RANGE, MarginMode, NumberOrParam, ParamSet,
    ParamValue, RiskSpec, Spec,
};
use crate::expr::{BindError, BoundRule};
use crate::series::Series;

/// A param set that does not fit the spec (e.g. a sampler value outside a TA-Lib range).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ResolveError {
    /// The set has the wrong number of values.
    #[error("param set holds {found} values, the spec has {expected} params")]
    ParamCount {
        /// Params in the spec.
        expected: usize,
        /// Values in the set.
        found: usize,
    },
    /// A field resolves to an invalid value.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (`RSI timeperiod`, `position_size`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A rule cannot bind the set.
    #[error("rule {rule}: {source}")]
    Bind {
        /// Rule key.
        rule: &'static str,
        /// Why.
        source: BindError,
    },
}

/// One indicator with concrete arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedIndicator {
    /// The spec name (`bbands`).
    pub name: String,
    /// The TA-Lib function (`BBANDS`).
    pub function: String,
    /// Series for each real input.
    pub real_inputs: Vec<Series>,
    /// Every parameter of the function in TA-Lib order as `(spec name, value)`, defaults
    /// filled in.
    pub args: Vec<(String, f64)>,
    /// Output names in TA-Lib order.
    pub output_names: Vec<String>,
    /// Flat slot of the first output.
    pub first_slot: usize,
}

impl ResolvedIndicator {
    /// The arguments as `(&str, f64)` pairs, as [`crate::talib::compute`] takes them.
    pub fn arg_pairs(&self) -> Vec<(&str, f64)> {
        self.args
            .iter()
            .map(|(name, value)| (name.as_str(), *value))
            .collect()
    }

    /// Computes the indicator with TA-Lib into one slice per output.
    #[cfg(feature = "talib")]
    pub fn compute(
        &self,
        bars: &crate::series::BarColumns<'_>,
        outputs: &mut [&mut [f64]],
    ) -> Result<(), crate::talib::TalibError> {
        crate::talib::compute(
            &self.function,
            &self.arg_pairs(),
            &self.real_inputs,
            bars,
            outputs,
        )
    }
}

/// The four rules bound to one param set.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedRules {
    /// Open a long.
    pub long_entry: Option<BoundRule>,
    /// Close a long.
    pub long_exit: Option<BoundRule>,
    /// Open a short.
    pub short_entry: Option<BoundRule>,
    /// Close a short.
    pub short_exit: Option<BoundRule>,
}

impl ResolvedRules {
    /// The largest look-back of any rule's `prev`/cross, in bars.
    pub fn lookback_bars(&self) -> usize {
        [
            &self.long_entry,
            &self.long_exit,
            &self.short_entry,
            &self.short_exit,
        ]
        .into_iter()
        .flatten()
        .map(BoundRule::lookback_bars)
        .max()
        .unwrap_or(0)
    }
}

/// `[risk]` with concrete values.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ResolvedRisk {
    /// Cross or isolated.
    pub margin_mode: MarginMode,
    /// Fraction of equity posted as margin per position.
    pub position_size: f64,
    /// Most positions open at once.
    pub max_concurrent_positions: u32,
    /// The `leverage` param, 1 when the spec has none.
    pub leverage: u32,
    /// Per-symbol leverage caps.
    pub max_leverage: BTreeMap<String, u32>,
    /// Stop distance as a fraction of the entry price.
    pub stop_loss: Option<f64>,
    /// Take-profit distance as a fraction of the entry price.
    pub take_profit: Option<f64>,
}

impl ResolvedRisk {
    /// Leverage for `symbol`: the `leverage` param capped by the symbol's `max_leverage`.
    pub fn leverage_for(&self, symbol: &str) -> u32 {
        self.max_leverage
            .get(symbol)
            .map_or(self.leverage, |&cap| self.leverage.min(cap))
    }
}

/// Funding with a concrete rate.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Funding {
    /// Rates from the data.
    FromData,
    /// No funding.
    Disabled,
    /// A constant rate per 8 hours.
    ConstantRatePer8h(f64),
}

/// `[execution]` with concrete values.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ResolvedExecution {
    /// Fill price.
    pub fill: FillPrice,
    /// Taker fee rate.
    pub taker_fee_rate: f64,
    /// Slippage rate.
    pub slippage_rate: f64,
    /// Funding.
    pub funding: Funding,
}

/// A spec with every value concrete under one param set: what an engine runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedSpec {
    /// The param set.
    pub params: ParamSet,
    /// Indicators in spec order.
    pub indicators: Vec<ResolvedIndicator>,
    /// Bound rules.
    pub rules: ResolvedRules,
    /// Risk.
    pub risk: ResolvedRisk,
    /// Execution.
    pub execution: ResolvedExecution,
}

struct Resolver<'a> {
    spec: &'a Spec,
    params: &'a ParamSet,
}

impl Resolver<'_> {
    fn number(
        &self,
        field: &str,
        value: NumberOrParam,
        integer: bool,
        accept: &dyn Fn(f64) -> bool,
        expected: &str,
    ) -> Result<f64, ResolveError> {
        let invalid = |message: String| ResolveError::Invalid {
            field: field.to_string(),
            message,
        };
        let number = match value {
            NumberOrParam::Number(number) => number,
            NumberOrParam::Param(index) => {
                let name = &self.spec.params.params[index].name;
                match &self.params.values[index] {
                    ParamValue::Int(int) => *int as f64,
                    ParamValue::Float(float) if !integer => *float,
                    other => {
                        return Err(invalid(format!(
                            "param `{name}` = {other} is not {}",
                            if integer { "an integer" } else { "a number" }
                        )));
                    }
                }
            }
        };
        if accept(number) {
            Ok(number)
        } else {
            Err(invalid(format!("must be {expected}, found {number}")))
        }
    }
}

impl Spec {
    /// The leverage `set` trades at after the spec's per-symbol caps: the largest
    /// `min(leverage, max_leverage[symbol])` over `[strategy] symbols` (1 without a `leverage`
    /// param). What the objectives divide by (SEMANTICS.md §3); the brackets' caps, which
    /// depend on a position's notional, are not counted. A value `set` lacks counts as no cap.
    pub fn leverage_used(&self, set: &ParamSet) -> f64 {
        let value = |index: usize| set.values.get(index).and_then(ParamValue::as_f64);
        let requested = self.leverage_param().and_then(value).unwrap_or(1.0);
        self.strategy
            .symbols
            .iter()
            .map(|symbol| {
                let cap = match self.risk.max_leverage.get(symbol) {
                    Some(NumberOrParam::Number(cap)) => *cap,
                    Some(NumberOrParam::Param(index)) => value(*index).unwrap_or(f64::INFINITY),
                    None => f64::INFINITY,
                };
                requested.min(cap)
            })
            .fold(f64::NAN, f64::max)
            .max(1.0)
    }

    /// Resolves every field under `params` (indexed like `self.params`), re-checking ranges.
    pub fn resolve(&self, params: &ParamSet) -> Result<ResolvedSpec, ResolveError> {
        if params.values.len() != self.params.params.len() {
            return Err(ResolveError::ParamCount {
                expected: self.params.params.len(),
                found: params.values.len(),
            });
        }
        let resolver = Resolver { spec: self, params };
        let mut indicators = Vec::with_capacity(self.indicators.len());
        for indicator in &self.indicators {
            let mut args = Vec::with_capacity(indicator.function.args.len());
            for arg in &indicator.function.args {
                let field = format!("{} {}", indicator.function.name, arg.name);
                let value = match indicator.args.iter().find(|(name, _)| *name == arg.name) {
                    Some(&(_, value)) => {
                        let range = &arg.range;
                        resolver.number(
                            &field,
                            value,
                            range.is_integer(),
                            &|number| range.contains(number),
                            &format!("TA-Lib's range {}", range.describe()),
                        )?
                    }
                    None => arg.default_value,
                };
                args.push((arg.name.clone(), value));
            }
            indicators.push(ResolvedIndicator {
                name: indicator.name.clone(),
                function: indicator.function.name.clone(),
                real_inputs: indicator.real_inputs.clone(),
                args,
                output_names: indicator
                    .function
                    .outputs
                    .iter()
                    .map(|output| output.name.clone())
                    .collect(),
                first_slot: indicator.first_slot,
            });
        }
        let bind = |rule: &'static str,
                    compiled: &Option<crate::expr::Rule>|
         -> Result<Option<BoundRule>, ResolveError> {
            compiled
                .as_ref()
                .map(|compiled| {
                    compiled
                        .bind(&params.values)
                        .map_err(|source| ResolveError::Bind { rule, source })
                })
                .transpose()
        };
        let rules = ResolvedRules {
            long_entry: bind("long_entry", &self.rules.long_entry)?,
            long_exit: bind("long_exit", &self.rules.long_exit)?,
            short_entry: bind("short_entry", &self.rules.short_entry)?,
            short_exit: bind("short_exit", &self.rules.short_exit)?,
        };
        Ok(ResolvedSpec {
            params: params.clone(),
            indicators,
            rules,
            risk: self.resolve_risk(&resolver, &self.risk)?,
            execution: resolve_execution(&resolver, &self.execution)?,
        })
    }

    fn resolve_risk(
        &self,
        resolver: &Resolver<'_>,
        risk: &RiskSpec,
    ) -> Result<ResolvedRisk, ResolveError> {
        let leverage = match self.leverage_param() {
            Some(index) => resolver.number(
                "leverage",
                NumberOrParam::Param(index),
                true,
                &|value| LEVERAGE_RANGE.contains(&(value as i64)),
                "an integer in 1..=20",
            )? as u32,
            None => 1,
        };
        let mut max_leverage = BTreeMap::new();
        for (symbol, &cap) in &risk.max_leverage {
            let cap = resolver.number(
                &format!("max_leverage {symbol}"),
                cap,
                true,
                &|value| (1.0..=125.0).contains(&value),
                "an integer in 1..=125",
            )?;
            max_leverage.insert(symbol.clone(), cap as u32);
        }
        let optional = |field: &str,
                        value: Option<NumberOrParam>|
         -> Result<Option<f64>, ResolveError> {
            value
                .map(|value| resolver.number(field, value, false, &|number| number > 0.0, "> 0"))
                .transpose()
        };
        Ok(ResolvedRisk {
            margin_mode: risk.margin_mode,
            position_size: resolver.number(
                "position_size",
                risk.position_size,
                false,
                &|value| value > 0.0 && value <= 1.0,
                "in (0, 1]",
            )?,
            max_concurrent_positions: resolver.number(
                "max_concurrent_positions",
                risk.max_concurrent_positions,
                true,
                &|value| value >= 1.0 && value <= f64::from(u32::MAX),
                "an integer >= 1",
            )? as u32,
            leverage,
            max_leverage,
            stop_loss: optional("stop_loss", risk.stop_loss)?,
            take_profit: optional("take_profit", risk.take_profit)?,
        })
    }
}

fn resolve_execution(
    resolver: &Resolver<'_>,
    execution: &ExecutionSpec,
) -> Result<ResolvedExecution, ResolveError> {
    let rate = |value: f64| (0.0..0.1).contains(&value);
    Ok(ResolvedExecution {
        fill: execution.fill,
        taker_fee_rate: resolver.number(
            "taker_fee",
            execution.taker_fee,
            false,
            &rate,
            "in [0, 0.1)",
        )?,
        slippage_rate: resolver.number(
            "slippage",
            execution.slippage,
            false,
            &rate,
            "in [0, 0.1)",
        )?,
        funding: match execution.funding {
            FundingSpec::Data => Funding::FromData,
            FundingSpec::None => Funding::Disabled,
            FundingSpec::ConstantRatePer8h(value) => Funding::ConstantRatePer8h(resolver.number(
                "funding",
                value,
                false,
                &|number| number.abs() < 0.1,
                "a rate per 8h in (-0.1, 0.1)",
            )?),
        },
    })
}
