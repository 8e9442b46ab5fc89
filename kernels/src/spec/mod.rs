//! The strategy spec: a TOML file that is the single source of truth for research and the
//! live bot. [`Spec::parse`] takes the TEXT (the caller reads the file) and a display name,
//! and checks everything it can before any data is touched: keys, types, ranges, TA-Lib
//! functions and parameters, and every rule expression. Every error reads
//! `file:line:col: message`.
//!
//! Sections: `[strategy]` (id, symbols, interval), `[indicators]` (`name = { fn = "RSI",
//! input = "close", timeperiod = 14 | "param" }`), `[params]` (see [`ParamDomain`]),
//! `[rules]` (`long_entry long_exit short_entry short_exit`, expressions; at least one
//! entry), `[risk]` and `[execution]` whose numeric fields take a number or a param name.
//! [`Spec::resolve`] turns one [`ParamSet`] into the concrete [`ResolvedSpec`] engines run.

mod params;
mod research;
mod resolve;
mod toml_walk;

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::expr::{
    self, ExprErrorKind, NameResolver, Operand, ParamKind, RESERVED_WORDS, Rule, is_identifier,
};
use crate::indicator::{self, FunctionInfo, InputKind};
use crate::series::Series;

pub use params::{
    Distribution, GridError, MAX_RANGE_VALUES, ParamDomain, ParamSet, ParamSpace, ParamSpec,
    ParamType, ParamValue,
};
pub use research::{
    DEFAULT_DRAWDOWN_CAPS, ObjectiveName, ObjectiveSpec, WalkForwardMode, WalkForwardSpec,
    parse_duration_ms,
};
pub use resolve::{
    Funding, ResolveError, ResolvedExecution, ResolvedIndicator, ResolvedRisk, ResolvedRules,
    ResolvedSpec,
};
pub use toml_walk::line_col;
use toml_walk::{Number, Source, entries, string_content_start, type_name};

/// Leverage accepted for the `leverage` param.
pub const LEVERAGE_RANGE: std::ops::RangeInclusive<i64> = 1..=20;

/// Binance kline intervals accepted in `[strategy] interval`.
pub const INTERVALS: [&str; 15] = [
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
];

/// What kind of problem a [`SpecError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecErrorKind {
    /// The text is not valid TOML.
    Toml,
    /// A key the section does not know.
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value of the wrong TOML type.
    WrongType,
    /// An unknown series, indicator, output, param or symbol name.
    UnknownName,
    /// A name defined twice, or clashing with a reserved word or series.
    DuplicateName,
    /// An expression that does not parse.
    ExprSyntax,
    /// A type error in an expression (number vs condition).
    ExprType,
    /// An unknown TA-Lib function.
    UnknownFunction,
    /// A parameter the TA-Lib function does not have.
    UnknownParameter,
    /// An input the TA-Lib function needs that the spec does not give.
    MissingInput,
    /// A value outside its valid range.
    OutOfRange,
    /// A value that is none of the accepted words.
    Invalid,
}

/// A spec error located in the source: displays as `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct SpecError {
    /// Display name of the spec file, as given by the caller.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What kind of problem.
    pub kind: SpecErrorKind,
    /// What was expected, without location.
    pub message: String,
}

/// `[strategy]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategyInfo {
    /// Strategy id.
    pub id: String,
    /// Binance USDT-M symbols, in spec order.
    pub symbols: Vec<String>,
    /// Kline interval (`1h`).
    pub interval: String,
}

/// A numeric field: a literal or the name of a param (by index into the param space).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumberOrParam {
    /// A literal number.
    Number(f64),
    /// A param index.
    Param(usize),
}

/// One `[indicators]` entry, checked against the function registry.
#[derive(Clone, Debug, PartialEq)]
pub struct IndicatorSpec {
    /// The name rules use (`rsi`, `bbands`).
    pub name: String,
    /// The function's signature.
    pub function: FunctionInfo,
    /// Series for each real input (empty for price-input functions such as ATR).
    pub real_inputs: Vec<Series>,
    /// Parameters the spec sets, as `(spec name, value)`; the rest take TA-Lib defaults.
    pub args: Vec<(String, NumberOrParam)>,
    /// Flat slot of the first output; outputs occupy `first_slot..first_slot + outputs.len()`.
    pub first_slot: usize,
}

/// `[rules]`: compiled rules; absent ones are `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// Open a long.
    pub long_entry: Option<Rule>,
    /// Close a long.
    pub long_exit: Option<Rule>,
    /// Open a short.
    pub short_entry: Option<Rule>,
    /// Close a short.
    pub short_exit: Option<Rule>,
}

impl Rules {
    /// `(key, rule)` for each rule present, in the order long_entry, long_exit, short_entry,
    /// short_exit.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Rule)> {
        [
            ("long_entry", &self.long_entry),
            ("long_exit", &self.long_exit),
            ("short_entry", &self.short_entry),
            ("short_exit", &self.short_exit),
        ]
        .into_iter()
        .filter_map(|(key, rule)| rule.as_ref().map(|rule| (key, rule)))
    }
}

/// Margin mode of every position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarginMode {
    /// Margin shared across positions.
    Cross,
    /// Margin posted per position.
    Isolated,
}

/// Which price a signal on bar `t` fills at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FillPrice {
    /// Open of bar `t + 1`.
    NextOpen,
    /// Close of bar `t`.
    Close,
}

/// `[risk]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RiskSpec {
    /// Cross or isolated.
    pub margin_mode: MarginMode,
    /// Fraction of equity posted as margin per position, in (0, 1].
    pub position_size: NumberOrParam,
    /// At least 1.
    pub max_concurrent_positions: NumberOrParam,
    /// Per-symbol leverage caps, 1..=125.
    pub max_leverage: BTreeMap<String, NumberOrParam>,
    /// Stop distance as a fraction of the entry price, > 0.
    pub stop_loss: Option<NumberOrParam>,
    /// Take-profit distance as a fraction of the entry price, > 0.
    pub take_profit: Option<NumberOrParam>,
}

/// `[execution] funding`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FundingSpec {
    /// Use the funding rates in the data.
    Data,
    /// No funding.
    None,
    /// A constant rate per 8 hours.
    ConstantRatePer8h(NumberOrParam),
}

/// `[execution]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionSpec {
    /// Fill price.
    pub fill: FillPrice,
    /// Taker fee rate, in [0, 0.1).
    pub taker_fee: NumberOrParam,
    /// Slippage rate, in [0, 0.1).
    pub slippage: NumberOrParam,
    /// Funding source.
    pub funding: FundingSpec,
}

/// A parsed and validated strategy spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// Display name of the source file.
    pub file: String,
    /// `[strategy]`.
    pub strategy: StrategyInfo,
    /// `[indicators]`, in file order.
    pub indicators: Vec<IndicatorSpec>,
    /// `[params]`, in file order.
    pub params: ParamSpace,
    /// `[rules]`.
    pub rules: Rules,
    /// `[risk]`.
    pub risk: RiskSpec,
    /// `[execution]`.
    pub execution: ExecutionSpec,
    /// Which function registry validated the indicators (TA-Lib version or built-in table).
    pub registry: String,
    /// `[walk_forward]`, when the spec splits the data into in- and out-of-sample windows.
    pub walk_forward: Option<WalkForwardSpec>,
    /// `[objective]` (defaults when absent).
    pub objective: ObjectiveSpec,
}

impl Spec {
    /// Parses and validates spec `text`; `file` is the display name used in errors.
    pub fn parse(file: &str, text: &str) -> Result<Spec, SpecError> {
        let source = Source { file, text };
        let document = DeTable::parse(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            source.error(
                offset,
                SpecErrorKind::Toml,
                error.message().trim().to_string(),
            )
        })?;
        let root = document.get_ref();
        source.check_keys(
            root,
            &[
                "strategy",
                "indicators",
                "params",
                "rules",
                "risk",
                "execution",
                "walk_forward",
                "objective",
            ],
            "the spec",
        )?;
        let section = |key: &str| -> Result<(&DeTable<'_>, Range<usize>), SpecError> {
            let value = source
                .required(root, &(0..0), key, "the spec")
                .map_err(|mut error| {
                    error.message = format!("missing section [{key}]");
                    error
                })?;
            Ok((source.table(value, &format!("[{key}]"))?, value.span()))
        };
        let optional_section = |key: &str| -> Result<Option<&DeTable<'_>>, SpecError> {
            root.get(key)
                .map(|value| source.table(value, &format!("[{key}]")))
                .transpose()
        };

        let (strategy_table, strategy_span) = section("strategy")?;
        let strategy = parse_strategy(&source, strategy_table, &strategy_span)?;
        let params = match optional_section("params")? {
            Some(table) => parse_params(&source, table)?,
            None => ParamSpace::default(),
        };
        let indicators = match optional_section("indicators")? {
            Some(table) => parse_indicators(&source, table, &params)?,
            None => Vec::new(),
        };
        let (rules_table, rules_span) = section("rules")?;
        let rules = parse_rules(&source, rules_table, &rules_span, &params, &indicators)?;
        let (risk_table, risk_span) = section("risk")?;
        let risk = parse_risk(&source, risk_table, &risk_span, &params, &strategy)?;
        let (execution_table, execution_span) = section("execution")?;
        let execution = parse_execution(&source, execution_table, &execution_span, &params)?;
        let walk_forward = match root.get("walk_forward") {
            Some(value) => Some(research::parse_walk_forward(
                &source,
                source.table(value, "[walk_forward]")?,
                &value.span(),
            )?),
            None => None,
        };
        let objective = match optional_section("objective")? {
            Some(table) => research::parse_objective(&source, table)?,
            None => ObjectiveSpec::default(),
        };
        Ok(Spec {
            file: file.to_string(),
            strategy,
            indicators,
            params,
            rules,
            risk,
            execution,
            walk_forward,
            objective,
            registry: indicator::registry_description(),
        })
    }

    /// Total number of indicator output columns (slots).
    pub fn output_slot_count(&self) -> usize {
        self.indicators
            .iter()
            .map(|indicator| indicator.function.outputs.len())
            .sum()
    }

    /// The flat slot of `indicator.output` (`output` `None` for a single-output indicator).
    pub fn output_slot(&self, indicator: &str, output: Option<&str>) -> Option<usize> {
        let spec = self.indicators.iter().find(|spec| spec.name == indicator)?;
        let index = match output {
            Some(output) => spec.function.output_index(output)?,
            None if spec.function.outputs.len() == 1 => 0,
            None => return None,
        };
        Some(spec.first_slot + index)
    }

    /// Index of the `leverage` param, if the spec has one.
    pub fn leverage_param(&self) -> Option<usize> {
        self.params.index_of("leverage")
    }
}

fn parse_strategy(
    source: &Source<'_>,
    table: &DeTable<'_>,
    span: &Range<usize>,
) -> Result<StrategyInfo, SpecError> {
    source.check_keys(table, &["id", "symbols", "interval"], "[strategy]")?;
    let id_value = source.required(table, span, "id", "[strategy]")?;
    let id = source.string(id_value, "strategy id")?;
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(source.at(
            &id_value.span(),
            SpecErrorKind::Invalid,
            format!("strategy id must be non-empty letters, digits, `_` or `-`, found {id:?}"),
        ));
    }
    let symbols_value = source.required(table, span, "symbols", "[strategy]")?;
    let DeValue::Array(array) = symbols_value.get_ref() else {
        return Err(source.wrong_type(symbols_value, "symbols", "an array of strings"));
    };
    if array.is_empty() {
        return Err(source.at(
            &symbols_value.span(),
            SpecErrorKind::OutOfRange,
            "symbols must list at least one symbol".to_string(),
        ));
    }
    let mut symbols: Vec<String> = Vec::new();
    for item in array.iter() {
        let symbol = source.string(item, "a symbol")?;
        if symbol.is_empty()
            || !symbol
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(source.at(
                &item.span(),
                SpecErrorKind::Invalid,
                format!("symbol must be upper-case letters and digits (BTCUSDT), found {symbol:?}"),
            ));
        }
        if symbols.iter().any(|known| known == symbol) {
            return Err(source.at(
                &item.span(),
                SpecErrorKind::DuplicateName,
                format!("symbol {symbol} is listed twice"),
            ));
        }
        symbols.push(symbol.to_string());
    }
    let interval_value = source.required(table, span, "interval", "[strategy]")?;
    let interval = source.string(interval_value, "interval")?;
    if !INTERVALS.contains(&interval) {
        return Err(source.at(
            &interval_value.span(),
            SpecErrorKind::Invalid,
            format!(
                "interval must be one of {}, found {interval:?}",
                INTERVALS.join(", ")
            ),
        ));
    }
    Ok(StrategyInfo {
        id: id.to_string(),
        symbols,
        interval: interval.to_string(),
    })
}

fn check_new_name(
    source: &Source<'_>,
    span: &Range<usize>,
    name: &str,
    what: &str,
) -> Result<(), SpecError> {
    if !is_identifier(name) {
        return Err(source.at(
            span,
            SpecErrorKind::Invalid,
            format!(
                "{what} name `{name}` must be letters, digits and `_`, not starting with a digit"
            ),
        ));
    }
    if RESERVED_WORDS.contains(&name) || Series::from_name(name).is_some() {
        return Err(source.at(
            span,
            SpecErrorKind::DuplicateName,
            format!("{what} name `{name}` is reserved (a series, keyword or function)"),
        ));
    }
    Ok(())
}

fn scalar_value(
    source: &Source<'_>,
    value: &Spanned<DeValue<'_>>,
    what: &str,
) -> Result<ParamValue, SpecError> {
    match value.get_ref() {
        DeValue::Boolean(flag) => Ok(ParamValue::Bool(*flag)),
        DeValue::String(text) => Ok(ParamValue::Str(text.to_string())),
        DeValue::Integer(_) | DeValue::Float(_) => Ok(match source.number(value, what)? {
            Number::Int(int) => ParamValue::Int(int),
            Number::Float(float) => ParamValue::Float(float),
        }),
        _ => Err(source.wrong_type(value, what, "a number, boolean or string")),
    }
}

fn value_type_of(value: &ParamValue) -> ParamType {
    match value {
        ParamValue::Int(_) => ParamType::Int,
        ParamValue::Float(_) => ParamType::Float,
        ParamValue::Bool(_) => ParamType::Bool,
        ParamValue::Str(_) => ParamType::Str,
    }
}

fn categorical(
    source: &Source<'_>,
    items: &[Spanned<DeValue<'_>>],
    span: &Range<usize>,
    name: &str,
) -> Result<(ParamDomain, ParamType), SpecError> {
    if items.is_empty() {
        return Err(source.at(
            span,
            SpecErrorKind::OutOfRange,
            format!("param `{name}` lists no values"),
        ));
    }
    let what = format!("a value of param `{name}`");
    let values = items
        .iter()
        .map(|item| scalar_value(source, item, &what))
        .collect::<Result<Vec<_>, _>>()?;
    let numeric = |value_type: ParamType| matches!(value_type, ParamType::Int | ParamType::Float);
    let first_type = value_type_of(&values[0]);
    let mut value_type = first_type;
    for (value, item) in values.iter().zip(items) {
        let this = value_type_of(value);
        if this == value_type || (numeric(this) && numeric(value_type)) {
            if this == ParamType::Float {
                value_type = ParamType::Float;
            }
        } else {
            return Err(source.at(
                &item.span(),
                SpecErrorKind::WrongType,
                format!(
                    "values of param `{name}` must share one type; this one is {}",
                    type_name(item.get_ref())
                ),
            ));
        }
    }
    let values: Vec<ParamValue> = if value_type == ParamType::Float {
        values
            .into_iter()
            .map(|value| value.as_f64().map_or(value, ParamValue::Float))
            .collect()
    } else {
        values
    };
    for (index, value) in values.iter().enumerate() {
        if values[..index].contains(value) {
            return Err(source.at(
                &items[index].span(),
                SpecErrorKind::DuplicateName,
                format!("param `{name}` lists {value} twice"),
            ));
        }
    }
    Ok((ParamDomain::Categorical(values), value_type))
}

fn parse_param(
    source: &Source<'_>,
    name: &str,
    value: &Spanned<DeValue<'_>>,
) -> Result<ParamSpec, SpecError> {
    let span = value.span();
    let (domain, value_type) = match value.get_ref() {
        DeValue::Array(array) => categorical(source, &array[..], &span, name)?,
        DeValue::Table(table) => {
            let section = format!("param `{name}`");
            source.check_keys(table, &["low", "high", "step", "log", "choices"], &section)?;
            if let Some(choices) = table.get("choices") {
                if let Some((key, _)) = entries(table)
                    .into_iter()
                    .find(|(key, _)| key.get_ref() != "choices")
                {
                    return Err(source.at(
                        &key.span(),
                        SpecErrorKind::UnknownKey,
                        format!(
                            "param `{name}` has `choices`, so `{}` does not apply",
                            key.get_ref()
                        ),
                    ));
                }
                let DeValue::Array(array) = choices.get_ref() else {
                    return Err(source.wrong_type(choices, "choices", "an array"));
                };
                categorical(source, &array[..], &choices.span(), name)?
            } else {
                let low_value = source.required(table, &span, "low", &section)?;
                let high_value = source.required(table, &span, "high", &section)?;
                let low = source.number(low_value, &format!("{section} low"))?;
                let high = source.number(high_value, &format!("{section} high"))?;
                let log = match table.get("log") {
                    Some(log_value) => match log_value.get_ref() {
                        DeValue::Boolean(flag) => Some((*flag, log_value.span())),
                        _ => return Err(source.wrong_type(log_value, "log", "a boolean")),
                    },
                    None => None,
                };
                let out_of_range = |message: String| {
                    source.at(&high_value.span(), SpecErrorKind::OutOfRange, message)
                };
                match table.get("step") {
                    Some(step_value) => {
                        if let Some((true, log_span)) = &log {
                            return Err(source.at(
                                log_span,
                                SpecErrorKind::Invalid,
                                format!(
                                    "param `{name}`: `log = true` cannot be combined with `step`"
                                ),
                            ));
                        }
                        let step = source.number(step_value, &format!("{section} step"))?;
                        if step.as_f64() <= 0.0 {
                            return Err(source.at(
                                &step_value.span(),
                                SpecErrorKind::OutOfRange,
                                format!("param `{name}`: step must be > 0"),
                            ));
                        }
                        if high.as_f64() < low.as_f64() {
                            return Err(out_of_range(format!(
                                "param `{name}`: high must be >= low"
                            )));
                        }
                        let show = |number: Number| match number {
                            Number::Int(int) => int.to_string(),
                            Number::Float(float) => format!("{float:?}"),
                        };
                        let too_many = || {
                            out_of_range(format!(
                                "param `{name}`: {}..={} by {} holds more than \
                                 {MAX_RANGE_VALUES} values; use a coarser step, or a continuous \
                                 range {{ low, high }} to search it",
                                show(low),
                                show(high),
                                show(step)
                            ))
                        };
                        match (low, high, step) {
                            (Number::Int(low), Number::Int(high), Number::Int(step)) => {
                                let span = i128::from(high) - i128::from(low);
                                if span % i128::from(step) != 0 {
                                    return Err(out_of_range(format!(
                                        "param `{name}`: high - low must be a multiple of step ({high} - {low} is not a multiple of {step})"
                                    )));
                                }
                                if span / i128::from(step) >= i128::from(MAX_RANGE_VALUES) {
                                    return Err(too_many());
                                }
                                (ParamDomain::IntRange { low, high, step }, ParamType::Int)
                            }
                            _ => {
                                let (low, high, step) =
                                    (low.as_f64(), high.as_f64(), step.as_f64());
                                let steps = (high - low) / step;
                                // Also refuses a span that overflows to infinity.
                                if steps >= MAX_RANGE_VALUES as f64 {
                                    return Err(too_many());
                                }
                                if (steps - steps.round()).abs() > 1e-9 * steps.abs().max(1.0) {
                                    return Err(out_of_range(format!(
                                        "param `{name}`: high - low must be a multiple of step ({high} - {low} is not a multiple of {step})"
                                    )));
                                }
                                (
                                    ParamDomain::FloatRange { low, high, step },
                                    ParamType::Float,
                                )
                            }
                        }
                    }
                    None => {
                        let log = log.is_some_and(|(flag, _)| flag);
                        if high.as_f64() <= low.as_f64() {
                            return Err(out_of_range(format!(
                                "param `{name}`: high must be > low"
                            )));
                        }
                        if log && low.as_f64() <= 0.0 {
                            return Err(source.at(
                                &low_value.span(),
                                SpecErrorKind::OutOfRange,
                                format!("param `{name}`: a log range needs low > 0"),
                            ));
                        }
                        let integer =
                            log && matches!((low, high), (Number::Int(_), Number::Int(_)));
                        let value_type = if integer {
                            ParamType::Int
                        } else {
                            ParamType::Float
                        };
                        (
                            ParamDomain::Continuous {
                                low: low.as_f64(),
                                high: high.as_f64(),
                                log,
                                integer,
                            },
                            value_type,
                        )
                    }
                }
            }
        }
        _ => {
            let value = scalar_value(source, value, &format!("param `{name}`"))?;
            let value_type = value_type_of(&value);
            (ParamDomain::Fixed(value), value_type)
        }
    };
    let param = ParamSpec {
        name: name.to_string(),
        domain,
        value_type,
    };
    if name == "leverage" {
        let (low, high) = param
            .domain
            .numeric_bounds()
            .unwrap_or((f64::NAN, f64::NAN));
        let in_range = |value: f64| {
            value >= *LEVERAGE_RANGE.start() as f64 && value <= *LEVERAGE_RANGE.end() as f64
        };
        if param.value_type != ParamType::Int || !in_range(low) || !in_range(high) {
            return Err(source.at(
                &span,
                SpecErrorKind::OutOfRange,
                format!(
                    "leverage must be an integer in {}..={}, found {}",
                    LEVERAGE_RANGE.start(),
                    LEVERAGE_RANGE.end(),
                    describe_domain(&param)
                ),
            ));
        }
    }
    Ok(param)
}

fn describe_domain(param: &ParamSpec) -> String {
    match (&param.domain, param.domain.numeric_bounds()) {
        (ParamDomain::Fixed(value), _) => value.to_string(),
        (_, Some((low, high))) if param.value_type == ParamType::Int => format!("{low}..={high}"),
        (_, Some((low, high))) => format!("{low:?}..={high:?}"),
        (_, None) => format!("{:?} values", param.value_type).to_lowercase(),
    }
}

fn parse_params(source: &Source<'_>, table: &DeTable<'_>) -> Result<ParamSpace, SpecError> {
    let mut space = ParamSpace::default();
    for (key, value) in entries(table) {
        let name = key.get_ref().as_ref();
        check_new_name(source, &key.span(), name, "param")?;
        space.params.push(parse_param(source, name, value)?);
    }
    Ok(space)
}

/// Checks that every value `param` can take passes `accept`; the message names the first that
/// does not.
fn param_values_pass(param: &ParamSpec, accept: &dyn Fn(f64) -> bool) -> Result<(), String> {
    match param.domain.discrete_values() {
        Some(values) => {
            for value in values {
                match value.as_f64() {
                    Some(number) if accept(number) => {}
                    Some(_) => return Err(format!("param `{}` takes {value}", param.name)),
                    None => {
                        return Err(format!(
                            "param `{}` takes {value}, not a number",
                            param.name
                        ));
                    }
                }
            }
            Ok(())
        }
        None => {
            let (low, high) = param
                .domain
                .numeric_bounds()
                .unwrap_or((f64::NAN, f64::NAN));
            for bound in [low, high] {
                if !accept(bound) {
                    return Err(format!("param `{}` reaches {bound:?}", param.name));
                }
            }
            Ok(())
        }
    }
}

fn parse_indicators(
    source: &Source<'_>,
    table: &DeTable<'_>,
    params: &ParamSpace,
) -> Result<Vec<IndicatorSpec>, SpecError> {
    let mut indicators: Vec<IndicatorSpec> = Vec::new();
    let mut next_slot = 0;
    for (key, value) in entries(table) {
        let name = key.get_ref().as_ref();
        check_new_name(source, &key.span(), name, "indicator")?;
        if params.index_of(name).is_some() {
            return Err(source.at(
                &key.span(),
                SpecErrorKind::DuplicateName,
                format!("indicator `{name}` has the name of a param"),
            ));
        }
        let section = format!("indicator `{name}`");
        let entry = source.table(value, &section)?;
        let fn_value = source.required(entry, &value.span(), "fn", &section)?;
        let fn_name = source.string(fn_value, "fn")?;
        let function = indicator::lookup(fn_name).ok_or_else(|| {
            source.at(
                &fn_value.span(),
                SpecErrorKind::UnknownFunction,
                format!("unknown TA-Lib function `{fn_name}`"),
            )
        })?;
        let real_inputs = parse_inputs(source, entry, value, &function)?;
        let mut args = Vec::new();
        for (arg_key, arg_value) in entries(entry) {
            let arg_name = arg_key.get_ref().as_ref();
            if arg_name == "fn" || arg_name == "input" {
                continue;
            }
            let Some(arg) = function.arg(arg_name) else {
                let expected: Vec<&str> =
                    function.args.iter().map(|arg| arg.name.as_str()).collect();
                let expected = if expected.is_empty() {
                    "none".to_string()
                } else {
                    expected.join(", ")
                };
                return Err(source.at(
                    &arg_key.span(),
                    SpecErrorKind::UnknownParameter,
                    format!(
                        "{} has no parameter `{arg_name}`; expected one of: {expected}",
                        function.name
                    ),
                ));
            };
            let what = format!("{} {}", function.name, arg.name);
            let range = arg.range.clone();
            let accept = move |value: f64| range.contains(value);
            let integer = arg.range.is_integer();
            let expected = format!(
                "{}TA-Lib's range {}",
                if integer { "an integer in " } else { "in " },
                arg.range.describe()
            );
            let resolved = number_or_param(
                source, arg_value, &what, params, integer, &accept, &expected,
            )?;
            args.push((arg.name.clone(), resolved));
        }
        indicators.push(IndicatorSpec {
            name: name.to_string(),
            first_slot: next_slot,
            function,
            real_inputs,
            args,
        });
        next_slot += indicators
            .last()
            .map_or(0, |spec| spec.function.outputs.len());
    }
    Ok(indicators)
}

fn parse_inputs(
    source: &Source<'_>,
    entry: &DeTable<'_>,
    value: &Spanned<DeValue<'_>>,
    function: &FunctionInfo,
) -> Result<Vec<Series>, SpecError> {
    if let Some(input) = function
        .inputs
        .iter()
        .find(|input| input.kind == InputKind::Integer)
    {
        return Err(source.at(
            &value.span(),
            SpecErrorKind::MissingInput,
            format!(
                "{} needs the integer input `{}`, which a spec cannot supply",
                function.name, input.ta_name
            ),
        ));
    }
    let wanted = function.real_input_count();
    let Some(input_value) = entry.get("input") else {
        return match wanted {
            0 => Ok(Vec::new()),
            1 => Ok(vec![Series::Close]),
            _ => Err(source.at(
                &value.span(),
                SpecErrorKind::MissingInput,
                format!("{} needs {wanted} input series; add input = [...] with {wanted} of open, high, low, close, volume", function.name),
            )),
        };
    };
    if wanted == 0 {
        let price: Vec<&str> = function
            .inputs
            .iter()
            .flat_map(|input| match &input.kind {
                InputKind::Price(series) => series.iter().map(|series| series.name()).collect(),
                _ => Vec::new(),
            })
            .collect();
        return Err(source.at(
            &input_value.span(),
            SpecErrorKind::Invalid,
            format!(
                "{} reads {} from the bars; remove `input`",
                function.name,
                price.join(", ")
            ),
        ));
    }
    let items: Vec<&Spanned<DeValue<'_>>> = match input_value.get_ref() {
        DeValue::String(_) => vec![input_value],
        DeValue::Array(array) => array.iter().collect(),
        _ => {
            return Err(source.wrong_type(
                input_value,
                "input",
                "a series name or an array of them",
            ));
        }
    };
    if items.len() != wanted {
        return Err(source.at(
            &input_value.span(),
            SpecErrorKind::MissingInput,
            format!(
                "{} needs {wanted} input series, found {}",
                function.name,
                items.len()
            ),
        ));
    }
    items
        .into_iter()
        .map(|item| {
            let name = source.string(item, "input")?;
            Series::from_name(name).ok_or_else(|| {
                source.at(
                    &item.span(),
                    SpecErrorKind::UnknownName,
                    format!("unknown series `{name}`; expected open, high, low, close or volume"),
                )
            })
        })
        .collect()
}

/// A numeric field: a number or a param name whose every value passes `accept`.
fn number_or_param(
    source: &Source<'_>,
    value: &Spanned<DeValue<'_>>,
    what: &str,
    params: &ParamSpace,
    integer: bool,
    accept: &dyn Fn(f64) -> bool,
    expected: &str,
) -> Result<NumberOrParam, SpecError> {
    let span = value.span();
    match value.get_ref() {
        DeValue::Integer(_) | DeValue::Float(_) => {
            let number = source.number(value, what)?;
            let float = number.as_f64();
            if (integer && !matches!(number, Number::Int(_))) || !accept(float) {
                return Err(source.at(
                    &span,
                    SpecErrorKind::OutOfRange,
                    format!("{what} must be {expected}, found {float}"),
                ));
            }
            Ok(NumberOrParam::Number(float))
        }
        DeValue::String(name) => {
            let index = params.index_of(name).ok_or_else(|| {
                source.at(
                    &span,
                    SpecErrorKind::UnknownName,
                    format!("{what} names unknown param `{name}`"),
                )
            })?;
            let param = &params.params[index];
            let numeric = match param.value_type {
                ParamType::Int => true,
                ParamType::Float => !integer,
                ParamType::Bool | ParamType::Str => false,
            };
            if !numeric {
                let kind = if integer { "integer" } else { "numeric" };
                return Err(source.at(
                    &span,
                    SpecErrorKind::WrongType,
                    format!(
                        "{what} needs an {kind} param, but `{name}` holds {:?} values",
                        param.value_type
                    )
                    .to_lowercase(),
                ));
            }
            param_values_pass(param, accept).map_err(|found| {
                source.at(
                    &span,
                    SpecErrorKind::OutOfRange,
                    format!("{what} must be {expected}, but {found}"),
                )
            })?;
            Ok(NumberOrParam::Param(index))
        }
        _ => Err(source.wrong_type(value, what, "a number or a param name")),
    }
}

struct SpecNames<'a> {
    params: &'a ParamSpace,
    indicators: &'a [IndicatorSpec],
}

impl NameResolver for SpecNames<'_> {
    fn resolve(&self, name: &str, field: Option<&str>) -> Result<Operand, (ExprErrorKind, String)> {
        if let Some(series) = Series::from_name(name) {
            return match field {
                None => Ok(Operand::Series(series)),
                Some(field) => Err((
                    ExprErrorKind::UnknownName,
                    format!("series `{name}` has no output `{field}`"),
                )),
            };
        }
        if let Some(spec) = self.indicators.iter().find(|spec| spec.name == name) {
            let outputs: Vec<&str> = spec
                .function
                .outputs
                .iter()
                .map(|output| output.name.as_str())
                .collect();
            let index = match field {
                None if outputs.len() == 1 => 0,
                None => {
                    let choices: Vec<String> = outputs
                        .iter()
                        .map(|output| format!("{name}.{output}"))
                        .collect();
                    return Err((
                        ExprErrorKind::UnknownName,
                        format!(
                            "indicator `{name}` has {} outputs; write one of {}",
                            outputs.len(),
                            choices.join(", ")
                        ),
                    ));
                }
                Some(field) => outputs
                    .iter()
                    .position(|output| *output == field)
                    .ok_or_else(|| {
                        (
                            ExprErrorKind::UnknownName,
                            format!(
                                "indicator `{name}` has no output `{field}`; expected one of: {}",
                                outputs.join(", ")
                            ),
                        )
                    })?,
            };
            return Ok(Operand::Indicator {
                slot: spec.first_slot + index,
            });
        }
        if let Some(index) = self.params.index_of(name) {
            if let Some(field) = field {
                return Err((
                    ExprErrorKind::UnknownName,
                    format!("param `{name}` has no output `{field}`"),
                ));
            }
            let param = &self.params.params[index];
            let kind = match param.value_type {
                ParamType::Int => ParamKind::Int {
                    min_value: param
                        .domain
                        .numeric_bounds()
                        .map_or(0, |(low, _)| low as i64),
                },
                ParamType::Float => ParamKind::Float,
                ParamType::Bool => ParamKind::Bool,
                ParamType::Str => {
                    return Err((
                        ExprErrorKind::Type,
                        format!(
                            "param `{name}` holds strings; expressions use numbers and booleans"
                        ),
                    ));
                }
            };
            return Ok(Operand::Param { index, kind });
        }
        let indicators: Vec<&str> = self
            .indicators
            .iter()
            .map(|spec| spec.name.as_str())
            .collect();
        let params: Vec<&str> = self
            .params
            .params
            .iter()
            .map(|param| param.name.as_str())
            .collect();
        let list = |names: Vec<&str>| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        Err((
            ExprErrorKind::UnknownName,
            format!(
                "unknown name `{name}`; expected a series (open, high, low, close, volume), an indicator ({}) or a param ({})",
                list(indicators),
                list(params)
            ),
        ))
    }
}

fn parse_rules(
    source: &Source<'_>,
    table: &DeTable<'_>,
    span: &Range<usize>,
    params: &ParamSpace,
    indicators: &[IndicatorSpec],
) -> Result<Rules, SpecError> {
    const KEYS: [&str; 4] = ["long_entry", "long_exit", "short_entry", "short_exit"];
    source.check_keys(table, &KEYS, "[rules]")?;
    let names = SpecNames { params, indicators };
    let compile = |key: &str| -> Result<Option<Rule>, SpecError> {
        let Some(value) = table.get(key) else {
            return Ok(None);
        };
        let text = source.string(value, key)?;
        let content_start = string_content_start(source.text, &value.span());
        expr::compile(text, &names).map(Some).map_err(|error| {
            let kind = match error.kind {
                ExprErrorKind::Syntax | ExprErrorKind::TooDeep => SpecErrorKind::ExprSyntax,
                ExprErrorKind::UnknownName => SpecErrorKind::UnknownName,
                ExprErrorKind::Type => SpecErrorKind::ExprType,
            };
            source.error(
                content_start + error.span.start,
                kind,
                format!("{key}: {}", error.message),
            )
        })
    };
    let rules = Rules {
        long_entry: compile("long_entry")?,
        long_exit: compile("long_exit")?,
        short_entry: compile("short_entry")?,
        short_exit: compile("short_exit")?,
    };
    if rules.long_entry.is_none() && rules.short_entry.is_none() {
        return Err(source.at(
            span,
            SpecErrorKind::MissingKey,
            "[rules] needs long_entry or short_entry".to_string(),
        ));
    }
    Ok(rules)
}

fn parse_word<T: Copy>(
    source: &Source<'_>,
    value: &Spanned<DeValue<'_>>,
    what: &str,
    words: &[(&str, T)],
) -> Result<T, SpecError> {
    let text = source.string(value, what)?;
    words
        .iter()
        .find(|(word, _)| *word == text)
        .map(|(_, item)| *item)
        .ok_or_else(|| {
            let expected: Vec<String> = words.iter().map(|(word, _)| format!("{word:?}")).collect();
            source.at(
                &value.span(),
                SpecErrorKind::Invalid,
                format!("{what} must be {}, found {text:?}", expected.join(" or ")),
            )
        })
}

fn positive(value: f64) -> bool {
    value > 0.0
}

fn rate(value: f64) -> bool {
    (0.0..0.1).contains(&value)
}

fn parse_risk(
    source: &Source<'_>,
    table: &DeTable<'_>,
    span: &Range<usize>,
    params: &ParamSpace,
    strategy: &StrategyInfo,
) -> Result<RiskSpec, SpecError> {
    const SECTION: &str = "[risk]";
    source.check_keys(
        table,
        &[
            "margin_mode",
            "position_size",
            "max_concurrent_positions",
            "max_leverage",
            "stop_loss",
            "take_profit",
        ],
        SECTION,
    )?;
    let margin_mode = parse_word(
        source,
        source.required(table, span, "margin_mode", SECTION)?,
        "margin_mode",
        &[
            ("isolated", MarginMode::Isolated),
            ("cross", MarginMode::Cross),
        ],
    )?;
    let position_size = number_or_param(
        source,
        source.required(table, span, "position_size", SECTION)?,
        "position_size",
        params,
        false,
        &|value| value > 0.0 && value <= 1.0,
        "in (0, 1]",
    )?;
    let max_concurrent_positions = number_or_param(
        source,
        source.required(table, span, "max_concurrent_positions", SECTION)?,
        "max_concurrent_positions",
        params,
        true,
        &|value| value >= 1.0,
        "an integer >= 1",
    )?;
    let mut max_leverage = BTreeMap::new();
    if let Some(caps_value) = table.get("max_leverage") {
        let caps = source.table(caps_value, "max_leverage")?;
        for (symbol, cap) in entries(caps) {
            let symbol_name = symbol.get_ref().as_ref();
            if !strategy.symbols.iter().any(|known| known == symbol_name) {
                return Err(source.at(
                    &symbol.span(),
                    SpecErrorKind::UnknownName,
                    format!("max_leverage names {symbol_name}, which is not in [strategy] symbols"),
                ));
            }
            let what = format!("max_leverage {symbol_name}");
            let cap = number_or_param(
                source,
                cap,
                &what,
                params,
                true,
                &|value| (1.0..=125.0).contains(&value),
                "an integer in 1..=125",
            )?;
            max_leverage.insert(symbol_name.to_string(), cap);
        }
    }
    let optional_positive = |key: &str| -> Result<Option<NumberOrParam>, SpecError> {
        table
            .get(key)
            .map(|value| number_or_param(source, value, key, params, false, &positive, "> 0"))
            .transpose()
    };
    Ok(RiskSpec {
        margin_mode,
        position_size,
        max_concurrent_positions,
        max_leverage,
        stop_loss: optional_positive("stop_loss")?,
        take_profit: optional_positive("take_profit")?,
    })
}

fn parse_execution(
    source: &Source<'_>,
    table: &DeTable<'_>,
    span: &Range<usize>,
    params: &ParamSpace,
) -> Result<ExecutionSpec, SpecError> {
    const SECTION: &str = "[execution]";
    source.check_keys(
        table,
        &["fill", "taker_fee", "slippage", "funding"],
        SECTION,
    )?;
    let fill = parse_word(
        source,
        source.required(table, span, "fill", SECTION)?,
        "fill",
        &[
            ("next_open", FillPrice::NextOpen),
            ("close", FillPrice::Close),
        ],
    )?;
    let rate_field = |key: &str| -> Result<NumberOrParam, SpecError> {
        number_or_param(
            source,
            source.required(table, span, key, SECTION)?,
            key,
            params,
            false,
            &rate,
            "in [0, 0.1)",
        )
    };
    let taker_fee = rate_field("taker_fee")?;
    let slippage = rate_field("slippage")?;
    let funding_value = source.required(table, span, "funding", SECTION)?;
    let funding = match funding_value.get_ref() {
        DeValue::String(word) if word == "data" => FundingSpec::Data,
        DeValue::String(word) if word == "none" => FundingSpec::None,
        DeValue::String(word) if params.index_of(word).is_none() => {
            return Err(source.at(
                &funding_value.span(),
                SpecErrorKind::Invalid,
                format!("funding must be \"data\", \"none\", a rate per 8h or a param name, found {word:?}"),
            ));
        }
        _ => FundingSpec::ConstantRatePer8h(number_or_param(
            source,
            funding_value,
            "funding",
            params,
            false,
            &|value| value.abs() < 0.1,
            "a rate per 8h in (-0.1, 0.1)",
        )?),
    };
    Ok(ExecutionSpec {
        fill,
        taker_fee,
        slippage,
        funding,
    })
}
