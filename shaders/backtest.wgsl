// The fused batch backtest: one invocation = one param set in one window (the full run or a
// walk-forward IS/OOS window), an independent account; time runs bar by bar inside it,
// symbols in order. One dispatch advances each row by one chunk of `dims.bars_per_chunk`
// bars; the account persists between dispatches in `state` (shared/state.wgsl), so no invocation runs longer than the host's loop budget (lavapipe
// ends loops after 65,535 iterations per invocation; hardware GPUs have watchdogs). Every
// dispatch of a group is the same: no per-dispatch value (lavapipe recompiles a shader for
// each new set of uniform values it inlines). CPU twin:
// kernels/src/reference.rs `run_windows` + kernels/src/engine/sim.rs `simulate` +
// compute_metrics. Rules come from the generated section (kernels/src/gpu/codegen.rs),
// compiled from the same postfix program the CPU evaluates.

//#include shared/layout.wgsl
//#include shared/brackets.wgsl
//#include shared/sim.wgsl
//#include shared/metrics.wgsl
//#include shared/state.wgsl
//#include shared/indicators.wgsl
//#generated rules

fn window_last_valid(w: u32, s: u32) -> u32 {
    return statics_u32[dims.off_last_valid + w * dims.n_symbols + s];
}

fn funding_begin(s: u32) -> u32 { return statics_u32[dims.off_funding_index + s]; }
fn funding_end(s: u32) -> u32 { return statics_u32[dims.off_funding_index + s + 1u]; }
fn funding_bar(e: u32) -> u32 { return statics_u32[dims.off_funding_bar + e]; }

// The next `dims.bars_per_chunk` bars of window `w` (`[start, end)`) as its own account
// (sim.rs `simulate`), for output row `row`. The first dispatch starts the account (the row
// still holds the host's sentinel), each later one continues it where the previous one
// stopped, and the one that reaches the window's end writes the finished row (status 1).
fn run_window(w: u32, row: u32) {
    let start = statics_u32[dims.off_windows + 2u * w];
    let end = statics_u32[dims.off_windows + 2u * w + 1u];
    let status = out[row].status;
    var bar_from: u32;
    if (status == STATUS_NOT_STARTED) {
        state_start(w);
        bar_from = start;
        // Streamed indicators start at the first bar of the data, as the CPU computes them
        // over each symbol's whole span (an empty window needs none).
        if (N_STREAMS > 0u && end > start) {
            bar_from = min(dims.warm_from, start);
        }
    } else if (status == STATUS_IN_PROGRESS) {
        state_load(row);
        bar_from = state[row].next_bar;
    } else {
        // Finished, or stopped by the loop budget.
        return;
    }
    if (bar_from < start) {
        // A warm-up dispatch: the streamed indicators only, up to `warm_bars_per_chunk` bars
        // (cheap ones: the host sizes them by `plan::warm_bars_per_chunk`).
        let warm_to = min(start, bar_from + dims.warm_bars_per_chunk);
        for (var t = bar_from; t < warm_to; t += 1u) {
            streams_update(t);
        }
        if (!loop_budget_intact()) {
            out[row].status = STATUS_LOOP_BUDGET;
            return;
        }
        state_store(row, warm_to);
        return;
    }
    let bar_to = min(end, bar_from + dims.bars_per_chunk);
    let at_close = FILL_CLOSE;
    for (var t = bar_from; t < bar_to; t += 1u) {
        // The streamed indicators see bar t before the rules read them at (4).
        streams_update(t);
        // (1) §2.1: orders from the previous close fill at this open, closes first.
        if (!at_close) {
            var any_pending = false;
            for (var s = 0u; s < N_SYMBOLS; s += 1u) {
                any_pending = any_pending || pending[s] != TARGET_NONE;
            }
            if (any_pending) {
                let targets = pending;
                for (var s = 0u; s < N_SYMBOLS; s += 1u) {
                    pending[s] = TARGET_NONE;
                }
                execute(targets, t, false);
            }
        }
        // (2) §2.6: funding on the positions open after the opening fills.
        var paid: real = 0.0;
        for (var s = 0u; s < N_SYMBOLS; s += 1u) {
            var c = funding_cursor[s];
            let c_end = funding_end(s);
            while (c < c_end && funding_bar(c) < t) {
                c += 1u;
            }
            while (c < c_end && funding_bar(c) == t) {
                if (pos[s].is_open) {
                    let price = bar_value(COL_MARK_OPEN, s, t);
                    var rate = statics_real[dims.off_funding_rate + c];
                    if (FUNDING_CONSTANT) {
                        rate = p.funding_rate_8h;
                    }
                    let pay = pos[s].side * pos[s].qty * price * rate;
                    pos[s].funding = pos[s].funding + pay;
                    wallet = wallet - pay;
                    paid = paid + pay;
                }
                c += 1u;
            }
            funding_cursor[s] = c;
        }
        // (3) §2.7: intrabar stops, liquidation, take-profits.
        intrabar(t);
        // (4) §2.2: signals at the close.
        var targets: array<u32, N_SYMBOLS>;
        for (var s = 0u; s < N_SYMBOLS; s += 1u) {
            targets[s] = TARGET_NONE;
            if (!close_valid(s, t)) {
                continue;
            }
            let bar = t - span_first(s);
            let is_last = window_last_valid(w, s) == t;
            let le = rule_long_entry(set_index, s, t, bar);
            let lx = rule_long_exit(set_index, s, t, bar);
            let se = rule_short_entry(set_index, s, t, bar);
            let sx = rule_short_exit(set_index, s, t, bar);
            targets[s] = target_of(le, lx, se, sx, s, is_last);
        }
        if (at_close) {
            execute(targets, t, true);
        } else {
            for (var s = 0u; s < N_SYMBOLS; s += 1u) {
                if (t + 1u < end && close_valid(s, t + 1u)) {
                    pending[s] = targets[s];
                }
            }
        }
        // §2.8: a symbol's last bar closes what is open.
        for (var s = 0u; s < N_SYMBOLS; s += 1u) {
            if (window_last_valid(w, s) == t && pos[s].is_open) {
                close(s, bar_value(COL_CLOSE, s, t), EXIT_END);
            }
        }
        // (5) §2.9: equity, margin use and drawdown at the close.
        var equity = wallet;
        var used: real = 0.0;
        var any_open = false;
        for (var s = 0u; s < N_SYMBOLS; s += 1u) {
            if (pos[s].is_open) {
                equity = equity + upnl(s, bar_value(COL_CLOSE, s, t));
                used = used + pos[s].margin;
                any_open = true;
            }
        }
        metrics_bar(equity, used, paid);
        // f32: keep a nearly empty account out of the subnormal range (sim.wgsl).
        if (MONEY_RESCALE && !any_open) {
            money_rescale();
        }
    }
    if (!loop_budget_intact()) {
        out[row].status = STATUS_LOOP_BUDGET;
        return;
    }
    if (bar_to >= end) {
        acc.money_exp = money_exp;
        acc.status = STATUS_WRITTEN;
        out[row] = acc;
    } else {
        state_store(row, bar_to);
    }
}

// Row `set x n_windows + w` of the output: set `set`, window `w`.
@compute @workgroup_size(64)
fn backtest(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= dims.n_sets * dims.n_windows) {
        return;
    }
    pair_one = real(dims.one);
    set_index = row / dims.n_windows;
    p = sets[set_index];
    run_window(row % dims.n_windows, row);
}
