//! Hand-computed golden cases of the reference engine (docs/SEMANTICS.md §2). Every expected
//! number is worked out in the comment above it.

use etrading_kernels::brackets::{BracketTable, bundled};
use etrading_kernels::engine::{
    ExitReason, Fill, FundingAt, MarginMode, MarketSymbol, Side, Signals, SimInput, SimParams,
    SimResult, SymbolInput, simulate,
};

const H: i64 = 3_600_000;

/// One symbol's bars and signals, owned.
#[derive(Clone, Default)]
struct Sym {
    name: &'static str,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
    mark_high: Vec<f64>,
    mark_low: Vec<f64>,
    mark_open: Vec<f64>,
    funding: Vec<FundingAt>,
    le: Vec<bool>,
    lx: Vec<bool>,
    se: Vec<bool>,
    sx: Vec<bool>,
}

/// Bars from (open, high, low, close) rows; no signals, no mark prices.
fn sym(name: &'static str, bars: &[(f64, f64, f64, f64)]) -> Sym {
    let n = bars.len();
    Sym {
        name,
        open: bars.iter().map(|b| b.0).collect(),
        high: bars.iter().map(|b| b.1).collect(),
        low: bars.iter().map(|b| b.2).collect(),
        close: bars.iter().map(|b| b.3).collect(),
        volume: vec![0.0; n],
        mark_high: vec![f64::NAN; n],
        mark_low: vec![f64::NAN; n],
        mark_open: vec![f64::NAN; n],
        le: vec![false; n],
        lx: vec![false; n],
        se: vec![false; n],
        sx: vec![false; n],
        ..Sym::default()
    }
}

fn params(leverage: f64, position_size: f64, mode: MarginMode, fill: Fill) -> SimParams {
    SimParams {
        initial_capital: 10_000.0,
        leverage,
        margin_mode: mode,
        position_size,
        max_concurrent_positions: 4,
        stop_loss: None,
        take_profit: None,
        fill,
        taker_fee: 0.0,
        slippage: 0.0,
    }
}

fn table(name: &str) -> BracketTable {
    bundled().into_iter().find(|t| t.symbol == name).unwrap()
}

fn run(syms: &[Sym], p: &SimParams) -> SimResult {
    let n = syms[0].close.len();
    let times: Vec<i64> = (0..n as i64).map(|i| 1_735_689_600_000 + i * H).collect();
    let tables: Vec<BracketTable> = syms.iter().map(|s| table(s.name)).collect();
    let input = SimInput {
        open_time: &times,
        interval_ms: H,
        symbols: syms
            .iter()
            .zip(&tables)
            .map(|(s, t)| SymbolInput {
                market: MarketSymbol {
                    name: s.name,
                    open: &s.open,
                    high: &s.high,
                    low: &s.low,
                    close: &s.close,
                    volume: &s.volume,
                    mark_open: &s.mark_open,
                    mark_high: &s.mark_high,
                    mark_low: &s.mark_low,
                    funding: &s.funding,
                },
                leverage_cap: f64::INFINITY,
                brackets: t,
                signals: Signals {
                    long_entry: &s.le,
                    long_exit: &s.lx,
                    short_entry: &s.se,
                    short_exit: &s.sx,
                },
            })
            .collect(),
    };
    simulate(&input, p)
}

fn close_to(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[track_caller]
fn check(what: &str, actual: f64, expected: f64) {
    assert!(close_to(actual, expected), "{what}: {actual} != {expected}");
}

#[test]
fn isolated_long_10x_liquidated() {
    // Equity 10,000, position_size 0.1: margin 1,000; 10x: notional 10,000 (BTC tier 1: MMR 0.4%,
    // cum 0). Entry at the close of bar 0 at 100: qty = 10,000 / 100 = 100.
    // LP = (Q*EP - WB - cum) / (Q*(1 - MMR)) = (10,000 - 1,000) / (100 * 0.996) = 90.36144578...
    // Bar 1 trades down to 90: liquidated at LP; the position loses its margin: equity 9,000.
    let mut b = sym(
        "BTCUSDT",
        &[
            (100.0, 100.0, 100.0, 100.0),
            (100.0, 101.0, 90.0, 95.0),
            (95.0, 96.0, 94.0, 95.0),
        ],
    );
    b.le[0] = true;
    let r = run(&[b], &params(10.0, 0.1, MarginMode::Isolated, Fill::Close));
    let t = &r.trades[0];
    assert_eq!(
        (t.exit_reason, t.exit_bar, t.side),
        (ExitReason::Liquidation, 1, Side::Long)
    );
    check("exit price", t.exit_price, 9_000.0 / 99.6);
    // Loss at LP: 100 * (90.3614... - 100) = -963.855...; the clearance fee takes the remaining
    // margin 1,000 - 963.855... = 36.144...; net -1,000.
    check(
        "liquidation fee",
        t.liquidation_fee,
        1_000.0 - 100.0 * (100.0 - 9_000.0 / 99.6),
    );
    check("pnl", t.pnl, -1_000.0);
    check("equity", r.metrics.final_equity, 9_000.0);
    assert_eq!(r.metrics.liquidations, 1);
}

#[test]
fn isolated_short_20x_liquidated_by_the_mark_price() {
    // Margin 1,000, 20x: notional 20,000, entry 100, qty 200 (tier 1, MMR 0.4%).
    // LP = (Q*EP + WB + cum) / (Q*(1 + MMR)) = (20,000 + 1,000) / (200 * 1.004) = 104.5816733...
    // Bar 1: last price high 104.5 (below LP) but mark high 104.7 (above): liquidated.
    let mut b = sym(
        "BTCUSDT",
        &[
            (100.0, 100.0, 100.0, 100.0),
            (100.0, 104.5, 99.0, 104.0),
            (104.0, 104.0, 104.0, 104.0),
        ],
    );
    b.se[0] = true;
    b.mark_high[1] = 104.7;
    let r = run(
        &[b.clone()],
        &params(20.0, 0.1, MarginMode::Isolated, Fill::Close),
    );
    let t = &r.trades[0];
    assert_eq!(
        (t.exit_reason, t.side),
        (ExitReason::Liquidation, Side::Short)
    );
    check("exit price", t.exit_price, 21_000.0 / 200.8);
    check("pnl", t.pnl, -1_000.0);
    check("equity", r.metrics.final_equity, 9_000.0);
    // Without the mark spike the position survives and ends at the last close, 104:
    // PnL = 200 * (100 - 104) = -800.
    b.mark_high[1] = f64::NAN;
    let r = run(&[b], &params(20.0, 0.1, MarginMode::Isolated, Fill::Close));
    assert_eq!(r.trades[0].exit_reason, ExitReason::End);
    check("pnl", r.trades[0].pnl, -800.0);
}

#[test]
fn isolated_long_20x_liquidation_price_and_loss() {
    // Margin 500 (position_size 0.05), 20x: notional 10,000 at 200: qty 50.
    // LP = (50*200 - 500 - 0) / (50 * 0.996) = 9,500 / 49.8 = 190.76305...
    // A 4.62% fall liquidates, as in the research table (20x, MMR 0.4%: 4.62%).
    let mut b = sym(
        "BTCUSDT",
        &[(200.0, 200.0, 200.0, 200.0), (200.0, 200.0, 190.7, 195.0)],
    );
    b.le[0] = true;
    let r = run(&[b], &params(20.0, 0.05, MarginMode::Isolated, Fill::Close));
    check("exit price", r.trades[0].exit_price, 9_500.0 / 49.8);
    check(
        "adverse move",
        1.0 - r.trades[0].exit_price / 200.0,
        0.046_184_738_955_823_3,
    );
    check("equity", r.metrics.final_equity, 9_500.0);
}

fn cross_setup(btc_low: f64) -> Vec<Sym> {
    // BTC at 100 and ETH at 10, both bought at the close of bar 0 with position_size 0.5 and
    // 10x. BTC: margin 5,000, notional 50,000, qty 500. ETH: equity is still 10,000 (no PnL
    // yet), margin 5,000 (free margin 10,000 - 5,000 = 5,000 suffices), notional 50,000,
    // qty 5,000. In bar 1 ETH does not move; BTC falls to `btc_low`.
    let mut b = sym(
        "BTCUSDT",
        &[
            (100.0, 100.0, 100.0, 100.0),
            (100.0, 100.0, btc_low, 99.0),
            (99.0, 99.0, 99.0, 99.0),
        ],
    );
    let mut e = sym(
        "ETHUSDT",
        &[
            (10.0, 10.0, 10.0, 10.0),
            (10.0, 10.0, 10.0, 10.0),
            (10.0, 10.0, 10.0, 10.0),
        ],
    );
    b.le[0] = true;
    e.le[0] = true;
    vec![b, e]
}

#[test]
fn cross_margin_one_symbols_loss_liquidates_everything() {
    // BTC low 80.5: margin balance at the worst marks = 10,000 + 500*(80.5 - 100) + 0 = 250.
    // Maintenance: BTC 500*80.5*0.4% = 161, ETH 50,000*0.4% = 200; 361 >= 250: the account is
    // liquidated, both positions close, equity 0.
    let r = run(
        &cross_setup(80.5),
        &params(10.0, 0.5, MarginMode::Cross, Fill::Close),
    );
    assert_eq!(r.trades.len(), 2);
    assert!(
        r.trades
            .iter()
            .all(|t| t.exit_reason == ExitReason::Liquidation && t.exit_bar == 1)
    );
    check("equity", r.metrics.final_equity, 0.0);
    check(
        "sum of pnl",
        r.trades.iter().map(|t| t.pnl).sum(),
        -10_000.0,
    );
    assert_eq!(r.metrics.liquidations, 2);
    check("max drawdown", r.metrics.max_drawdown, 1.0);
    // BTC low 81: balance 10,000 - 9,500 = 500 > maintenance 162 + 200 = 362: no liquidation;
    // both end at the last closes: BTC 500*(99-100) = -500, ETH 0.
    let r = run(
        &cross_setup(81.0),
        &params(10.0, 0.5, MarginMode::Cross, Fill::Close),
    );
    assert!(r.trades.iter().all(|t| t.exit_reason == ExitReason::End));
    check("equity", r.metrics.final_equity, 9_500.0);
}

#[test]
fn isolated_margin_contains_the_same_loss() {
    // Same positions, isolated: BTC's LP = (50,000 - 5,000) / (500*0.996) = 90.36...; at 80.5 BTC
    // alone is liquidated and loses its 5,000 margin; ETH survives and ends flat: equity 5,000.
    let r = run(
        &cross_setup(80.5),
        &params(10.0, 0.5, MarginMode::Isolated, Fill::Close),
    );
    let reasons: Vec<_> = r.trades.iter().map(|t| (t.symbol, t.exit_reason)).collect();
    assert_eq!(
        reasons,
        vec![(0, ExitReason::Liquidation), (1, ExitReason::End)]
    );
    check("equity", r.metrics.final_equity, 5_000.0);
}

#[test]
fn funding_sign_and_amount() {
    // Long 10 BTC-units: margin 1,000 at 1x and price 100 (position_size 0.1). Funding on bar 2
    // at rate +0.0001 with mark open 101: the long pays 10 * 101 * 0.0001 = 0.101.
    // Then -0.0002 on bar 3 at mark open 102: the long receives 10 * 102 * 0.0002 = 0.204.
    let bars = [
        (100.0, 100.0, 100.0, 100.0),
        (100.0, 100.0, 100.0, 100.0),
        (100.0, 100.0, 100.0, 100.0),
        (100.0, 100.0, 100.0, 100.0),
        (100.0, 100.0, 100.0, 100.0),
    ];
    let mut b = sym("BTCUSDT", &bars);
    b.le[0] = true;
    b.mark_open[2] = 101.0;
    b.mark_open[3] = 102.0;
    b.funding = vec![
        FundingAt {
            bar: 2,
            rate: 0.0001,
        },
        FundingAt {
            bar: 3,
            rate: -0.0002,
        },
    ];
    let r = run(
        &[b.clone()],
        &params(1.0, 0.1, MarginMode::Isolated, Fill::Close),
    );
    check("funding paid", r.trades[0].funding, 0.101 - 0.204);
    check("bar 2", r.funding_paid[2], 0.101);
    check("equity", r.metrics.final_equity, 10_000.0 - 0.101 + 0.204);
    check("metric", r.metrics.funding_paid, -0.103);
    // The same as a short: receives 0.101, pays 0.204.
    b.le[0] = false;
    b.se[0] = true;
    let r = run(&[b], &params(1.0, 0.1, MarginMode::Isolated, Fill::Close));
    check("short funding", r.trades[0].funding, -0.101 + 0.204);
}

#[test]
fn funding_on_the_entry_bar_with_next_open_fills() {
    // Signal at the close of bar 1, filled at the open of bar 2 (100); the funding event of bar
    // 2 is settled after the opening fills, so the new long pays 10 * 100 * 0.0001 = 0.1.
    // An exit signalled at the close of bar 2 fills at the open of bar 3 before bar 3's
    // funding: it pays nothing there.
    let bars = [(100.0, 100.0, 100.0, 100.0); 5];
    let mut b = sym("BTCUSDT", &bars);
    b.le[1] = true;
    b.lx[2] = true;
    b.funding = vec![
        FundingAt {
            bar: 2,
            rate: 0.0001,
        },
        FundingAt {
            bar: 3,
            rate: 0.0001,
        },
    ];
    let r = run(&[b], &params(1.0, 0.1, MarginMode::Cross, Fill::NextOpen));
    let t = &r.trades[0];
    assert_eq!((t.entry_bar, t.exit_bar), (2, 3));
    check("funding", t.funding, 0.1);
}

#[test]
fn fees_and_slippage_on_entry_and_exit() {
    // Long at the close of bar 0 (100) with slippage 0.1% and taker fee 0.05%, position_size 0.1
    // at 2x: margin 1,000, notional 2,000. Entry price 100 * 1.001 = 100.1, qty = 2,000 / 100.1.
    // Entry fee 2,000 * 0.0005 = 1. Exit signal at the close of bar 1 (110): price
    // 110 * 0.999 = 109.89; exit fee = qty * 109.89 * 0.0005.
    // PnL = qty * (109.89 - 100.1) - 1 - exit fee.
    let mut b = sym(
        "BTCUSDT",
        &[
            (100.0, 100.0, 100.0, 100.0),
            (110.0, 110.0, 110.0, 110.0),
            (110.0, 110.0, 110.0, 110.0),
        ],
    );
    b.le[0] = true;
    b.lx[1] = true;
    let mut p = params(2.0, 0.1, MarginMode::Isolated, Fill::Close);
    p.slippage = 0.001;
    p.taker_fee = 0.0005;
    let r = run(&[b], &p);
    let t = &r.trades[0];
    let qty = 2_000.0 / 100.1;
    check("entry", t.entry_price, 100.1);
    check("exit", t.exit_price, 109.89);
    check("fees", t.fees, 1.0 + qty * 109.89 * 0.0005);
    check(
        "pnl",
        t.pnl,
        qty * (109.89 - 100.1) - 1.0 - qty * 109.89 * 0.0005,
    );
    check("equity", r.metrics.final_equity, 10_000.0 + t.pnl);
    check("return on margin", t.return_on_margin, t.pnl / 1_000.0);
}

#[test]
fn next_open_versus_close_fills() {
    // Entry signal at the close of bar 0 (close 100, next open 104); exit signal at bar 1's
    // close (108, next open 106). Close fills: 100 -> 108. Next-open fills: 104 -> 106.
    let mut b = sym(
        "BTCUSDT",
        &[
            (99.0, 101.0, 98.0, 100.0),
            (104.0, 109.0, 103.0, 108.0),
            (106.0, 107.0, 105.0, 106.0),
            (106.0, 106.0, 106.0, 106.0),
        ],
    );
    b.le[0] = true;
    b.lx[1] = true;
    let c = run(
        &[b.clone()],
        &params(1.0, 0.1, MarginMode::Isolated, Fill::Close),
    );
    let o = run(
        &[b],
        &params(1.0, 0.1, MarginMode::Isolated, Fill::NextOpen),
    );
    let (tc, to) = (&c.trades[0], &o.trades[0]);
    assert_eq!(
        (tc.entry_price, tc.exit_price, tc.entry_bar, tc.exit_bar),
        (100.0, 108.0, 0, 1)
    );
    assert_eq!(
        (to.entry_price, to.exit_price, to.entry_bar, to.exit_bar),
        (104.0, 106.0, 1, 2)
    );
    // qty 1,000 / 100 = 10: PnL 80; qty 1,000 / 104: PnL 1,000 * 2 / 104.
    check("close pnl", tc.pnl, 80.0);
    check("next-open pnl", to.pnl, 2_000.0 / 104.0);
}

#[test]
fn stop_and_take_profit_in_the_same_bar_fill_the_stop() {
    // Long at 100, stop 5% (95), take-profit 10% (110). Bar 1 spans 94..111: both are hit;
    // the stop fills (conservative): PnL = 10 * (95 - 100) = -50.
    let mut b = sym(
        "BTCUSDT",
        &[
            (100.0, 100.0, 100.0, 100.0),
            (100.0, 111.0, 94.0, 100.0),
            (100.0, 100.0, 100.0, 100.0),
        ],
    );
    b.le[0] = true;
    let mut p = params(1.0, 0.1, MarginMode::Isolated, Fill::Close);
    p.stop_loss = Some(0.05);
    p.take_profit = Some(0.10);
    let r = run(&[b.clone()], &p);
    assert_eq!(r.trades[0].exit_reason, ExitReason::StopLoss);
    check("pnl", r.trades[0].pnl, -50.0);
    check("mae", r.trades[0].mae, -0.05);
    // Only the take-profit in reach (low 99): exit at 110, PnL 100. The exit bar counts only
    // up to the exit (§2.10), which is its exit price: MAE 0 (the bar's low 99 is not seen,
    // as a stop's exit bar does not see its high), MFE (110 - 100) / 100 = 0.1.
    b.low[1] = 99.0;
    let r = run(&[b.clone()], &p);
    assert_eq!(r.trades[0].exit_reason, ExitReason::TakeProfit);
    check("pnl", r.trades[0].pnl, 100.0);
    check("tp mae", r.trades[0].mae, 0.0);
    check("tp mfe", r.trades[0].mfe, 0.10);
    // A gap above the take-profit: bar 1 opens at 112 and later trades down to 94, through
    // the stop. The open comes first: the take-profit fills at the open 112 (§2.7 0), PnL
    // 10 * (112 - 100) = 120; before this rule the stop filled (PnL -50).
    let mut g = b.clone();
    (g.open[1], g.high[1], g.low[1]) = (112.0, 113.0, 94.0);
    let r = run(&[g.clone()], &p);
    assert_eq!(r.trades[0].exit_reason, ExitReason::TakeProfit);
    check("tp gap exit", r.trades[0].exit_price, 112.0);
    check("tp gap pnl", r.trades[0].pnl, 120.0);
    // The same for a short: entry 100, take-profit 90, stop 105; bar 1 opens at 88 and then
    // trades up to 106: the take-profit fills at 88, PnL 10 * (100 - 88) = 120.
    let mut sh = g;
    (sh.le[0], sh.se[0]) = (false, true);
    (sh.open[1], sh.high[1], sh.low[1]) = (88.0, 106.0, 87.0);
    let r = run(&[sh], &p);
    assert_eq!(r.trades[0].exit_reason, ExitReason::TakeProfit);
    check("short tp gap pnl", r.trades[0].pnl, 120.0);
    // A gap below the stop: bar 1 opens at 90, the stop fills at the open: PnL -100.
    b.open[1] = 90.0;
    b.low[1] = 89.0;
    b.high[1] = 91.0;
    let r = run(&[b], &p);
    assert_eq!(r.trades[0].exit_reason, ExitReason::StopLoss);
    check("gap pnl", r.trades[0].pnl, -100.0);
}

#[test]
fn a_stop_beyond_the_liquidation_price_is_too_late() {
    // 10x long at 100, isolated: LP 90.36. A 15% stop (85) lies beyond it: a fall to 84
    // liquidates (loss = margin 1,000) before the stop could fill.
    let mut b = sym(
        "BTCUSDT",
        &[
            (100.0, 100.0, 100.0, 100.0),
            (100.0, 100.0, 84.0, 86.0),
            (86.0, 86.0, 86.0, 86.0),
        ],
    );
    b.le[0] = true;
    let mut p = params(10.0, 0.1, MarginMode::Isolated, Fill::Close);
    p.stop_loss = Some(0.15);
    let r = run(&[b.clone()], &p);
    assert_eq!(r.trades[0].exit_reason, ExitReason::Liquidation);
    // A 5% stop (95) lies before LP: it fills first: PnL = 100 * (95 - 100) = -500.
    p.stop_loss = Some(0.05);
    let r = run(&[b], &p);
    assert_eq!(r.trades[0].exit_reason, ExitReason::StopLoss);
    check("pnl", r.trades[0].pnl, -500.0);
}

#[test]
fn a_reversal_closes_then_opens() {
    // Long at the close of bar 0 (100); a short entry at the close of bar 1 (90) closes the
    // long (PnL 10 * -10 = -100) and opens a short with margin 0.1 * 9,900 = 990, qty 11, which
    // ends at bar 2's close (80): PnL 11 * 10 = 110.
    let mut b = sym(
        "BTCUSDT",
        &[
            (100.0, 100.0, 100.0, 100.0),
            (90.0, 90.0, 90.0, 90.0),
            (80.0, 80.0, 80.0, 80.0),
        ],
    );
    b.le[0] = true;
    b.se[1] = true;
    let r = run(&[b], &params(1.0, 0.1, MarginMode::Cross, Fill::Close));
    let got: Vec<_> = r
        .trades
        .iter()
        .map(|t| (t.side, t.entry_bar, t.exit_bar, t.exit_reason))
        .collect();
    assert_eq!(
        got,
        vec![
            (Side::Long, 0, 1, ExitReason::Signal),
            (Side::Short, 1, 2, ExitReason::End)
        ]
    );
    check("long pnl", r.trades[0].pnl, -100.0);
    check("short qty", r.trades[1].qty, 11.0);
    check("short pnl", r.trades[1].pnl, 110.0);
    check("equity", r.metrics.final_equity, 10_010.0);
}

#[test]
fn leverage_is_capped_by_the_bracket_of_the_notional() {
    // Retail size: margin 5,000 at 20x = 100,000 LTC notional, tier 3 (50,000-160,000) allows
    // 40x: 20x stands.
    let mut b = sym(
        "LTCUSDT",
        &[(100.0, 100.0, 100.0, 100.0), (100.0, 100.0, 100.0, 100.0)],
    );
    b.le[0] = true;
    let r = run(
        &[b.clone()],
        &params(20.0, 0.5, MarginMode::Isolated, Fill::Close),
    );
    check("leverage", r.trades[0].leverage, 20.0);
    check("notional", r.trades[0].notional, 100_000.0);
    // A 10,000,000 account: margin 5,000,000; the best the tiers allow is 4x (tier 8, notional
    // 20,000,000; see brackets::tests::max_leverage_over_the_tiers).
    let mut p = params(20.0, 0.5, MarginMode::Isolated, Fill::Close);
    p.initial_capital = 10_000_000.0;
    let r = run(&[b], &p);
    check("leverage", r.trades[0].leverage, 4.0);
    check("notional", r.trades[0].notional, 20_000_000.0);
}

#[test]
fn entries_refused_by_the_position_cap_are_counted_as_skipped() {
    // Two symbols signal a long at the close of bar 0 under max_concurrent_positions = 1:
    // BTC (first in symbol order) opens, ETH is refused (§2.3) and counted as skipped. At
    // bar 1 ETH signals again while BTC is still open: refused again, 2 skipped in all.
    let bars = [
        (100.0, 100.0, 100.0, 100.0),
        (100.0, 100.0, 100.0, 100.0),
        (100.0, 100.0, 100.0, 100.0),
    ];
    let mut btc = sym("BTCUSDT", &bars);
    let mut eth = sym("ETHUSDT", &bars);
    btc.le[0] = true;
    eth.le[0] = true;
    eth.le[1] = true;
    let mut p = params(1.0, 0.1, MarginMode::Cross, Fill::Close);
    p.max_concurrent_positions = 1;
    let r = run(&[btc, eth], &p);
    assert_eq!(r.trades.len(), 1);
    assert_eq!(r.trades[0].symbol, 0);
    assert_eq!(r.skipped_entries, 2);
}

#[test]
fn an_isolated_gap_through_stop_and_liquidation_loses_the_margin_only() {
    // 10x long at 100, isolated: margin 1,000, qty 100, LP = 9,000 / 99.6 = 90.3614...; a 5%
    // stop (95) lies before LP. Bar 1 opens at 89, below both. A stop filled at that open
    // would lose 100 * (89 - 100) = -1,100, more than the margin; the open is beyond the LP,
    // so the position is liquidated there: exit at LP, net -1,000 (the margin), reason
    // liquidation, and the liquidation filter sees it.
    let mut b = sym(
        "BTCUSDT",
        &[
            (100.0, 100.0, 100.0, 100.0),
            (89.0, 90.0, 88.0, 89.0),
            (89.0, 89.0, 89.0, 89.0),
        ],
    );
    b.le[0] = true;
    let mut p = params(10.0, 0.1, MarginMode::Isolated, Fill::Close);
    p.stop_loss = Some(0.05);
    let r = run(&[b.clone()], &p);
    let t = &r.trades[0];
    assert_eq!((t.exit_reason, t.exit_bar), (ExitReason::Liquidation, 1));
    check("exit price", t.exit_price, 9_000.0 / 99.6);
    check("net", t.pnl, -1_000.0);
    check("final equity", r.metrics.final_equity, 9_000.0);
    // In cross margin the same gap fills the stop at the open (the account is the collateral;
    // equity 10,000 - 1,100 stays far above maintenance): PnL -1,100.
    let r = run(&[b], &params_with_stop(MarginMode::Cross, 0.05));
    assert_eq!(r.trades[0].exit_reason, ExitReason::StopLoss);
    check("cross gap pnl", r.trades[0].pnl, -1_100.0);
}

fn params_with_stop(mode: MarginMode, stop: f64) -> SimParams {
    let mut p = params(10.0, 0.1, mode, Fill::Close);
    p.stop_loss = Some(stop);
    p
}

#[test]
fn an_isolated_stop_beyond_the_liquidation_price_reached_by_last_price_only_is_a_liquidation() {
    // 10x long at 100, isolated, LP 90.3614...; a 12% stop (88) lies beyond LP. Bar 1's last
    // price falls to 87 but its mark price only to 91, above LP: no liquidation by mark, yet
    // the stop is reached. Filled at 88 it would lose 100 * (88 - 100) = -1,200, more than
    // the margin: the loss stops at the margin, as a liquidation at LP (net -1,000).
    let mut b = sym(
        "BTCUSDT",
        &[
            (100.0, 100.0, 100.0, 100.0),
            (100.0, 100.0, 87.0, 95.0),
            (95.0, 95.0, 95.0, 95.0),
        ],
    );
    b.mark_open[1] = 100.0;
    b.mark_high[1] = 100.0;
    b.mark_low[1] = 91.0;
    b.le[0] = true;
    let r = run(&[b], &params_with_stop(MarginMode::Isolated, 0.12));
    let t = &r.trades[0];
    assert_eq!((t.exit_reason, t.exit_bar), (ExitReason::Liquidation, 1));
    check("net", t.pnl, -1_000.0);
}
