//! Metrics of a run, from its equity curve and trades (docs/SEMANTICS.md §2.10).

use super::{ExitReason, SimResult};

/// A year of 365.25 days in ms: what `years`, CAGR and the annualised ratios count in.
pub const YEAR_MS: f64 = 365.25 * 86_400_000.0;

/// Summary numbers of one run. Ratios with no meaningful value (Sharpe of a flat curve,
/// profit factor without a losing trade, Calmar without a drawdown) are NaN.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    pub final_equity: f64,
    /// `final / initial - 1`.
    pub total_return: f64,
    /// Compound annual growth rate over the time span of the bars.
    pub cagr: f64,
    /// The time span of the bars in years of 365.25 days: from the first bar's open to the
    /// last bar's close (holes in the time index count as time; SEMANTICS.md §2.10).
    pub years: f64,
    /// Simple annualised return, `total_return / years`.
    pub apr: f64,
    /// Largest fall from a running peak of the close-to-close equity curve, as a fraction.
    pub max_drawdown: f64,
    /// `cagr / max_drawdown`.
    pub calmar: f64,
    /// Mean / standard deviation (n - 1) of per-bar equity returns, annualised by the square
    /// root of bars per year (the bar count over [`Metrics::years`]).
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

/// The running sums every metric is computed from, updated once per bar and once per trade.
/// The reference engine feeds it from its curves ([`compute_metrics`]); the batch kernels keep
/// the same sums per lane and finish with the same [`MetricsAcc::finish`], so both round
/// identically (docs/SEMANTICS.md §2.10, §4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsAcc {
    pub initial: f64,
    /// Equity after the previous bar (the initial capital before the first).
    pub prev: f64,
    pub bars: u64,
    pub final_equity: f64,
    pub max_drawdown: f64,
    /// Sums of per-bar returns, of their squares, and of squared negative returns.
    pub sum: f64,
    pub sum_sq: f64,
    pub down_sq: f64,
    pub count: u64,
    /// Bars with margin in use after the close.
    pub exposed: u64,
    pub funding: f64,
    pub fees: f64,
    pub wins: f64,
    pub losses: f64,
    pub n_wins: u64,
    pub n_trades: u64,
    pub liquidations: u64,
}

impl MetricsAcc {
    pub fn new(initial: f64) -> MetricsAcc {
        MetricsAcc {
            initial,
            prev: initial,
            bars: 0,
            final_equity: initial,
            max_drawdown: 0.0,
            sum: 0.0,
            sum_sq: 0.0,
            down_sq: 0.0,
            count: 0,
            exposed: 0,
            funding: 0.0,
            fees: 0.0,
            wins: 0.0,
            losses: 0.0,
            n_wins: 0,
            n_trades: 0,
            liquidations: 0,
        }
    }

    /// One bar's close: equity, drawdown from the running peak, margin usage and the funding
    /// paid in the bar.
    #[inline]
    pub fn bar(&mut self, equity: f64, drawdown: f64, margin_usage: f64, paid: f64) {
        self.bars += 1;
        self.final_equity = equity;
        self.max_drawdown = self.max_drawdown.max(drawdown);
        if self.prev > 0.0 {
            let ret = equity / self.prev - 1.0;
            self.sum += ret;
            self.sum_sq += ret * ret;
            let down = ret.min(0.0);
            self.down_sq += down * down;
            self.count += 1;
        }
        self.prev = equity;
        if margin_usage > 0.0 {
            self.exposed += 1;
        }
        self.funding += paid;
    }

    /// One closed trade.
    #[inline]
    pub fn trade(&mut self, pnl: f64, fees: f64, liquidated: bool) {
        self.n_trades += 1;
        if pnl > 0.0 {
            self.wins += pnl;
            self.n_wins += 1;
        }
        if pnl < 0.0 {
            self.losses += -pnl;
        }
        self.fees += fees;
        if liquidated {
            self.liquidations += 1;
        }
    }

    /// The metrics of a run whose bars span `span_ms` ([`span_ms`]): CAGR, APR and the
    /// annualised ratios use that time, not the bar count, so holes in the index do not
    /// shorten a year.
    pub fn finish(&self, span_ms: i64) -> Metrics {
        let initial = self.initial;
        let final_equity = self.final_equity;
        let years = span_ms as f64 / YEAR_MS;
        let total_return = final_equity / initial - 1.0;
        let cagr = if final_equity <= 0.0 {
            -1.0
        } else if years > 0.0 {
            (final_equity / initial).powf(1.0 / years) - 1.0
        } else {
            f64::NAN
        };
        let nf = self.count as f64;
        // Bars per year of the run's own sampling (with holes in the index, fewer than a
        // year of `interval` holds).
        let bars_per_year = if years > 0.0 {
            self.bars as f64 / years
        } else {
            f64::NAN
        };
        let mean = if self.count > 0 {
            self.sum / nf
        } else {
            f64::NAN
        };
        let var = if self.count > 1 {
            (self.sum_sq - nf * mean * mean) / (nf - 1.0)
        } else {
            f64::NAN
        };
        let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { f64::NAN };
        let sharpe = ratio(mean, var.max(0.0).sqrt()) * bars_per_year.sqrt();
        let sortino = ratio(mean, (self.down_sq / nf).sqrt()) * bars_per_year.sqrt();
        let n_trades = self.n_trades;
        Metrics {
            final_equity,
            total_return,
            cagr,
            years,
            apr: if years > 0.0 {
                total_return / years
            } else {
                f64::NAN
            },
            max_drawdown: self.max_drawdown,
            calmar: ratio(cagr, self.max_drawdown),
            sharpe,
            sortino,
            win_rate: if n_trades > 0 {
                self.n_wins as f64 / n_trades as f64
            } else {
                f64::NAN
            },
            profit_factor: ratio(self.wins, self.losses),
            n_trades,
            exposure: if self.bars > 0 {
                self.exposed as f64 / self.bars as f64
            } else {
                0.0
            },
            fees_paid: self.fees,
            funding_paid: self.funding,
            liquidations: self.liquidations,
        }
    }
}

/// The time span of bars opening at `open_time` (one window's slice), each `interval_ms`
/// long: from the first open to the last bar's close; 0 without bars.
pub fn span_ms(open_time: &[i64], interval_ms: i64) -> i64 {
    match (open_time.first(), open_time.last()) {
        (Some(first), Some(last)) => last - first + interval_ms,
        _ => 0,
    }
}

/// Computes the metrics of `r` (its curves and trades must be filled), a run whose bars span
/// `span_ms` ([`span_ms`]).
pub fn compute_metrics(r: &SimResult, span_ms: i64, initial: f64) -> Metrics {
    let mut acc = MetricsAcc::new(initial);
    for t in 0..r.equity.len() {
        acc.bar(
            r.equity[t],
            r.drawdown[t],
            r.margin_usage[t],
            r.funding_paid[t],
        );
    }
    for trade in &r.trades {
        acc.trade(
            trade.pnl,
            trade.fees,
            trade.exit_reason == ExitReason::Liquidation,
        );
    }
    acc.finish(span_ms)
}
