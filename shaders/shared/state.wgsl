// The simulation state that persists between the dispatches of a dispatch group (SEMANTICS.md
// §5.4): each dispatch advances every (set, window) row by up to `dims.bars_per_chunk` bars
// and leaves the account where the next dispatch picks it up. Host twins:
// kernels/src/gpu/layout.rs `RowStateF32/F64` (the fields before `symbols`) and
// `SymbolStateF32/F64` and `StreamStateF32/F64` (GPU-only buffer, sized by the host from them). `Accum` itself stays in `out`, whose `status` says how far a row got.

const STATUS_IN_PROGRESS: u32 = 0u;
const STATUS_WRITTEN: u32 = 1u;
const STATUS_LOOP_BUDGET: u32 = 2u;
// The host's sentinel fill (0xFF bytes): no dispatch has started the row.
const STATUS_NOT_STARTED: u32 = 0xffffffffu;

// sim.rs `simulate`'s per-symbol locals: the target to fill at the next open, and the next
// funding event of each symbol.
var<private> pending: array<u32, N_SYMBOLS>;
var<private> funding_cursor: array<u32, N_SYMBOLS>;

const FLAG_OPEN: u32 = 1u;
const FLAG_STOP: u32 = 2u;
const FLAG_TAKE_PROFIT: u32 = 4u;

// The first funding event of symbol `s` at or after the first bar of window `w` (host table).
fn window_funding_begin(w: u32, s: u32) -> u32 {
    return statics_u32[dims.off_window_funding + w * dims.n_symbols + s];
}

// A fresh account at the first bar of window `w` (sim.rs `simulate` before its loop).
fn state_start(w: u32) {
    wallet = p.initial_capital;
    money_exp = 0u;
    for (var s = 0u; s < N_SYMBOLS; s += 1u) {
        pos[s].is_open = false;
        pending[s] = TARGET_NONE;
        funding_cursor[s] = window_funding_begin(w, s);
    }
    metrics_start(p.initial_capital);
    streams_start();
}

// The account of `row` as the previous chunk left it.
fn state_load(row: u32) {
    let r = state[row];
    wallet = r.wallet;
    peak = r.peak;
    prev_equity = r.prev_equity;
    money_exp = r.money_exp;
    acc = out[row];
    streams = r.streams;
    for (var s = 0u; s < N_SYMBOLS; s += 1u) {
        let q = r.symbols[s];
        pos[s].is_open = (q.flags & FLAG_OPEN) != 0u;
        pos[s].side = q.side;
        pos[s].qty = q.qty;
        pos[s].entry_price = q.entry_price;
        pos[s].entry_bar = q.entry_bar;
        pos[s].margin = q.margin;
        pos[s].notional = q.notional;
        pos[s].mmr = q.mmr;
        pos[s].cum = q.cum;
        pos[s].entry_fee = q.entry_fee;
        pos[s].funding = q.funding;
        pos[s].has_stop = (q.flags & FLAG_STOP) != 0u;
        pos[s].stop_price = q.stop_price;
        pos[s].has_take_profit = (q.flags & FLAG_TAKE_PROFIT) != 0u;
        pos[s].tp_price = q.tp_price;
        pending[s] = q.pending;
        funding_cursor[s] = q.funding_cursor;
    }
}

// Saves the account of `row` for the chunk that starts at `next_bar`; `acc.status` stays
// in progress.
fn state_store(row: u32, next_bar: u32) {
    var r: RowState;
    r.wallet = wallet;
    r.peak = peak;
    r.prev_equity = prev_equity;
    r.pad_real = 0.0;
    r.next_bar = next_bar;
    r.money_exp = money_exp;
    r.pad1 = 0u;
    r.pad2 = 0u;
    for (var s = 0u; s < N_SYMBOLS; s += 1u) {
        var q: SymbolState;
        q.side = pos[s].side;
        q.qty = pos[s].qty;
        q.entry_price = pos[s].entry_price;
        q.margin = pos[s].margin;
        q.notional = pos[s].notional;
        q.mmr = pos[s].mmr;
        q.cum = pos[s].cum;
        q.entry_fee = pos[s].entry_fee;
        q.funding = pos[s].funding;
        q.stop_price = pos[s].stop_price;
        q.tp_price = pos[s].tp_price;
        q.pad_real = 0.0;
        q.entry_bar = pos[s].entry_bar;
        q.flags = select(0u, FLAG_OPEN, pos[s].is_open)
            | select(0u, FLAG_STOP, pos[s].has_stop)
            | select(0u, FLAG_TAKE_PROFIT, pos[s].has_take_profit);
        q.pending = pending[s];
        q.funding_cursor = funding_cursor[s];
        r.symbols[s] = q;
    }
    r.streams = streams;
    state[row] = r;
    acc.status = STATUS_IN_PROGRESS;
    out[row] = acc;
}

// False once this invocation has run out of the adapter's loop budget. lavapipe (Mesa's
// llvmpipe) counts the iterations of all loops of an invocation together and, past 65,535,
// ends every loop after its current iteration and runs on: results would be silently wrong.
// Once that has happened this loop makes one trip instead of `n` (2, read from a storage
// buffer: lavapipe inlines uniform values, which would let it unroll the loop). The host
// sizes chunks to stay far below the budget (kernels/src/gpu/plan.rs
// `loop_iterations_per_bar`); this is the check that it did.
fn loop_budget_intact() -> bool {
    let n = statics_u32[dims.off_canary];
    var trips = 0u;
    for (var i = 0u; i < n; i += 1u) {
        trips += 1u;
    }
    return trips == n;
}
