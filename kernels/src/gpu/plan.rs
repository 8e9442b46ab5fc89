//! Host-side data of a GPU batch, as plain data that tests inspect without a GPU: the static
//! tables (market, brackets, funding, windows), each dispatch group's tables (indicator
//! columns computed on the CPU per distinct parameter tuple, per-set settings), the split of
//! the sets into dispatch groups under the device limits ([`plan_dispatches`], then
//! [`fit_sets`] for the indicator columns), the length of the bar chunks under a loop budget
//! ([`bars_per_chunk`], [`dispatches_with_warm_up`]), and the metrics finished from the
//! read-back sums.
//!
//! # Dispatch groups and bar chunks
//! A dispatch group is a range of sets whose tables are uploaded together; it runs as a
//! series of identical compute dispatches, each advancing every (set, window) row by one
//! chunk of bars, the simulation state persisting in GPU buffers between them
//! (`shaders/shared/state.wgsl`). A group's sets are bounded by the
//! workgroup count, by every per-set buffer (results, state, settings) fitting one storage
//! binding, by a target size, and by its distinct indicator columns fitting one binding
//! ([`fit_sets`]); only a single set whose tables cannot fit is refused
//! ([`GpuError::TooLarge`], naming the buffer, its size and the limit).

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use rayon::prelude::*;

use super::GpuError;
use super::layout::{AccumHost, CANARY_TRIPS, Dims, Real, SetParamsHost};
use super::streams::{self, Stream};
use crate::batch::BatchInput;
use crate::engine::FundingAt;
use crate::engine::{Fill, MarginMode, Metrics, MetricsAcc};
use crate::reference::{self, MarketSymbol};
use crate::series::BarColumns;
use crate::spec::{Funding, ParamSet, ParamValue, ResolvedIndicator, ResolvedSpec};

/// Invocations per workgroup (`@workgroup_size` of shaders/backtest.wgsl).
pub const WORKGROUP_SIZE: u32 = 64;

/// What the device allows, as the planner needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanLimits {
    /// Workgroups in one dispatch dimension.
    pub max_workgroups: u32,
    /// Largest storage buffer binding, bytes (the smaller of the device's largest binding and
    /// largest buffer).
    pub max_binding_bytes: u64,
    /// Sets per dispatch group when nothing else limits them (smaller groups let the host
    /// prepare the next one while the GPU runs).
    pub target_sets: usize,
}

/// The sets of each dispatch group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchPlan {
    pub batches: Vec<Range<usize>>,
    /// The most sets one group may hold (every batch but the last has this many).
    pub max_sets: usize,
}

/// Bytes that every set adds to a dispatch group's buffers, whatever its indicators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetBytes {
    /// Result rows (`out`): windows x `Accum`.
    pub out: usize,
    /// `state`: windows x `RowState` (with its symbols' `SymbolState`s).
    pub state: usize,
    /// `sets`: one `SetParams`.
    pub set_params: usize,
    /// `batch_real` besides indicator columns: leverage per symbol and rule params.
    pub batch_real: usize,
    /// `batch_u32` besides indicator masks: the set's column per output slot.
    pub batch_u32: usize,
}

impl SetBytes {
    /// The per-set bytes of a dispatch at precision `R`.
    pub fn of<R: Real>(n_windows: usize, dims: &Dims) -> SetBytes {
        let ns = dims.n_symbols as usize;
        SetBytes {
            out: n_windows * size_of::<R::Accum>(),
            state: n_windows * R::state_bytes(ns, dims.n_streams as usize),
            set_params: size_of::<R::SetParams>(),
            batch_real: (ns + dims.n_rule_params as usize) * size_of::<R>(),
            batch_u32: dims.n_slots as usize * 4,
        }
    }

    /// Each per-set buffer by name (the WGSL binding) and its bytes per set.
    pub fn buffers(&self) -> [(&'static str, usize); 5] {
        [
            ("out (result rows)", self.out),
            ("state", self.state),
            ("sets", self.set_params),
            ("batch_real (leverage and rule params)", self.batch_real),
            ("batch_u32 (indicator slots)", self.batch_u32),
        ]
    }
}

/// Splits `n_sets` into dispatch groups: one invocation per set and window, so at most
/// `max_workgroups x WORKGROUP_SIZE / n_windows` sets, at most `target_sets`, and every
/// per-set buffer within one binding. [`GpuError::TooLarge`] when a single set does not fit.
/// The indicator columns of a group are checked when it is packed ([`fit_sets`]), which may
/// end a group earlier.
pub fn plan_dispatches(
    n_sets: usize,
    n_windows: usize,
    per_set: &SetBytes,
    limits: &PlanLimits,
) -> Result<DispatchPlan, GpuError> {
    let by_workgroups =
        (limits.max_workgroups as usize * WORKGROUP_SIZE as usize / n_windows.max(1)).max(1);
    let mut per = by_workgroups.min(limits.target_sets.max(1));
    for (buffer, bytes) in per_set.buffers() {
        let bytes = bytes.max(1);
        if bytes as u64 > limits.max_binding_bytes {
            return Err(GpuError::TooLarge(format!(
                "one param set needs {bytes} bytes in {buffer}, the device binds at most {} bytes",
                limits.max_binding_bytes
            )));
        }
        per = per.min((limits.max_binding_bytes / bytes as u64) as usize);
    }
    let batches = (0..n_sets)
        .step_by(per)
        .map(|start| start..(start + per).min(n_sets))
        .collect();
    Ok(DispatchPlan {
        batches,
        max_sets: per,
    })
}

/// Loop budget per invocation and bar chunk on a software adapter: lavapipe (Mesa's
/// llvmpipe) counts the iterations of all loops of one invocation together and ends every
/// loop early past 65,535 (`LP_MAX_TGSI_LOOP_ITERATIONS`); 60,000 leaves a margin.
pub const SOFTWARE_LOOP_BUDGET: u64 = 60_000;

/// Loop budget per invocation and bar chunk on a hardware GPU, which has no iteration counter
/// but a watchdog (Windows TDR resets a device whose dispatch runs past 2 s): 2^20 loop
/// iterations, about 2,000 bars of 4 symbols per chunk, keeps one dispatch of 65,536 sets x
/// 5 windows well below a second on a mid-range GPU while the state round trip (one load and
/// one store per chunk) stays a small part of the work.
pub const HARDWARE_LOOP_BUDGET: u64 = 1 << 20;

/// Trips a loop of `n` iterations costs in lavapipe's count: its back-edge is taken once per
/// trip, the trip whose condition fails included.
const fn trips(n: u64) -> u64 {
    n + 1
}

/// An upper bound on the loop trips one bar costs one invocation of shaders/backtest.wgsl,
/// for `n_symbols` symbols, at most `max_tiers` bracket tiers per symbol, at most
/// `max_events_per_bar` funding events per symbol and bar, and `n_streams` streamed
/// indicators. Every loop of the bar body is counted at its largest trip count, as if every
/// branch were taken (both fill paths, both margin modes): a change to the shader's loops
/// changes this function.
pub fn loop_iterations_per_bar(
    n_symbols: usize,
    max_tiers: usize,
    max_events_per_bar: usize,
    n_streams: usize,
) -> u64 {
    let s = n_symbols.max(1) as u64;
    let tiers = max_tiers.max(1) as u64;
    let events = max_events_per_bar as u64;
    // sim.wgsl `open`: open_count, the upnl loop, max_leverage and for_notional over tiers.
    let open = 2 * trips(s) + 2 * trips(tiers);
    // sim.wgsl `execute`: the closes loop, the opens loop, an open per symbol.
    let execute = 2 * trips(s) + s * open;
    // sim.wgsl `intrabar`: open_count, liquidation prices (cross: a loop over the others with
    // maintenance_margin's for_notional each), stops, cross_liquidation (two loops, one with
    // for_notional each) and its reset, the isolated loop, take-profits.
    let cross_liq_price = trips(s) + s * trips(tiers);
    let cross_liquidation = 2 * trips(s) + s * trips(tiers);
    let intrabar =
        trips(s) + trips(s) + s * cross_liq_price + trips(s) + cross_liquidation + 3 * trips(s);
    // backtest.wgsl's bar body: the bar loop itself; pending check and reset and the fills at
    // the open; funding (a loop over symbols with two loops over events each); intrabar;
    // signals; the fills at the close; pending; last bars; equity.
    let funding = trips(s) + s * 2 * trips(events);
    1 + streams_update_trips(n_symbols, n_streams)
        + 2 * trips(s)
        + execute
        + funding
        + intrabar
        + trips(s)
        + execute
        + 3 * trips(s)
}

/// Loop trips of the generated `streams_update` (gpu::streams): one loop over the symbols
/// when anything streams (the streams' updates are straight-line code), none otherwise.
fn streams_update_trips(n_symbols: usize, n_streams: usize) -> u64 {
    if n_streams == 0 {
        0
    } else {
        trips(n_symbols.max(1) as u64)
    }
}

/// Warm-up bars per dispatch (streamed indicators only, before a window's first bar) so that
/// one invocation stays within `budget` loop trips: each costs the bar loop's trip and
/// `streams_update`'s loop over the symbols.
pub fn warm_bars_per_chunk(budget: u64, n_symbols: usize, n_streams: usize) -> usize {
    let per_bar = 1 + streams_update_trips(n_symbols, n_streams);
    let fixed = loop_iterations_per_chunk(n_symbols);
    (budget.saturating_sub(fixed) / per_bar).max(1) as usize
}

/// Loop trips of an invocation outside its bars: starting or loading the account, storing it,
/// the canary loop, the bar loop's exit.
pub fn loop_iterations_per_chunk(n_symbols: usize) -> u64 {
    let s = n_symbols.max(1) as u64;
    2 * trips(s) + trips(u64::from(CANARY_TRIPS)) + 1
}

/// Bars per chunk so that one invocation stays within `budget` loop trips.
pub fn bars_per_chunk(
    budget: u64,
    n_symbols: usize,
    max_tiers: usize,
    max_events_per_bar: usize,
    n_streams: usize,
) -> usize {
    let per_bar = loop_iterations_per_bar(n_symbols, max_tiers, max_events_per_bar, n_streams);
    let fixed = loop_iterations_per_chunk(n_symbols);
    (budget.saturating_sub(fixed) / per_bar).max(1) as usize
}

/// Dispatches a group needs: each advances every (set, window) row from where it stopped,
/// per window `(warm-up bars, window bars)` ([`window_work`]): the warm-up of its streamed
/// indicators in dispatches of `warm_bars_per_chunk` bars, then the window in dispatches of
/// `bars_per_chunk` (a dispatch does one or the other). The longest row decides; one
/// dispatch at least, which also writes the rows of empty windows.
pub fn dispatches_with_warm_up(
    windows: &[(usize, usize)],
    bars_per_chunk: usize,
    warm_bars_per_chunk: usize,
) -> usize {
    windows
        .iter()
        .map(|&(warm, len)| {
            warm.div_ceil(warm_bars_per_chunk.max(1)) + len.div_ceil(bars_per_chunk.max(1))
        })
        .max()
        .unwrap_or(0)
        .max(1)
}

/// The warm-up bars of each window of `ranges` when `n_streams` indicators stream from bar
/// `warm_from` (none for an empty window or when nothing streams), with the window's bars:
/// what [`dispatches_with_warm_up`] takes.
pub fn window_work(
    ranges: &[Range<usize>],
    warm_from: usize,
    n_streams: usize,
) -> Vec<(usize, usize)> {
    ranges
        .iter()
        .map(|r| {
            let warm = if n_streams == 0 || r.is_empty() {
                0
            } else {
                r.start.saturating_sub(warm_from)
            };
            (warm, r.len())
        })
        .collect()
}

/// Everything that does not change between dispatches.
#[derive(Clone, Debug)]
pub struct Statics<R> {
    pub real: Vec<R>,
    pub u32s: Vec<u32>,
    /// `Dims` with the static fields filled in.
    pub dims: Dims,
    pub funding: Funding,
    pub fill: Fill,
    pub margin_mode: MarginMode,
    /// The most bracket tiers of one symbol (for [`loop_iterations_per_bar`]).
    pub max_tiers: usize,
    /// The most funding events of one symbol on one bar (for [`loop_iterations_per_bar`]).
    pub max_events_per_bar: usize,
    /// The indicators the shader streams instead of reading uploaded columns.
    pub streams: Vec<Stream>,
}

/// One dispatch's tables.
#[derive(Clone, Debug)]
pub struct BatchTables<R: Real> {
    pub real: Vec<R>,
    pub u32s: Vec<u32>,
    pub sets: Vec<R::SetParams>,
    pub dims: Dims,
    /// Distinct uploaded indicator columns (parameter tuples x outputs) in this dispatch;
    /// streamed indicators have none.
    pub columns: usize,
}

const MARKET_COLUMNS: u32 = 8;

/// f32 only: after the market columns, the rounding residual (`Real::residual`) of each bar
/// column (open, high, low, close, volume) in the same order (`COL_RESIDUAL` in
/// shaders/shared/layout.wgsl).
pub const RESIDUAL_COLUMNS: u32 = 5;

/// One market column of the shader (`COL_*` in shaders/shared/layout.wgsl) at (symbol, bar).
type MarketColumn<'f> = &'f dyn Fn(&MarketSymbol<'_>, usize) -> f64;

fn mask_words(n_bars: usize) -> usize {
    n_bars.div_ceil(32)
}

fn set_bit(mask: &mut [u32], t: usize) {
    mask[t / 32] |= 1 << (t % 32);
}

fn to_u32(value: usize, what: &str) -> Result<u32, GpuError> {
    u32::try_from(value).map_err(|_| GpuError::TooLarge(format!("{what}: {value} exceeds u32")))
}

/// A symbol's market must have NaN only outside its span of data (SEMANTICS.md §1.4), and
/// every column finite where the close is: the shader tracks validity by the close alone.
fn check_symbol(sym: &MarketSymbol<'_>) -> Result<Option<(usize, usize)>, GpuError> {
    let first = sym.close.iter().position(|c| c.is_finite());
    let last = sym.close.iter().rposition(|c| c.is_finite());
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(None);
    };
    for t in first..=last {
        let row = [
            sym.open[t],
            sym.high[t],
            sym.low[t],
            sym.close[t],
            sym.volume[t],
        ];
        if row.iter().any(|v| !v.is_finite()) {
            return Err(GpuError::Unsupported(format!(
                "{}: bar {t} lies inside the symbol's data but has a non-finite price or volume; the GPU kernel needs NaN only before and after a symbol's data",
                sym.name
            )));
        }
    }
    Ok(Some((first, last)))
}

/// Packs the market, brackets, funding and windows of `input`, as `first` (any resolved set)
/// configures them.
pub fn pack_statics<R: Real>(
    input: &BatchInput<'_>,
    first: &ResolvedSpec,
) -> Result<Statics<R>, GpuError> {
    let market = input.market;
    let n = market.open_time.len();
    let ns = market.symbols.len();
    let words = mask_words(n);
    let mut real: Vec<R> =
        Vec::with_capacity((MARKET_COLUMNS + RESIDUAL_COLUMNS) as usize * ns * n);
    let finite_or = |v: f64, fallback: f64| if v.is_finite() { v } else { fallback };
    let zero = |v: f64| finite_or(v, 0.0);
    let columns: [MarketColumn<'_>; 8] = [
        &|s, t| zero(s.open[t]),
        &|s, t| zero(s.high[t]),
        &|s, t| zero(s.low[t]),
        &|s, t| zero(s.close[t]),
        &|s, t| zero(s.volume[t]),
        &|s, t| zero(finite_or(s.mark_open[t], s.open[t])),
        &|s, t| zero(finite_or(s.mark_high[t], s.high[t])),
        &|s, t| zero(finite_or(s.mark_low[t], s.low[t])),
    ];
    for column in columns {
        for sym in &market.symbols {
            real.extend((0..n).map(|t| R::from_f64(column(sym, t))));
        }
    }
    // f32: the rounding residuals of the bar columns, read by streamed indicators that need
    // their inputs beyond f32 (the RSI's bar-to-bar changes, gpu::streams).
    if R::WGSL == "f32" {
        for column in &columns[..RESIDUAL_COLUMNS as usize] {
            for sym in &market.symbols {
                real.extend((0..n).map(|t| R::residual(column(sym, t))));
            }
        }
    }
    let mut spans = Vec::with_capacity(ns);
    let mut u32s = vec![0u32; ns * words];
    for (s, sym) in market.symbols.iter().enumerate() {
        spans.push(check_symbol(sym)?);
        for t in 0..n {
            if sym.close[t].is_finite() {
                set_bit(&mut u32s[s * words..(s + 1) * words], t);
            }
        }
    }
    let tables = reference::tables_for(market, input.brackets)
        .map_err(|e| GpuError::Input(e.to_string()))?;
    let off_tiers = real.len();
    let off_tier_index = u32s.len();
    let mut tier = 0usize;
    let max_tiers = tables.iter().map(|t| t.brackets.len()).max().unwrap_or(0);
    for table in &tables {
        u32s.push(to_u32(tier, "bracket tiers")?);
        for b in &table.brackets {
            for v in [
                b.notional_floor,
                b.notional_cap,
                b.mmr,
                b.cum,
                b.max_leverage,
            ] {
                real.push(R::from_f64(v));
            }
            tier += 1;
        }
    }
    u32s.push(to_u32(tier, "bracket tiers")?);
    let funding = first.execution.funding;
    let events = reference::funding_events(first, market);
    let max_events_per_bar = check_funding_order(market, &events)?;
    let off_funding_rate = real.len();
    let off_funding_index = u32s.len();
    let mut count = 0usize;
    for per_symbol in &events {
        u32s.push(to_u32(count, "funding events")?);
        count += per_symbol.len();
    }
    u32s.push(to_u32(count, "funding events")?);
    let off_funding_bar = u32s.len();
    for per_symbol in &events {
        for e in per_symbol {
            real.push(R::from_f64(e.rate));
            u32s.push(e.bar);
        }
    }
    let off_windows = u32s.len();
    let ranges = input.windows.ranges();
    for r in &ranges {
        u32s.push(to_u32(r.start, "window start")?);
        u32s.push(to_u32(r.end, "window end")?);
    }
    let off_last_valid = u32s.len();
    for r in &ranges {
        for sym in &market.symbols {
            let last = sym.close[r.clone()]
                .iter()
                .rposition(|c| c.is_finite())
                .map_or(u32::MAX, |i| (r.start + i) as u32);
            u32s.push(last);
        }
    }
    // The shader's funding cursor of a window starts here, so no invocation walks the events
    // before its window (a loop of thousands of trips at its first bar).
    let off_window_funding = u32s.len();
    for r in &ranges {
        let mut base = 0usize;
        for per_symbol in &events {
            let first_at = per_symbol.partition_point(|e| (e.bar as usize) < r.start);
            u32s.push(to_u32(base + first_at, "funding events")?);
            base += per_symbol.len();
        }
    }
    let off_canary = u32s.len();
    u32s.push(CANARY_TRIPS);
    let off_span = u32s.len();
    for span in &spans {
        let (first_bar, last_bar) =
            span.map_or((u32::MAX, u32::MAX), |(a, b)| (a as u32, b as u32));
        u32s.push(first_bar);
        u32s.push(last_bar);
    }
    let streams = streams::plan_streams(input.spec);
    let warm_from = spans.iter().flatten().map(|(a, _)| *a).min().unwrap_or(0);
    let dims = Dims {
        n_streams: to_u32(streams.len(), "streamed indicators")?,
        warm_from: to_u32(warm_from, "bars")?,
        // Set by the run with the chunk length.
        warm_bars_per_chunk: 0,
        one: 1,
        n_bars: to_u32(n, "bars")?,
        n_symbols: to_u32(ns, "symbols")?,
        n_windows: to_u32(ranges.len(), "windows")?,
        n_slots: to_u32(input.spec.output_slot_count(), "indicator outputs")?,
        n_rule_params: to_u32(input.spec.params.params.len(), "params")?,
        mask_words: to_u32(words, "mask words")?,
        fill_close: u32::from(first.execution.fill == crate::spec::FillPrice::Close),
        cross_margin: u32::from(first.risk.margin_mode == crate::spec::MarginMode::Cross),
        funding_constant: u32::from(matches!(funding, Funding::ConstantRatePer8h(_))),
        off_tiers: to_u32(off_tiers, "real table")?,
        off_funding_rate: to_u32(off_funding_rate, "real table")?,
        off_tier_index: to_u32(off_tier_index, "u32 table")?,
        off_funding_index: to_u32(off_funding_index, "u32 table")?,
        off_funding_bar: to_u32(off_funding_bar, "u32 table")?,
        off_windows: to_u32(off_windows, "u32 table")?,
        off_last_valid: to_u32(off_last_valid, "u32 table")?,
        off_span: to_u32(off_span, "u32 table")?,
        off_window_funding: to_u32(off_window_funding, "u32 table")?,
        off_canary: to_u32(off_canary, "u32 table")?,
        // Set by the run once the chunk length is known.
        bars_per_chunk: 0,
        ..Dims::default()
    };
    let params = reference::sim_params(first, input.initial_capital);
    Ok(Statics {
        real,
        u32s,
        dims,
        funding,
        fill: params.fill,
        margin_mode: params.margin_mode,
        max_tiers,
        max_events_per_bar,
        streams,
    })
}

/// Funding events must be in bar order per symbol (the shader walks them with a cursor);
/// returns the most events one symbol has on one bar.
fn check_funding_order(
    market: &reference::Market<'_>,
    events: &[Vec<FundingAt>],
) -> Result<usize, GpuError> {
    let mut most = 0usize;
    for (per_symbol, sym) in events.iter().zip(&market.symbols) {
        let mut run = 0usize;
        for (i, e) in per_symbol.iter().enumerate() {
            if i > 0 && e.bar < per_symbol[i - 1].bar {
                return Err(GpuError::Input(format!(
                    "{}: funding event {i} (bar {}) comes after bar {}; the GPU kernel needs funding events in bar order",
                    sym.name,
                    e.bar,
                    per_symbol[i - 1].bar
                )));
            }
            run = if i > 0 && e.bar == per_symbol[i - 1].bar {
                run + 1
            } else {
                1
            };
            most = most.max(run);
        }
    }
    Ok(most)
}

/// The key of one indicator column group: indicator index and its argument bits.
type ColumnKey = (usize, Vec<u64>);

/// Computes one indicator on every symbol's span of data, as
/// `reference::signals_for` does; bars outside the span (and TA-Lib's warm-up) are NaN.
fn compute_columns(
    ind: &ResolvedIndicator,
    input: &BatchInput<'_>,
) -> Result<Vec<Vec<Vec<f64>>>, GpuError> {
    let market = input.market;
    let n = market.open_time.len();
    let k = ind.output_names.len();
    let mut per_symbol = Vec::with_capacity(market.symbols.len());
    for sym in &market.symbols {
        let mut outputs = vec![vec![f64::NAN; n]; k];
        if let Some((first, last)) = check_symbol(sym)? {
            let span = first..last + 1;
            let bars = BarColumns {
                open: &sym.open[span.clone()],
                high: &sym.high[span.clone()],
                low: &sym.low[span.clone()],
                close: &sym.close[span.clone()],
                volume: &sym.volume[span.clone()],
            };
            let mut slices: Vec<&mut [f64]> =
                outputs.iter_mut().map(|v| &mut v[span.clone()]).collect();
            compute_indicator(ind, &bars, &mut slices).map_err(|detail| {
                GpuError::Input(format!("{}: indicator `{}`: {detail}", sym.name, ind.name))
            })?;
        }
        per_symbol.push(outputs);
    }
    Ok(per_symbol)
}

#[cfg(feature = "talib")]
fn compute_indicator(
    ind: &ResolvedIndicator,
    bars: &BarColumns<'_>,
    outputs: &mut [&mut [f64]],
) -> Result<(), String> {
    ind.compute(bars, outputs).map_err(|e| e.to_string())
}

#[cfg(not(feature = "talib"))]
fn compute_indicator(
    ind: &ResolvedIndicator,
    _bars: &BarColumns<'_>,
    _outputs: &mut [&mut [f64]],
) -> Result<(), String> {
    Err(format!(
        "{} needs TA-Lib, and this build has none (feature `talib` is off)",
        ind.function
    ))
}

/// The settings of one resolved set.
pub fn set_params_host(resolved: &ResolvedSpec, initial_capital: f64) -> SetParamsHost {
    let p = reference::sim_params(resolved, initial_capital);
    SetParamsHost {
        initial_capital: p.initial_capital,
        position_size: p.position_size,
        stop_loss: p.stop_loss,
        take_profit: p.take_profit,
        taker_fee: p.taker_fee,
        slippage: p.slippage,
        funding_rate_8h: match resolved.execution.funding {
            Funding::ConstantRatePer8h(rate) => rate,
            Funding::FromData | Funding::Disabled => 0.0,
        },
        max_concurrent_positions: u32::try_from(p.max_concurrent_positions).unwrap_or(u32::MAX),
    }
}

fn column_key(index: usize, ind: &ResolvedIndicator) -> ColumnKey {
    (index, ind.args.iter().map(|(_, v)| v.to_bits()).collect())
}

/// How many of `resolved` (from the first) one dispatch group holds: their distinct
/// indicator columns and masks plus their per-set tables must fit one binding of
/// `max_binding_bytes` in `batch_real` and in `batch_u32` (counted as [`pack_batch`] lays them
/// out, before any column is computed). [`GpuError::TooLarge`] when not even the first set's
/// tables fit, naming the buffer, its size and the limit.
pub fn fit_sets<R: Real>(
    input: &BatchInput<'_>,
    statics: &Statics<R>,
    resolved: &[ResolvedSpec],
    max_binding_bytes: u64,
) -> Result<usize, GpuError> {
    let n = input.market.open_time.len() as u64;
    let ns = input.market.symbols.len() as u64;
    let words = mask_words(n as usize) as u64;
    let per_set_real = ns + u64::from(statics.dims.n_rule_params);
    let per_set_u32 = u64::from(statics.dims.n_slots);
    let real_size = size_of::<R>() as u64;
    let mut keys: HashSet<ColumnKey> = HashSet::new();
    let mut columns = 0u64;
    for (k, r) in resolved.iter().enumerate() {
        let mut added = 0u64;
        for (i, ind) in r.indicators.iter().enumerate() {
            if statics.streams.iter().any(|s| s.indicator == i) {
                continue;
            }
            let key = column_key(i, ind);
            if !keys.contains(&key) {
                keys.insert(key);
                added += ind.output_names.len() as u64;
            }
        }
        let sets = k as u64 + 1;
        let cols = columns + added;
        let real_bytes = (cols * ns * n + sets * per_set_real).max(1) * real_size;
        let u32_bytes = (cols * ns * words + sets * per_set_u32).max(1) * 4;
        let over = [
            (
                "batch_real (indicator columns, leverage, rule params)",
                real_bytes,
            ),
            ("batch_u32 (indicator masks, slots)", u32_bytes),
        ]
        .into_iter()
        .find(|(_, bytes)| *bytes > max_binding_bytes);
        if let Some((buffer, bytes)) = over {
            if k == 0 {
                return Err(GpuError::TooLarge(format!(
                    "one param set needs {bytes} bytes in {buffer} ({cols} indicator columns of {n} bars x {ns} symbols), the device binds at most {max_binding_bytes} bytes"
                )));
            }
            return Ok(k);
        }
        columns = cols;
    }
    Ok(resolved.len())
}

/// Packs one dispatch: indicator columns of every distinct parameter tuple the sets use
/// (streamed indicators excepted), each set's column per output slot (a streamed
/// indicator's period in its slot), its leverage per symbol, its rule params and settings.
/// `resolved` are the dispatch's sets, resolved.
pub fn pack_batch<R: Real>(
    input: &BatchInput<'_>,
    statics: &Statics<R>,
    resolved: &[ResolvedSpec],
) -> Result<BatchTables<R>, GpuError> {
    let market = input.market;
    let n = market.open_time.len();
    let ns = market.symbols.len();
    let words = mask_words(n);
    let n_slots = statics.dims.n_slots as usize;
    let n_params = statics.dims.n_rule_params as usize;
    let mut keys: HashMap<ColumnKey, usize> = HashMap::new();
    let mut groups: Vec<&ResolvedIndicator> = Vec::new();
    let mut group_base: Vec<usize> = Vec::new();
    let mut columns = 0usize;
    let mut set_cols = Vec::with_capacity(resolved.len() * n_slots);
    for r in resolved {
        if r.execution.funding != statics.funding
            && !matches!(
                (r.execution.funding, statics.funding),
                (Funding::ConstantRatePer8h(_), Funding::ConstantRatePer8h(_))
            )
        {
            return Err(GpuError::Unsupported(
                "param sets of one batch use different kinds of funding".to_string(),
            ));
        }
        let mut row = vec![0u32; n_slots];
        for (i, ind) in r.indicators.iter().enumerate() {
            if statics.streams.iter().any(|s| s.indicator == i) {
                // A streamed indicator's slot holds its period (gpu::streams).
                row[ind.first_slot] = streams::period_of(ind).map_err(|detail| {
                    GpuError::Input(format!("indicator `{}`: {detail}", ind.name))
                })?;
                continue;
            }
            let key = column_key(i, ind);
            let group = *keys.entry(key).or_insert_with(|| {
                groups.push(ind);
                group_base.push(columns);
                columns += ind.output_names.len();
                groups.len() - 1
            });
            for k in 0..ind.output_names.len() {
                row[ind.first_slot + k] = to_u32(group_base[group] + k, "indicator columns")?;
            }
        }
        set_cols.extend(row);
    }
    let mut real: Vec<R> = Vec::with_capacity(columns * ns * n);
    let mut u32s: Vec<u32> = vec![0; columns * ns * words];
    for (group, ind) in groups.iter().enumerate() {
        let values = compute_columns(ind, input)?;
        for k in 0..ind.output_names.len() {
            let col = group_base[group] + k;
            for (s, outputs) in values.iter().enumerate() {
                let mask_at = (col * ns + s) * words;
                for (t, &v) in outputs[k].iter().enumerate() {
                    if v.is_finite() {
                        set_bit(&mut u32s[mask_at..mask_at + words], t);
                    }
                }
                real.extend(
                    outputs[k]
                        .iter()
                        .map(|&v| R::from_f64(if v.is_finite() { v } else { 0.0 })),
                );
            }
        }
    }
    let off_set_leverage = real.len();
    for r in resolved {
        let leverage = f64::from(r.risk.leverage);
        for sym in &market.symbols {
            let cap = r
                .risk
                .max_leverage
                .get(sym.name)
                .map_or(f64::INFINITY, |&c| f64::from(c));
            real.push(R::from_f64(leverage.min(cap)));
        }
    }
    let off_set_rule_params = real.len();
    for r in resolved {
        for value in r.params.values.iter().take(n_params) {
            real.push(R::from_f64(match value {
                ParamValue::Int(v) => *v as f64,
                ParamValue::Float(v) => *v,
                ParamValue::Bool(b) => f64::from(u8::from(*b)),
                ParamValue::Str(_) => 0.0,
            }));
        }
    }
    let off_set_cols = u32s.len();
    u32s.extend(set_cols);
    // wgpu refuses zero-sized bindings.
    if real.is_empty() {
        real.push(R::from_f64(0.0));
    }
    let sets = resolved
        .iter()
        .map(|r| R::set_params(&set_params_host(r, input.initial_capital)))
        .collect();
    let dims = Dims {
        n_sets: to_u32(resolved.len(), "sets")?,
        off_set_leverage: to_u32(off_set_leverage, "batch table")?,
        off_set_rule_params: to_u32(off_set_rule_params, "batch table")?,
        off_set_cols: to_u32(off_set_cols, "batch table")?,
        ..statics.dims
    };
    Ok(BatchTables {
        real,
        u32s,
        sets,
        dims,
        columns,
    })
}

/// Resolves `sets[range]` (errors name the set's index in `sets`).
pub fn resolve_sets(
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    range: Range<usize>,
) -> Result<Vec<ResolvedSpec>, GpuError> {
    range
        .into_par_iter()
        .map(|index| {
            input
                .spec
                .resolve(&sets[index])
                .map_err(|error| GpuError::Resolve { index, error })
        })
        .collect()
}

/// The step of the shader's money exponent (`MONEY_RESCALE_STEP` in shaders/shared/sim.wgsl).
pub const MONEY_RESCALE_STEP: u32 = 64;

/// The metrics of one read-back row, finished by the same [`MetricsAcc::finish`] as the
/// reference engine. The final equity comes back in the row's money unit (2^-money_exp
/// USDT, exact in f64). `span_ms`: the row's window's time span
/// ([`crate::engine::span_ms`]).
pub fn finish_metrics(row: &AccumHost, initial: f64, span_ms: i64) -> Metrics {
    // Steps of 2^-64 (the shader rescales by 2^64), each exact.
    let mut final_equity = row.final_equity;
    for _ in 0..row.money_exp / MONEY_RESCALE_STEP {
        final_equity *= 1.0 / 18_446_744_073_709_551_616.0;
    }
    let acc = MetricsAcc {
        initial,
        prev: final_equity,
        bars: u64::from(row.n_bars),
        final_equity,
        max_drawdown: row.max_drawdown,
        sum: row.ret_sum,
        sum_sq: row.ret_sum_sq,
        down_sq: row.down_sq,
        count: u64::from(row.ret_count),
        exposed: u64::from(row.exposed_bars),
        funding: row.funding_paid,
        fees: row.fees_paid,
        wins: row.wins,
        losses: row.losses,
        n_wins: u64::from(row.n_wins),
        n_trades: u64::from(row.n_trades),
        liquidations: u64::from(row.liquidations),
    };
    acc.finish(span_ms)
}
