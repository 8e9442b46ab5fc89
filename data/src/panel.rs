//! Several symbols aligned onto one time index: a struct of arrays of f64, symbol-major
//! (`close[s * n_bars + t]`), plus mark prices and funding events per symbol, and a content
//! hash that traces every result to the exact data it saw.

use sha2::{Digest, Sha256};

use crate::error::DataError;
use crate::interval::Interval;
use crate::series::{FundingSeries, GapPolicy, KlineSeries};
use crate::source::hex;

/// How the symbols' time indexes are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlignPolicy {
    /// Only the bar times every symbol has. No value is invented.
    #[default]
    Intersection,
    /// Every bar time any symbol has. A symbol's bars before its first and after its last bar
    /// are NaN (not listed yet / no data: not tradable); a bar missing inside its span is a flat
    /// bar at its previous close with volume 0 (counted as filled).
    Union,
}

impl AlignPolicy {
    pub fn name(self) -> &'static str {
        match self {
            AlignPolicy::Intersection => "intersection",
            AlignPolicy::Union => "union",
        }
    }
}

/// A funding event placed on the panel: it is settled at bar `bar`, the bar whose span contains
/// its time (or, when that bar is missing from the index, the first bar after it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FundingEvent {
    pub bar: u32,
    pub time: i64,
    pub rate: f64,
    pub interval_hours: u8,
}

/// One symbol's columns in a panel.
#[derive(Debug, Clone, Copy)]
pub struct SymbolBars<'a> {
    pub open: &'a [f64],
    pub high: &'a [f64],
    pub low: &'a [f64],
    pub close: &'a [f64],
    pub volume: &'a [f64],
    /// Mark-price columns; all NaN where the symbol has no mark-price bar.
    pub mark_open: &'a [f64],
    pub mark_high: &'a [f64],
    pub mark_low: &'a [f64],
    pub mark_close: &'a [f64],
    pub funding: &'a [FundingEvent],
}

/// Per-symbol facts about the alignment, for reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlignStats {
    /// Bars of the symbol's own series dropped because another symbol lacks them
    /// (intersection).
    pub dropped_bars: u64,
    /// Bars filled at the previous close inside the symbol's span (union).
    pub filled_bars: u64,
    /// Bars that are NaN because the symbol had no data yet / any more (union).
    pub nan_bars: u64,
    /// Bars with a mark price.
    pub mark_bars: u64,
    /// Funding events placed on the panel.
    pub funding_events: u64,
    /// Funding events outside the panel's time span (not placed).
    pub funding_outside: u64,
}

/// The aligned multi-asset panel the engines read.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub interval: Interval,
    pub symbols: Vec<String>,
    /// The common index: bar open times (ms), strictly increasing. It has holes where every
    /// symbol lacks a bar, unless the gap policy filled them.
    pub open_time: Vec<i64>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
    pub mark_open: Vec<f64>,
    pub mark_high: Vec<f64>,
    pub mark_low: Vec<f64>,
    pub mark_close: Vec<f64>,
    pub funding: Vec<Vec<FundingEvent>>,
    pub align: AlignPolicy,
    pub gap_policy: GapPolicy,
    pub stats: Vec<AlignStats>,
}

impl Panel {
    pub fn n_bars(&self) -> usize {
        self.open_time.len()
    }

    pub fn n_symbols(&self) -> usize {
        self.symbols.len()
    }

    /// The columns of symbol `s`.
    pub fn bars(&self, s: usize) -> SymbolBars<'_> {
        let n = self.n_bars();
        let r = s * n..(s + 1) * n;
        SymbolBars {
            open: &self.open[r.clone()],
            high: &self.high[r.clone()],
            low: &self.low[r.clone()],
            close: &self.close[r.clone()],
            volume: &self.volume[r.clone()],
            mark_open: &self.mark_open[r.clone()],
            mark_high: &self.mark_high[r.clone()],
            mark_low: &self.mark_low[r.clone()],
            mark_close: &self.mark_close[r],
            funding: &self.funding[s],
        }
    }

    /// Index of a symbol by name.
    pub fn symbol_index(&self, symbol: &str) -> Option<usize> {
        self.symbols.iter().position(|s| s == symbol)
    }

    /// Aligns `klines` (one series per symbol, all at one interval) with their mark-price
    /// series and funding series (matched by symbol; either may be missing).
    pub fn align(
        klines: &[&KlineSeries],
        mark: &[KlineSeries],
        funding: &[FundingSeries],
        align: AlignPolicy,
        gap_policy: GapPolicy,
    ) -> Result<Panel, DataError> {
        let first = klines
            .first()
            .ok_or_else(|| DataError::Selection("no klines to align".into()))?;
        let interval = first.interval;
        if let Some(other) = klines.iter().find(|k| k.interval != interval) {
            return Err(DataError::Selection(format!(
                "cannot align {} at {} with {} at {}: resample them to one interval first",
                first.symbol, interval, other.symbol, other.interval
            )));
        }
        let index = match align {
            AlignPolicy::Intersection => intersect(klines),
            AlignPolicy::Union => union(klines),
        };
        let n = index.len();
        let ns = klines.len();
        let nan_cols = || vec![f64::NAN; n * ns];
        let mut p = Panel {
            interval,
            symbols: klines.iter().map(|k| k.symbol.clone()).collect(),
            open: nan_cols(),
            high: nan_cols(),
            low: nan_cols(),
            close: nan_cols(),
            volume: nan_cols(),
            mark_open: nan_cols(),
            mark_high: nan_cols(),
            mark_low: nan_cols(),
            mark_close: nan_cols(),
            funding: vec![Vec::new(); ns],
            align,
            gap_policy,
            stats: vec![AlignStats::default(); ns],
            open_time: index,
        };
        for (s, k) in klines.iter().enumerate() {
            let r = s * n..(s + 1) * n;
            let stats = &mut p.stats[s];
            let placed = place(
                &p.open_time,
                k,
                align == AlignPolicy::Union,
                [
                    &mut p.open[r.clone()],
                    &mut p.high[r.clone()],
                    &mut p.low[r.clone()],
                    &mut p.close[r.clone()],
                    &mut p.volume[r.clone()],
                ],
            );
            stats.dropped_bars = (k.len() as u64).saturating_sub(placed.present);
            stats.filled_bars = placed.filled;
            stats.nan_bars = placed.nan;
            if let Some(m) = mark
                .iter()
                .find(|m| m.symbol == k.symbol && m.interval == interval)
            {
                let placed = place(
                    &p.open_time,
                    m,
                    false,
                    [
                        &mut p.mark_open[r.clone()],
                        &mut p.mark_high[r.clone()],
                        &mut p.mark_low[r.clone()],
                        &mut p.mark_close[r.clone()],
                        &mut vec![0.0; n],
                    ],
                );
                stats.mark_bars = placed.present;
            }
            if let Some(f) = funding.iter().find(|f| f.symbol == k.symbol) {
                let (events, outside) = place_funding(&p.open_time, interval, f);
                stats.funding_events = events.len() as u64;
                stats.funding_outside = outside;
                p.funding[s] = events;
            }
        }
        Ok(p)
    }

    /// SHA-256 of everything an engine reads: interval, policies, symbols, index, every column,
    /// and the funding events, in a fixed binary layout. Files split differently or given in
    /// another order give the same hash; any changed value changes it.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"etrading-panel-v1\0");
        h.update(self.interval.ms().to_le_bytes());
        h.update([self.align as u8, self.gap_policy as u8]);
        h.update((self.symbols.len() as u64).to_le_bytes());
        for s in &self.symbols {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        h.update((self.n_bars() as u64).to_le_bytes());
        let mut buf = Vec::with_capacity(1 << 16);
        let mut feed = |h: &mut Sha256, words: &mut dyn Iterator<Item = [u8; 8]>| {
            for w in words {
                buf.extend_from_slice(&w);
                if buf.len() >= 1 << 16 {
                    h.update(&buf);
                    buf.clear();
                }
            }
            h.update(&buf);
            buf.clear();
        };
        feed(&mut h, &mut self.open_time.iter().map(|t| t.to_le_bytes()));
        for col in [
            &self.open,
            &self.high,
            &self.low,
            &self.close,
            &self.volume,
            &self.mark_open,
            &self.mark_high,
            &self.mark_low,
            &self.mark_close,
        ] {
            feed(&mut h, &mut col.iter().map(|v| v.to_bits().to_le_bytes()));
        }
        for events in &self.funding {
            h.update((events.len() as u64).to_le_bytes());
            for e in events {
                h.update(e.bar.to_le_bytes());
                h.update(e.time.to_le_bytes());
                h.update(e.rate.to_bits().to_le_bytes());
                h.update([e.interval_hours]);
            }
        }
        hex(&h.finalize())
    }
}

fn intersect(klines: &[&KlineSeries]) -> Vec<i64> {
    let mut index = klines[0].open_time.clone();
    for k in &klines[1..] {
        let (mut i, mut j, mut w) = (0, 0, 0);
        while i < index.len() && j < k.open_time.len() {
            match index[i].cmp(&k.open_time[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    index[w] = index[i];
                    w += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        index.truncate(w);
    }
    index
}

fn union(klines: &[&KlineSeries]) -> Vec<i64> {
    let mut index: Vec<i64> = Vec::with_capacity(klines.iter().map(|k| k.len()).max().unwrap_or(0));
    for k in klines {
        let mut merged = Vec::with_capacity(index.len().max(k.len()));
        let (mut i, mut j) = (0, 0);
        while i < index.len() || j < k.open_time.len() {
            let a = index.get(i).copied().unwrap_or(i64::MAX);
            let b = k.open_time.get(j).copied().unwrap_or(i64::MAX);
            merged.push(a.min(b));
            i += usize::from(a <= b);
            j += usize::from(b <= a);
        }
        index = merged;
    }
    index
}

struct Placed {
    present: u64,
    filled: u64,
    nan: u64,
}

/// Writes series `k` onto `index` (columns open, high, low, close, volume). With `fill`,
/// index bars inside the series' span that it lacks get a flat bar at the previous close.
fn place(index: &[i64], k: &KlineSeries, fill: bool, cols: [&mut [f64]; 5]) -> Placed {
    let [o, h, l, c, v] = cols;
    let mut j = 0;
    let mut out = Placed {
        present: 0,
        filled: 0,
        nan: 0,
    };
    let (first, last) = match (k.open_time.first(), k.open_time.last()) {
        (Some(&a), Some(&b)) => (a, b),
        _ => return out,
    };
    for (t, &time) in index.iter().enumerate() {
        while j < k.len() && k.open_time[j] < time {
            j += 1;
        }
        if j < k.len() && k.open_time[j] == time {
            o[t] = k.open[j];
            h[t] = k.high[j];
            l[t] = k.low[j];
            c[t] = k.close[j];
            v[t] = k.volume[j];
            out.present += 1;
        } else if fill && time > first && time < last {
            let prev = k.close[j - 1];
            o[t] = prev;
            h[t] = prev;
            l[t] = prev;
            c[t] = prev;
            v[t] = 0.0;
            out.filled += 1;
        } else {
            out.nan += 1;
        }
    }
    out
}

fn place_funding(index: &[i64], interval: Interval, f: &FundingSeries) -> (Vec<FundingEvent>, u64) {
    let mut events = Vec::with_capacity(f.len());
    let mut outside = 0;
    let (Some(&start), Some(&last)) = (index.first(), index.last()) else {
        return (events, f.len() as u64);
    };
    let end = last + interval.ms();
    for k in 0..f.len() {
        let t = f.time[k];
        if t < start || t >= end {
            outside += 1;
            continue;
        }
        // The last bar opening at or before t; if t lies past that bar's end (a hole in the
        // index), the next bar.
        let i = index.partition_point(|&x| x <= t) - 1;
        let bar = if t < index[i] + interval.ms() {
            i
        } else {
            i + 1
        };
        events.push(FundingEvent {
            bar: bar as u32,
            time: t,
            rate: f.rate[k],
            interval_hours: f.interval_hours[k],
        });
    }
    (events, outside)
}
