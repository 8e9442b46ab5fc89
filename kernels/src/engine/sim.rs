//! The event loop of the reference engine. Every rule here is stated in docs/SEMANTICS.md §2;
//! the comments cite the paragraph.

use super::{
    ExitReason, Fill, MarginMode, Side, SimInput, SimParams, SimResult, SymbolInput, Trade,
    compute_metrics, span_ms,
};

/// The side a symbol should hold after a signal (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// No position.
    Flat,
    /// A long position.
    Long,
    /// A short position.
    Short,
}

/// An open position (also the state the batch kernels' event path works on).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Position {
    pub(crate) side: Side,
    pub(crate) qty: f64,
    pub(crate) entry_price: f64,
    pub(crate) entry_bar: usize,
    pub(crate) margin: f64,
    pub(crate) leverage: f64,
    pub(crate) notional: f64,
    /// Bracket at the entry notional (§2.4).
    pub(crate) mmr: f64,
    pub(crate) cum: f64,
    pub(crate) entry_fee: f64,
    pub(crate) funding: f64,
    /// Extremes of the last price while open, for MAE / MFE.
    pub(crate) worst: f64,
    pub(crate) best: f64,
    pub(crate) stop_price: Option<f64>,
    pub(crate) tp_price: Option<f64>,
}

impl Position {
    pub(crate) fn upnl(&self, price: f64) -> f64 {
        self.side.sign() * self.qty * (price - self.entry_price)
    }

    /// Isolated liquidation price (§2.5): the price at which the position's margin plus its
    /// unrealised PnL equals its maintenance margin.
    pub(crate) fn isolated_liq_price(&self) -> f64 {
        let q = self.qty;
        match self.side {
            Side::Long => (q * self.entry_price - self.margin - self.cum) / (q * (1.0 - self.mmr)),
            Side::Short => (q * self.entry_price + self.margin + self.cum) / (q * (1.0 + self.mmr)),
        }
    }

    /// Widens the excursion extremes by a price range seen while open.
    pub(crate) fn see(&mut self, low: f64, high: f64) {
        match self.side {
            Side::Long => {
                self.worst = self.worst.min(low);
                self.best = self.best.max(high);
            }
            Side::Short => {
                self.worst = self.worst.max(high);
                self.best = self.best.min(low);
            }
        }
    }
}

struct State<'a> {
    input: &'a SimInput<'a>,
    p: &'a SimParams,
    wallet: f64,
    pos: Vec<Option<Position>>,
    trades: Vec<Trade>,
    skipped_entries: u64,
}

/// Runs one backtest.
pub fn simulate(input: &SimInput<'_>, p: &SimParams) -> SimResult {
    let n = input.open_time.len();
    let ns = input.symbols.len();
    let mut st = State {
        input,
        p,
        wallet: p.initial_capital,
        pos: vec![None; ns],
        trades: Vec::new(),
        skipped_entries: 0,
    };
    let last_valid: Vec<Option<usize>> = input
        .symbols
        .iter()
        .map(|s| s.market.close.iter().rposition(|c| c.is_finite()))
        .collect();
    let mut pending: Vec<Option<Target>> = vec![None; ns];
    let mut funding_cursor = vec![0usize; ns];
    let mut out = SimResult {
        equity: Vec::with_capacity(n),
        margin_usage: Vec::with_capacity(n),
        drawdown: Vec::with_capacity(n),
        funding_paid: Vec::with_capacity(n),
        ..SimResult::default()
    };
    let mut peak = p.initial_capital;
    for t in 0..n {
        let valid = |s: &SymbolInput<'_>| s.market.close[t].is_finite();
        // (1) §2.1: orders from the previous close fill at this open, closes first.
        if p.fill == Fill::NextOpen && pending.iter().any(Option::is_some) {
            let targets = std::mem::replace(&mut pending, vec![None; ns]);
            st.execute(&targets, t, |s| s.market.open[t]);
        }
        // (2) §2.6: funding on the positions open after the opening fills.
        let mut paid = 0.0;
        for (s, sym) in input.symbols.iter().enumerate() {
            let c = &mut funding_cursor[s];
            while *c < sym.market.funding.len() && (sym.market.funding[*c].bar as usize) < t {
                *c += 1;
            }
            while *c < sym.market.funding.len() && sym.market.funding[*c].bar as usize == t {
                if let Some(pos) = st.pos[s].as_mut() {
                    let price = if sym.market.mark_open[t].is_finite() {
                        sym.market.mark_open[t]
                    } else {
                        sym.market.open[t]
                    };
                    let pay = pos.side.sign() * pos.qty * price * sym.market.funding[*c].rate;
                    pos.funding += pay;
                    st.wallet -= pay;
                    paid += pay;
                }
                *c += 1;
            }
        }
        // (3) §2.7: intrabar stops, liquidation, take-profits.
        st.intrabar(t);
        // (4) §2.2: signals at the close.
        let mut targets: Vec<Option<Target>> = vec![None; ns];
        for (s, sym) in input.symbols.iter().enumerate() {
            if !valid(sym) {
                continue;
            }
            let is_last = last_valid[s] == Some(t);
            targets[s] = target(sym, t, st.pos[s].as_ref().map(|p| p.side), is_last);
        }
        match p.fill {
            Fill::Close => st.execute(&targets, t, |s| s.market.close[t]),
            Fill::NextOpen => {
                for (s, tg) in targets.into_iter().enumerate() {
                    let next_valid = input.symbols[s]
                        .market
                        .close
                        .get(t + 1)
                        .is_some_and(|c| c.is_finite());
                    if next_valid {
                        pending[s] = tg;
                    }
                }
            }
        }
        // §2.8: a symbol's last bar closes what is open.
        for (s, sym) in input.symbols.iter().enumerate() {
            if last_valid[s] == Some(t) && st.pos[s].is_some() {
                st.close(s, t, sym.market.close[t], ExitReason::End);
            }
        }
        // (5) §2.9: equity, margin use and drawdown at the close.
        let mut equity = st.wallet;
        let mut used = 0.0;
        for (s, pos) in st.pos.iter().enumerate() {
            if let Some(pos) = pos {
                equity += pos.upnl(input.symbols[s].market.close[t]);
                used += pos.margin;
            }
        }
        peak = peak.max(equity);
        out.equity.push(equity);
        out.margin_usage
            .push(if equity > 0.0 { used / equity } else { 0.0 });
        out.drawdown
            .push(if peak > 0.0 { 1.0 - equity / peak } else { 0.0 });
        out.funding_paid.push(paid);
    }
    out.trades = st.trades;
    out.skipped_entries = st.skipped_entries;
    out.metrics = compute_metrics(
        &out,
        span_ms(input.open_time, input.interval_ms),
        p.initial_capital,
    );
    out
}

/// §2.2: what a symbol's signals at the close of `t` ask for, given its current side.
fn target(sym: &SymbolInput<'_>, t: usize, side: Option<Side>, is_last: bool) -> Option<Target> {
    let sg = &sym.signals;
    let (le, lx, se, sx) = (
        sg.long_entry[t],
        sg.long_exit[t],
        sg.short_entry[t],
        sg.short_exit[t],
    );
    match side {
        Some(Side::Long) if se && !le && !is_last => Some(Target::Short),
        Some(Side::Long) if lx || se => Some(Target::Flat),
        Some(Side::Short) if le && !se && !is_last => Some(Target::Long),
        Some(Side::Short) if sx || le => Some(Target::Flat),
        None if is_last => None,
        None if le && !se => Some(Target::Long),
        None if se && !le => Some(Target::Short),
        _ => None,
    }
}

impl State<'_> {
    /// §2.2: fills targets at the prices `price(symbol)`: every close first, then opens in
    /// symbol order, so freed margin and position slots are available to them.
    fn execute(
        &mut self,
        targets: &[Option<Target>],
        t: usize,
        price: impl Fn(&SymbolInput<'_>) -> f64,
    ) {
        let syms = &self.input.symbols;
        for (s, tg) in targets.iter().enumerate() {
            let (Some(tg), Some(pos)) = (tg, self.pos[s].as_mut()) else {
                continue;
            };
            let keep = matches!(
                (tg, pos.side),
                (Target::Long, Side::Long) | (Target::Short, Side::Short)
            );
            if !keep {
                let px = price(&syms[s]);
                pos.see(px, px);
                self.close(s, t, px, ExitReason::Signal);
            }
        }
        for (s, tg) in targets.iter().enumerate() {
            let side = match tg {
                Some(Target::Long) => Side::Long,
                Some(Target::Short) => Side::Short,
                _ => continue,
            };
            if self.pos[s].is_none() {
                let prices: Vec<f64> = syms.iter().map(&price).collect();
                self.open(s, t, side, &prices);
            }
        }
    }

    /// §2.3-2.4: opens a position at `prices[s]` if a slot and free margin allow it.
    fn open(&mut self, s: usize, t: usize, side: Side, prices: &[f64]) {
        let p = self.p;
        let sym = &self.input.symbols[s];
        if self.pos.iter().filter(|x| x.is_some()).count() >= p.max_concurrent_positions {
            self.skipped_entries += 1;
            return;
        }
        let mut upnl = 0.0;
        let mut used = 0.0;
        for (j, pos) in self.pos.iter().enumerate() {
            if let Some(pos) = pos {
                upnl += pos.upnl(prices[j]);
                used += pos.margin;
            }
        }
        let equity = self.wallet + upnl;
        let margin = equity * p.position_size;
        if margin.is_nan() || margin <= 0.0 {
            self.skipped_entries += 1;
            return;
        }
        let leverage = sym
            .brackets
            .max_leverage(margin, p.leverage.min(sym.leverage_cap));
        let notional = margin * leverage;
        let fee = notional * p.taker_fee;
        let free = match p.margin_mode {
            MarginMode::Cross => equity - used,
            MarginMode::Isolated => self.wallet - used,
        };
        if free < margin + fee {
            self.skipped_entries += 1;
            return;
        }
        let entry_price = prices[s] * (1.0 + side.sign() * p.slippage);
        let qty = notional / entry_price;
        let bracket = sym.brackets.for_notional(notional);
        self.wallet -= fee;
        let sign = side.sign();
        self.pos[s] = Some(Position {
            side,
            qty,
            entry_price,
            entry_bar: t,
            margin,
            leverage,
            notional,
            mmr: bracket.mmr,
            cum: bracket.cum,
            entry_fee: fee,
            funding: 0.0,
            worst: entry_price,
            best: entry_price,
            stop_price: p.stop_loss.map(|d| entry_price * (1.0 - sign * d)),
            tp_price: p.take_profit.map(|d| entry_price * (1.0 + sign * d)),
        });
    }

    /// Closes the position of `s` with a market order at `raw_price` (slippage and fee apply).
    fn close(&mut self, s: usize, t: usize, raw_price: f64, reason: ExitReason) {
        let Some(pos) = self.pos[s].take() else {
            return;
        };
        let exit_price = raw_price * (1.0 - pos.side.sign() * self.p.slippage);
        let fee = pos.qty * exit_price * self.p.taker_fee;
        let gross = pos.upnl(exit_price);
        self.wallet += gross - fee;
        self.record(s, t, pos, exit_price, gross, fee, 0.0, reason);
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        s: usize,
        t: usize,
        mut pos: Position,
        exit_price: f64,
        gross: f64,
        exit_fee: f64,
        liq_fee: f64,
        reason: ExitReason,
    ) {
        pos.see(
            exit_price.min(pos.entry_price),
            exit_price.max(pos.entry_price),
        );
        let fees = pos.entry_fee + exit_fee;
        let pnl = gross - fees - liq_fee - pos.funding;
        let (mae, mfe) = match pos.side {
            Side::Long => (
                pos.worst / pos.entry_price - 1.0,
                pos.best / pos.entry_price - 1.0,
            ),
            Side::Short => (
                1.0 - pos.worst / pos.entry_price,
                1.0 - pos.best / pos.entry_price,
            ),
        };
        let times = self.input.open_time;
        self.trades.push(Trade {
            symbol: s,
            side: pos.side,
            entry_bar: pos.entry_bar,
            exit_bar: t,
            entry_time: times[pos.entry_bar],
            exit_time: times[t],
            entry_price: pos.entry_price,
            exit_price,
            qty: pos.qty,
            notional: pos.notional,
            leverage: pos.leverage,
            margin: pos.margin,
            fees,
            liquidation_fee: liq_fee,
            funding: pos.funding,
            pnl,
            return_on_margin: pnl / pos.margin,
            exit_reason: reason,
            mae: mae.min(0.0),
            mfe: mfe.max(0.0),
        });
    }

    /// §2.7: stops, liquidation and take-profits inside bar `t`.
    fn intrabar(&mut self, t: usize) {
        let syms = &self.input.symbols;
        if self.pos.iter().all(Option::is_none) {
            return;
        }
        // A bar that opens beyond a take-profit fills it at that open, before anything else
        // in the bar (§2.7 0): the open is the first price of the bar's path.
        for (s, sym) in syms.iter().enumerate() {
            let Some(pos) = self.pos[s].as_ref() else {
                continue;
            };
            let Some(tp) = pos.tp_price else { continue };
            let open_before = pos.entry_bar < t || self.p.fill == Fill::Close;
            let o = sym.market.open[t];
            let beyond = match pos.side {
                Side::Long => o > tp,
                Side::Short => o < tp,
            };
            if open_before && beyond {
                self.stop_out(s, t, tp, ExitReason::TakeProfit);
            }
        }
        if self.pos.iter().all(Option::is_none) {
            return;
        }
        let mark = |v: f64, fallback: f64| if v.is_finite() { v } else { fallback };
        // Reference marks at the open, for cross liquidation prices.
        let ref_mark: Vec<f64> = syms
            .iter()
            .map(|s| mark(s.market.mark_open[t], s.market.open[t]))
            .collect();
        let liq_price: Vec<f64> = (0..syms.len())
            .map(|s| match (&self.pos[s], self.p.margin_mode) {
                (Some(pos), MarginMode::Isolated) => pos.isolated_liq_price(),
                (Some(pos), MarginMode::Cross) => self.cross_liq_price(s, pos, &ref_mark),
                (None, _) => f64::NAN,
            })
            .collect();
        // An isolated position whose bar opens at or beyond its liquidation price (mark open,
        // else open) is liquidated at the open, before a stop could fill beyond it: an
        // isolated loss is its margin at most (§2.5, §2.7 0).
        if self.p.margin_mode == MarginMode::Isolated {
            for (s, sym) in syms.iter().enumerate() {
                let Some(pos) = self.pos[s].as_ref() else {
                    continue;
                };
                let lp = liq_price[s];
                let o = mark(sym.market.mark_open[t], sym.market.open[t]);
                let beyond = match pos.side {
                    Side::Long => lp > 0.0 && o <= lp,
                    Side::Short => o >= lp,
                };
                if beyond {
                    self.liquidate_isolated(s, t, lp);
                }
            }
        }
        // Stops that lie before the liquidation price fill first (§2.7 a).
        let mut stop_hit = vec![false; syms.len()];
        for (s, sym) in syms.iter().enumerate() {
            let Some(pos) = self.pos[s].as_ref() else {
                continue;
            };
            let Some(sp) = pos.stop_price else { continue };
            let lp = liq_price[s];
            let (hit, before_liq) = match pos.side {
                Side::Long => (sym.market.low[t] <= sp, lp.is_nan() || lp <= 0.0 || sp > lp),
                Side::Short => (sym.market.high[t] >= sp, sp < lp),
            };
            stop_hit[s] = hit;
            if hit && before_liq {
                self.stop_out(s, t, sp, ExitReason::StopLoss);
                stop_hit[s] = false;
            }
        }
        // Liquidation at the worst mark price of the bar (§2.7 b, §2.5).
        match self.p.margin_mode {
            MarginMode::Isolated => {
                for (s, sym) in syms.iter().enumerate() {
                    let Some(pos) = self.pos[s].as_ref() else {
                        continue;
                    };
                    let lp = liq_price[s];
                    let hit = match pos.side {
                        Side::Long => {
                            lp > 0.0 && mark(sym.market.mark_low[t], sym.market.low[t]) <= lp
                        }
                        Side::Short => mark(sym.market.mark_high[t], sym.market.high[t]) >= lp,
                    };
                    if hit {
                        self.liquidate_isolated(s, t, lp);
                        stop_hit[s] = false;
                    }
                }
            }
            MarginMode::Cross => {
                if self.cross_liquidation(t) {
                    stop_hit.iter_mut().for_each(|h| *h = false);
                }
            }
        }
        // Remaining stops, then take-profits; the stop wins when both are hit (§2.7 c-d).
        for (s, sym) in syms.iter().enumerate() {
            let Some(pos) = self.pos[s].as_mut() else {
                continue;
            };
            if stop_hit[s] {
                // A stop beyond the liquidation price, reached by the last price only: in
                // isolated margin the loss stops at the margin, as a liquidation (§2.7 c).
                if self.p.margin_mode == MarginMode::Isolated {
                    self.liquidate_isolated(s, t, liq_price[s]);
                } else {
                    let sp = pos.stop_price.unwrap_or(f64::NAN);
                    self.stop_out(s, t, sp, ExitReason::StopLoss);
                }
                continue;
            }
            let tp_hit = pos.tp_price.is_some_and(|tp| match pos.side {
                Side::Long => sym.market.high[t] >= tp,
                Side::Short => sym.market.low[t] <= tp,
            });
            if tp_hit {
                let tp = pos.tp_price.unwrap_or(f64::NAN);
                self.stop_out(s, t, tp, ExitReason::TakeProfit);
            } else {
                pos.see(sym.market.low[t], sym.market.high[t]);
            }
        }
    }

    /// A stop or take-profit triggered at `trigger`: a market order at the trigger price, or at
    /// the open when the bar opened beyond it (a gap) and the position was open before the open.
    fn stop_out(&mut self, s: usize, t: usize, trigger: f64, reason: ExitReason) {
        let sym = &self.input.symbols[s];
        let Some(pos) = self.pos[s].as_mut() else {
            return;
        };
        let open_before = pos.entry_bar < t || self.p.fill == Fill::Close;
        let o = sym.market.open[t];
        let gapped = open_before
            && match (pos.side, reason) {
                (Side::Long, ExitReason::StopLoss) | (Side::Short, ExitReason::TakeProfit) => {
                    o < trigger
                }
                _ => o > trigger,
            };
        let px = if gapped { o } else { trigger };
        // MAE / MFE on an exit bar: only up to the exit (§2.10), the exit price itself.
        pos.see(px, px);
        self.close(s, t, px, reason);
    }

    /// §2.5: isolated liquidation at `lp`: the position loses exactly its margin.
    fn liquidate_isolated(&mut self, s: usize, t: usize, lp: f64) {
        let Some(mut pos) = self.pos[s].take() else {
            return;
        };
        pos.see(lp, lp);
        let gross = pos.upnl(lp);
        // What remains of the margin at the liquidation price is the clearance fee.
        let liq_fee = pos.margin + gross;
        self.wallet += gross - liq_fee;
        self.record(s, t, pos, lp, gross, 0.0, liq_fee, ExitReason::Liquidation);
    }

    /// Binance's one-way liquidation price of `pos` in a cross account, the other positions
    /// held at `ref_mark` (§2.5).
    fn cross_liq_price(&self, s: usize, pos: &Position, ref_mark: &[f64]) -> f64 {
        let mut other_mm = 0.0;
        let mut other_upnl = 0.0;
        for (j, o) in self.pos.iter().enumerate() {
            if let (true, Some(o)) = (j != s, o) {
                let notional = o.qty * ref_mark[j];
                other_mm += self.input.symbols[j].brackets.maintenance_margin(notional);
                other_upnl += o.upnl(ref_mark[j]);
            }
        }
        let side = pos.side.sign();
        let q = pos.qty;
        (self.wallet - other_mm + other_upnl + pos.cum - side * q * pos.entry_price)
            / (q * pos.mmr - side * q)
    }

    /// §2.5: the cross account at every position's worst mark price of bar `t`; when its
    /// margin balance is at or below its maintenance margin, every position is liquidated and
    /// the account loses its whole balance. Returns whether it happened.
    fn cross_liquidation(&mut self, t: usize) -> bool {
        let syms = &self.input.symbols;
        let mut balance = self.wallet;
        let mut mm = 0.0;
        let mut worst = vec![f64::NAN; syms.len()];
        let mut mms = vec![0.0; syms.len()];
        for (s, sym) in syms.iter().enumerate() {
            let Some(pos) = self.pos[s].as_ref() else {
                continue;
            };
            let w = match pos.side {
                Side::Long => {
                    if sym.market.mark_low[t].is_finite() {
                        sym.market.mark_low[t]
                    } else {
                        sym.market.low[t]
                    }
                }
                Side::Short => {
                    if sym.market.mark_high[t].is_finite() {
                        sym.market.mark_high[t]
                    } else {
                        sym.market.high[t]
                    }
                }
            };
            worst[s] = w;
            balance += pos.upnl(w);
            mms[s] = sym.brackets.maintenance_margin(pos.qty * w);
            mm += mms[s];
        }
        if mm == 0.0 || balance > mm {
            return false;
        }
        // Everything left in the account goes with the liquidation; each position's share of
        // the clearance is proportional to its maintenance margin.
        for s in 0..syms.len() {
            let Some(mut pos) = self.pos[s].take() else {
                continue;
            };
            pos.see(worst[s], worst[s]);
            let gross = pos.upnl(worst[s]);
            let liq_fee = balance * mms[s] / mm;
            self.record(
                s,
                t,
                pos,
                worst[s],
                gross,
                0.0,
                liq_fee,
                ExitReason::Liquidation,
            );
        }
        self.wallet = 0.0;
        true
    }
}
