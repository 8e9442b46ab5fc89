//! The reference backtest of one param set: TA-Lib indicators per symbol, the spec's rules
//! evaluated into entry and exit signals, then the futures simulation of [`crate::engine`].
//! Everything here is plain and sequential: it is the yardstick the batch kernels are held to.

use std::ops::Range;

use crate::brackets::BracketTable;
use crate::engine::{
    self, FundingAt, Signals, SimInput, SimParams, SimResult, SymbolInput, constant_funding_events,
};
use crate::expr::{BoundRule, RuleInputs};
use crate::series::BarColumns;
use crate::spec::{FillPrice, Funding, MarginMode, ResolvedSpec, Spec};

/// The version of the engine semantics, recorded with every result.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One symbol's market columns, defined with the engine that reads them.
pub use crate::engine::MarketSymbol;

/// The market a backtest runs on.
#[derive(Debug, Clone)]
pub struct Market<'a> {
    pub open_time: &'a [i64],
    pub interval_ms: i64,
    pub symbols: Vec<MarketSymbol<'a>>,
}

/// A backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("{symbol}: indicator `{indicator}`: {detail}")]
    Indicator {
        symbol: String,
        indicator: String,
        detail: String,
    },
    #[error("{symbol}: rule `{rule}`: {detail}")]
    Rule {
        symbol: String,
        rule: &'static str,
        detail: String,
    },
    #[error("no leverage brackets for {0}")]
    Brackets(String),
}

/// Per symbol: every indicator output column (indexed by output slot) and the four signals.
#[derive(Debug, Clone, Default)]
pub struct SymbolSignals {
    pub indicators: Vec<Vec<f64>>,
    pub long_entry: Vec<bool>,
    pub long_exit: Vec<bool>,
    pub short_entry: Vec<bool>,
    pub short_exit: Vec<bool>,
}

/// What a reference backtest produced.
#[derive(Debug, Clone)]
pub struct Backtest {
    pub signals: Vec<SymbolSignals>,
    pub result: SimResult,
}

/// The first and last bar where a symbol has data.
pub(crate) fn valid_span(close: &[f64]) -> Option<(usize, usize)> {
    let first = close.iter().position(|c| c.is_finite())?;
    let last = close.iter().rposition(|c| c.is_finite())?;
    Some((first, last))
}

/// Computes indicators and signals of one symbol. TA-Lib runs on the symbol's span of data
/// only; bars outside it stay NaN (no signal).
pub fn signals_for(
    spec: &Spec,
    resolved: &ResolvedSpec,
    sym: &MarketSymbol<'_>,
) -> Result<SymbolSignals, ReferenceError> {
    let n = sym.close.len();
    let mut out = SymbolSignals {
        indicators: vec![vec![f64::NAN; n]; spec.output_slot_count()],
        long_entry: vec![false; n],
        long_exit: vec![false; n],
        short_entry: vec![false; n],
        short_exit: vec![false; n],
    };
    let Some((first, last)) = valid_span(sym.close) else {
        return Ok(out);
    };
    let span = first..last + 1;
    let bars = sym.bars(span.clone());
    for ind in &resolved.indicators {
        let k = ind.output_names.len();
        let mut outputs: Vec<&mut [f64]> = out.indicators[ind.first_slot..ind.first_slot + k]
            .iter_mut()
            .map(|v| &mut v[span.clone()])
            .collect();
        compute_indicator(ind, &bars, &mut outputs).map_err(|detail| {
            ReferenceError::Indicator {
                symbol: sym.name.to_string(),
                indicator: ind.name.clone(),
                detail,
            }
        })?;
    }
    let columns: Vec<&[f64]> = out.indicators.iter().map(|v| &v[span.clone()]).collect();
    let inputs = RuleInputs {
        bars,
        indicators: &columns,
    };
    let rules: [(&'static str, &Option<BoundRule>, &mut Vec<bool>); 4] = [
        (
            "long_entry",
            &resolved.rules.long_entry,
            &mut out.long_entry,
        ),
        ("long_exit", &resolved.rules.long_exit, &mut out.long_exit),
        (
            "short_entry",
            &resolved.rules.short_entry,
            &mut out.short_entry,
        ),
        (
            "short_exit",
            &resolved.rules.short_exit,
            &mut out.short_exit,
        ),
    ];
    for (name, rule, dest) in rules {
        if let Some(rule) = rule {
            rule.eval_into(&inputs, &mut dest[span.clone()])
                .map_err(|e| ReferenceError::Rule {
                    symbol: sym.name.to_string(),
                    rule: name,
                    detail: e.to_string(),
                })?;
        }
    }
    Ok(out)
}

#[cfg(feature = "talib")]
fn compute_indicator(
    ind: &crate::spec::ResolvedIndicator,
    bars: &BarColumns<'_>,
    outputs: &mut [&mut [f64]],
) -> Result<(), String> {
    ind.compute(bars, outputs).map_err(|e| e.to_string())
}

/// Without TA-Lib (the aarch64 cross build), the streaming implementations of
/// [`crate::batch::indicators`] stand in: they are proven equal to TA-Lib, bit for bit, by
/// kernels/tests/indicators.rs on builds that have both. Other functions are unavailable.
#[cfg(not(feature = "talib"))]
fn compute_indicator(
    ind: &crate::spec::ResolvedIndicator,
    bars: &BarColumns<'_>,
    outputs: &mut [&mut [f64]],
) -> Result<(), String> {
    use crate::batch::indicators;
    if !indicators::supports(&ind.function) {
        return Err(format!(
            "{} needs TA-Lib, and this build has none (feature `talib` is off)",
            ind.function
        ));
    }
    indicators::compute(ind, bars, outputs).map_err(|e| e.to_string())
}

/// The engine settings of a resolved spec.
pub fn sim_params(resolved: &ResolvedSpec, initial_capital: f64) -> SimParams {
    let r = &resolved.risk;
    let x = &resolved.execution;
    SimParams {
        initial_capital,
        leverage: f64::from(r.leverage),
        margin_mode: match r.margin_mode {
            MarginMode::Cross => engine::MarginMode::Cross,
            MarginMode::Isolated => engine::MarginMode::Isolated,
        },
        position_size: r.position_size,
        max_concurrent_positions: r.max_concurrent_positions as usize,
        stop_loss: r.stop_loss,
        take_profit: r.take_profit,
        fill: match x.fill {
            FillPrice::NextOpen => engine::Fill::NextOpen,
            FillPrice::Close => engine::Fill::Close,
        },
        taker_fee: x.taker_fee_rate,
        slippage: x.slippage_rate,
    }
}

/// Runs the reference backtest of `resolved` on `market`; `brackets` are matched to the
/// market's symbols by name.
pub fn run(
    spec: &Spec,
    resolved: &ResolvedSpec,
    market: &Market<'_>,
    brackets: &[BracketTable],
    initial_capital: f64,
) -> Result<Backtest, ReferenceError> {
    let full = 0..market.open_time.len();
    let (signals, mut results) = run_windows(
        spec,
        resolved,
        market,
        brackets,
        initial_capital,
        std::slice::from_ref(&full),
    )?;
    let result = results.pop().unwrap_or_default();
    Ok(Backtest { signals, result })
}

/// Runs the reference backtest once per bar range in `windows` (walk-forward windows): the
/// indicators and signals are computed once on the whole market (so each window's indicators
/// are warmed on the bars before it), then each window is an independent account that starts
/// flat with `initial_capital` at its first bar and closes what is open at its last bar.
pub fn run_windows(
    spec: &Spec,
    resolved: &ResolvedSpec,
    market: &Market<'_>,
    brackets: &[BracketTable],
    initial_capital: f64,
    windows: &[Range<usize>],
) -> Result<(Vec<SymbolSignals>, Vec<SimResult>), ReferenceError> {
    let signals = market
        .symbols
        .iter()
        .map(|s| signals_for(spec, resolved, s))
        .collect::<Result<Vec<_>, _>>()?;
    let tables = tables_for(market, brackets)?;
    let params = sim_params(resolved, initial_capital);
    let funding = funding_events(resolved, market);
    let results = windows
        .iter()
        .map(|range| {
            let window = WindowFunding::new(&funding, range);
            let input = sim_input(market, resolved, &signals, &tables, &window, range.clone());
            engine::simulate(&input, &params)
        })
        .collect();
    Ok((signals, results))
}

/// The bracket table of each market symbol, by name.
pub fn tables_for<'b>(
    market: &Market<'_>,
    brackets: &'b [BracketTable],
) -> Result<Vec<&'b BracketTable>, ReferenceError> {
    market
        .symbols
        .iter()
        .map(|s| {
            brackets
                .iter()
                .find(|b| b.symbol == s.name)
                .ok_or_else(|| ReferenceError::Brackets(s.name.to_string()))
        })
        .collect()
}

/// The funding events each symbol settles under the spec's funding setting (§2.6), in bar
/// order on the market's index.
pub fn funding_events(resolved: &ResolvedSpec, market: &Market<'_>) -> Vec<Vec<FundingAt>> {
    match resolved.execution.funding {
        Funding::FromData => market.symbols.iter().map(|m| m.funding.to_vec()).collect(),
        Funding::Disabled => vec![Vec::new(); market.symbols.len()],
        Funding::ConstantRatePer8h(rate) => {
            let events = constant_funding_events(market.open_time, market.interval_ms, rate);
            vec![events; market.symbols.len()]
        }
    }
}

/// Funding events cut to a window and renumbered from its first bar.
struct WindowFunding {
    per_symbol: Vec<Vec<FundingAt>>,
}

impl WindowFunding {
    fn new(funding: &[Vec<FundingAt>], range: &Range<usize>) -> WindowFunding {
        WindowFunding {
            per_symbol: funding
                .iter()
                .map(|events| {
                    events
                        .iter()
                        .filter(|e| range.contains(&(e.bar as usize)))
                        .map(|e| FundingAt {
                            bar: e.bar - range.start as u32,
                            rate: e.rate,
                        })
                        .collect()
                })
                .collect(),
        }
    }
}

fn sim_input<'a>(
    market: &'a Market<'a>,
    resolved: &ResolvedSpec,
    signals: &'a [SymbolSignals],
    tables: &[&'a BracketTable],
    funding: &'a WindowFunding,
    range: Range<usize>,
) -> SimInput<'a> {
    let r = range;
    SimInput {
        open_time: &market.open_time[r.clone()],
        interval_ms: market.interval_ms,
        symbols: market
            .symbols
            .iter()
            .zip(signals)
            .zip(tables)
            .zip(&funding.per_symbol)
            .map(|(((m, sg), table), events)| SymbolInput {
                market: m.window(r.clone(), events),
                leverage_cap: resolved
                    .risk
                    .max_leverage
                    .get(m.name)
                    .map_or(f64::INFINITY, |&c| f64::from(c)),
                brackets: table,
                signals: Signals {
                    long_entry: &sg.long_entry[r.clone()],
                    long_exit: &sg.long_exit[r.clone()],
                    short_entry: &sg.short_entry[r.clone()],
                    short_exit: &sg.short_exit[r.clone()],
                },
            })
            .collect(),
    }
}
