//! `etrading backtest --json`: one run's provenance, metrics and trades. Schema
//! `etrading.backtest/1`. Ratios without a value (NaN in the engine) are `null`.

use std::collections::BTreeMap;

use serde::Serialize;

use etrading_kernels::engine::{Metrics, SimResult, Trade};

use crate::iso_time;

pub const SCHEMA: &str = "etrading.backtest/1";

#[derive(Debug, Clone, Serialize)]
pub struct BacktestReport {
    pub schema: &'static str,
    pub provenance: Provenance,
    pub metrics: MetricsReport,
    pub trades: Vec<TradeReport>,
}

/// Everything needed to reproduce a result.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub strategy_id: String,
    pub spec_file: String,
    /// The param set, by name.
    pub params: BTreeMap<String, serde_json::Value>,
    pub symbols: Vec<String>,
    pub interval: String,
    pub first_bar: Option<String>,
    pub last_bar: Option<String>,
    pub bars: u64,
    /// SHA-256 content hash of the panel (SEMANTICS.md §1.8).
    pub data_hash: String,
    pub engine_version: String,
    pub talib_version: String,
    pub brackets: String,
    pub initial_capital: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsReport {
    pub final_equity: Option<f64>,
    pub total_return: Option<f64>,
    pub cagr: Option<f64>,
    pub apr: Option<f64>,
    pub max_drawdown: Option<f64>,
    pub calmar: Option<f64>,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub win_rate: Option<f64>,
    pub profit_factor: Option<f64>,
    pub n_trades: u64,
    pub exposure: Option<f64>,
    pub fees_paid: Option<f64>,
    pub funding_paid: Option<f64>,
    pub liquidations: u64,
    pub skipped_entries: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TradeReport {
    pub id: u64,
    pub symbol: String,
    pub side: &'static str,
    pub entry_time: String,
    pub exit_time: String,
    pub entry_price: f64,
    pub exit_price: f64,
    pub qty: f64,
    pub notional: f64,
    pub leverage: f64,
    pub margin: f64,
    pub fees: f64,
    pub liquidation_fee: f64,
    pub funding: f64,
    pub pnl: f64,
    pub return_on_margin: f64,
    pub exit_reason: &'static str,
    pub mae: f64,
    pub mfe: f64,
}

/// A finite number, or `None`.
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

pub fn metrics(m: &Metrics, skipped_entries: u64) -> MetricsReport {
    MetricsReport {
        final_equity: finite(m.final_equity),
        total_return: finite(m.total_return),
        cagr: finite(m.cagr),
        apr: finite(m.apr),
        max_drawdown: finite(m.max_drawdown),
        calmar: finite(m.calmar),
        sharpe: finite(m.sharpe),
        sortino: finite(m.sortino),
        win_rate: finite(m.win_rate),
        profit_factor: finite(m.profit_factor),
        n_trades: m.n_trades,
        exposure: finite(m.exposure),
        fees_paid: finite(m.fees_paid),
        funding_paid: finite(m.funding_paid),
        liquidations: m.liquidations,
        skipped_entries,
    }
}

pub fn trade(id: u64, t: &Trade, symbols: &[String]) -> TradeReport {
    TradeReport {
        id,
        symbol: symbols[t.symbol].clone(),
        side: t.side.name(),
        entry_time: iso_time(t.entry_time),
        exit_time: iso_time(t.exit_time),
        entry_price: t.entry_price,
        exit_price: t.exit_price,
        qty: t.qty,
        notional: t.notional,
        leverage: t.leverage,
        margin: t.margin,
        fees: t.fees,
        liquidation_fee: t.liquidation_fee,
        funding: t.funding,
        pnl: t.pnl,
        return_on_margin: t.return_on_margin,
        exit_reason: t.exit_reason.name(),
        mae: t.mae,
        mfe: t.mfe,
    }
}

/// The report of one run.
pub fn report(provenance: Provenance, r: &SimResult) -> BacktestReport {
    let trades = r
        .trades
        .iter()
        .enumerate()
        .map(|(i, t)| trade(i as u64 + 1, t, &provenance.symbols))
        .collect();
    BacktestReport {
        schema: SCHEMA,
        metrics: metrics(&r.metrics, r.skipped_entries),
        provenance,
        trades,
    }
}
