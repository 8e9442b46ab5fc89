// Streaming indicators, one bar at a time, mirroring kernels/src/batch/indicators/ by name and
// loop shape (TA-Lib 0.4.0's seeding, look-back and unstable-period conventions; the CPU
// versions are bit-identical to TA-Lib). Stream `j` of symbol `s` lives in
// `streams[j * N_SYMBOLS + s]` and persists between dispatches in `RowState::streams`
// (shared/state.wgsl). The generated section declares `N_STREAMS`, `STREAM_SLOTS` and
// `streams_update(t)`, which calls the update functions here for every symbol with data at
// bar `t`, with the set's period (kernels/src/gpu/streams.rs).
//
// f64 runs the CPU's operations in the CPU's order. f32 keeps every running value as a
// compensated pair (`value + value_lo`, two-sum): a plain f32 recurrence drifts by about
// 1e-6 relative over thousands of bars, far more than one rounding of the f64 value.

const STREAM_OUT_OK: u32 = 1u;
const STREAM_PREV_OK: u32 = 2u;
const STREAM_COMPENSATED: bool = MONEY_RESCALE;

var<private> streams: array<StreamState, STREAM_SLOTS>;

struct Pair {
    hi: real,
    lo: real,
}

// Knuth's two-sum: hi = fl(a + b), lo = the exact rounding error (no branch, any order).
fn two_sum(a: real, b: real) -> Pair {
    let hi = a + b;
    let bv = hi - a;
    let av = hi - bv;
    return Pair(hi, (a - av) + (b - bv));
}

// (hi, lo) + x as a normalised pair.
fn pair_add(hi: real, lo: real, x: real) -> Pair {
    let s = two_sum(hi, x);
    return two_sum(s.hi, s.lo + lo);
}

fn streams_start() {
    for (var i = 0u; i < STREAM_SLOTS; i += 1u) {
        streams[i] = StreamState();
    }
}

// The output of stream `j` of symbol `s` at the current bar (`lag` 0) or the bar before (1).
fn stream_out(j: u32, s: u32, lag: u32) -> real {
    let st = streams[j * N_SYMBOLS + s];
    return select(st.out, st.out_prev, lag == 1u);
}

// False where the CPU's value is NaN (warm-up, or before the symbol's data).
fn stream_ok(j: u32, s: u32, lag: u32) -> bool {
    let st = streams[j * N_SYMBOLS + s];
    return (st.flags & select(STREAM_OUT_OK, STREAM_PREV_OK, lag == 1u)) != 0u;
}

// The current output becomes the previous one.
fn stream_shift(i: u32) {
    streams[i].out_prev = streams[i].out;
    streams[i].flags = select(0u, STREAM_PREV_OK, (streams[i].flags & STREAM_OUT_OK) != 0u);
}

// `Ema::update` (TA_INT_EMA, TA_COMPATIBILITY_DEFAULT): the plain average of the first
// `period` values (summed in order from 0), then `((x - ema) * k) + ema`, k = 2 / (period + 1).
fn ema_update(i: u32, x: real, period: u32) {
    stream_shift(i);
    var st = streams[i];
    if (st.seen >= period) {
        let k = real(2.0) / real(period + 1u);
        if (STREAM_COMPENSATED) {
            let step = ((x - st.value) - st.value_lo) * k;
            let n = pair_add(st.value, st.value_lo, step);
            st.value = n.hi;
            st.value_lo = n.lo;
        } else {
            st.value = ((x - st.value) * k) + st.value;
        }
    } else {
        st.seen += 1u;
        if (STREAM_COMPENSATED) {
            let n = pair_add(st.total, st.total_lo, x);
            st.total = n.hi;
            st.total_lo = n.lo;
        } else {
            st.total = st.total + x;
        }
        if (st.seen == period) {
            st.value = st.total / real(period);
            if (STREAM_COMPENSATED) {
                // The residual of the division and of the total, to first order.
                st.value_lo = ((st.total - st.value * real(period)) + st.total_lo) / real(period);
            }
        }
    }
    if (st.seen >= period) {
        st.out = st.value;
        st.flags = st.flags | STREAM_OUT_OK;
    }
    streams[i] = st;
}
