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

//#include shared/pair.wgsl

var<private> streams: array<StreamState, STREAM_SLOTS>;

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

// `Sma::update` (TA_INT_SMA): a running total; add the new value, output total / period,
// then subtract the value leaving the window (`period - 1` bars back: the stream sees every
// bar of the symbol's span, which has no holes, so it is the input column's bar
// `t - (period - 1)`). Nothing leaves during warm-up, no output for the first
// `period - 1` values. The input is bar `t` of market column `col`.
// f32: the total is a compensated pair and takes the inputs' rounding residuals
// (`COL_RESIDUAL`) with them, so it tracks the f64 total of the f64 inputs (a plain f32 total
// keeps the rounding of every addition and subtraction since the first bar); the output is
// the pair's quotient rounded once.
fn sma_update(i: u32, col: u32, s: u32, t: u32, period: u32) {
    stream_shift(i);
    var st = streams[i];
    let x = bar_value(col, s, t);
    let p = real(period);
    st.seen = min(st.seen + 1u, period);
    let full = st.seen >= period;
    if (STREAM_COMPENSATED) {
        let x_lo = bar_value(COL_RESIDUAL + col, s, t);
        let n = pair_add(st.total, st.total_lo, x);
        let m = two_sum(n.hi, n.lo + x_lo);
        // The quotient and, to first order, the residual of the division and of `lo`;
        // `opaque` keeps `hi - q * p` from being simplified to 0.
        let q = opaque(m.hi / p);
        let q_lo = ((m.hi - opaque(q * p)) + m.lo) / p;
        st.out = q + q_lo;
        if (full) {
            let back = t - (period - 1u);
            let leaving = bar_value(col, s, back);
            let leaving_lo = bar_value(COL_RESIDUAL + col, s, back);
            let r = pair_add(m.hi, m.lo, -leaving);
            let u = two_sum(r.hi, r.lo - leaving_lo);
            st.total = u.hi;
            st.total_lo = u.lo;
        } else {
            st.total = m.hi;
            st.total_lo = m.lo;
        }
    } else {
        st.total = st.total + x;
        st.out = st.total / p;
        if (full) {
            st.total = st.total - bar_value(col, s, t - (period - 1u));
        }
    }
    if (full) {
        st.flags = st.flags | STREAM_OUT_OK;
    }
    streams[i] = st;
}

// TA-Lib's `TA_IS_ZERO`: strictly within 1e-8 of zero.
fn talib_is_zero(v: real) -> bool {
    return real(-0.00000001) < v && v < real(0.00000001);
}

// (hi, lo) / period as a pair: the quotient and, to first order, the residual of the
// division and of `lo`.
fn pair_div(hi: real, lo: real, period: real) -> Pair {
    let q = hi / period;
    return Pair(q, ((hi - q * period) + lo) / period);
}

// `Rsi::update` (TA_RSI, TA_COMPATIBILITY_DEFAULT, unstable period 0): the gains and losses
// of the first `period` changes summed in order and divided by the period, then Wilder's
// smoothing `avg = (avg * (period - 1) + today) / period` (multiply, add, divide); output
// `100 * (gain / (gain + loss))`, or 0 where `gain + loss` is within 1e-8 of zero. No output
// for the first `period` values. Period 1 copies the input, as TA-Lib does. The input is
// bar `t` of market column `col`.
// f32: a change between two prices rounded to f32 loses up to half a unit of f32 of each
// price, a large part of a small change (measured on BTCUSDT 1h: RSI 5 off by 8e-5 relative,
// enough to flip threshold decisions), so the change also takes the difference of the
// prices' rounding residuals (`COL_RESIDUAL`): `x - prev` is exact for prices within a factor
// 2 of each other, and the sum rounds once. The pairs are smoothed as
// `avg + (today - avg) / period` (the same value): the plain recurrence keeps each bar's
// rounding for about `period` bars.
fn rsi_update(i: u32, col: u32, s: u32, t: u32, period: u32) {
    stream_shift(i);
    var st = streams[i];
    let x = bar_value(col, s, t);
    if (period == 1u) {
        st.out = x;
        st.flags = st.flags | STREAM_OUT_OK;
        streams[i] = st;
        return;
    }
    let p = real(period);
    var change = x - st.prev;
    st.prev = x;
    if (STREAM_COMPENSATED) {
        let x_lo = bar_value(COL_RESIDUAL + col, s, t);
        change = change + (x_lo - st.prev_lo);
        st.prev_lo = x_lo;
    }
    let bar = st.seen;
    st.seen = min(st.seen + 1u, period + 1u);
    // TA-Lib's `if change < 0 { loss -= change } else { gain += change }` without a branch:
    // the other total takes an exact 0, which leaves it bit-identical (both are >= +0).
    let fall = min(change, real(0.0));
    let rise = max(change, real(0.0));
    var ready = true;
    if (bar > period) {
        if (STREAM_COMPENSATED) {
            let g = pair_add(st.gain, st.gain_lo, ((rise - st.gain) - st.gain_lo) / p);
            let l = pair_add(st.loss, st.loss_lo, ((-fall - st.loss) - st.loss_lo) / p);
            st.gain = g.hi;
            st.gain_lo = g.lo;
            st.loss = l.hi;
            st.loss_lo = l.lo;
        } else {
            st.loss = st.loss * (p - real(1.0));
            st.gain = st.gain * (p - real(1.0));
            st.loss = st.loss - fall;
            st.gain = st.gain + rise;
            st.loss = st.loss / p;
            st.gain = st.gain / p;
        }
    } else if (bar == 0u) {
        ready = false;
    } else {
        if (STREAM_COMPENSATED) {
            let g = pair_add(st.gain, st.gain_lo, rise);
            let l = pair_add(st.loss, st.loss_lo, -fall);
            st.gain = g.hi;
            st.gain_lo = g.lo;
            st.loss = l.hi;
            st.loss_lo = l.lo;
        } else {
            st.loss = st.loss - fall;
            st.gain = st.gain + rise;
        }
        if (bar < period) {
            ready = false;
        } else if (STREAM_COMPENSATED) {
            let g = pair_div(st.gain, st.gain_lo, p);
            let l = pair_div(st.loss, st.loss_lo, p);
            st.gain = g.hi;
            st.gain_lo = g.lo;
            st.loss = l.hi;
            st.loss_lo = l.lo;
        } else {
            st.loss = st.loss / p;
            st.gain = st.gain / p;
        }
    }
    if (ready) {
        let total = st.gain + st.loss;
        if (talib_is_zero(total)) {
            st.out = real(0.0);
        } else {
            st.out = real(100.0) * (st.gain / total);
        }
        st.flags = st.flags | STREAM_OUT_OK;
    }
    streams[i] = st;
}
