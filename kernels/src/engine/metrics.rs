//! Metrics of a run, from its equity curve and trades (docs/SEMANTICS.md §2.10).

use super::{ExitReason, SimResult};

const YEAR_MS: f64 = 365.25 * 86_400_000.0;

/// Summary numbers of one run. Ratios with no meaningful value (Sharpe of a flat curve,
/// profit factor without a losing trade, Calmar without a drawdown) are NaN.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    pub final_equity: f64,
    /// `final / initial - 1`.
    pub total_return: f64,
    /// Compound annual growth rate over the span of the bars.
    pub cagr: f64,
    /// Simple annualised return, `total_return / years`.
    pub apr: f64,
    /// Largest fall from a running peak of the close-to-close equity curve, as a fraction.
    pub max_drawdown: f64,
    /// `cagr / max_drawdown`.
    pub calmar: f64,
    /// Annualised mean / standard deviation (n - 1) of per-bar equity returns.
    pub sharpe: f64,
    /// Annualised mean / downside deviation (root mean square of negative returns).
    pub sortino: f64,
    /// Share of trades with a positive net PnL.
    pub win_rate: f64,
    /// Sum of winning PnL / |sum of losing PnL|.
    pub profit_factor: f64,
    pub n_trades: u64,
    /// Share of bars with at least one open position after the close.
    pub exposure: f64,
    /// Taker fees paid, USDT.
    pub fees_paid: f64,
    /// Net funding paid (negative: received), USDT.
    pub funding_paid: f64,
    pub liquidations: u64,
}

/// Computes the metrics of `r` (its curves and trades must be filled).
pub fn compute_metrics(r: &SimResult, interval_ms: i64, initial: f64) -> Metrics {
    let n = r.equity.len();
    let final_equity = r.equity.last().copied().unwrap_or(initial);
    let years = n as f64 * interval_ms as f64 / YEAR_MS;
    let total_return = final_equity / initial - 1.0;
    let cagr = if final_equity <= 0.0 {
        -1.0
    } else if years > 0.0 {
        (final_equity / initial).powf(1.0 / years) - 1.0
    } else {
        f64::NAN
    };
    let max_drawdown = r.drawdown.iter().copied().fold(0.0, f64::max);
    let bars_per_year = YEAR_MS / interval_ms as f64;
    let mut prev = initial;
    let (mut sum, mut sum_sq, mut down_sq, mut count) = (0.0, 0.0, 0.0, 0usize);
    for &e in &r.equity {
        if prev > 0.0 {
            let ret = e / prev - 1.0;
            sum += ret;
            sum_sq += ret * ret;
            down_sq += ret.min(0.0) * ret.min(0.0);
            count += 1;
        }
        prev = e;
    }
    let nf = count as f64;
    let mean = if count > 0 { sum / nf } else { f64::NAN };
    let var = if count > 1 {
        (sum_sq - nf * mean * mean) / (nf - 1.0)
    } else {
        f64::NAN
    };
    let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { f64::NAN };
    let sharpe = ratio(mean, var.max(0.0).sqrt()) * bars_per_year.sqrt();
    let sortino = ratio(mean, (down_sq / nf).sqrt()) * bars_per_year.sqrt();
    let wins: f64 = r.trades.iter().filter(|t| t.pnl > 0.0).map(|t| t.pnl).sum();
    let losses: f64 = r
        .trades
        .iter()
        .filter(|t| t.pnl < 0.0)
        .map(|t| -t.pnl)
        .sum();
    let n_trades = r.trades.len() as u64;
    let exposed = r.margin_usage.iter().filter(|&&u| u > 0.0).count();
    Metrics {
        final_equity,
        total_return,
        cagr,
        apr: if years > 0.0 {
            total_return / years
        } else {
            f64::NAN
        },
        max_drawdown,
        calmar: ratio(cagr, max_drawdown),
        sharpe,
        sortino,
        win_rate: if n_trades > 0 {
            r.trades.iter().filter(|t| t.pnl > 0.0).count() as f64 / n_trades as f64
        } else {
            f64::NAN
        },
        profit_factor: ratio(wins, losses),
        n_trades,
        exposure: if n > 0 {
            exposed as f64 / n as f64
        } else {
            0.0
        },
        fees_paid: r.trades.iter().map(|t| t.fees).sum(),
        funding_paid: r.funding_paid.iter().sum(),
        liquidations: r
            .trades
            .iter()
            .filter(|t| t.exit_reason == ExitReason::Liquidation)
            .count() as u64,
    }
}
