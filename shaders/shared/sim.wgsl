// The futures simulation of one account, bar by bar (SEMANTICS.md §2). CPU twin:
// kernels/src/engine/sim.rs: same state variables, same functions, same order of operations.
// Trades are not stored: `record` folds each into the metrics accumulator, in trade order.
// MAE / MFE (`Position::see`) belong to trade records only and are not tracked here.

const TARGET_NONE: u32 = 0u;
const TARGET_FLAT: u32 = 1u;
const TARGET_LONG: u32 = 2u;
const TARGET_SHORT: u32 = 3u;

const EXIT_SIGNAL: u32 = 0u;
const EXIT_STOP: u32 = 1u;
const EXIT_TAKE_PROFIT: u32 = 2u;
const EXIT_LIQUIDATION: u32 = 3u;
const EXIT_END: u32 = 4u;

struct Position {
    is_open: bool,
    // +1 long, -1 short (Side::sign).
    side: real,
    qty: real,
    entry_price: real,
    entry_bar: u32,
    margin: real,
    notional: real,
    // Bracket at the entry notional (§2.4).
    mmr: real,
    cum: real,
    entry_fee: real,
    funding: real,
    has_stop: bool,
    stop_price: real,
    has_take_profit: bool,
    tp_price: real,
}

// State of the account being simulated (sim.rs `State`) and of its metrics.
var<private> p: SetParams;
var<private> set_index: u32;
var<private> wallet: real;
var<private> pos: array<Position, N_SYMBOLS>;
var<private> acc: Accum;

// Money exponent of the account (f32 only, SEMANTICS.md §5.3; no CPU twin: f64 has the range).
// Every money value of the account (wallet, margins, notionals, quantities, fees, funding,
// equity, drawdown peak) is held in units of 2^-money_exp USDT. An account that has lost all
// but 2^-40 USDT would otherwise sink into f32's subnormal range (below 1.2e-38), where
// digits vanish and sizes round to zero, while the f64 reference keeps trading it; when flat,
// it is rescaled by 2^64 (exact: a power of two), and back when it has regrown. Everything the
// simulation does is linear in money except the bracket tables, which `tier_*` scale to the
// account's unit (brackets.wgsl). Stays 0 in f64.
var<private> money_exp: u32;

// Rescale below 2^-40 units, back above 2^40, by 2^64.
const MONEY_RESCALE_BELOW: real = 9.094947017729282e-13;
const MONEY_RESCALE_ABOVE: real = 1099511627776.0;
const MONEY_RESCALE_FACTOR: real = 18446744073709551616.0;
const MONEY_RESCALE_STEP: u32 = 64u;

// USDT per money unit of the account: 1, 2^-64, or 0 past that (where every amount of the
// account is below 2^-100 USDT: nothing it adds to a sum in USDT shows).
fn money_unit() -> real {
    if (!MONEY_RESCALE || money_exp == 0u) {
        return 1.0;
    }
    if (money_exp == MONEY_RESCALE_STEP) {
        return 5.421010862427522e-20;
    }
    return 0.0;
}

// Money units per USDT, for the bracket tables: 1, 2^64, or 2^90 past that (a cap beyond
// anything the account holds, that f32 still represents for caps up to 2^37 USDT).
fn money_scale() -> real {
    if (!MONEY_RESCALE || money_exp == 0u) {
        return 1.0;
    }
    if (money_exp == MONEY_RESCALE_STEP) {
        return MONEY_RESCALE_FACTOR;
    }
    return 1237940039285380274899124224.0;
}

// At the close of a bar with no position open: rescales a nearly empty account by 2^64, or
// one that has regrown back by 2^-64 (exact), with the drawdown peak and previous equity.
fn money_rescale() {
    if (wallet > 0.0 && wallet < MONEY_RESCALE_BELOW) {
        wallet = wallet * MONEY_RESCALE_FACTOR;
        prev_equity = prev_equity * MONEY_RESCALE_FACTOR;
        acc.final_equity = acc.final_equity * MONEY_RESCALE_FACTOR;
        // Capped where drawdown = 1 - equity / peak is 1 in f32 anyway (equity < 2^24).
        peak = min(peak * MONEY_RESCALE_FACTOR, 1329227995784915872903807060280344576.0);
        money_exp += MONEY_RESCALE_STEP;
    } else if (money_exp > 0u && wallet > MONEY_RESCALE_ABOVE) {
        let down = 1.0 / MONEY_RESCALE_FACTOR;
        wallet = wallet * down;
        prev_equity = prev_equity * down;
        acc.final_equity = acc.final_equity * down;
        peak = peak * down;
        money_exp -= MONEY_RESCALE_STEP;
    }
}

fn price_at(s: u32, t: u32, at_close: bool) -> real {
    if (at_close) {
        return bar_value(COL_CLOSE, s, t);
    }
    return bar_value(COL_OPEN, s, t);
}

fn upnl(s: u32, price: real) -> real {
    return pos[s].side * pos[s].qty * (price - pos[s].entry_price);
}

// §2.5: isolated liquidation price.
fn isolated_liq_price(s: u32) -> real {
    let q = pos[s].qty;
    if (pos[s].side > 0.0) {
        return (q * pos[s].entry_price - pos[s].margin - pos[s].cum) / (q * (1.0 - pos[s].mmr));
    }
    return (q * pos[s].entry_price + pos[s].margin + pos[s].cum) / (q * (1.0 + pos[s].mmr));
}

fn open_count() -> u32 {
    var n = 0u;
    for (var j = 0u; j < N_SYMBOLS; j += 1u) {
        if (pos[j].is_open) {
            n += 1u;
        }
    }
    return n;
}

// §2.10: a finished trade, folded into the accumulator as compute_metrics reads it.
fn record(s: u32, gross: real, exit_fee: real, liq_fee: real, reason: u32) {
    let fees = pos[s].entry_fee + exit_fee;
    let pnl = gross - fees - liq_fee - pos[s].funding;
    // The sums are in USDT (the account's unit is 1 but after a rescale, f32 only).
    let unit = money_unit();
    acc.n_trades += 1u;
    if (pnl > 0.0) {
        acc.wins = acc.wins + pnl * unit;
        acc.n_wins += 1u;
    }
    if (pnl < 0.0) {
        acc.losses = acc.losses + -pnl * unit;
    }
    acc.fees_paid = acc.fees_paid + fees * unit;
    if (reason == EXIT_LIQUIDATION) {
        acc.liquidations += 1u;
    }
    pos[s].is_open = false;
}

// Closes the position of `s` with a market order at `raw_price` (slippage and fee apply).
fn close(s: u32, raw_price: real, reason: u32) {
    let exit_price = raw_price * (1.0 - pos[s].side * p.slippage);
    let fee = pos[s].qty * exit_price * p.taker_fee;
    let gross = upnl(s, exit_price);
    wallet = wallet + (gross - fee);
    record(s, gross, fee, 0.0, reason);
}

// §2.3-2.4: opens a position at the open or close of bar `t` if a slot and free margin allow.
fn open(s: u32, t: u32, side: real, at_close: bool) {
    if (open_count() >= p.max_concurrent_positions) {
        acc.skipped_entries += 1u;
        return;
    }
    var upnl_sum: real = 0.0;
    var used: real = 0.0;
    for (var j = 0u; j < N_SYMBOLS; j += 1u) {
        if (pos[j].is_open) {
            upnl_sum = upnl_sum + upnl(j, price_at(j, t, at_close));
            used = used + pos[j].margin;
        }
    }
    let equity = wallet + upnl_sum;
    let margin = equity * p.position_size;
    if (!(margin > 0.0)) {
        acc.skipped_entries += 1u;
        return;
    }
    let leverage = max_leverage(s, margin, requested_leverage(set_index, s));
    let notional = margin * leverage;
    let fee = notional * p.taker_fee;
    var free: real;
    if (CROSS_MARGIN) {
        free = equity - used;
    } else {
        free = wallet - used;
    }
    if (free < margin + fee) {
        acc.skipped_entries += 1u;
        return;
    }
    let entry_price = price_at(s, t, at_close) * (1.0 + side * p.slippage);
    let qty = notional / entry_price;
    let tier = for_notional(s, notional);
    wallet = wallet - fee;
    pos[s].is_open = true;
    pos[s].side = side;
    pos[s].qty = qty;
    pos[s].entry_price = entry_price;
    pos[s].entry_bar = t;
    pos[s].margin = margin;
    pos[s].notional = notional;
    pos[s].mmr = tier_mmr(tier);
    pos[s].cum = tier_cum(tier);
    pos[s].entry_fee = fee;
    pos[s].funding = 0.0;
    pos[s].has_stop = p.has_stop == 1u;
    pos[s].stop_price = entry_price * (1.0 - side * p.stop_loss);
    pos[s].has_take_profit = p.has_take_profit == 1u;
    pos[s].tp_price = entry_price * (1.0 + side * p.take_profit);
}

// §2.2: fills targets at the open or close of `t`: every close first, then opens in symbol
// order.
fn execute(targets: array<u32, N_SYMBOLS>, t: u32, at_close: bool) {
    for (var s = 0u; s < N_SYMBOLS; s += 1u) {
        let tg = targets[s];
        if (tg == TARGET_NONE || !pos[s].is_open) {
            continue;
        }
        let keep = (tg == TARGET_LONG && pos[s].side > 0.0) || (tg == TARGET_SHORT && pos[s].side < 0.0);
        if (!keep) {
            close(s, price_at(s, t, at_close), EXIT_SIGNAL);
        }
    }
    for (var s = 0u; s < N_SYMBOLS; s += 1u) {
        var side: real;
        if (targets[s] == TARGET_LONG) {
            side = 1.0;
        } else if (targets[s] == TARGET_SHORT) {
            side = -1.0;
        } else {
            continue;
        }
        if (!pos[s].is_open) {
            open(s, t, side, at_close);
        }
    }
}

// §2.2: what the signals at the close of `t` ask for, given the current side (sim.rs `target`;
// `target` is reserved in WGSL).
fn target_of(le: bool, lx: bool, se: bool, sx: bool, s: u32, is_last: bool) -> u32 {
    if (pos[s].is_open && pos[s].side > 0.0) {
        if (se && !le && !is_last) {
            return TARGET_SHORT;
        }
        if (lx || se) {
            return TARGET_FLAT;
        }
        return TARGET_NONE;
    }
    if (pos[s].is_open) {
        if (le && !se && !is_last) {
            return TARGET_LONG;
        }
        if (sx || le) {
            return TARGET_FLAT;
        }
        return TARGET_NONE;
    }
    if (is_last) {
        return TARGET_NONE;
    }
    if (le && !se) {
        return TARGET_LONG;
    }
    if (se && !le) {
        return TARGET_SHORT;
    }
    return TARGET_NONE;
}

// A stop or take-profit triggered at `trigger`: filled at the trigger, or at the open when the
// bar opened beyond it and the position was open before the open.
fn stop_out(s: u32, t: u32, trigger: real, reason: u32) {
    let open_before = pos[s].entry_bar < t || FILL_CLOSE;
    let o = bar_value(COL_OPEN, s, t);
    var beyond: bool;
    if ((pos[s].side > 0.0 && reason == EXIT_STOP) || (pos[s].side < 0.0 && reason == EXIT_TAKE_PROFIT)) {
        beyond = o < trigger;
    } else {
        beyond = o > trigger;
    }
    let gapped = open_before && beyond;
    var px = trigger;
    if (gapped) {
        px = o;
    }
    close(s, px, reason);
}

// §2.5: isolated liquidation at `lp`: the position loses exactly its margin.
fn liquidate_isolated(s: u32, lp: real) {
    let gross = upnl(s, lp);
    let liq_fee = pos[s].margin + gross;
    wallet = wallet + (gross - liq_fee);
    record(s, gross, 0.0, liq_fee, EXIT_LIQUIDATION);
}

// Binance's one-way liquidation price of `s` in a cross account, the other positions held at
// their reference marks (mark open of `t`).
fn cross_liq_price(s: u32, t: u32) -> real {
    var other_mm: real = 0.0;
    var other_upnl: real = 0.0;
    for (var j = 0u; j < N_SYMBOLS; j += 1u) {
        if (j != s && pos[j].is_open) {
            let ref_mark = bar_value(COL_MARK_OPEN, j, t);
            let notional = pos[j].qty * ref_mark;
            other_mm = other_mm + maintenance_margin(j, notional);
            other_upnl = other_upnl + upnl(j, ref_mark);
        }
    }
    let side = pos[s].side;
    let q = pos[s].qty;
    return (wallet - other_mm + other_upnl + pos[s].cum - side * q * pos[s].entry_price)
        / (q * pos[s].mmr - side * q);
}

// §2.5: every position at its worst mark price of `t`; at or below maintenance, the account
// is liquidated whole. Returns whether it happened.
fn cross_liquidation(t: u32) -> bool {
    var balance = wallet;
    var mm: real = 0.0;
    var worst: array<real, N_SYMBOLS>;
    var mms: array<real, N_SYMBOLS>;
    for (var s = 0u; s < N_SYMBOLS; s += 1u) {
        if (!pos[s].is_open) {
            continue;
        }
        var w: real;
        if (pos[s].side > 0.0) {
            w = bar_value(COL_MARK_LOW, s, t);
        } else {
            w = bar_value(COL_MARK_HIGH, s, t);
        }
        worst[s] = w;
        balance = balance + upnl(s, w);
        mms[s] = maintenance_margin(s, pos[s].qty * w);
        mm = mm + mms[s];
    }
    if (mm == 0.0 || balance > mm) {
        return false;
    }
    for (var s = 0u; s < N_SYMBOLS; s += 1u) {
        if (!pos[s].is_open) {
            continue;
        }
        let gross = upnl(s, worst[s]);
        let liq_fee = balance * mms[s] / mm;
        record(s, gross, 0.0, liq_fee, EXIT_LIQUIDATION);
    }
    wallet = 0.0;
    return true;
}

// §2.7: stops, liquidation and take-profits inside bar `t`.
fn intrabar(t: u32) {
    if (open_count() == 0u) {
        return;
    }
    // A bar that opens beyond a take-profit fills it at that open, before anything else (§2.7 0).
    for (var s = 0u; s < N_SYMBOLS; s += 1u) {
        if (!pos[s].is_open || !pos[s].has_take_profit) {
            continue;
        }
        let open_before = pos[s].entry_bar < t || FILL_CLOSE;
        let o = bar_value(COL_OPEN, s, t);
        var beyond: bool;
        if (pos[s].side > 0.0) {
            beyond = o > pos[s].tp_price;
        } else {
            beyond = o < pos[s].tp_price;
        }
        if (open_before && beyond) {
            stop_out(s, t, pos[s].tp_price, EXIT_TAKE_PROFIT);
        }
    }
    if (open_count() == 0u) {
        return;
    }
    var liq_price: array<real, N_SYMBOLS>;
    for (var s = 0u; s < N_SYMBOLS; s += 1u) {
        if (pos[s].is_open) {
            if (CROSS_MARGIN) {
                liq_price[s] = cross_liq_price(s, t);
            } else {
                liq_price[s] = isolated_liq_price(s);
            }
        }
    }
    // An isolated position whose bar opens at or beyond its liquidation price is liquidated
    // at the open, before a stop could fill beyond it (§2.5, §2.7 0).
    if (!CROSS_MARGIN) {
        for (var s = 0u; s < N_SYMBOLS; s += 1u) {
            if (!pos[s].is_open) {
                continue;
            }
            let lp = liq_price[s];
            let o = bar_value(COL_MARK_OPEN, s, t);
            var beyond: bool;
            if (pos[s].side > 0.0) {
                beyond = lp > 0.0 && o <= lp;
            } else {
                beyond = o >= lp;
            }
            if (beyond) {
                liquidate_isolated(s, lp);
            }
        }
    }
    // Stops that lie before the liquidation price fill first (§2.7 a).
    var stop_hit: array<bool, N_SYMBOLS>;
    for (var s = 0u; s < N_SYMBOLS; s += 1u) {
        stop_hit[s] = false;
        if (!pos[s].is_open || !pos[s].has_stop) {
            continue;
        }
        let sp = pos[s].stop_price;
        let lp = liq_price[s];
        var hit: bool;
        var before_liq: bool;
        if (pos[s].side > 0.0) {
            hit = bar_value(COL_LOW, s, t) <= sp;
            before_liq = lp <= 0.0 || sp > lp;
        } else {
            hit = bar_value(COL_HIGH, s, t) >= sp;
            before_liq = sp < lp;
        }
        stop_hit[s] = hit;
        if (hit && before_liq) {
            stop_out(s, t, sp, EXIT_STOP);
            stop_hit[s] = false;
        }
    }
    // Liquidation at the worst mark price of the bar (§2.7 b, §2.5).
    if (CROSS_MARGIN) {
        if (cross_liquidation(t)) {
            for (var s = 0u; s < N_SYMBOLS; s += 1u) {
                stop_hit[s] = false;
            }
        }
    } else {
        for (var s = 0u; s < N_SYMBOLS; s += 1u) {
            if (!pos[s].is_open) {
                continue;
            }
            let lp = liq_price[s];
            var hit: bool;
            if (pos[s].side > 0.0) {
                hit = lp > 0.0 && bar_value(COL_MARK_LOW, s, t) <= lp;
            } else {
                hit = bar_value(COL_MARK_HIGH, s, t) >= lp;
            }
            if (hit) {
                liquidate_isolated(s, lp);
                stop_hit[s] = false;
            }
        }
    }
    // Remaining stops, then take-profits; the stop wins when both are hit (§2.7 c-d).
    for (var s = 0u; s < N_SYMBOLS; s += 1u) {
        if (!pos[s].is_open) {
            continue;
        }
        if (stop_hit[s]) {
            // A stop beyond the liquidation price reached by the last price only: in isolated
            // margin the loss stops at the margin, as a liquidation (§2.7 c).
            if (CROSS_MARGIN) {
                stop_out(s, t, pos[s].stop_price, EXIT_STOP);
            } else {
                liquidate_isolated(s, liq_price[s]);
            }
            continue;
        }
        if (pos[s].has_take_profit) {
            let tp = pos[s].tp_price;
            var tp_hit: bool;
            if (pos[s].side > 0.0) {
                tp_hit = bar_value(COL_HIGH, s, t) >= tp;
            } else {
                tp_hit = bar_value(COL_LOW, s, t) <= tp;
            }
            if (tp_hit) {
                stop_out(s, t, tp, EXIT_TAKE_PROFIT);
            }
        }
    }
}
