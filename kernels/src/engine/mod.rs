//! The scalar reference engine: a plain f64 event loop, bar by bar, written to be read. It
//! *defines* the futures semantics of e-trading (docs/SEMANTICS.md §2); the batch kernels must
//! agree with it. Inputs are slices (the caller aligns data and evaluates the rules into entry
//! and exit signals); outputs are trade records, curves and metrics.
//!
//! Order of events in bar `t` (SEMANTICS.md §2.1): (1) orders decided at the close of `t - 1`
//! fill at the open (with `fill = next_open`), closes before opens; (2) funding events of bar
//! `t` are settled on the positions open after those fills; (3) intrabar: stops that lie
//! before the liquidation price, then liquidation at the worst mark price, then the remaining
//! stops, then take-profits; (4) signals at the close (filled at once with `fill = close`);
//! (5) equity, margin use and drawdown at the close.

mod metrics;
mod sim;

pub use metrics::{Metrics, MetricsAcc, YEAR_MS, compute_metrics, span_ms};
pub(crate) use sim::Position;
pub use sim::Target;
pub use sim::simulate;

use std::ops::Range;

use crate::brackets::BracketTable;
use crate::series::BarColumns;

/// Long or short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Long,
    Short,
}

impl Side {
    /// +1 for long, -1 for short.
    pub fn sign(self) -> f64 {
        match self {
            Side::Long => 1.0,
            Side::Short => -1.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Long => "long",
            Side::Short => "short",
        }
    }
}

/// Isolated margin per position, or one cross-margin account for all symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarginMode {
    Isolated,
    Cross,
}

/// When a signal at a bar's close is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// At the next bar's open (the live Backtrader bot's market orders).
    NextOpen,
    /// At the same bar's close (vectorbt's default).
    Close,
}

/// Why a trade ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    Signal,
    StopLoss,
    TakeProfit,
    Liquidation,
    End,
}

impl ExitReason {
    pub fn name(self) -> &'static str {
        match self {
            ExitReason::Signal => "signal",
            ExitReason::StopLoss => "stop",
            ExitReason::TakeProfit => "take_profit",
            ExitReason::Liquidation => "liquidation",
            ExitReason::End => "end",
        }
    }
}

/// A funding event on bar `bar` with rate `rate` (positive: longs pay shorts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FundingAt {
    pub bar: u32,
    pub rate: f64,
}

/// Entry and exit signals of one symbol, one value per bar, computed at the bar's close.
#[derive(Debug, Clone, Copy)]
pub struct Signals<'a> {
    pub long_entry: &'a [bool],
    pub long_exit: &'a [bool],
    pub short_entry: &'a [bool],
    pub short_exit: &'a [bool],
}

/// One symbol's market columns on the common index (NaN outside its data, see
/// SEMANTICS.md §1.4). The engine reads the prices and funding; volume is there for the
/// indicators and rules that read it.
#[derive(Debug, Clone, Copy)]
pub struct MarketSymbol<'a> {
    pub name: &'a str,
    pub open: &'a [f64],
    pub high: &'a [f64],
    pub low: &'a [f64],
    pub close: &'a [f64],
    pub volume: &'a [f64],
    /// Mark-price columns (NaN where missing: the last price stands in).
    pub mark_open: &'a [f64],
    pub mark_high: &'a [f64],
    pub mark_low: &'a [f64],
    /// Funding events in bar order.
    pub funding: &'a [FundingAt],
}

impl<'a> MarketSymbol<'a> {
    /// The OHLCV columns of bars `range`.
    pub fn bars(&self, range: Range<usize>) -> BarColumns<'a> {
        BarColumns {
            open: &self.open[range.clone()],
            high: &self.high[range.clone()],
            low: &self.low[range.clone()],
            close: &self.close[range.clone()],
            volume: &self.volume[range],
        }
    }

    /// The columns of bars `range` with `funding` in place of the symbol's own events: the
    /// caller cuts them to the range and numbers them from its first bar.
    pub fn window(&self, range: Range<usize>, funding: &'a [FundingAt]) -> MarketSymbol<'a> {
        MarketSymbol {
            name: self.name,
            open: &self.open[range.clone()],
            high: &self.high[range.clone()],
            low: &self.low[range.clone()],
            close: &self.close[range.clone()],
            volume: &self.volume[range.clone()],
            mark_open: &self.mark_open[range.clone()],
            mark_high: &self.mark_high[range.clone()],
            mark_low: &self.mark_low[range],
            funding,
        }
    }
}

/// One symbol's market and signals, on the common index.
#[derive(Debug, Clone, Copy)]
pub struct SymbolInput<'a> {
    /// The market columns; funding events numbered from the run's first bar.
    pub market: MarketSymbol<'a>,
    /// The spec's per-symbol leverage cap (infinity when none).
    pub leverage_cap: f64,
    pub brackets: &'a BracketTable,
    pub signals: Signals<'a>,
}

/// Everything the engine reads.
#[derive(Debug, Clone)]
pub struct SimInput<'a> {
    /// Bar open times (ms), strictly increasing.
    pub open_time: &'a [i64],
    pub interval_ms: i64,
    pub symbols: Vec<SymbolInput<'a>>,
}

/// The account and execution settings of one run, all resolved to numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimParams {
    /// Starting wallet balance, USDT.
    pub initial_capital: f64,
    /// Requested leverage (1 to 20), before caps.
    pub leverage: f64,
    pub margin_mode: MarginMode,
    /// Fraction of equity posted as initial margin per new position.
    pub position_size: f64,
    pub max_concurrent_positions: usize,
    /// Stop distance from the entry price as a fraction (0.05 = 5 %).
    pub stop_loss: Option<f64>,
    /// Take-profit distance from the entry price as a fraction.
    pub take_profit: Option<f64>,
    pub fill: Fill,
    /// Taker fee rate on the notional of every fill.
    pub taker_fee: f64,
    /// Slippage as a fraction of the price: buys fill at `p x (1 + s)`, sells at `p x (1 - s)`.
    pub slippage: f64,
}

/// One round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub symbol: usize,
    pub side: Side,
    pub entry_bar: usize,
    pub exit_bar: usize,
    pub entry_time: i64,
    pub exit_time: i64,
    /// Fill prices, slippage included.
    pub entry_price: f64,
    pub exit_price: f64,
    /// Size in base units.
    pub qty: f64,
    /// Notional at entry (USDT).
    pub notional: f64,
    /// Leverage used, after caps.
    pub leverage: f64,
    /// Initial margin posted (USDT).
    pub margin: f64,
    /// Taker fees of entry and exit (USDT).
    pub fees: f64,
    /// What a liquidation took beyond the loss at the liquidation price (USDT; 0 otherwise).
    pub liquidation_fee: f64,
    /// Funding paid (positive) or received (negative) while open (USDT).
    pub funding: f64,
    /// Net result: price PnL - fees - liquidation fee - funding (USDT).
    pub pnl: f64,
    /// `pnl / margin`.
    pub return_on_margin: f64,
    pub exit_reason: ExitReason,
    /// Maximum adverse and favourable excursion of the last price while open, as a fraction of
    /// the entry price (MAE <= 0 <= MFE).
    pub mae: f64,
    pub mfe: f64,
}

/// A run's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimResult {
    pub trades: Vec<Trade>,
    /// Equity (wallet + unrealised PnL at the close) after each bar, USDT.
    pub equity: Vec<f64>,
    /// Initial margin in use / equity after each bar.
    pub margin_usage: Vec<f64>,
    /// `1 - equity / running peak` after each bar.
    pub drawdown: Vec<f64>,
    /// Funding paid (positive) or received in each bar, USDT.
    pub funding_paid: Vec<f64>,
    /// Entries refused for lack of free margin.
    pub skipped_entries: u64,
    pub metrics: Metrics,
}

/// Funding events for a constant rate per 8 h: every multiple of 8 h UTC within a bar's span
/// counts once (a 1d bar holds three).
pub fn constant_funding_events(
    open_time: &[i64],
    interval_ms: i64,
    rate_per_8h: f64,
) -> Vec<FundingAt> {
    const EIGHT_H: i64 = 8 * 3_600_000;
    let mut out = Vec::new();
    for (bar, &t) in open_time.iter().enumerate() {
        let first = t.div_euclid(EIGHT_H) * EIGHT_H
            + if t.rem_euclid(EIGHT_H) == 0 {
                0
            } else {
                EIGHT_H
            };
        let end = t + interval_ms;
        let mut k = first;
        while k < end {
            out.push(FundingAt {
                bar: bar as u32,
                rate: rate_per_8h,
            });
            k += EIGHT_H;
        }
    }
    out
}
