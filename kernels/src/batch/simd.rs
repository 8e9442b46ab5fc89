//! The fused SIMD lane kernel: one pass over the bars per block of `W` param sets, each lane
//! one set, mirroring the reference event loop of `engine::sim` (docs/SEMANTICS.md §2, §4).
//!
//! # Design
//! * **Sets are grouped** by their indicator arguments (and funding setting) into tasks that
//!   rayon runs in parallel. A task computes its indicators once (streaming implementations of
//!   [`super::indicators`], TA-Lib for other functions), then its rules once per distinct
//!   rule-param values into one *signal code* byte per symbol and bar ([`code`]), the rules
//!   being the compiled programs of `expr`, evaluated column-wise. Lanes only read codes.
//! * **The common bar is vector code**: funding, the intrabar trigger tests (stops,
//!   take-profits, isolated liquidation prices, the cross account's margin test), MAE/MFE
//!   extremes and the equity / drawdown / return sums of [`MetricsAcc`] run on all lanes at
//!   once with the same operations, in the same order, as the reference.
//! * **Events are scalar**: a lane whose bar has a fill, a trigger, a signal that changes its
//!   side or a last bar leaves the vector path for that bar and runs [`LaneView`], a port of
//!   `engine::sim::State` method by method on that lane's state. Events are rare (tens per year
//!   per set), so the kernel runs at vector speed while its decisions are the reference's.
//!
//! * **Two precisions, one kernel**: the lane type `L` holds f64 or f32 ([`Lanes`]). The
//!   event path ([`LaneView`], the positions held in place) is f64 in both; with f32 lanes
//!   only the vector mirrors and the vector arithmetic (funding, equity, the metric sums) are
//!   f32, with twice the lanes per register, and the vector trigger tests are made
//!   conservative (they may send a lane to the f64 event path for nothing, never miss a
//!   trigger), so every stop, take-profit and liquidation is still decided in f64.
//!
//! Float policy (SEMANTICS.md §4.3): f64 lanes compute the reference's operations in its
//! order, no FMA, no reassociation: the metrics are bit-identical to the reference's, which
//! `etrading parity` checks. f32 lanes give the same results on every width and platform, within
//! the `f32` tolerance of the reference.

// The lane loops index several per-lane and per-symbol arrays in step, as the reference's
// loops do; iterator chains over four zipped arrays would hide the mirror.
#![allow(clippy::needless_range_loop)]

use std::collections::HashMap;

use rayon::prelude::*;
use wide::{f32x4, f64x2};

#[cfg(target_arch = "x86_64")]
use super::lanes::{Arr, Arr32};
use super::lanes::{Lanes, PackedCodes, SimdLevel};
use super::{BatchError, BatchInput, Precision, indicators};
use crate::brackets::BracketTable;
use crate::engine::{ExitReason, FundingAt, Metrics, MetricsAcc, Position, Side, Target, Trade};
use crate::expr::{BoundRule, RuleInputs};
use crate::reference::{self, Market};
use crate::series::BarColumns;
use crate::spec::{FillPrice, Funding, MarginMode, ParamSet, ResolvedIndicator, ResolvedSpec};

/// The most symbols one spec may trade in the SIMD kernel.
pub const MAX_SYMBOLS: usize = 8;

/// The most lanes of one block (16 f32 lanes under AVX-512).
pub const MAX_LANES: usize = 16;

/// Longest window f32 lanes may score: they count bars in f32, exact up to 2^24.
pub const F32_MAX_WINDOW_BARS: usize = 1 << 24;

/// Relative slack of the f32 lanes' cross-margin and bracket tests (2^-16, 256 f32 units in
/// the last place): a test that might decide differently in f64 sends the lane to the f64
/// event path. The f32 errors it covers are below `(5 + 2 x symbols)` units of 2^-24 of the
/// magnitudes summed (see `simulate_bars`), under 2^-19 for 8 symbols.
const F32_SLACK: f64 = 1.0 / 65_536.0;

/// Bars simulated per block before the task's next block takes the same bars: 512 bars of
/// four symbols' seven price columns are about 115 KiB, which stay in L2 across the blocks.
const BAR_CHUNK: usize = 512;

/// Largest number of sets one rayon task simulates.
const TASK_SETS: usize = 256;

/// Signal code bits (one byte per symbol and bar, §4.1).
pub mod code {
    /// `long_entry and not short_entry`: a flat symbol goes long, a short one reverses.
    pub const ENTER_LONG: u8 = 1;
    /// `short_entry and not long_entry`.
    pub const ENTER_SHORT: u8 = 2;
    /// `long_exit or short_entry`: a long is closed (or reversed with [`ENTER_SHORT`]).
    pub const EXIT_LONG: u8 = 4;
    /// `short_exit or long_entry`.
    pub const EXIT_SHORT: u8 = 8;

    /// The code of one bar's four signals.
    #[inline]
    pub fn of(le: bool, lx: bool, se: bool, sx: bool) -> u8 {
        let mut c = 0;
        if le && !se {
            c |= ENTER_LONG;
        }
        if se && !le {
            c |= ENTER_SHORT;
        }
        if lx || se {
            c |= EXIT_LONG;
        }
        if sx || le {
            c |= EXIT_SHORT;
        }
        c
    }
}

/// What a set's lane needs besides signals: its resolved risk and execution numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
struct LaneParams {
    leverage: f64,
    position_size: f64,
    max_concurrent: usize,
    /// NaN when the spec has none.
    stop_loss: f64,
    take_profit: f64,
    taker_fee: f64,
    slippage: f64,
    caps: [f64; MAX_SYMBOLS],
}

/// One set after resolution: its grouping keys and lane params.
#[derive(Clone, Debug)]
struct SetPlan {
    /// Funding setting, then every indicator argument (bit patterns).
    task_key: Vec<u64>,
    /// The values of the params the rules read (bit patterns).
    signal_key: Vec<u64>,
    lane: LaneParams,
}

/// Trades of one set, recorded when a caller asks (parity).
pub type TradeLog = Vec<Trade>;

/// Runs the SIMD backend in f64 over `sets`; see [`super::run`].
pub fn run(
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    out: &mut [Metrics],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), BatchError> {
    run_traced(input, sets, out, None, progress)
}

/// [`run`], also recording each set's trades of the full run (window 0) into `trades` when
/// given (one log per set).
pub fn run_traced(
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    out: &mut [Metrics],
    trades: Option<&mut [TradeLog]>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), BatchError> {
    run_at(SimdLevel::detect(), input, sets, out, trades, progress)
}

/// [`run_traced`] at a given vector width (at most the CPU's: see [`SimdLevel::available`]).
pub fn run_at(
    level: SimdLevel,
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    out: &mut [Metrics],
    trades: Option<&mut [TradeLog]>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), BatchError> {
    run_at_precision(level, Precision::F64, input, sets, out, trades, progress)
}

/// Whether the kernel takes `input` at `precision` ([`BatchError::Unsupported`] says why not):
/// the limits that do not depend on the sets, so a caller can choose its backend (and record
/// it) before the first batch runs.
pub fn check_input(input: &BatchInput<'_>, precision: Precision) -> Result<(), BatchError> {
    let symbols = input.market.symbols.len();
    if symbols > MAX_SYMBOLS {
        return Err(BatchError::Unsupported(format!(
            "the SIMD kernel trades at most {MAX_SYMBOLS} symbols, the market has {symbols}"
        )));
    }
    if precision == Precision::F32
        && let Some(w) = input
            .windows
            .windows()
            .iter()
            .find(|w| w.end - w.start > F32_MAX_WINDOW_BARS)
    {
        return Err(BatchError::Unsupported(format!(
            "f32 lanes count bars in f32, exact up to {F32_MAX_WINDOW_BARS} bars; window {} has {} bars (use f64)",
            w.kind.label(),
            w.end - w.start
        )));
    }
    Ok(())
}

/// [`run_at`] with lanes of the given precision: f64 (bit-identical to the reference) or f32
/// (twice the lanes per vector; SEMANTICS.md §4.3).
pub fn run_at_precision(
    level: SimdLevel,
    precision: Precision,
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    out: &mut [Metrics],
    trades: Option<&mut [TradeLog]>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), BatchError> {
    let level = level.min(SimdLevel::detect());
    check_input(input, precision)?;
    let shared = Shared::new(input)?;
    let plans: Vec<SetPlan> = sets
        .par_iter()
        .enumerate()
        .map(|(index, set)| shared.plan(set, index))
        .collect::<Result<_, _>>()?;
    // Sort by task then signal key so equal indicators and equal signals are neighbours.
    let mut order: Vec<usize> = (0..sets.len()).collect();
    order.sort_by(|&a, &b| {
        (&plans[a].task_key, &plans[a].signal_key).cmp(&(&plans[b].task_key, &plans[b].signal_key))
    });
    let mut tasks: Vec<&[usize]> = Vec::new();
    let mut rest = order.as_slice();
    while !rest.is_empty() {
        let key = &plans[rest[0]].task_key;
        let same = rest
            .iter()
            .take(TASK_SETS)
            .take_while(|&&i| &plans[i].task_key == key)
            .count();
        let (task, tail) = rest.split_at(same);
        tasks.push(task);
        rest = tail;
    }
    let nw = input.windows.len();
    let trace = trades.is_some();
    let results: Vec<(Vec<Metrics>, Vec<TradeLog>)> = tasks
        .par_iter()
        .map(|task| {
            let r = run_task_dispatch(level, precision, &shared, sets, &plans, task, trace);
            progress(task.len());
            r
        })
        .collect::<Result<_, _>>()?;
    let mut trades = trades;
    for (task, (rows, logs)) in tasks.iter().zip(results) {
        for (k, &set) in task.iter().enumerate() {
            out[set * nw..(set + 1) * nw].copy_from_slice(&rows[k * nw..(k + 1) * nw]);
        }
        if let Some(dest) = trades.as_deref_mut() {
            for (&set, log) in task.iter().zip(logs) {
                dest[set] = log;
            }
        }
    }
    Ok(())
}

fn run_task_dispatch(
    level: SimdLevel,
    precision: Precision,
    shared: &Shared<'_>,
    sets: &[ParamSet],
    plans: &[SetPlan],
    task: &[usize],
    trace: bool,
) -> Result<(Vec<Metrics>, Vec<TradeLog>), BatchError> {
    match (level, precision) {
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx512, _) => {
            // SAFETY: `detect` returned Avx512 only after `is_x86_feature_detected!("avx512f")`.
            unsafe { run_task_avx512(precision, shared, sets, plans, task, trace) }
        }
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx2, _) => {
            // SAFETY: `detect` returned Avx2 only after `is_x86_feature_detected!("avx2")`.
            unsafe { run_task_avx2(precision, shared, sets, plans, task, trace) }
        }
        (_, Precision::F64) => run_task::<f64x2>(shared, sets, plans, task, trace),
        (_, Precision::F32) => run_task::<f32x4>(shared, sets, plans, task, trace),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_task_avx2(
    precision: Precision,
    shared: &Shared<'_>,
    sets: &[ParamSet],
    plans: &[SetPlan],
    task: &[usize],
    trace: bool,
) -> Result<(Vec<Metrics>, Vec<TradeLog>), BatchError> {
    match precision {
        Precision::F64 => run_task::<Arr<4>>(shared, sets, plans, task, trace),
        Precision::F32 => run_task::<Arr32<8>>(shared, sets, plans, task, trace),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_task_avx512(
    precision: Precision,
    shared: &Shared<'_>,
    sets: &[ParamSet],
    plans: &[SetPlan],
    task: &[usize],
    trace: bool,
) -> Result<(Vec<Metrics>, Vec<TradeLog>), BatchError> {
    match precision {
        Precision::F64 => run_task::<Arr<8>>(shared, sets, plans, task, trace),
        Precision::F32 => run_task::<Arr32<16>>(shared, sets, plans, task, trace),
    }
}

/// Per-batch data every task reads.
struct Shared<'a> {
    input: &'a BatchInput<'a>,
    market: &'a Market<'a>,
    tables: Vec<&'a BracketTable>,
    /// First and last bar with data per symbol.
    spans: Vec<Option<(usize, usize)>>,
    /// Mark prices with the last price standing in where there is none (§2.5).
    mark_open: Vec<Vec<f64>>,
    mark_high: Vec<Vec<f64>>,
    mark_low: Vec<Vec<f64>>,
    /// Params read by the rules (values and `prev` lags).
    rule_params: Vec<usize>,
    margin_mode: MarginMode,
    fill: FillPrice,
}

impl<'a> Shared<'a> {
    fn new(input: &'a BatchInput<'a>) -> Result<Shared<'a>, BatchError> {
        let market = input.market;
        check_input(input, Precision::F64)?;
        let tables = reference::tables_for(market, input.brackets)?;
        let fallback = |mark: &[f64], last: &[f64]| -> Vec<f64> {
            mark.iter()
                .zip(last)
                .map(|(&m, &l)| if m.is_finite() { m } else { l })
                .collect()
        };
        let mut rule_params: Vec<usize> = input
            .spec
            .rules
            .iter()
            .flat_map(|(_, rule)| rule.reads().params.iter().copied())
            .collect();
        rule_params.sort_unstable();
        rule_params.dedup();
        Ok(Shared {
            input,
            market,
            tables,
            spans: market
                .symbols
                .iter()
                .map(|s| reference::valid_span(s.close))
                .collect(),
            mark_open: market
                .symbols
                .iter()
                .map(|s| fallback(s.mark_open, s.open))
                .collect(),
            mark_high: market
                .symbols
                .iter()
                .map(|s| fallback(s.mark_high, s.high))
                .collect(),
            mark_low: market
                .symbols
                .iter()
                .map(|s| fallback(s.mark_low, s.low))
                .collect(),
            rule_params,
            margin_mode: input.spec.risk.margin_mode,
            fill: input.spec.execution.fill,
        })
    }

    fn resolve(&self, set: &ParamSet, index: usize) -> Result<ResolvedSpec, BatchError> {
        self.input
            .spec
            .resolve(set)
            .map_err(|error| BatchError::Resolve { index, error })
    }

    fn plan(&self, set: &ParamSet, index: usize) -> Result<SetPlan, BatchError> {
        let r = self.resolve(set, index)?;
        let mut task_key = match r.execution.funding {
            Funding::FromData => vec![0],
            Funding::Disabled => vec![1],
            Funding::ConstantRatePer8h(rate) => vec![2, rate.to_bits()],
        };
        for ind in &r.indicators {
            task_key.extend(ind.args.iter().map(|(_, v)| v.to_bits()));
        }
        let signal_key = self
            .rule_params
            .iter()
            .map(|&p| set.values[p].as_f64().unwrap_or(f64::NAN).to_bits())
            .collect();
        let p = reference::sim_params(&r, self.input.initial_capital);
        let mut caps = [f64::INFINITY; MAX_SYMBOLS];
        for (s, sym) in self.market.symbols.iter().enumerate() {
            caps[s] = r
                .risk
                .max_leverage
                .get(sym.name)
                .map_or(f64::INFINITY, |&c| f64::from(c));
        }
        Ok(SetPlan {
            task_key,
            signal_key,
            lane: LaneParams {
                leverage: p.leverage,
                position_size: p.position_size,
                max_concurrent: p.max_concurrent_positions,
                stop_loss: p.stop_loss.unwrap_or(f64::NAN),
                take_profit: p.take_profit.unwrap_or(f64::NAN),
                taker_fee: p.taker_fee,
                slippage: p.slippage,
                caps,
            },
        })
    }
}

/// Indicator columns of one symbol (NaN outside its data), by output slot.
fn compute_indicators(
    r: &ResolvedSpec,
    slots: usize,
    sym: &reference::MarketSymbol<'_>,
    span: Option<(usize, usize)>,
) -> Result<Vec<Vec<f64>>, BatchError> {
    let n = sym.close.len();
    let mut columns = vec![vec![f64::NAN; n]; slots];
    let Some((first, last)) = span else {
        return Ok(columns);
    };
    let range = first..last + 1;
    let bars = sym.bars(range.clone());
    for ind in &r.indicators {
        let k = ind.output_names.len();
        let mut outputs: Vec<&mut [f64]> = columns[ind.first_slot..ind.first_slot + k]
            .iter_mut()
            .map(|v| &mut v[range.clone()])
            .collect();
        compute_one(ind, &bars, &mut outputs).map_err(|detail| {
            BatchError::Reference(reference::ReferenceError::Indicator {
                symbol: sym.name.to_string(),
                indicator: ind.name.clone(),
                detail,
            })
        })?;
    }
    Ok(columns)
}

/// A streaming implementation when there is one for these arguments, else TA-Lib.
fn compute_one(
    ind: &ResolvedIndicator,
    bars: &BarColumns<'_>,
    outputs: &mut [&mut [f64]],
) -> Result<(), String> {
    if indicators::supports(&ind.function) && indicators::check(&ind.function, &ind.args).is_ok() {
        return indicators::compute(ind, bars, outputs).map_err(|e| e.to_string());
    }
    talib_fallback(ind, bars, outputs)
}

#[cfg(feature = "talib")]
fn talib_fallback(
    ind: &ResolvedIndicator,
    bars: &BarColumns<'_>,
    outputs: &mut [&mut [f64]],
) -> Result<(), String> {
    ind.compute(bars, outputs).map_err(|e| e.to_string())
}

#[cfg(not(feature = "talib"))]
fn talib_fallback(
    ind: &ResolvedIndicator,
    _bars: &BarColumns<'_>,
    _outputs: &mut [&mut [f64]],
) -> Result<(), String> {
    Err(format!(
        "{} has no streaming implementation for these arguments and this build has no TA-Lib",
        ind.function
    ))
}

/// The signal codes of one symbol for one bound rule set: 0 outside the symbol's data.
fn signal_codes(
    r: &ResolvedSpec,
    sym: &reference::MarketSymbol<'_>,
    span: Option<(usize, usize)>,
    columns: &[Vec<f64>],
    scratch: &mut [Vec<bool>; 4],
    stack: &mut Vec<f64>,
    out: &mut [u8],
) -> Result<(), BatchError> {
    out.fill(0);
    let Some((first, last)) = span else {
        return Ok(());
    };
    let range = first..last + 1;
    let len = range.len();
    let bars = sym.bars(range.clone());
    let slices: Vec<&[f64]> = columns.iter().map(|c| &c[range.clone()]).collect();
    let inputs = RuleInputs {
        bars,
        indicators: &slices,
    };
    let rules: [(&'static str, &Option<BoundRule>); 4] = [
        ("long_entry", &r.rules.long_entry),
        ("long_exit", &r.rules.long_exit),
        ("short_entry", &r.rules.short_entry),
        ("short_exit", &r.rules.short_exit),
    ];
    for ((name, rule), dest) in rules.into_iter().zip(scratch.iter_mut()) {
        dest.clear();
        dest.resize(len, false);
        if let Some(rule) = rule {
            rule.eval_columns(&inputs, dest, stack).map_err(|e| {
                reference::ReferenceError::Rule {
                    symbol: sym.name.to_string(),
                    rule: name,
                    detail: e.to_string(),
                }
            })?;
        }
    }
    for (i, c) in out[range].iter_mut().enumerate() {
        // §2.2: no decision on a bar without data.
        if sym.close[first + i].is_finite() {
            *c = code::of(scratch[0][i], scratch[1][i], scratch[2][i], scratch[3][i]);
        }
    }
    Ok(())
}

/// What the SIMD path computes for one set before simulating, per symbol: its indicator
/// columns (by output slot) and its signal codes (for the parity harness).
pub fn signals_of(
    input: &BatchInput<'_>,
    set: &ParamSet,
) -> Result<Vec<SymbolSignals>, BatchError> {
    let shared = Shared::new(input)?;
    let r = shared.resolve(set, 0)?;
    let slots = input.spec.output_slot_count();
    let n = input.market.open_time.len();
    let mut scratch: [Vec<bool>; 4] = Default::default();
    let mut stack = Vec::new();
    input
        .market
        .symbols
        .iter()
        .zip(&shared.spans)
        .map(|(sym, &span)| {
            let columns = compute_indicators(&r, slots, sym, span)?;
            let mut codes = vec![0u8; n];
            signal_codes(
                &r,
                sym,
                span,
                &columns,
                &mut scratch,
                &mut stack,
                &mut codes,
            )?;
            Ok((columns, codes))
        })
        .collect()
}

/// One symbol's indicator columns (by output slot) and signal codes (one per bar).
pub type SymbolSignals = (Vec<Vec<f64>>, Vec<u8>);

/// One task: sets sharing indicators and funding.
#[inline(always)]
fn run_task<L: Lanes>(
    shared: &Shared<'_>,
    sets: &[ParamSet],
    plans: &[SetPlan],
    task: &[usize],
    trace: bool,
) -> Result<(Vec<Metrics>, Vec<TradeLog>), BatchError> {
    let market = shared.market;
    let ns = market.symbols.len();
    let n = market.open_time.len();
    let first = shared.resolve(&sets[task[0]], task[0])?;
    let slots = shared.input.spec.output_slot_count();
    let columns: Vec<Vec<Vec<f64>>> = market
        .symbols
        .iter()
        .zip(&shared.spans)
        .map(|(sym, &span)| compute_indicators(&first, slots, sym, span))
        .collect::<Result<_, _>>()?;
    // Signal codes per distinct signal key: codes[k][s] has one byte per bar.
    let mut key_of_set: Vec<usize> = Vec::with_capacity(task.len());
    let mut codes: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut known: HashMap<&[u64], usize> = HashMap::new();
    let mut scratch: [Vec<bool>; 4] = Default::default();
    let mut stack = Vec::new();
    for &i in task {
        let key = plans[i].signal_key.as_slice();
        let k = match known.get(key) {
            Some(&k) => k,
            None => {
                let r = shared.resolve(&sets[i], i)?;
                let mut per_symbol = vec![vec![0u8; n]; ns];
                for (s, sym) in market.symbols.iter().enumerate() {
                    signal_codes(
                        &r,
                        sym,
                        shared.spans[s],
                        &columns[s],
                        &mut scratch,
                        &mut stack,
                        &mut per_symbol[s],
                    )?;
                }
                codes.push(per_symbol);
                known.insert(key, codes.len() - 1);
                codes.len() - 1
            }
        };
        key_of_set.push(k);
    }
    drop(columns);
    // Funding events per symbol under this task's setting.
    let funding = reference::funding_events(&first, market);
    let nw = shared.input.windows.len();
    let mut rows = vec![Metrics::default(); task.len() * nw];
    let mut logs: Vec<TradeLog> = vec![Vec::new(); if trace { task.len() } else { 0 }];
    let mut packed = Vec::new();
    for (w, window) in shared.input.windows.windows().iter().enumerate() {
        let ctx = WindowCtx::new(shared, &funding, window.start, window.end);
        let log_this = trace && w == 0;
        // Each block's lanes: their params and signal codes (spare lanes repeat lane 0).
        let blocks: Vec<BlockLanes<'_>> = task
            .chunks(L::W)
            .enumerate()
            .map(|(b, chunk)| {
                let mut lanes = [LaneParams {
                    caps: [f64::INFINITY; MAX_SYMBOLS],
                    ..plans[chunk[0]].lane
                }; MAX_LANES];
                let mut lane_codes: [&[Vec<u8>]; MAX_LANES] =
                    [&codes[key_of_set[b * L::W]]; MAX_LANES];
                for (l, &i) in chunk.iter().enumerate() {
                    lanes[l] = plans[i].lane;
                    lane_codes[l] = &codes[key_of_set[b * L::W + l]];
                }
                for l in chunk.len()..L::W {
                    lanes[l] = lanes[0];
                    lane_codes[l] = lane_codes[0];
                }
                (lanes, lane_codes)
            })
            .collect();
        let mut sims: Vec<BlockSim<L>> = blocks
            .iter()
            .map(|_| BlockSim::new(shared.input.initial_capital))
            .collect();
        let mut block_logs: Vec<[TradeLog; MAX_LANES]> = if log_this {
            blocks.iter().map(|_| Default::default()).collect()
        } else {
            Vec::new()
        };
        // Bars in chunks, every block over a chunk before the next (see simulate_bars).
        let mut t0 = ctx.start;
        while t0 < ctx.end {
            let t1 = (t0 + BAR_CHUNK).min(ctx.end);
            for (b, (lanes, lane_codes)) in blocks.iter().enumerate() {
                simulate_bars::<L>(
                    &mut sims[b],
                    &ctx,
                    &lanes[..L::W],
                    &lane_codes[..L::W],
                    &mut packed,
                    block_logs.get_mut(b).map(|logs| &mut logs[..L::W]),
                    t0,
                    t1,
                );
            }
            t0 = t1;
        }
        let span =
            crate::engine::span_ms(&market.open_time[ctx.start..ctx.end], market.interval_ms);
        for (b, chunk) in task.chunks(L::W).enumerate() {
            let accs = sims[b].finish(&ctx);
            for l in 0..chunk.len() {
                let k = b * L::W + l;
                rows[k * nw + w] = accs[l].finish(span);
                if log_this {
                    logs[k] = std::mem::take(&mut block_logs[b][l]);
                }
            }
        }
    }
    Ok((rows, logs))
}

/// One block's lanes: their params and their signal codes per symbol.
type BlockLanes<'c> = ([LaneParams; MAX_LANES], [&'c [Vec<u8>]; MAX_LANES]);

/// One window's view of the market.
struct WindowCtx<'s> {
    shared: &'s Shared<'s>,
    start: usize,
    end: usize,
    /// Last bar with data per symbol inside the window.
    last_valid: [usize; MAX_SYMBOLS],
    /// Funding events per symbol inside the window (absolute bars).
    funding: Vec<Vec<FundingAt>>,
    /// Bars where some symbol has no data between its first and last bar (vector path off).
    holes: Vec<bool>,
}

impl<'s> WindowCtx<'s> {
    fn new(
        shared: &'s Shared<'s>,
        funding: &[Vec<FundingAt>],
        start: usize,
        end: usize,
    ) -> WindowCtx<'s> {
        let mut last_valid = [usize::MAX; MAX_SYMBOLS];
        let mut holes = vec![false; end - start];
        for (s, sym) in shared.market.symbols.iter().enumerate() {
            let window = &sym.close[start..end];
            if let Some(last) = window.iter().rposition(|c| c.is_finite()) {
                last_valid[s] = start + last;
                let first = window.iter().position(|c| c.is_finite()).unwrap_or(0);
                for (i, c) in window.iter().enumerate().take(last).skip(first) {
                    if !c.is_finite() {
                        holes[i] = true;
                    }
                }
            }
        }
        WindowCtx {
            shared,
            start,
            end,
            last_valid,
            funding: funding
                .iter()
                .map(|events| {
                    events
                        .iter()
                        .filter(|e| (start..end).contains(&(e.bar as usize)))
                        .copied()
                        .collect()
                })
                .collect(),
            holes,
        }
    }
}

/// §2.2 from a signal code: engine::sim `target`, bit for bit. `None`: the code asks for
/// no change from `side` (`is_last`: the symbol's last bar, where nothing opens).
pub fn target(c: u8, side: Option<Side>, is_last: bool) -> Option<Target> {
    let has = |bit: u8| c & bit != 0;
    match side {
        Some(Side::Long) if has(code::ENTER_SHORT) && !is_last => Some(Target::Short),
        Some(Side::Long) if has(code::EXIT_LONG) => Some(Target::Flat),
        Some(Side::Short) if has(code::ENTER_LONG) && !is_last => Some(Target::Long),
        Some(Side::Short) if has(code::EXIT_SHORT) => Some(Target::Flat),
        None if is_last => None,
        None if has(code::ENTER_LONG) => Some(Target::Long),
        None if has(code::ENTER_SHORT) => Some(Target::Short),
        _ => None,
    }
}

/// All lanes' state for one symbol: the fields of [`Position`] the vector path reads, as
/// vectors, plus values it caches (`sgnqty = sign x qty`, the isolated liquidation price and
/// the bracket last used for the cross maintenance margin). The positions themselves live in
/// [`LanePositions`]; these vectors are rewritten from them when an event changes one.
/// `funding` is the one field the vector path writes: a lane's positions read it back on load.
#[derive(Clone, Copy)]
struct PosLanes<L: Lanes> {
    open: L,
    long: L,
    sgnqty: L,
    qty: L,
    entry: L,
    stop: L,
    tp: L,
    liq: L,
    bracket_floor: L,
    bracket_cap: L,
    bracket_mmr: L,
    bracket_cum: L,
    funding: L,
    margin: L,
}

impl<L: Lanes> PosLanes<L> {
    fn flat() -> Self {
        let z = L::splat(0.0);
        let nan = L::splat(f64::NAN);
        PosLanes {
            open: z,
            long: z,
            sgnqty: z,
            qty: z,
            entry: z,
            stop: nan,
            tp: nan,
            liq: nan,
            bracket_floor: z,
            bracket_cap: z,
            bracket_mmr: z,
            bracket_cum: z,
            funding: z,
            margin: z,
        }
    }

    /// Writes one lane back; `bracket_notional` picks the cached bracket (cross margin).
    fn store(
        &mut self,
        l: usize,
        pos: Option<Position>,
        mode: MarginMode,
        table: &BracketTable,
        bracket_notional: f64,
    ) {
        let Some(p) = pos else {
            for v in [
                &mut self.open,
                &mut self.long,
                &mut self.sgnqty,
                &mut self.qty,
                &mut self.entry,
                &mut self.margin,
                &mut self.funding,
            ] {
                v.set(l, 0.0);
            }
            self.stop.set(l, f64::NAN);
            self.tp.set(l, f64::NAN);
            self.liq.set(l, f64::NAN);
            return;
        };
        self.open.set_flag(l, true);
        self.long.set_flag(l, p.side == Side::Long);
        self.sgnqty.set(l, p.side.sign() * p.qty);
        self.qty.set(l, p.qty);
        self.entry.set(l, p.entry_price);
        self.margin.set(l, p.margin);
        self.funding.set(l, p.funding);
        self.stop.set(l, p.stop_price.unwrap_or(f64::NAN));
        self.tp.set(l, p.tp_price.unwrap_or(f64::NAN));
        self.liq.set(
            l,
            match mode {
                MarginMode::Isolated => p.isolated_liq_price(),
                MarginMode::Cross => f64::NAN,
            },
        );
        self.cache_bracket(l, table, bracket_notional);
    }

    fn cache_bracket(&mut self, l: usize, table: &BracketTable, notional: f64) {
        let i = table
            .brackets
            .iter()
            .position(|b| notional <= b.notional_cap)
            .unwrap_or(table.brackets.len() - 1);
        let b = &table.brackets[i];
        // for_notional picks the first tier whose cap holds the notional: the previous
        // tier's cap is this one's exclusive floor.
        let floor = if i == 0 {
            f64::NEG_INFINITY
        } else {
            table.brackets[i - 1].notional_cap
        };
        let cap = if i + 1 == table.brackets.len() {
            f64::INFINITY
        } else {
            b.notional_cap
        };
        self.bracket_floor.set(l, floor);
        self.bracket_cap.set(l, cap);
        self.bracket_mmr.set(l, b.mmr);
        self.bracket_cum.set(l, b.cum);
    }
}

/// One lane's positions, per symbol (engine::sim `State::positions`).
type LanePositions = [Option<Position>; MAX_SYMBOLS];

/// A block of `W` lanes: account, positions, metric sums.
struct Block<L: Lanes> {
    wallet: L,
    pos: [PosLanes<L>; MAX_SYMBOLS],
    peak: L,
    max_dd: L,
    prev: L,
    sum: L,
    sum_sq: L,
    down_sq: L,
    count: L,
    exposed: L,
    funding: L,
    equity: L,
    /// Trade sums per lane (scalar: they change only on events).
    trades: [MetricsAcc; MAX_LANES],
    pending: [[Option<Target>; MAX_SYMBOLS]; MAX_LANES],
    any_pending: u32,
    /// Per symbol, byte `l` holds the code bits lane `l`'s side acts on (§4.1).
    side_mask: [L::Codes; MAX_SYMBOLS],
    /// Per symbol, bit `l` set while lane `l` holds a position (`pos[s].open` as bits).
    open_bits: [u32; MAX_SYMBOLS],
    /// f32 lanes: each lane's wallet in f64, the event code's; `wallet` holds it rounded.
    /// (f64 lanes: unused, `wallet` is exact.)
    wallet64: [f64; MAX_LANES],
}

/// The code bits a side acts on: entries when flat, the exit bit of a long or a short.
fn side_bits(side: Option<Side>) -> u8 {
    match side {
        None => code::ENTER_LONG | code::ENTER_SHORT,
        Some(Side::Long) => code::EXIT_LONG,
        Some(Side::Short) => code::EXIT_SHORT,
    }
}

/// The side mask of `w` flat lanes.
fn flat_mask<C: PackedCodes>(w: usize) -> C {
    (0..w).fold(C::ZERO, |m, l| m | C::lane_byte(side_bits(None), l))
}

/// One block's simulation state, carried from one chunk of bars to the next.
struct BlockSim<L: Lanes> {
    blk: Block<L>,
    /// The lanes' positions as the reference holds them; `blk.pos` mirrors them as vectors.
    held: [LanePositions; MAX_LANES],
    /// Per symbol, the next funding event of the window.
    cursor: [usize; MAX_SYMBOLS],
}

impl<L: Lanes> BlockSim<L> {
    fn new(capital: f64) -> Self {
        BlockSim {
            blk: Block::<L> {
                wallet: L::splat(capital),
                pos: [PosLanes::flat(); MAX_SYMBOLS],
                peak: L::splat(capital),
                max_dd: L::splat(0.0),
                prev: L::splat(capital),
                sum: L::splat(0.0),
                sum_sq: L::splat(0.0),
                down_sq: L::splat(0.0),
                count: L::splat(0.0),
                exposed: L::splat(0.0),
                funding: L::splat(0.0),
                equity: L::splat(capital),
                trades: [MetricsAcc::new(capital); MAX_LANES],
                pending: [[None; MAX_SYMBOLS]; MAX_LANES],
                any_pending: 0,
                side_mask: [flat_mask(L::W); MAX_SYMBOLS],
                open_bits: [0; MAX_SYMBOLS],
                wallet64: [capital; MAX_LANES],
            },
            held: [[None; MAX_SYMBOLS]; MAX_LANES],
            cursor: [0; MAX_SYMBOLS],
        }
    }

    /// Each lane's metric sums once every bar of the window has been simulated.
    fn finish(&self, ctx: &WindowCtx<'_>) -> [MetricsAcc; MAX_LANES] {
        let bars = (ctx.end - ctx.start) as u64;
        let mut out = [MetricsAcc::new(ctx.shared.input.initial_capital); MAX_LANES];
        for (l, acc) in out.iter_mut().enumerate().take(L::W) {
            *acc = self.blk.lane_acc(l);
            acc.bars = bars;
        }
        out
    }
}

/// Simulates one block of lanes over bars `t0..t1` of a window. A window is simulated by
/// calling this on consecutive chunks; between chunks the caller runs the task's other
/// blocks over the same bars, which are then still in cache (the market's columns of a
/// whole window are far larger than the CPU's L2).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn simulate_bars<L: Lanes>(
    sim: &mut BlockSim<L>,
    ctx: &WindowCtx<'_>,
    lanes: &[LaneParams],
    codes: &[&[Vec<u8>]],
    packed: &mut Vec<L::Codes>,
    mut logs: Option<&mut [TradeLog]>,
    t0: usize,
    t1: usize,
) {
    let shared = ctx.shared;
    let market = shared.market;
    let syms = &market.symbols;
    let ns = syms.len();
    let w = L::W;
    let BlockSim { blk, held, cursor } = sim;
    let trace = logs.is_some();
    // Every lane's code of every bar and symbol, one byte per lane: packed[(t - t0) * ns + s].
    // Lanes with the same rule params share a code column (sets are sorted by them, so a
    // block's lanes often share one or two): each distinct column is packed once, its byte
    // repeated into every byte and masked to its lanes.
    let mut groups = [(0usize, L::Codes::ZERO); MAX_LANES];
    let mut n_groups = 0;
    for l in 0..w {
        let same = groups[..n_groups]
            .iter()
            .position(|&(first, _)| std::ptr::eq(codes[first].as_ptr(), codes[l].as_ptr()));
        match same {
            Some(g) => groups[g].1 = groups[g].1 | L::Codes::lane_byte(0xff, l),
            None => {
                groups[n_groups] = (l, L::Codes::lane_byte(0xff, l));
                n_groups += 1;
            }
        }
    }
    let groups = &groups[..n_groups];
    packed.clear();
    packed.resize((t1 - t0) * ns, L::Codes::ZERO);
    for s in 0..ns {
        for &(first, lanes) in groups {
            let column = &codes[first][s][t0..t1];
            for (word, &c) in packed.iter_mut().skip(s).step_by(ns).zip(column) {
                *word = *word | (L::Codes::every_byte(c) & lanes);
            }
        }
    }
    let zero = L::splat(0.0);
    let one = L::splat(1.0);
    // f64 lanes test triggers exactly as the reference; f32 lanes conservatively (§4.3).
    let exact = matches!(L::PRECISION, Precision::F64);
    let slack = L::splat(F32_SLACK);
    let slack_up = L::splat(1.0 + F32_SLACK);
    let slack_down = L::splat(1.0 - F32_SLACK);
    for t in t0..t1 {
        let hole = ctx.holes[t - ctx.start];
        // (1) §2.1: orders from the previous close fill at this open, closes first.
        if shared.fill == FillPrice::NextOpen && blk.any_pending != 0 {
            let mask = std::mem::take(&mut blk.any_pending);
            for l in 0..w {
                if mask & (1 << l) != 0 {
                    let targets = std::mem::take(&mut blk.pending[l]);
                    let mut view = LaneView::load(blk, &mut held[l], ctx, l, &lanes[l]);
                    view.execute(
                        &targets,
                        t,
                        |s| syms[s].open[t],
                        &mut blk.trades[l],
                        log_of(&mut logs, l),
                    );
                    view.store(blk, ctx, t);
                }
            }
        }
        // (2) §2.6: funding on the positions open after the opening fills.
        let mut paid = zero;
        for s in 0..ns {
            let events = &ctx.funding[s];
            let c = &mut cursor[s];
            while *c < events.len() && (events[*c].bar as usize) < t {
                *c += 1;
            }
            while *c < events.len() && events[*c].bar as usize == t {
                let p = &mut blk.pos[s];
                let price = L::splat(shared.mark_open[s][t]);
                let rate = L::splat(events[*c].rate);
                let pay = L::blend(p.open, p.sgnqty * price * rate, zero);
                p.funding = p.funding + pay;
                if exact {
                    blk.wallet = blk.wallet - pay;
                } else {
                    // f32 lanes settle funding on the f64 wallet and position of each lane
                    // that holds the symbol (the payment itself is computed in f32), so the
                    // event code's state carries no f32 rounding of the wallet.
                    let mut open = blk.open_bits[s];
                    while open != 0 {
                        let l = open.trailing_zeros() as usize;
                        open &= open - 1;
                        let pay = pay.get(l);
                        blk.wallet64[l] -= pay;
                        blk.wallet.set(l, blk.wallet64[l]);
                        if let Some(pos) = held[l][s].as_mut() {
                            pos.funding += pay;
                        }
                    }
                }
                paid = paid + pay;
                *c += 1;
            }
        }
        // (3) §2.7: intrabar triggers; lanes with one run the reference's intrabar.
        let open_mask = blk.open_bits[..ns].iter().fold(0, |m, &b| m | b);
        if open_mask != 0 {
            let mut slow = if hole { open_mask } else { 0 };
            let mut balance = blk.wallet;
            let mut mm = zero;
            let mut uncertain = zero;
            // f32 lanes: the sum of the magnitudes entering `balance` and `mm`, which bounds
            // their rounding errors (see F32_SLACK).
            let mut magnitude = blk.wallet.max(zero - blk.wallet);
            for (s, p) in blk.pos[..ns].iter().enumerate() {
                if blk.open_bits[s] == 0 {
                    continue;
                }
                let (low, high) = (L::splat(syms[s].low[t]), L::splat(syms[s].high[t]));
                let (ml, mh) = (
                    L::splat(shared.mark_low[s][t]),
                    L::splat(shared.mark_high[s][t]),
                );
                let long = p.long & p.open;
                let short = L::blend(p.long, zero, p.open);
                // Stops, take-profits and isolated liquidation prices compare prices rounded
                // to nearest, which keeps their order: whatever hits in f64 hits in f32 lanes
                // too, and a lane that hits runs the reference's f64 intrabar.
                let stop_hit = (long & low.le(p.stop)) | (short & high.ge(p.stop));
                let tp_hit = (long & high.ge(p.tp)) | (short & low.le(p.tp));
                let mut hit = stop_hit | tp_hit;
                match shared.margin_mode {
                    MarginMode::Isolated => {
                        // (A positive f64 price can round to an f32 zero: f32 lanes test >= 0.)
                        let liq_above_zero = if exact {
                            p.liq.gt(zero)
                        } else {
                            p.liq.ge(zero)
                        };
                        let liq_hit =
                            (long & liq_above_zero & ml.le(p.liq)) | (short & mh.ge(p.liq));
                        hit = hit | liq_hit;
                    }
                    MarginMode::Cross => {
                        let worst = L::blend(p.long, ml, mh);
                        balance = balance + L::blend(p.open, p.sgnqty * (worst - p.entry), zero);
                        let notional = p.qty * worst;
                        if exact {
                            uncertain = uncertain
                                | (p.open
                                    & (notional.le(p.bracket_floor) | notional.gt(p.bracket_cap)));
                        } else {
                            // Rounded notionals and tier bounds: a notional within the slack
                            // of a bound may lie on its other side in f64.
                            uncertain = uncertain
                                | (p.open
                                    & (notional.le(p.bracket_floor * slack_up)
                                        | notional.gt(p.bracket_cap * slack_down)));
                            magnitude = magnitude
                                + L::blend(
                                    p.open,
                                    p.qty * (worst + p.entry)
                                        + notional * p.bracket_mmr
                                        + p.bracket_cum,
                                    zero,
                                );
                        }
                        mm = mm + L::blend(p.open, notional * p.bracket_mmr - p.bracket_cum, zero);
                    }
                }
                slow |= hit.bitmask();
            }
            if shared.margin_mode == MarginMode::Cross {
                // Liquidated unless mm == 0 or balance > mm (engine::sim cross_liquidation).
                // f32 lanes call a lane safe only when balance exceeds mm by more than both
                // can be off: any lane the f64 test could liquidate runs the f64 test.
                let safe = if exact {
                    mm.le(zero) & mm.ge(zero) | balance.gt(mm)
                } else {
                    (balance - mm).gt(magnitude * slack)
                };
                slow |= open_mask & !safe.bitmask() | uncertain.bitmask();
            }
            slow &= open_mask;
            if trace {
                // MAE/MFE extremes of the lanes that stay on the vector path (engine::sim
                // `see(low, high)` at the end of intrabar); event lanes do it in `intrabar`.
                for l in (0..w).filter(|l| (open_mask & !slow) & (1 << l) != 0) {
                    for (s, pos) in held[l][..ns].iter_mut().enumerate() {
                        if let Some(pos) = pos {
                            pos.see(syms[s].low[t], syms[s].high[t]);
                        }
                    }
                }
            }
            if slow != 0 {
                for l in 0..w {
                    if slow & (1 << l) != 0 {
                        let mut view = LaneView::load(blk, &mut held[l], ctx, l, &lanes[l]);
                        view.intrabar(t, &mut blk.trades[l], log_of(&mut logs, l));
                        view.store(blk, ctx, t);
                    }
                }
            }
        }
        // (4) §2.2: signals at the close; (§2.8) a symbol's last bar closes what is open.
        // A lane acts when its code has a bit its side listens to (one AND per symbol over
        // all lanes' packed codes), or on a symbol's last bar with a position open.
        let mut act = 0u32;
        let row = (t - t0) * ns;
        for s in 0..ns {
            act |= (packed[row + s] & blk.side_mask[s]).lanes_with_bits();
            if ctx.last_valid[s] == t {
                act |= blk.open_bits[s];
            }
        }
        if act != 0 {
            for l in 0..w {
                if act & (1 << l) == 0 {
                    continue;
                }
                let mut targets = [None; MAX_SYMBOLS];
                // A position open on its symbol's last bar: closed at this close (§2.8).
                let mut ending = false;
                for (s, sym) in syms.iter().enumerate() {
                    if !sym.close[t].is_finite() {
                        continue;
                    }
                    let is_last = ctx.last_valid[s] == t;
                    let side = held[l][s].as_ref().map(|p| p.side);
                    targets[s] = target(codes[l][s][t], side, is_last);
                    ending |= is_last && side.is_some();
                }
                if shared.fill == FillPrice::NextOpen {
                    // Orders wait for the next open: no position changes now, so the lane
                    // needs its account only when a symbol ends here.
                    for (s, tg) in targets.iter().enumerate().take(ns) {
                        let next_valid = t + 1 < ctx.end && syms[s].close[t + 1].is_finite();
                        if next_valid && tg.is_some() {
                            blk.pending[l][s] = *tg;
                            blk.any_pending |= 1 << l;
                        }
                    }
                    if !ending {
                        continue;
                    }
                }
                let mut view = LaneView::load(blk, &mut held[l], ctx, l, &lanes[l]);
                if shared.fill == FillPrice::Close {
                    view.execute(
                        &targets,
                        t,
                        |s| syms[s].close[t],
                        &mut blk.trades[l],
                        log_of(&mut logs, l),
                    );
                }
                for (s, sym) in syms.iter().enumerate() {
                    if ctx.last_valid[s] == t && view.pos[s].is_some() {
                        view.close(
                            s,
                            t,
                            sym.close[t],
                            ExitReason::End,
                            &mut blk.trades[l],
                            log_of(&mut logs, l),
                        );
                    }
                }
                view.store(blk, ctx, t);
            }
        }
        // (5) §2.9: equity, margin use and drawdown at the close; MetricsAcc::bar per lane.
        let mut equity = blk.wallet;
        let mut open = zero;
        for (s, p) in blk.pos[..ns].iter().enumerate() {
            let close = L::splat(syms[s].close[t]);
            equity = equity + L::blend(p.open, p.sgnqty * (close - p.entry), zero);
            open = open | p.open;
        }
        blk.equity = equity;
        if (equity.nan_mask() | paid.nan_mask()).bitmask() != 0 {
            // A hole in the data reached the equity: the reference's scalar rules apply.
            // (Lanes are read from `blk` and a copy: indexing the loop's vectors by a run-time
            // lane makes LLVM keep them in memory, and split them, in the hot loop above.)
            let mut paid_lanes = [0.0; MAX_LANES];
            for (l, p) in paid_lanes.iter_mut().enumerate().take(w) {
                *p = paid.get(l);
            }
            for l in 0..w {
                let e = blk.equity.get(l);
                let peak = blk.peak.get(l).max(e);
                blk.peak.set(l, peak);
                let mut acc = blk.lane_acc(l);
                let used: f64 = (0..ns).map(|s| blk.pos[s].margin.get(l)).sum();
                let usage = if e > 0.0 { used / e } else { 0.0 };
                let dd = if peak > 0.0 { 1.0 - e / peak } else { 0.0 };
                acc.bar(e, dd, usage, paid_lanes[l]);
                blk.set_lane_acc(l, &acc);
            }
            continue;
        }
        blk.peak = blk.peak.max(equity);
        let dd = L::blend(blk.peak.gt(zero), one - equity / blk.peak, zero);
        blk.max_dd = blk.max_dd.max(dd);
        let has_prev = blk.prev.gt(zero);
        let ret = equity / blk.prev - one;
        blk.sum = L::blend(has_prev, blk.sum + ret, blk.sum);
        blk.sum_sq = L::blend(has_prev, blk.sum_sq + ret * ret, blk.sum_sq);
        let down = ret.min(zero);
        blk.down_sq = L::blend(has_prev, blk.down_sq + down * down, blk.down_sq);
        blk.count = L::blend(has_prev, blk.count + one, blk.count);
        blk.prev = equity;
        blk.exposed = L::blend(open & equity.gt(zero), blk.exposed + one, blk.exposed);
        blk.funding = blk.funding + paid;
    }
}

fn log_of<'a>(logs: &'a mut Option<&mut [TradeLog]>, l: usize) -> Option<&'a mut TradeLog> {
    logs.as_deref_mut().map(|v| &mut v[l])
}

impl<L: Lanes> Block<L> {
    /// One lane's metric sums.
    fn lane_acc(&self, l: usize) -> MetricsAcc {
        let t = &self.trades[l];
        MetricsAcc {
            initial: t.initial,
            prev: self.prev.get(l),
            bars: 0,
            final_equity: self.equity.get(l),
            max_drawdown: self.max_dd.get(l),
            sum: self.sum.get(l),
            sum_sq: self.sum_sq.get(l),
            down_sq: self.down_sq.get(l),
            count: self.count.get(l) as u64,
            exposed: self.exposed.get(l) as u64,
            funding: self.funding.get(l),
            ..*t
        }
    }

    fn set_lane_acc(&mut self, l: usize, acc: &MetricsAcc) {
        self.prev.set(l, acc.prev);
        self.equity.set(l, acc.final_equity);
        self.max_dd.set(l, acc.max_drawdown);
        self.sum.set(l, acc.sum);
        self.sum_sq.set(l, acc.sum_sq);
        self.down_sq.set(l, acc.down_sq);
        self.count.set(l, acc.count as f64);
        self.exposed.set(l, acc.exposed as f64);
        self.funding.set(l, acc.funding);
    }
}

/// One lane's account as the reference holds it: engine::sim `State`, method by method.
struct LaneView<'c, 's> {
    ctx: &'c WindowCtx<'s>,
    p: &'c LaneParams,
    lane: usize,
    wallet: f64,
    pos: &'c mut LanePositions,
    /// Bit `s`: the position on symbol `s` was opened or closed (its vectors are rewritten).
    changed: u32,
}

impl<'c, 's> LaneView<'c, 's> {
    /// The lane's account: its positions in place, with the funding the vector path paid.
    fn load<L: Lanes>(
        blk: &Block<L>,
        pos: &'c mut LanePositions,
        ctx: &'c WindowCtx<'s>,
        l: usize,
        p: &'c LaneParams,
    ) -> Self {
        let ns = ctx.shared.market.symbols.len();
        for (held, lanes) in pos[..ns].iter_mut().zip(&blk.pos) {
            if let Some(held) = held {
                // (f32 lanes settle funding on the held positions directly.)
                if matches!(L::PRECISION, Precision::F64) {
                    held.funding = lanes.funding.get(l);
                }
            }
        }
        LaneView {
            ctx,
            p,
            lane: l,
            wallet: match L::PRECISION {
                Precision::F64 => blk.wallet.get(l),
                Precision::F32 => blk.wallet64[l],
            },
            pos,
            changed: 0,
        }
    }

    /// Writes the wallet and the changed positions back into the block's vectors.
    fn store<L: Lanes>(&self, blk: &mut Block<L>, ctx: &WindowCtx<'_>, t: usize) {
        let shared = ctx.shared;
        blk.wallet.set(self.lane, self.wallet);
        blk.wallet64[self.lane] = self.wallet;
        let l = self.lane;
        for s in 0..shared.market.symbols.len() {
            let side = self.pos[s].as_ref().map(|p| p.side);
            // The notional at this bar's worst mark, for the cross test's cached bracket.
            let worst = match side {
                Some(Side::Long) => shared.mark_low[s][t],
                _ => shared.mark_high[s][t],
            };
            let notional = self.pos[s].as_ref().map_or(0.0, |p| p.qty * worst);
            let p = &mut blk.pos[s];
            if self.changed & (1 << s) != 0 {
                blk.side_mask[s] = blk.side_mask[s].with_lane_byte(l, side_bits(side));
                blk.open_bits[s] = (blk.open_bits[s] & !(1 << l)) | u32::from(side.is_some()) << l;
                p.store(
                    l,
                    self.pos[s],
                    shared.margin_mode,
                    shared.tables[s],
                    notional,
                );
            } else if side.is_some()
                && !(notional > p.bracket_floor.get(l) && notional <= p.bracket_cap.get(l))
            {
                p.cache_bracket(l, shared.tables[s], notional);
            }
        }
    }

    fn nsym(&self) -> usize {
        self.ctx.shared.market.symbols.len()
    }

    /// §2.2: engine::sim `execute`.
    fn execute(
        &mut self,
        targets: &[Option<Target>; MAX_SYMBOLS],
        t: usize,
        price: impl Fn(usize) -> f64,
        acc: &mut MetricsAcc,
        mut log: Option<&mut TradeLog>,
    ) {
        let ns = self.nsym();
        for s in 0..ns {
            let (Some(tg), Some(pos)) = (targets[s], self.pos[s].as_mut()) else {
                continue;
            };
            let keep = matches!(
                (tg, pos.side),
                (Target::Long, Side::Long) | (Target::Short, Side::Short)
            );
            if !keep {
                let px = price(s);
                pos.see(px, px);
                self.close(s, t, px, ExitReason::Signal, acc, log.as_deref_mut());
            }
        }
        for s in 0..ns {
            let side = match targets[s] {
                Some(Target::Long) => Side::Long,
                Some(Target::Short) => Side::Short,
                _ => continue,
            };
            if self.pos[s].is_none() {
                let mut prices = [0.0; MAX_SYMBOLS];
                for (j, p) in prices.iter_mut().enumerate().take(ns) {
                    *p = price(j);
                }
                self.open(s, t, side, &prices);
            }
        }
    }

    /// §2.3-2.4: engine::sim `open`.
    fn open(&mut self, s: usize, t: usize, side: Side, prices: &[f64; MAX_SYMBOLS]) {
        let p = self.p;
        let table = self.ctx.shared.tables[s];
        let ns = self.nsym();
        if self.pos[..ns].iter().filter(|x| x.is_some()).count() >= p.max_concurrent {
            return;
        }
        let mut upnl = 0.0;
        let mut used = 0.0;
        for (j, pos) in self.pos[..ns].iter().enumerate() {
            if let Some(pos) = pos {
                upnl += pos.upnl(prices[j]);
                used += pos.margin;
            }
        }
        let equity = self.wallet + upnl;
        let margin = equity * p.position_size;
        if margin.is_nan() || margin <= 0.0 {
            return;
        }
        let leverage = table.max_leverage(margin, p.leverage.min(p.caps[s]));
        let notional = margin * leverage;
        let fee = notional * p.taker_fee;
        let free = match self.ctx.shared.margin_mode {
            MarginMode::Cross => equity - used,
            MarginMode::Isolated => self.wallet - used,
        };
        if free < margin + fee {
            return;
        }
        let entry_price = prices[s] * (1.0 + side.sign() * p.slippage);
        let qty = notional / entry_price;
        let bracket = table.for_notional(notional);
        self.wallet -= fee;
        self.changed |= 1 << s;
        let sign = side.sign();
        let opt = |d: f64| if d.is_nan() { None } else { Some(d) };
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
            stop_price: opt(p.stop_loss).map(|d| entry_price * (1.0 - sign * d)),
            tp_price: opt(p.take_profit).map(|d| entry_price * (1.0 + sign * d)),
        });
    }

    /// engine::sim `close`.
    fn close(
        &mut self,
        s: usize,
        t: usize,
        raw_price: f64,
        reason: ExitReason,
        acc: &mut MetricsAcc,
        log: Option<&mut TradeLog>,
    ) {
        let Some(pos) = self.pos[s].take() else {
            return;
        };
        self.changed |= 1 << s;
        let exit_price = raw_price * (1.0 - pos.side.sign() * self.p.slippage);
        let fee = pos.qty * exit_price * self.p.taker_fee;
        let gross = pos.upnl(exit_price);
        self.wallet += gross - fee;
        self.record(s, t, pos, exit_price, gross, fee, 0.0, reason, acc, log);
    }

    /// engine::sim `record`: the trade's sums, and the trade itself when logging.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        s: usize,
        t: usize,
        mut pos: Position,
        exit_price: f64,
        gross: f64,
        exit_fee: f64,
        liq_fee: f64,
        reason: ExitReason,
        acc: &mut MetricsAcc,
        log: Option<&mut TradeLog>,
    ) {
        let fees = pos.entry_fee + exit_fee;
        let pnl = gross - fees - liq_fee - pos.funding;
        acc.trade(pnl, fees, reason == ExitReason::Liquidation);
        let Some(log) = log else {
            return;
        };
        pos.see(
            exit_price.min(pos.entry_price),
            exit_price.max(pos.entry_price),
        );
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
        let times = self.ctx.shared.market.open_time;
        let start = self.ctx.start;
        log.push(Trade {
            symbol: s,
            side: pos.side,
            entry_bar: pos.entry_bar - start,
            exit_bar: t - start,
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

    /// §2.7: engine::sim `intrabar`.
    fn intrabar(&mut self, t: usize, acc: &mut MetricsAcc, mut log: Option<&mut TradeLog>) {
        let shared = self.ctx.shared;
        let syms = &shared.market.symbols;
        let ns = syms.len();
        if self.pos[..ns].iter().all(Option::is_none) {
            return;
        }
        for (s, sym) in syms.iter().enumerate() {
            let Some(pos) = self.pos[s].as_ref() else {
                continue;
            };
            let Some(tp) = pos.tp_price else { continue };
            let open_before = pos.entry_bar < t || shared.fill == FillPrice::Close;
            let o = sym.open[t];
            let beyond = match pos.side {
                Side::Long => o > tp,
                Side::Short => o < tp,
            };
            if open_before && beyond {
                self.stop_out(s, t, tp, ExitReason::TakeProfit, acc, log.as_deref_mut());
            }
        }
        if self.pos[..ns].iter().all(Option::is_none) {
            return;
        }
        let mut liq_price = [f64::NAN; MAX_SYMBOLS];
        for (s, lp) in liq_price.iter_mut().enumerate().take(ns) {
            *lp = match (&self.pos[s], shared.margin_mode) {
                (Some(pos), MarginMode::Isolated) => pos.isolated_liq_price(),
                (Some(pos), MarginMode::Cross) => self.cross_liq_price(s, pos, t),
                (None, _) => f64::NAN,
            };
        }
        if shared.margin_mode == MarginMode::Isolated {
            for (s, &lp) in liq_price.iter().enumerate().take(ns) {
                let Some(pos) = self.pos[s].as_ref() else {
                    continue;
                };
                let o = shared.mark_open[s][t];
                let beyond = match pos.side {
                    Side::Long => lp > 0.0 && o <= lp,
                    Side::Short => o >= lp,
                };
                if beyond {
                    self.liquidate_isolated(s, t, lp, acc, log.as_deref_mut());
                }
            }
        }
        let mut stop_hit = [false; MAX_SYMBOLS];
        for (s, sym) in syms.iter().enumerate() {
            let Some(pos) = self.pos[s].as_ref() else {
                continue;
            };
            let Some(sp) = pos.stop_price else { continue };
            let lp = liq_price[s];
            let (hit, before_liq) = match pos.side {
                Side::Long => (sym.low[t] <= sp, lp.is_nan() || lp <= 0.0 || sp > lp),
                Side::Short => (sym.high[t] >= sp, sp < lp),
            };
            stop_hit[s] = hit;
            if hit && before_liq {
                self.stop_out(s, t, sp, ExitReason::StopLoss, acc, log.as_deref_mut());
                stop_hit[s] = false;
            }
        }
        match shared.margin_mode {
            MarginMode::Isolated => {
                for s in 0..ns {
                    let Some(pos) = self.pos[s].as_ref() else {
                        continue;
                    };
                    let lp = liq_price[s];
                    let hit = match pos.side {
                        Side::Long => lp > 0.0 && shared.mark_low[s][t] <= lp,
                        Side::Short => shared.mark_high[s][t] >= lp,
                    };
                    if hit {
                        self.liquidate_isolated(s, t, lp, acc, log.as_deref_mut());
                        stop_hit[s] = false;
                    }
                }
            }
            MarginMode::Cross => {
                if self.cross_liquidation(t, acc, log.as_deref_mut()) {
                    stop_hit.iter_mut().for_each(|h| *h = false);
                }
            }
        }
        for (s, sym) in syms.iter().enumerate() {
            let Some(pos) = self.pos[s].as_mut() else {
                continue;
            };
            if stop_hit[s] {
                if shared.margin_mode == MarginMode::Isolated {
                    self.liquidate_isolated(s, t, liq_price[s], acc, log.as_deref_mut());
                } else {
                    let sp = pos.stop_price.unwrap_or(f64::NAN);
                    self.stop_out(s, t, sp, ExitReason::StopLoss, acc, log.as_deref_mut());
                }
                continue;
            }
            let tp_hit = pos.tp_price.is_some_and(|tp| match pos.side {
                Side::Long => sym.high[t] >= tp,
                Side::Short => sym.low[t] <= tp,
            });
            if tp_hit {
                let tp = pos.tp_price.unwrap_or(f64::NAN);
                self.stop_out(s, t, tp, ExitReason::TakeProfit, acc, log.as_deref_mut());
            } else {
                pos.see(sym.low[t], sym.high[t]);
            }
        }
    }

    /// engine::sim `stop_out`.
    fn stop_out(
        &mut self,
        s: usize,
        t: usize,
        trigger: f64,
        reason: ExitReason,
        acc: &mut MetricsAcc,
        log: Option<&mut TradeLog>,
    ) {
        let sym = &self.ctx.shared.market.symbols[s];
        let fill = self.ctx.shared.fill;
        let Some(pos) = self.pos[s].as_mut() else {
            return;
        };
        let open_before = pos.entry_bar < t || fill == FillPrice::Close;
        let o = sym.open[t];
        let gapped = open_before
            && match (pos.side, reason) {
                (Side::Long, ExitReason::StopLoss) | (Side::Short, ExitReason::TakeProfit) => {
                    o < trigger
                }
                _ => o > trigger,
            };
        let px = if gapped { o } else { trigger };
        pos.see(px, px);
        self.close(s, t, px, reason, acc, log);
    }

    /// engine::sim `liquidate_isolated`.
    fn liquidate_isolated(
        &mut self,
        s: usize,
        t: usize,
        lp: f64,
        acc: &mut MetricsAcc,
        log: Option<&mut TradeLog>,
    ) {
        let Some(mut pos) = self.pos[s].take() else {
            return;
        };
        self.changed |= 1 << s;
        pos.see(lp, lp);
        let gross = pos.upnl(lp);
        let liq_fee = pos.margin + gross;
        self.wallet += gross - liq_fee;
        self.record(
            s,
            t,
            pos,
            lp,
            gross,
            0.0,
            liq_fee,
            ExitReason::Liquidation,
            acc,
            log,
        );
    }

    /// engine::sim `cross_liq_price`, the other positions at this bar's reference marks.
    fn cross_liq_price(&self, s: usize, pos: &Position, t: usize) -> f64 {
        let shared = self.ctx.shared;
        let mut other_mm = 0.0;
        let mut other_upnl = 0.0;
        for (j, o) in self.pos[..self.nsym()].iter().enumerate() {
            if let (true, Some(o)) = (j != s, o) {
                let mark = shared.mark_open[j][t];
                let notional = o.qty * mark;
                other_mm += shared.tables[j].maintenance_margin(notional);
                other_upnl += o.upnl(mark);
            }
        }
        let side = pos.side.sign();
        let q = pos.qty;
        (self.wallet - other_mm + other_upnl + pos.cum - side * q * pos.entry_price)
            / (q * pos.mmr - side * q)
    }

    /// engine::sim `cross_liquidation`.
    fn cross_liquidation(
        &mut self,
        t: usize,
        acc: &mut MetricsAcc,
        mut log: Option<&mut TradeLog>,
    ) -> bool {
        let shared = self.ctx.shared;
        let ns = self.nsym();
        let mut balance = self.wallet;
        let mut mm = 0.0;
        let mut worst = [f64::NAN; MAX_SYMBOLS];
        let mut mms = [0.0; MAX_SYMBOLS];
        for s in 0..ns {
            let Some(pos) = self.pos[s].as_ref() else {
                continue;
            };
            let w = match pos.side {
                Side::Long => shared.mark_low[s][t],
                Side::Short => shared.mark_high[s][t],
            };
            worst[s] = w;
            balance += pos.upnl(w);
            mms[s] = shared.tables[s].maintenance_margin(pos.qty * w);
            mm += mms[s];
        }
        if mm == 0.0 || balance > mm {
            return false;
        }
        for s in 0..ns {
            let Some(mut pos) = self.pos[s].take() else {
                continue;
            };
            self.changed |= 1 << s;
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
                acc,
                log.as_deref_mut(),
            );
        }
        self.wallet = 0.0;
        true
    }
}
