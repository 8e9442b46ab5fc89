//! Host twins of the structs shared with WGSL (`shaders/shared/layout.wgsl`): `#[repr(C)]` +
//! `bytemuck::Pod`, one concrete struct per precision where a field is `real`. The
//! `layout_matches_wgsl` test checks every size and offset against naga's layouter.
//!
//! The simulation state that persists between the dispatches of a dispatch group (WGSL
//! `RowState`: the fields of [`RowStateF32`] / [`RowStateF64`] followed by
//! `symbols: array<SymbolState, N_SYMBOLS>` and `streams: array<StreamState, STREAM_SLOTS>`,
//! `STREAM_SLOTS` = max(1, streams) x symbols) lives only on the GPU: the host sizes its buffer
//! from these twins ([`Real::state_bytes`]) and never reads it.

use bytemuck::{Pod, Zeroable};

/// WGSL twin: `struct Dims` (a read-only storage buffer). Sizes of one dispatch and offsets of the flat tables,
/// in elements of the buffer each lives in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Dims {
    pub n_bars: u32,
    pub n_symbols: u32,
    pub n_windows: u32,
    pub n_sets: u32,
    pub n_slots: u32,
    pub n_rule_params: u32,
    pub mask_words: u32,
    pub fill_close: u32,
    pub cross_margin: u32,
    pub funding_constant: u32,
    pub off_tiers: u32,
    pub off_funding_rate: u32,
    pub off_tier_index: u32,
    pub off_funding_index: u32,
    pub off_funding_bar: u32,
    pub off_windows: u32,
    pub off_last_valid: u32,
    pub off_span: u32,
    pub off_set_leverage: u32,
    pub off_set_rule_params: u32,
    pub off_set_cols: u32,
    /// Per (window, symbol): the first funding event at or after the window's first bar.
    pub off_window_funding: u32,
    /// Bars one dispatch advances each (set, window) row by (the bar chunk).
    pub bars_per_chunk: u32,
    /// Where [`CANARY_TRIPS`] lies in `statics_u32`.
    pub off_canary: u32,
    /// Streamed indicators (`N_STREAMS` of the generated WGSL; `gpu::streams`).
    pub n_streams: u32,
    /// The bar a row's streamed indicators start at: the first bar of any symbol's data.
    pub warm_from: u32,
    /// Warm-up bars (streamed indicators only, before a window's first bar) one dispatch
    /// advances a row by.
    pub warm_bars_per_chunk: u32,
    /// Always 1: the shader's `pair_one` (`shaders/shared/pair.wgsl`), a 1 read from a
    /// storage buffer so that the compiler cannot simplify two-sum's error term away.
    pub one: u32,
}

/// Trip count of the shader's canary loop (`loop_budget_intact`), read from `statics_u32` at
/// [`Dims::off_canary`]: from a storage buffer, so that no compiler (lavapipe inlines
/// uniform values) can unroll the loop.
pub const CANARY_TRIPS: u32 = 2;

/// One param set's settings in f64, before conversion to the shader's precision.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SetParamsHost {
    pub initial_capital: f64,
    pub position_size: f64,
    pub stop_loss: Option<f64>,
    pub take_profit: Option<f64>,
    pub taker_fee: f64,
    pub slippage: f64,
    pub funding_rate_8h: f64,
    pub max_concurrent_positions: u32,
}

/// The accumulator of one (set, window) read back, widened to f64.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AccumHost {
    pub final_equity: f64,
    pub max_drawdown: f64,
    pub ret_sum: f64,
    pub ret_sum_sq: f64,
    pub down_sq: f64,
    pub wins: f64,
    pub losses: f64,
    pub fees_paid: f64,
    pub funding_paid: f64,
    pub n_bars: u32,
    pub ret_count: u32,
    pub n_trades: u32,
    pub n_wins: u32,
    pub exposed_bars: u32,
    pub liquidations: u32,
    pub skipped_entries: u32,
    /// `final_equity` is in units of 2^-money_exp USDT (f32 rescaling, SEMANTICS.md §5.3).
    pub money_exp: u32,
    pub status: u32,
}

/// `status` of a row the shader wrote.
pub const STATUS_WRITTEN: u32 = 1;

/// `status` of a row whose window has started and not yet reached its last bar (the next
/// dispatch continues it at `RowState::next_bar`; after the last dispatch, a chunk did not run).
pub const STATUS_IN_PROGRESS: u32 = 0;

/// `status` of a row no dispatch has started (the sentinel fill).
pub const STATUS_NOT_STARTED: u32 = u32::from_ne_bytes([SENTINEL_BYTE; 4]);

/// `status` of a row whose invocation ran out of the adapter's loop budget (lavapipe ends
/// every loop early after 65,535 iterations per invocation; the canary loop saw it).
pub const STATUS_LOOP_BUDGET: u32 = 2;

/// The byte every output buffer is pre-filled with: an unwritten row reads `status =
/// 0xFFFF_FFFF` (and NaN reals), never zeros.
pub const SENTINEL_BYTE: u8 = 0xFF;

/// The float type of a shader variant, with its layout structs.
pub trait Real: Pod + Copy + Send + Sync + 'static {
    /// The WGSL type name.
    const WGSL: &'static str;
    /// WGSL twin `SetParams` at this precision.
    type SetParams: Pod + Send + Sync;
    /// WGSL twin `Accum` at this precision.
    type Accum: Pod + Send + Sync;
    /// WGSL twin of `RowState`'s fields before `symbols` at this precision.
    type RowState: Pod + Send + Sync;
    /// WGSL twin `SymbolState` at this precision.
    type SymbolState: Pod + Send + Sync;
    /// WGSL twin `StreamState` at this precision.
    type StreamState: Pod + Send + Sync;
    /// Bytes of one WGSL `RowState` for `n_symbols` symbols and `n_streams` streamed
    /// indicators (one `StreamState` per symbol even without streams: WGSL has no empty
    /// array).
    fn state_bytes(n_symbols: usize, n_streams: usize) -> usize {
        let ns = n_symbols.max(1);
        size_of::<Self::RowState>()
            + ns * size_of::<Self::SymbolState>()
            + n_streams.max(1) * ns * size_of::<Self::StreamState>()
    }
    fn from_f64(value: f64) -> Self;
    /// What `from_f64` rounds off: `value - from_f64(value)` at this precision (0 for f64),
    /// so that `from_f64(v) + residual(v)` carries `v` to about twice the precision.
    fn residual(value: f64) -> Self;
    fn set_params(host: &SetParamsHost) -> Self::SetParams;
    fn accum(row: &Self::Accum) -> AccumHost;
}

macro_rules! real_layout {
    ($real:ty, $wgsl:literal, $set:ident, $accum:ident, $row:ident, $sym:ident, $stream:ident) => {
        /// WGSL twin: `struct SetParams` with `real` =
        #[doc = $wgsl]
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
        pub struct $set {
            pub initial_capital: $real,
            pub position_size: $real,
            pub stop_loss: $real,
            pub take_profit: $real,
            pub taker_fee: $real,
            pub slippage: $real,
            pub funding_rate_8h: $real,
            pub pad_real: $real,
            pub max_concurrent_positions: u32,
            pub has_stop: u32,
            pub has_take_profit: u32,
            pub pad0: u32,
        }

        /// WGSL twin: `struct Accum` with `real` =
        #[doc = $wgsl]
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
        pub struct $accum {
            pub final_equity: $real,
            pub max_drawdown: $real,
            pub ret_sum: $real,
            pub ret_sum_sq: $real,
            pub down_sq: $real,
            pub wins: $real,
            pub losses: $real,
            pub fees_paid: $real,
            pub funding_paid: $real,
            pub n_bars: u32,
            pub ret_count: u32,
            pub n_trades: u32,
            pub n_wins: u32,
            pub exposed_bars: u32,
            pub liquidations: u32,
            pub skipped_entries: u32,
            /// The row's money exponent: `final_equity` is in units of 2^-money_exp USDT.
            pub money_exp: u32,
            pub status: u32,
            pub pad0: u32,
        }

        #[doc = concat!(
            "WGSL twin: the fields of `struct RowState` before `symbols`, with `real` = ",
            $wgsl, ". The account of one (set, window) between two dispatches (sim.rs ",
            "`State`'s wallet, the drawdown peak and previous equity of `MetricsAcc`); its ",
            "`N_SYMBOLS` `SymbolState`s follow."
        )]
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
        pub struct $row {
            pub wallet: $real,
            pub peak: $real,
            pub prev_equity: $real,
            pub pad_real: $real,
            /// The bar the next dispatch continues the row at.
            pub next_bar: u32,
            /// The account's money exponent (shaders/shared/sim.wgsl `money_exp`).
            pub money_exp: u32,
            pub pad1: u32,
            pub pad2: u32,
        }

        #[doc = concat!(
            "WGSL twin: `struct SymbolState` with `real` = ", $wgsl, ". One symbol's position ",
            "(sim.rs `Position`), its order pending for the next open and its funding cursor, ",
            "between two dispatches."
        )]
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
        pub struct $sym {
            pub side: $real,
            pub qty: $real,
            pub entry_price: $real,
            pub margin: $real,
            pub notional: $real,
            pub mmr: $real,
            pub cum: $real,
            pub entry_fee: $real,
            pub funding: $real,
            pub stop_price: $real,
            pub tp_price: $real,
            pub pad_real: $real,
            pub entry_bar: u32,
            /// Bit 0 open, bit 1 has a stop, bit 2 has a take-profit.
            pub flags: u32,
            pub pending: u32,
            pub funding_cursor: u32,
        }

        #[doc = concat!(
            "WGSL twin: `struct StreamState` with `real` = ", $wgsl, ". One streamed ",
            "indicator of one symbol (shaders/shared/indicators.wgsl) between two dispatches."
        )]
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
        pub struct $stream {
            /// EMA: the average once seeded.
            pub value: $real,
            pub value_lo: $real,
            /// EMA: the seed total; SMA: the running total.
            pub total: $real,
            pub total_lo: $real,
            /// RSI: the average gain (the sum of gains while seeding).
            pub gain: $real,
            pub gain_lo: $real,
            /// RSI: the average loss (the sum of losses while seeding).
            pub loss: $real,
            pub loss_lo: $real,
            /// RSI: the previous input.
            pub prev: $real,
            pub prev_lo: $real,
            pub out: $real,
            pub out_prev: $real,
            /// Values seen so far (capped once the stream is seeded).
            pub seen: u32,
            /// Bit 0: `out` valid, bit 1: `out_prev` valid.
            pub flags: u32,
        }

        impl Real for $real {
            const WGSL: &'static str = $wgsl;
            type SetParams = $set;
            type Accum = $accum;
            type RowState = $row;
            type SymbolState = $sym;
            type StreamState = $stream;

            fn from_f64(value: f64) -> Self {
                value as $real
            }

            fn residual(value: f64) -> Self {
                (value - (value as $real) as f64) as $real
            }

            fn set_params(h: &SetParamsHost) -> $set {
                $set {
                    initial_capital: h.initial_capital as $real,
                    position_size: h.position_size as $real,
                    stop_loss: h.stop_loss.unwrap_or(0.0) as $real,
                    take_profit: h.take_profit.unwrap_or(0.0) as $real,
                    taker_fee: h.taker_fee as $real,
                    slippage: h.slippage as $real,
                    funding_rate_8h: h.funding_rate_8h as $real,
                    pad_real: 0.0,
                    max_concurrent_positions: h.max_concurrent_positions,
                    has_stop: u32::from(h.stop_loss.is_some()),
                    has_take_profit: u32::from(h.take_profit.is_some()),
                    pad0: 0,
                }
            }

            fn accum(r: &$accum) -> AccumHost {
                AccumHost {
                    final_equity: f64::from(r.final_equity),
                    max_drawdown: f64::from(r.max_drawdown),
                    ret_sum: f64::from(r.ret_sum),
                    ret_sum_sq: f64::from(r.ret_sum_sq),
                    down_sq: f64::from(r.down_sq),
                    wins: f64::from(r.wins),
                    losses: f64::from(r.losses),
                    fees_paid: f64::from(r.fees_paid),
                    funding_paid: f64::from(r.funding_paid),
                    n_bars: r.n_bars,
                    ret_count: r.ret_count,
                    n_trades: r.n_trades,
                    n_wins: r.n_wins,
                    exposed_bars: r.exposed_bars,
                    liquidations: r.liquidations,
                    skipped_entries: r.skipped_entries,
                    money_exp: r.money_exp,
                    status: r.status,
                }
            }
        }
    };
}

real_layout!(
    f32,
    "f32",
    SetParamsF32,
    AccumF32,
    RowStateF32,
    SymbolStateF32,
    StreamStateF32
);
real_layout!(
    f64,
    "f64",
    SetParamsF64,
    AccumF64,
    RowStateF64,
    SymbolStateF64,
    StreamStateF64
);

/// Field names and byte offsets of a host struct, for the naga layout test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLayout {
    pub wgsl_name: &'static str,
    pub size: usize,
    pub fields: Vec<(&'static str, usize)>,
}

macro_rules! host_layout {
    ($ty:ty, $wgsl:literal, [$($field:ident),* $(,)?]) => {
        HostLayout {
            wgsl_name: $wgsl,
            size: std::mem::size_of::<$ty>(),
            fields: vec![$((stringify!($field), std::mem::offset_of!($ty, $field))),*],
        }
    };
}

/// The host layouts of the structs shared with a shader at precision `T` for `n_symbols`
/// symbols and `n_streams` streamed indicators (`RowState` ends with its `N_SYMBOLS`
/// `SymbolState`s and its `STREAM_SLOTS` `StreamState`s).
pub fn host_layouts(f64_variant: bool, n_symbols: usize, n_streams: usize) -> Vec<HostLayout> {
    let dims = host_layout!(
        Dims,
        "Dims",
        [
            n_bars,
            n_symbols,
            n_windows,
            n_sets,
            n_slots,
            n_rule_params,
            mask_words,
            fill_close,
            cross_margin,
            funding_constant,
            off_tiers,
            off_funding_rate,
            off_tier_index,
            off_funding_index,
            off_funding_bar,
            off_windows,
            off_last_valid,
            off_span,
            off_set_leverage,
            off_set_rule_params,
            off_set_cols,
            off_window_funding,
            bars_per_chunk,
            off_canary,
            n_streams,
            warm_from,
            warm_bars_per_chunk,
            one
        ]
    );
    macro_rules! pair {
        ($set:ty, $accum:ty, $row:ty, $sym:ty, $stream:ty) => {
            vec![
                dims,
                host_layout!(
                    $set,
                    "SetParams",
                    [
                        initial_capital,
                        position_size,
                        stop_loss,
                        take_profit,
                        taker_fee,
                        slippage,
                        funding_rate_8h,
                        pad_real,
                        max_concurrent_positions,
                        has_stop,
                        has_take_profit,
                        pad0
                    ]
                ),
                host_layout!(
                    $accum,
                    "Accum",
                    [
                        final_equity,
                        max_drawdown,
                        ret_sum,
                        ret_sum_sq,
                        down_sq,
                        wins,
                        losses,
                        fees_paid,
                        funding_paid,
                        n_bars,
                        ret_count,
                        n_trades,
                        n_wins,
                        exposed_bars,
                        liquidations,
                        skipped_entries,
                        money_exp,
                        status,
                        pad0
                    ]
                ),
                {
                    let mut row = host_layout!(
                        $row,
                        "RowState",
                        [
                            wallet,
                            peak,
                            prev_equity,
                            pad_real,
                            next_bar,
                            money_exp,
                            pad1,
                            pad2
                        ]
                    );
                    row.fields.push(("symbols", row.size));
                    row.size += n_symbols * std::mem::size_of::<$sym>();
                    row.fields.push(("streams", row.size));
                    row.size += n_streams.max(1) * n_symbols * std::mem::size_of::<$stream>();
                    row
                },
                host_layout!(
                    $stream,
                    "StreamState",
                    [
                        value, value_lo, total, total_lo, gain, gain_lo, loss, loss_lo, prev,
                        prev_lo, out, out_prev, seen, flags
                    ]
                ),
                host_layout!(
                    $sym,
                    "SymbolState",
                    [
                        side,
                        qty,
                        entry_price,
                        margin,
                        notional,
                        mmr,
                        cum,
                        entry_fee,
                        funding,
                        stop_price,
                        tp_price,
                        pad_real,
                        entry_bar,
                        flags,
                        pending,
                        funding_cursor
                    ]
                ),
            ]
        };
    }
    if f64_variant {
        pair!(
            SetParamsF64,
            AccumF64,
            RowStateF64,
            SymbolStateF64,
            StreamStateF64
        )
    } else {
        pair!(
            SetParamsF32,
            AccumF32,
            RowStateF32,
            SymbolStateF32,
            StreamStateF32
        )
    }
}
