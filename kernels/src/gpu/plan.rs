//! Host-side data of a GPU batch, as plain data that tests inspect without a GPU: the static
//! tables (market, brackets, funding, windows), each dispatch's tables (indicator columns
//! computed on the CPU per distinct parameter tuple, per-set settings), the split of the sets
//! into dispatches under the device limits, and the metrics finished from the read-back sums.

use std::collections::HashMap;
use std::ops::Range;

use super::GpuError;
use super::layout::{AccumHost, Dims, Real, SetParamsHost};
use crate::batch::BatchInput;
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
    /// Largest storage buffer binding, bytes.
    pub max_binding_bytes: u64,
    /// Sets per dispatch when nothing else limits them (smaller dispatches let the host
    /// prepare the next one while the GPU runs).
    pub target_sets: usize,
}

/// The sets of one dispatch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchPlan {
    pub batches: Vec<Range<usize>>,
}

/// Splits `n_sets` into dispatches: one invocation per set and window, so at most
/// `max_workgroups x WORKGROUP_SIZE / n_windows` sets, at most `target_sets`, and an output
/// table (`accum_bytes` per set and window) within one binding.
pub fn plan_dispatches(
    n_sets: usize,
    n_windows: usize,
    accum_bytes: usize,
    limits: &PlanLimits,
) -> DispatchPlan {
    let by_workgroups =
        (limits.max_workgroups as usize * WORKGROUP_SIZE as usize / n_windows.max(1)).max(1);
    let by_output = (limits.max_binding_bytes as usize / (accum_bytes * n_windows.max(1))).max(1);
    let per = by_workgroups.min(by_output).min(limits.target_sets.max(1));
    let batches = (0..n_sets)
        .step_by(per)
        .map(|start| start..(start + per).min(n_sets))
        .collect();
    DispatchPlan { batches }
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
}

/// One dispatch's tables.
#[derive(Clone, Debug)]
pub struct BatchTables<R: Real> {
    pub real: Vec<R>,
    pub u32s: Vec<u32>,
    pub sets: Vec<R::SetParams>,
    pub dims: Dims,
    /// Distinct indicator columns (parameter tuples x outputs) in this dispatch.
    pub columns: usize,
}

const MARKET_COLUMNS: u32 = 8;

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
    let mut real: Vec<R> = Vec::with_capacity(MARKET_COLUMNS as usize * ns * n);
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
    let off_span = u32s.len();
    for span in &spans {
        let (first_bar, last_bar) =
            span.map_or((u32::MAX, u32::MAX), |(a, b)| (a as u32, b as u32));
        u32s.push(first_bar);
        u32s.push(last_bar);
    }
    let dims = Dims {
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
    })
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

/// Packs one dispatch: indicator columns of every distinct parameter tuple the sets use,
/// each set's column per output slot, its leverage per symbol, its rule params and settings.
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
            let key = (i, ind.args.iter().map(|(_, v)| v.to_bits()).collect());
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
        .map(|index| {
            input
                .spec
                .resolve(&sets[index])
                .map_err(|source| GpuError::Resolve { index, source })
        })
        .collect()
}

/// The metrics of one read-back row, finished by the same [`MetricsAcc::finish`] as the
/// reference engine.
pub fn finish_metrics(row: &AccumHost, initial: f64, interval_ms: i64) -> Metrics {
    let acc = MetricsAcc {
        initial,
        prev: row.final_equity,
        bars: u64::from(row.n_bars),
        final_equity: row.final_equity,
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
    acc.finish(interval_ms)
}
