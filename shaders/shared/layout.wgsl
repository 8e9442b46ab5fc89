// Host-shared structs, bindings and input accessors of the batch backtest.
// Twins: kernels/src/gpu/layout.rs (`Dims`, `SetParamsF32/F64`, `AccumF32/F64`,
// `RowStateF32/F64`, `SymbolStateF32/F64`, `StreamStateF32/F64`); a test checks
// sizes and offsets through naga. `real` is f32 or f64, `N_SYMBOLS` the market's symbol
// count: both come from the generated header (kernels/src/gpu/shaders.rs), with the run's
// `FILL_CLOSE`, `CROSS_MARGIN` and `FUNDING_CONSTANT` (the same values as `Dims`' fields).

// Sizes of the batch and offsets of the flat tables (in elements of their buffer).
struct Dims {
    n_bars: u32,
    n_symbols: u32,
    n_windows: u32,
    n_sets: u32,
    n_slots: u32,
    n_rule_params: u32,
    mask_words: u32,
    fill_close: u32,
    cross_margin: u32,
    funding_constant: u32,
    off_tiers: u32,
    off_funding_rate: u32,
    off_tier_index: u32,
    off_funding_index: u32,
    off_funding_bar: u32,
    off_windows: u32,
    off_last_valid: u32,
    off_span: u32,
    off_set_leverage: u32,
    off_set_rule_params: u32,
    off_set_cols: u32,
    off_window_funding: u32,
    // Bars one dispatch advances each row by.
    bars_per_chunk: u32,
    // Where the canary loop's trip count lies in `statics_u32`.
    off_canary: u32,
    // Streamed indicators (`N_STREAMS`, shared/indicators.wgsl), the bar their warm-up starts
    // at (the first bar of any symbol's data) and the warm-up bars one dispatch advances.
    n_streams: u32,
    warm_from: u32,
    warm_bars_per_chunk: u32,
    // Always 1: `pair_one` of shared/pair.wgsl, a 1 the compiler cannot see.
    one: u32,
}

// One param set's account and execution settings (engine::SimParams).
struct SetParams {
    initial_capital: real,
    position_size: real,
    stop_loss: real,
    take_profit: real,
    taker_fee: real,
    slippage: real,
    funding_rate_8h: real,
    pad_real: real,
    max_concurrent_positions: u32,
    has_stop: u32,
    has_take_profit: u32,
    pad0: u32,
}

// What compute_metrics reads from one run, accumulated bar by bar; the host finishes the
// ratios (kernels/src/gpu/plan.rs `finish_metrics`). `final_equity` is in the row's money
// unit (2^-money_exp USDT); wins, losses, fees and funding in USDT. `status` is 1 once written; the host
// pre-fills the buffer with 0xFF bytes so an unwritten row is detected.
struct Accum {
    final_equity: real,
    max_drawdown: real,
    ret_sum: real,
    ret_sum_sq: real,
    down_sq: real,
    wins: real,
    losses: real,
    fees_paid: real,
    funding_paid: real,
    n_bars: u32,
    ret_count: u32,
    n_trades: u32,
    n_wins: u32,
    exposed_bars: u32,
    liquidations: u32,
    skipped_entries: u32,
    // The row's money exponent when it was written (shared/sim.wgsl `money_rescale`): the
    // money fields above are in units of 2^-money_exp USDT.
    money_exp: u32,
    status: u32,
    pad0: u32,
}

// One symbol's `Position` (bools as bits of `flags`: 1 open, 2 has a stop, 4 has a
// take-profit), its target pending for the next open and its funding cursor, between two
// dispatches.
struct SymbolState {
    side: real,
    qty: real,
    entry_price: real,
    margin: real,
    notional: real,
    mmr: real,
    cum: real,
    entry_fee: real,
    funding: real,
    stop_price: real,
    tp_price: real,
    pad_real: real,
    entry_bar: u32,
    flags: u32,
    pending: u32,
    funding_cursor: u32,
}

// The account of one (set, window) between two dispatches: what `Accum` does not hold. Row
// `r` of `state` belongs to row `r` of `out`.
struct RowState {
    wallet: real,
    peak: real,
    prev_equity: real,
    pad_real: real,
    // The bar the next dispatch continues the row at.
    next_bar: u32,
    // shared/sim.wgsl `money_exp`.
    money_exp: u32,
    pad1: u32,
    pad2: u32,
    symbols: array<SymbolState, N_SYMBOLS>,
    // Streamed indicators (shared/indicators.wgsl), stream-major: `j * N_SYMBOLS + s`.
    streams: array<StreamState, STREAM_SLOTS>,
}

// One streamed indicator of one symbol (shared/indicators.wgsl; CPU twins in
// kernels/src/batch/indicators/): its running state, and its output at the last bar it saw
// and at the bar before (rules read lag 0 or 1). In f32 the `_lo` fields carry the rounding
// residual of the field before them (a compensated pair); in f64 they stay 0. Each kind uses
// the fields named after its CPU twin's (`Sma`, `Ema`, `Rsi`) and leaves the others 0.
struct StreamState {
    // EMA: the average once seeded.
    value: real,
    value_lo: real,
    // EMA: the seed total; SMA: the running total.
    total: real,
    total_lo: real,
    // RSI: the average gain and loss (their sums while seeding).
    gain: real,
    gain_lo: real,
    loss: real,
    loss_lo: real,
    // RSI: the previous input (f32: and its rounding residual).
    prev: real,
    prev_lo: real,
    out: real,
    out_prev: real,
    // Values seen so far (capped once the stream is seeded).
    seen: u32,
    // STREAM_OUT_OK, STREAM_PREV_OK.
    flags: u32,
}

// A storage buffer, not a uniform: lavapipe inlines uniform values that steer branches and
// recompiles the shader whenever they change, which cost ~65 ms per dispatch (measured).
@group(0) @binding(0) var<storage, read> dims: Dims;
// Market columns (8 per symbol, bar-major inside a column), bracket tiers (5 reals each),
// funding rates.
@group(0) @binding(1) var<storage, read> statics_real: array<real>;
// Close-valid bit masks, tier and funding indices, funding bars, windows, last valid bars,
// symbol spans.
@group(0) @binding(2) var<storage, read> statics_u32: array<u32>;
// This batch's indicator columns, per-set requested leverage per symbol, rule params.
@group(0) @binding(3) var<storage, read> batch_real: array<real>;
// This batch's indicator valid masks and each set's indicator column per output slot.
@group(0) @binding(4) var<storage, read> batch_u32: array<u32>;
@group(0) @binding(5) var<storage, read> sets: array<SetParams>;
@group(0) @binding(6) var<storage, read_write> out: array<Accum>;
// Accounts between dispatches (shared/state.wgsl).
@group(0) @binding(7) var<storage, read_write> state: array<RowState>;

const COL_OPEN: u32 = 0u;
const COL_HIGH: u32 = 1u;
const COL_LOW: u32 = 2u;
const COL_CLOSE: u32 = 3u;
const COL_VOLUME: u32 = 4u;
// Mark columns hold the last price where the data has no mark price (SEMANTICS.md §1.5).
const COL_MARK_OPEN: u32 = 5u;
const COL_MARK_HIGH: u32 = 6u;
const COL_MARK_LOW: u32 = 7u;
// f32 only: the rounding residual of bar column `c` (open to volume) is column
// `COL_RESIDUAL + c` (kernels/src/gpu/plan.rs `RESIDUAL_COLUMNS`); f64 has none.
const COL_RESIDUAL: u32 = 8u;

const NO_BAR: u32 = 0xffffffffu;

fn bar_value(col: u32, s: u32, t: u32) -> real {
    return statics_real[(col * dims.n_symbols + s) * dims.n_bars + t];
}

fn mask_bit(word: u32, t: u32) -> bool {
    return ((word >> (t & 31u)) & 1u) == 1u;
}

// SEMANTICS.md §1.4: a symbol trades only on bars with a finite close.
fn close_valid(s: u32, t: u32) -> bool {
    return mask_bit(statics_u32[s * dims.mask_words + (t >> 5u)], t);
}

fn span_first(s: u32) -> u32 {
    return statics_u32[dims.off_span + 2u * s];
}

fn indicator_value(col: u32, s: u32, t: u32) -> real {
    return batch_real[(col * dims.n_symbols + s) * dims.n_bars + t];
}

// False where the CPU indicator column holds NaN (warm-up): NaN never reaches the shader.
fn indicator_valid(col: u32, s: u32, t: u32) -> bool {
    return mask_bit(batch_u32[(col * dims.n_symbols + s) * dims.mask_words + (t >> 5u)], t);
}

fn set_col(set_id: u32, slot: u32) -> u32 {
    return batch_u32[dims.off_set_cols + set_id * dims.n_slots + slot];
}

fn rule_param(set_id: u32, index: u32) -> real {
    return batch_real[dims.off_set_rule_params + set_id * dims.n_rule_params + index];
}

// The leverage asked for symbol `s`: the spec's leverage capped by its per-symbol cap.
fn requested_leverage(set_id: u32, s: u32) -> real {
    return batch_real[dims.off_set_leverage + set_id * dims.n_symbols + s];
}
