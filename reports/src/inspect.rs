//! `etrading data inspect --json`: what was found in a data set, per series, per funding
//! history and per aligned panel. Schema `etrading.inspect/1`.

use serde::Serialize;

use etrading_data::{Dataset, Gap, Kind, KlineSeries, Panel};

use crate::iso_time;

pub const SCHEMA: &str = "etrading.inspect/1";

#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub schema: &'static str,
    /// Data rows read from all files.
    pub rows_read: u64,
    pub series: Vec<SeriesReport>,
    pub funding: Vec<FundingReport>,
    pub panels: Vec<PanelReport>,
    pub skipped: Vec<SkippedFile>,
    /// Zip files that were loaded without a sibling `.CHECKSUM`: nothing verified their content.
    pub unverified: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesReport {
    pub symbol: String,
    /// `klines` or `mark_price`.
    pub kind: &'static str,
    pub interval: String,
    pub files: usize,
    pub first_bar: String,
    pub last_bar: String,
    pub bars: u64,
    pub gaps: GapsReport,
    pub duplicates_merged: u64,
    pub filled_bars: u64,
    pub partial_buckets: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GapsReport {
    pub count: u64,
    pub missing_bars: u64,
    pub largest: Option<GapSpan>,
    pub spans: Vec<GapSpan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GapSpan {
    pub first_missing: String,
    pub last_missing: String,
    pub bars: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FundingReport {
    pub symbol: String,
    pub files: usize,
    pub events: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    pub interval_hours: Vec<u8>,
    pub zero_rate_events: u64,
    pub min_rate: Option<f64>,
    pub max_rate: Option<f64>,
    pub mean_rate: Option<f64>,
    pub duplicates_merged: u64,
    /// Events present and expected over the span of the symbol's klines (all intervals).
    pub coverage: Option<Coverage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub present: u64,
    pub expected: u64,
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PanelReport {
    pub interval: String,
    pub align: &'static str,
    pub gap_policy: &'static str,
    pub bars: u64,
    pub first_bar: Option<String>,
    pub last_bar: Option<String>,
    pub content_hash: String,
    pub symbols: Vec<PanelSymbolReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PanelSymbolReport {
    pub symbol: String,
    pub dropped_bars: u64,
    pub filled_bars: u64,
    pub nan_bars: u64,
    pub mark_bars: u64,
    pub funding_events: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkippedFile {
    pub file: String,
    pub reason: String,
}

fn span(g: &Gap) -> GapSpan {
    GapSpan {
        first_missing: iso_time(g.first_missing),
        last_missing: iso_time(g.last_missing),
        bars: g.bars,
    }
}

fn series(s: &KlineSeries, gaps: &[Gap]) -> SeriesReport {
    let largest = gaps
        .iter()
        .max_by_key(|g| (g.bars, std::cmp::Reverse(g.first_missing)));
    SeriesReport {
        symbol: s.symbol.clone(),
        kind: if s.kind == Kind::MarkPrice {
            "mark_price"
        } else {
            "klines"
        },
        interval: s.interval.to_string(),
        files: s.files.len(),
        first_bar: s
            .open_time
            .first()
            .map(|&t| iso_time(t))
            .unwrap_or_default(),
        last_bar: s.open_time.last().map(|&t| iso_time(t)).unwrap_or_default(),
        bars: s.len() as u64,
        gaps: GapsReport {
            count: gaps.len() as u64,
            missing_bars: gaps.iter().map(|g| g.bars).sum(),
            largest: largest.map(span),
            spans: gaps.iter().map(span).collect(),
        },
        duplicates_merged: s.duplicates_merged,
        filled_bars: s.filled_bars,
        partial_buckets: s.partial_buckets,
    }
}

/// Builds the report of a loaded data set and the panels built from it.
pub fn report(ds: &Dataset, panels: &[Panel]) -> InspectReport {
    let mut out = Vec::new();
    for (s, gaps) in ds.klines.iter().zip(&ds.gaps) {
        out.push(series(s, gaps));
    }
    for m in &ds.mark {
        out.push(series(m, &m.gaps()));
    }
    out.sort_by(|a, b| (&a.symbol, a.kind, &a.interval).cmp(&(&b.symbol, b.kind, &b.interval)));
    let funding = ds
        .funding
        .iter()
        .map(|f| {
            let span = ds
                .klines
                .iter()
                .filter(|k| k.symbol == f.symbol && !k.is_empty())
                .map(|k| (k.open_time[0], k.open_time[k.len() - 1] + k.interval.ms()))
                .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
            let coverage = span.map(|(from, to)| {
                let (present, expected) = f.coverage(from, to);
                Coverage {
                    present,
                    expected,
                    ratio: if expected == 0 {
                        1.0
                    } else {
                        present as f64 / expected as f64
                    },
                }
            });
            let mut hours = f.interval_hours.clone();
            hours.sort_unstable();
            hours.dedup();
            let n = f.len();
            FundingReport {
                symbol: f.symbol.clone(),
                files: f.files.len(),
                events: n as u64,
                first: f.time.first().map(|&t| iso_time(t)),
                last: f.time.last().map(|&t| iso_time(t)),
                interval_hours: hours,
                zero_rate_events: f.rate.iter().filter(|&&r| r == 0.0).count() as u64,
                min_rate: f.rate.iter().copied().reduce(f64::min),
                max_rate: f.rate.iter().copied().reduce(f64::max),
                mean_rate: (n > 0).then(|| f.rate.iter().sum::<f64>() / n as f64),
                duplicates_merged: f.duplicates_merged,
                coverage,
            }
        })
        .collect();
    InspectReport {
        schema: SCHEMA,
        rows_read: ds.rows_read,
        series: out,
        funding,
        panels: panels.iter().map(panel).collect(),
        skipped: ds
            .skipped
            .iter()
            .map(|s| SkippedFile {
                file: s.file.clone(),
                reason: s.reason.clone(),
            })
            .collect(),
        unverified: ds.unverified.clone(),
    }
}

fn panel(p: &Panel) -> PanelReport {
    PanelReport {
        interval: p.interval.to_string(),
        align: p.align.name(),
        gap_policy: match p.gap_policy {
            etrading_data::GapPolicy::Keep => "keep",
            etrading_data::GapPolicy::ForwardFill => "ffill",
        },
        bars: p.n_bars() as u64,
        first_bar: p.open_time.first().map(|&t| iso_time(t)),
        last_bar: p.open_time.last().map(|&t| iso_time(t)),
        content_hash: p.content_hash(),
        symbols: p
            .symbols
            .iter()
            .zip(&p.stats)
            .map(|(s, st)| PanelSymbolReport {
                symbol: s.clone(),
                dropped_bars: st.dropped_bars,
                filled_bars: st.filled_bars,
                nan_bars: st.nan_bars,
                mark_bars: st.mark_bars,
                funding_events: st.funding_events,
            })
            .collect(),
    }
}
