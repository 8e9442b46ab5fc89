//! [`SignalEngine`]: per symbol, the spec's indicators as streams, the last bars the rules
//! read, the bar count and the position §2.2 leads to; a snapshot of all of it.

use etrading_kernels::batch::indicators::Stream;
use etrading_kernels::batch::simd::{code, target};
use etrading_kernels::engine::{Side, Target};
use etrading_kernels::expr::{BoundRule, RuleInputs};
use etrading_kernels::series::BarColumns;
use etrading_kernels::spec::{ParamSet, ResolvedSpec, Spec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::params::{ParamsError, params_from_json};

/// The version of the snapshot layout; a snapshot of another layout is refused.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// One closed bar of one symbol. `open_time_ms` is the bar's open time (Binance's kline open
/// time, ms since the Unix epoch, UTC).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub open_time_ms: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// The position a symbol holds, as §2.2 sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Position {
    Flat,
    Long,
    Short,
}

impl Position {
    /// `flat`, `long` or `short`.
    pub fn name(self) -> &'static str {
        match self {
            Position::Flat => "flat",
            Position::Long => "long",
            Position::Short => "short",
        }
    }

    fn side(self) -> Option<Side> {
        match self {
            Position::Flat => None,
            Position::Long => Some(Side::Long),
            Position::Short => Some(Side::Short),
        }
    }
}

impl From<Target> for Position {
    fn from(target: Target) -> Position {
        match target {
            Target::Flat => Position::Flat,
            Target::Long => Position::Long,
            Target::Short => Position::Short,
        }
    }
}

/// What the rules say at a bar's close (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The bar's open time.
    pub open_time_ms: i64,
    /// The signal code (`kernels::batch::simd::code` bits: 1 enter long, 2 enter short,
    /// 4 exit long, 8 exit short).
    pub code: u8,
    /// The position held before this bar's decision.
    pub from: Position,
    /// The position §2.2 asks for, when it differs from `from`: a market order (a
    /// reversal closes then opens). `None`: hold.
    pub target: Option<Position>,
}

/// The answer to one bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Still in the warm-up: `remaining` more bars before the first signal.
    Warming { remaining: usize },
    /// A signal.
    Decision(Decision),
}

/// Why the engine refused a spec, a bar or a snapshot. A refused bar leaves the state as it
/// was.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LiveError {
    #[error("{0}")]
    Spec(String),
    #[error(transparent)]
    Params(#[from] ParamsError),
    #[error("params do not resolve: {0}")]
    Resolve(String),
    #[error(
        "indicator `{indicator}` cannot be streamed exactly, so this spec cannot run live: {reason}"
    )]
    Unstreamable { indicator: String, reason: String },
    #[error("interval `{0}` has no fixed length in ms; the live engine needs one to see gaps")]
    Interval(String),
    #[error("unknown symbol `{symbol}` (the engine runs {known})")]
    UnknownSymbol { symbol: String, known: String },
    #[error(
        "{symbol}: bar {got} is out of order: the last bar was {last}, the next one must be {expected}"
    )]
    OutOfOrder {
        symbol: String,
        last: i64,
        got: i64,
        expected: i64,
    },
    #[error(
        "{symbol}: gap in the feed: expected the bar at {expected}, got {got} ({missing} bars missing); prime the engine again from history"
    )]
    Gap {
        symbol: String,
        expected: i64,
        got: i64,
        missing: i64,
    },
    #[error("{symbol}: bar {open_time_ms} has a non-finite {field} ({value})")]
    NotFinite {
        symbol: String,
        open_time_ms: i64,
        field: &'static str,
        value: f64,
    },
    #[error("{symbol}: rule `{rule}`: {detail}")]
    Rule {
        symbol: String,
        rule: &'static str,
        detail: String,
    },
    #[error("snapshot: {0}")]
    Snapshot(String),
}

/// The last bars and indicator outputs the rules read: at least `keep` of them (the rules'
/// largest look-back plus the current bar), compacted when twice that.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recent {
    keep: usize,
    bars: [Vec<f64>; 5],
    outputs: Vec<Vec<f64>>,
}

impl Recent {
    fn new(keep: usize, slots: usize) -> Recent {
        let cap = 2 * keep;
        Recent {
            keep,
            bars: std::array::from_fn(|_| Vec::with_capacity(cap)),
            outputs: (0..slots).map(|_| Vec::with_capacity(cap)).collect(),
        }
    }

    fn len(&self) -> usize {
        self.bars[0].len()
    }

    fn push(&mut self, bar: &[f64; 5], outputs: &[f64]) {
        if self.len() >= 2 * self.keep {
            let from = self.len() - self.keep;
            for column in self.bars.iter_mut().chain(self.outputs.iter_mut()) {
                column.copy_within(from.., 0);
                column.truncate(self.keep);
            }
        }
        for (column, &value) in self.bars.iter_mut().zip(bar) {
            column.push(value);
        }
        for (column, &value) in self.outputs.iter_mut().zip(outputs) {
            column.push(value);
        }
    }
}

/// One symbol's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SymbolState {
    name: String,
    streams: Vec<Stream>,
    recent: Recent,
    last_open_time_ms: Option<i64>,
    bars_seen: u64,
    position: Position,
}

/// What a snapshot holds: the engine's identity and every symbol's state.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    identity: String,
    symbols: Vec<SymbolState>,
}

/// The streaming signal engine of one spec and one param set over some of its symbols.
#[derive(Debug, Clone)]
pub struct SignalEngine {
    resolved: ResolvedSpec,
    identity: String,
    interval_ms: i64,
    warmup_bars: usize,
    slots: usize,
    symbols: Vec<SymbolState>,
    /// Scratch for one bar's indicator outputs (by output slot).
    outputs: Vec<f64>,
}

/// A Binance interval's length in ms (`1m` ... `1w`); `None` for `1M` (months differ).
pub fn interval_ms(interval: &str) -> Option<i64> {
    let unit = interval.chars().last()?;
    let count: i64 = interval[..interval.len() - unit.len_utf8()].parse().ok()?;
    let unit_ms = match unit {
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        _ => return None,
    };
    (count > 0).then_some(count * unit_ms)
}

impl SignalEngine {
    /// The engine of `spec_text` under the params `{name: value}` (JSON) for `symbols` (the
    /// spec's own when `None`; each must be one of the spec's). `file` names the spec in
    /// error messages.
    pub fn from_json(
        file: &str,
        spec_text: &str,
        params_json: &str,
        symbols: Option<&[String]>,
    ) -> Result<SignalEngine, LiveError> {
        let spec = Spec::parse(file, spec_text).map_err(|e| LiveError::Spec(e.to_string()))?;
        let value: serde_json::Value = serde_json::from_str(params_json).map_err(|e| {
            LiveError::Params(ParamsError::NotAnObject(format!("{params_json} ({e})")))
        })?;
        let params = params_from_json(&spec, &value)?;
        SignalEngine::new(&spec, spec_text, &params, symbols)
    }

    /// The engine of a parsed spec (whose text is `spec_text`) under `params`.
    pub fn new(
        spec: &Spec,
        spec_text: &str,
        params: &ParamSet,
        symbols: Option<&[String]>,
    ) -> Result<SignalEngine, LiveError> {
        let resolved = spec
            .resolve(params)
            .map_err(|e| LiveError::Resolve(e.to_string()))?;
        let interval = &spec.strategy.interval;
        let interval_ms =
            interval_ms(interval).ok_or_else(|| LiveError::Interval(interval.clone()))?;
        let names: Vec<String> = match symbols {
            Some(list) => list.to_vec(),
            None => spec.strategy.symbols.clone(),
        };
        let known = spec.strategy.symbols.join(", ");
        if let Some(bad) = names.iter().find(|n| !spec.strategy.symbols.contains(n)) {
            return Err(LiveError::UnknownSymbol {
                symbol: bad.clone(),
                known,
            });
        }
        let mut streams = Vec::with_capacity(resolved.indicators.len());
        for ind in &resolved.indicators {
            let stream = Stream::new(ind).map_err(|e| LiveError::Unstreamable {
                indicator: format!("{} ({})", ind.name, ind.function),
                reason: e.to_string(),
            })?;
            streams.push(stream);
        }
        let rule_lookback = resolved.rules.lookback_bars();
        let indicator_lookback = streams.iter().map(Stream::lookback).max().unwrap_or(0);
        let slots = spec.output_slot_count();
        let symbols = names
            .iter()
            .map(|name| SymbolState {
                name: name.clone(),
                streams: streams.clone(),
                recent: Recent::new(rule_lookback + 1, slots),
                last_open_time_ms: None,
                bars_seen: 0,
                position: Position::Flat,
            })
            .collect();
        let identity = identity(spec_text, params, &names, interval_ms);
        Ok(SignalEngine {
            resolved,
            identity,
            interval_ms,
            warmup_bars: indicator_lookback + rule_lookback,
            slots,
            symbols,
            outputs: vec![f64::NAN; slots],
        })
    }

    /// Bars a symbol needs before its first signal: the indicators' largest TA-Lib
    /// look-back plus the rules' largest `prev`/cross look-back. The first `warmup_bars()`
    /// bars answer [`Step::Warming`]. Equality with the reference also needs the same first
    /// bar (recursive indicators such as EMA and RSI remember it; docs/SEMANTICS.md §6).
    pub fn warmup_bars(&self) -> usize {
        self.warmup_bars
    }

    /// The bar interval in ms.
    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// The symbols, in engine order.
    pub fn symbols(&self) -> Vec<&str> {
        self.symbols.iter().map(|s| s.name.as_str()).collect()
    }

    /// The spec, params, symbols and interval this engine runs, as a hash (hex).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The resolved spec (risk and execution numbers for the order side).
    pub fn resolved(&self) -> &ResolvedSpec {
        &self.resolved
    }

    fn symbol_index(&self, symbol: &str) -> Result<usize, LiveError> {
        self.symbols
            .iter()
            .position(|s| s.name == symbol)
            .ok_or_else(|| LiveError::UnknownSymbol {
                symbol: symbol.to_string(),
                known: self.symbols().join(", "),
            })
    }

    /// Bars seen by `symbol`, and the open time of its last one.
    pub fn progress(&self, symbol: &str) -> Result<(u64, Option<i64>), LiveError> {
        let s = &self.symbols[self.symbol_index(symbol)?];
        Ok((s.bars_seen, s.last_open_time_ms))
    }

    /// The position §2.2 has led `symbol` to (the targets of its decisions, taken as filled).
    pub fn position(&self, symbol: &str) -> Result<Position, LiveError> {
        Ok(self.symbols[self.symbol_index(symbol)?].position)
    }

    /// Tells the engine what `symbol` actually holds (after a stop, a take-profit, a
    /// liquidation, a refused order, or at start-up from the exchange): the next decision
    /// starts from it.
    pub fn set_position(&mut self, symbol: &str, position: Position) -> Result<(), LiveError> {
        let index = self.symbol_index(symbol)?;
        self.symbols[index].position = position;
        Ok(())
    }

    /// Feeds `symbol`'s next closed bar; returns the warm-up state or the decision at its
    /// close, and moves the tracked position to the decision's target. A bar that is not
    /// exactly one interval after the previous one is refused (out of order or a gap), as
    /// is a non-finite value; the state is then unchanged.
    pub fn update(&mut self, symbol: &str, bar: &Bar) -> Result<Step, LiveError> {
        let index = self.symbol_index(symbol)?;
        self.check_bar(index, bar)?;
        let values = [bar.open, bar.high, bar.low, bar.close, bar.volume];
        let warmup_bars = self.warmup_bars;
        let state = &mut self.symbols[index];
        // Indicators into their output slots, in spec order.
        let mut out = 0;
        for (stream, ind) in state.streams.iter_mut().zip(&self.resolved.indicators) {
            let k = stream.output_count();
            stream.update(
                &values,
                &mut self.outputs[ind.first_slot..ind.first_slot + k],
            );
            out += k;
        }
        debug_assert_eq!(out, self.slots);
        state.recent.push(&values, &self.outputs);
        state.last_open_time_ms = Some(bar.open_time_ms);
        state.bars_seen += 1;
        let seen = usize::try_from(state.bars_seen).unwrap_or(usize::MAX);
        if seen <= warmup_bars {
            return Ok(Step::Warming {
                remaining: warmup_bars + 1 - seen,
            });
        }
        let code = rule_code(&self.resolved, state)?;
        let from = state.position;
        let target = target(code, from.side(), false).map(Position::from);
        if let Some(to) = target {
            state.position = to;
        }
        Ok(Step::Decision(Decision {
            open_time_ms: bar.open_time_ms,
            code,
            from,
            target: target.filter(|&to| to != from),
        }))
    }

    /// Feeds history (oldest first) without trading on it: the decisions are dropped and the
    /// tracked position is left as it was (set it from the exchange).
    pub fn prime(&mut self, symbol: &str, bars: &[Bar]) -> Result<(), LiveError> {
        let index = self.symbol_index(symbol)?;
        let position = self.symbols[index].position;
        for bar in bars {
            self.update(symbol, bar)?;
        }
        self.symbols[index].position = position;
        Ok(())
    }

    fn check_bar(&self, index: usize, bar: &Bar) -> Result<(), LiveError> {
        let state = &self.symbols[index];
        let fields = [
            ("open", bar.open),
            ("high", bar.high),
            ("low", bar.low),
            ("close", bar.close),
            ("volume", bar.volume),
        ];
        if let Some(&(field, value)) = fields.iter().find(|(_, v)| !v.is_finite()) {
            return Err(LiveError::NotFinite {
                symbol: state.name.clone(),
                open_time_ms: bar.open_time_ms,
                field,
                value,
            });
        }
        if let Some(last) = state.last_open_time_ms {
            let expected = last + self.interval_ms;
            if bar.open_time_ms < expected {
                return Err(LiveError::OutOfOrder {
                    symbol: state.name.clone(),
                    last,
                    got: bar.open_time_ms,
                    expected,
                });
            }
            if bar.open_time_ms > expected {
                return Err(LiveError::Gap {
                    symbol: state.name.clone(),
                    expected,
                    got: bar.open_time_ms,
                    missing: (bar.open_time_ms - expected) / self.interval_ms,
                });
            }
        }
        Ok(())
    }

    /// The whole state (every symbol's indicators, last bars, bar count and position) as
    /// bytes: exact (floats by their bits), checked on [`SignalEngine::restore`].
    pub fn snapshot(&self) -> Vec<u8> {
        let snapshot = SnapshotRef {
            format: SNAPSHOT_FORMAT,
            identity: &self.identity,
            symbols: &self.symbols,
        };
        postcard::to_allocvec(&snapshot).expect("the state serialises (plain data)")
    }

    /// Restores a [`SignalEngine::snapshot`] taken by an engine of the same spec text,
    /// params, symbols and interval; anything else is refused and the state is unchanged.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), LiveError> {
        let snapshot: Snapshot = postcard::from_bytes(bytes)
            .map_err(|e| LiveError::Snapshot(format!("not a snapshot of this engine: {e}")))?;
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(LiveError::Snapshot(format!(
                "layout {} (this engine reads {SNAPSHOT_FORMAT})",
                snapshot.format
            )));
        }
        if snapshot.identity != self.identity {
            return Err(LiveError::Snapshot(format!(
                "taken by another spec, param set, symbol list or interval ({} vs {})",
                snapshot.identity, self.identity
            )));
        }
        let fits = snapshot.symbols.len() == self.symbols.len()
            && snapshot.symbols.iter().zip(&self.symbols).all(|(a, b)| {
                a.name == b.name
                    && a.streams.len() == b.streams.len()
                    && a.streams
                        .iter()
                        .zip(&b.streams)
                        .all(|(x, y)| x.same_call(y))
                    && a.recent.keep == b.recent.keep
                    && a.recent.outputs.len() == b.recent.outputs.len()
                    && a.recent.bars.iter().all(|c| c.len() == a.recent.len())
                    && a.recent.outputs.iter().all(|c| c.len() == a.recent.len())
            });
        if !fits {
            return Err(LiveError::Snapshot(
                "its state does not fit this engine's indicators".to_string(),
            ));
        }
        self.symbols = snapshot.symbols;
        Ok(())
    }
}

/// [`Snapshot`] borrowed, for writing without a copy.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    format: u32,
    identity: &'a str,
    symbols: &'a [SymbolState],
}

/// §2.2's signal code at the newest bar of `state.recent`, by the reference's rule code.
fn rule_code(resolved: &ResolvedSpec, state: &SymbolState) -> Result<u8, LiveError> {
    let recent = &state.recent;
    let columns: Vec<&[f64]> = recent.outputs.iter().map(Vec::as_slice).collect();
    let inputs = RuleInputs {
        bars: BarColumns {
            open: &recent.bars[0],
            high: &recent.bars[1],
            low: &recent.bars[2],
            close: &recent.bars[3],
            volume: &recent.bars[4],
        },
        indicators: &columns,
    };
    let bar = recent.len() - 1;
    let eval = |name: &'static str, rule: &Option<BoundRule>| -> Result<bool, LiveError> {
        match rule {
            None => Ok(false),
            Some(rule) => rule.eval_at(&inputs, bar).map_err(|e| LiveError::Rule {
                symbol: state.name.clone(),
                rule: name,
                detail: e.to_string(),
            }),
        }
    };
    let rules = &resolved.rules;
    Ok(code::of(
        eval("long_entry", &rules.long_entry)?,
        eval("long_exit", &rules.long_exit)?,
        eval("short_entry", &rules.short_entry)?,
        eval("short_exit", &rules.short_exit)?,
    ))
}

/// The hash naming what an engine runs.
fn identity(spec_text: &str, params: &ParamSet, symbols: &[String], interval_ms: i64) -> String {
    let mut hash = Sha256::new();
    for part in [
        spec_text,
        &serde_json::to_string(params).expect("params serialise"),
        &symbols.join(","),
        &interval_ms.to_string(),
    ] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
