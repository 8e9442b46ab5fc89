//! Streaming WGSL indicators: which indicators of a spec the shader computes itself
//! (`shaders/shared/indicators.wgsl`) instead of reading a column computed on the CPU, and the
//! generated WGSL that updates them bar by bar and reads them in the rules.
//!
//! An indicator streams when its function has a WGSL twin (SMA, EMA and RSI, mirroring
//! `crate::batch::indicators::{Sma, Ema, Rsi}`, bit-identical to TA-Lib), it takes one real
//! input and its period only, and every rule reads it at a constant lag of 0 or 1 bar
//! (`cross_*` reads lag 1): the shader keeps the output of the current and of the previous bar
//! per (set, window, symbol). The period comes from each set (its resolved `timeperiod`) and travels in the
//! set's slot table instead of a column index. A streamed indicator is updated on every bar
//! of its symbol's data from the market's first bar, so it is warmed on the bars before a
//! walk-forward window exactly as the CPU computes it over the whole span
//! (docs/SEMANTICS.md §5.1).

use std::fmt::Write as _;

use crate::expr::{OpView, Rule, SourceView};
use crate::series::Series;
use crate::spec::{ResolvedIndicator, Spec};

use super::codegen::series_column;

/// The indicator functions with a WGSL twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// TA-Lib `SMA` (`sma_update`: the value leaving the window is read back from the market
    /// column; in f32 it also reads the input's rounding residual column,
    /// `plan::RESIDUAL_COLUMNS`).
    Sma,
    /// TA-Lib `EMA` (`ema_update` in shaders/shared/indicators.wgsl).
    Ema,
    /// TA-Lib `RSI` (`rsi_update`; in f32 it also reads the input's rounding residual
    /// column, `plan::RESIDUAL_COLUMNS`).
    Rsi,
}

impl StreamKind {
    fn of(function: &str) -> Option<StreamKind> {
        match function.to_ascii_uppercase().as_str() {
            "SMA" => Some(StreamKind::Sma),
            "EMA" => Some(StreamKind::Ema),
            "RSI" => Some(StreamKind::Rsi),
            _ => None,
        }
    }

    /// The WGSL call that feeds bar `t` of symbol `s` (both in scope) of market column
    /// `column` to stream slot `index` with `period`.
    fn wgsl_update(self, index: &str, column: &str, period: &str) -> String {
        match self {
            StreamKind::Sma => format!("sma_update({index}, {column}, s, t, {period});"),
            StreamKind::Ema => format!("ema_update({index}, bar_value({column}, s, t), {period});"),
            StreamKind::Rsi => format!("rsi_update({index}, {column}, s, t, {period});"),
        }
    }
}

/// One indicator the shader streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// Index in `spec.indicators`.
    pub indicator: usize,
    /// Its (only) output slot.
    pub slot: usize,
    pub kind: StreamKind,
    /// The real input.
    pub input: Series,
}

/// The indicators of `spec` that the shader streams, in indicator order (stream `j` is the
/// `j`-th of the list).
pub fn plan_streams(spec: &Spec) -> Vec<Stream> {
    let rules = [
        &spec.rules.long_entry,
        &spec.rules.long_exit,
        &spec.rules.short_entry,
        &spec.rules.short_exit,
    ];
    let mut out = Vec::new();
    for (indicator, ind) in spec.indicators.iter().enumerate() {
        let Some(kind) = StreamKind::of(&ind.function.name) else {
            continue;
        };
        let only_period = ind
            .args
            .iter()
            .all(|(name, _)| name.eq_ignore_ascii_case("timeperiod"));
        let [input] = ind.real_inputs[..] else {
            continue;
        };
        if !only_period || ind.function.outputs.len() != 1 {
            continue;
        }
        let slot = ind.first_slot;
        let lags_ok = rules
            .iter()
            .filter_map(|rule| rule.as_ref())
            .all(|rule| reads_at_lag_0_or_1(rule, slot));
        if lags_ok {
            out.push(Stream {
                indicator,
                slot,
                kind,
                input,
            });
        }
    }
    out
}

/// Every read of `slot` in `rule` is at a constant lag of 0 or 1 bar.
fn reads_at_lag_0_or_1(rule: &Rule, slot: usize) -> bool {
    rule.ops_view().all(|op| match op {
        OpView::Load {
            source: SourceView::Indicator(read),
            lag,
        } if read == slot => rule
            .lags()
            .get(lag)
            .is_some_and(|l| l.params.is_empty() && l.bars <= 1),
        _ => true,
    })
}

/// The period of a streamed indicator in one resolved set (its `timeperiod`), validated as
/// TA-Lib validates it (`crate::batch::indicators::check`).
pub fn period_of(ind: &ResolvedIndicator) -> Result<u32, String> {
    crate::batch::indicators::check(&ind.function, &ind.args).map_err(|e| e.to_string())?;
    let period = ind
        .args
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("timeperiod"))
        .map(|(_, value)| *value)
        .ok_or_else(|| format!("{} has no timeperiod", ind.function))?;
    if !(period >= 1.0 && period <= f64::from(u32::MAX) && period.fract() == 0.0) {
        return Err(format!(
            "timeperiod = {period}: expected a whole number of bars"
        ));
    }
    Ok(period as u32)
}

/// The stream reading `slot`, if it streams.
pub fn stream_of(streams: &[Stream], slot: usize) -> Option<usize> {
    streams.iter().position(|s| s.slot == slot)
}

/// WGSL of the streams: `N_STREAMS`, `STREAM_SLOTS` (the `StreamState`s of a row: streams x
/// symbols, at least one so the array type exists) and `streams_update(t)`, which feeds bar
/// `t` to every stream of every symbol with data at `t`, with each set's period.
pub fn streams_wgsl(streams: &[Stream]) -> String {
    let mut f = String::new();
    let _ = writeln!(f, "const N_STREAMS: u32 = {}u;", streams.len());
    let _ = writeln!(
        f,
        "const STREAM_SLOTS: u32 = {}u * N_SYMBOLS;\n",
        streams.len().max(1)
    );
    f.push_str("fn streams_update(t: u32) {\n");
    if !streams.is_empty() {
        f.push_str(
            "    for (var s = 0u; s < N_SYMBOLS; s += 1u) {\n        if (!close_valid(s, t)) {\n            continue;\n        }\n",
        );
        for (j, stream) in streams.iter().enumerate() {
            let _ = writeln!(
                f,
                "        {}",
                stream.kind.wgsl_update(
                    &format!("{j}u * N_SYMBOLS + s"),
                    series_column(stream.input),
                    &format!("set_col(set_index, {}u)", stream.slot)
                )
            );
        }
        f.push_str("    }\n");
    }
    f.push_str("}\n\n");
    f
}
