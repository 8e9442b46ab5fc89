//! Loading a data set: find the files, parse them in parallel, merge each symbol's files into
//! series, select what was asked for, and build the panel. Also the per-series summaries that
//! `etrading data inspect` shows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::error::DataError;
use crate::interval::Interval;
use crate::panel::{AlignPolicy, Panel};
use crate::parse::{FundingChunk, KlineChunk, parse_funding, parse_klines};
use crate::series::{FundingSeries, Gap, GapPolicy, KlineSeries, Part};
use crate::source::{DataFile, Kind, Market, Verification, discover, read_csv_bytes};

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Use only klines at this source interval (files whose name says another are skipped).
    pub interval: Option<Interval>,
    /// Aggregate the klines to this coarser interval after loading.
    pub resample: Option<Interval>,
    /// Only these symbols (all when `None`).
    pub symbols: Option<Vec<String>>,
    /// Keep bars and funding events with time >= this (ms).
    pub from_ms: Option<i64>,
    /// Keep bars and funding events with time < this (ms).
    pub to_ms: Option<i64>,
    pub gap_policy: GapPolicy,
    /// Which market's files to load (USDT-M futures unless asked otherwise).
    pub market: Market,
}

/// A file that was found but not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// Every series found, merged and checked, before alignment.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub klines: Vec<KlineSeries>,
    pub mark: Vec<KlineSeries>,
    pub funding: Vec<FundingSeries>,
    pub skipped: Vec<Skipped>,
    /// Zip files that were loaded without a sibling `.CHECKSUM` (nothing verified their
    /// content), in path order. Callers show them to the user: the data layer never prints.
    pub unverified: Vec<String>,
    /// Data rows read from all files (before merging duplicates).
    pub rows_read: u64,
    /// Gaps of each kline series as loaded (before any fill), parallel to `klines`.
    pub gaps: Vec<Vec<Gap>>,
}

enum Parsed {
    Klines(KlineChunk, Interval),
    Funding(FundingChunk),
}

/// Finds, parses, validates and merges every data file under `paths`.
pub fn load_dataset(paths: &[PathBuf], opts: &LoadOptions) -> Result<Dataset, DataError> {
    let files = discover(paths)?;
    let mut ds = Dataset::default();
    let mut chosen: Vec<DataFile> = Vec::new();
    for f in files {
        let reason = if f.market != opts.market {
            Some(match f.market {
                Market::Spot => {
                    "spot market (loading USDT-M futures; use --market spot)".to_string()
                }
                Market::UsdM => "USDT-M futures (loading spot)".to_string(),
            })
        } else if opts
            .symbols
            .as_ref()
            .is_some_and(|s| !s.contains(&f.symbol))
        {
            Some(format!("symbol {} not selected", f.symbol))
        } else {
            match (opts.interval, f.interval_hint) {
                (Some(want), Some(have)) if want != have => {
                    Some(format!("interval {have} (selected: {want})"))
                }
                _ => None,
            }
        };
        match reason {
            Some(reason) => ds.skipped.push(Skipped {
                file: f.display(),
                reason,
            }),
            None => chosen.push(f),
        }
    }
    if chosen.is_empty() {
        return Err(DataError::Selection(format!(
            "no data files to load under {}{}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if ds.skipped.is_empty() {
                String::new()
            } else {
                format!(" ({} skipped: {})", ds.skipped.len(), ds.skipped[0].reason)
            }
        )));
    }
    let parsed: Vec<Result<(Parsed, Verification), DataError>> = chosen
        .par_iter()
        .map(|f| {
            let csv = read_csv_bytes(f)?;
            let name = f.display();
            let parsed = match f.kind {
                Kind::Funding => Parsed::Funding(parse_funding(&csv.bytes, &name)?),
                kind => {
                    let (chunk, iv) = parse_klines(&csv.bytes, &name, kind, f.interval_hint)?;
                    Parsed::Klines(chunk, iv)
                }
            };
            Ok((parsed, csv.verification))
        })
        .collect();
    let mut kline_groups: BTreeMap<(Kind, String, Interval), Vec<Part<KlineChunk>>> =
        BTreeMap::new();
    let mut funding_groups: BTreeMap<String, Vec<Part<FundingChunk>>> = BTreeMap::new();
    for (f, p) in chosen.iter().zip(parsed) {
        let (p, verification) = p?;
        if let Parsed::Klines(_, iv) = &p
            && let Some(want) = opts.interval.filter(|want| want != iv)
        {
            ds.skipped.push(Skipped {
                file: f.display(),
                reason: format!("interval {iv} (selected: {want})"),
            });
            continue;
        }
        if verification == Verification::Unverified {
            ds.unverified.push(f.display());
        }
        match p {
            Parsed::Klines(chunk, iv) => {
                ds.rows_read += chunk.open_time.len() as u64;
                kline_groups
                    .entry((f.kind, f.symbol.clone(), iv))
                    .or_default()
                    .push(Part {
                        file: f.display(),
                        chunk,
                    });
            }
            Parsed::Funding(chunk) => {
                ds.rows_read += chunk.time.len() as u64;
                funding_groups
                    .entry(f.symbol.clone())
                    .or_default()
                    .push(Part {
                        file: f.display(),
                        chunk,
                    });
            }
        }
    }
    let groups: Vec<_> = kline_groups.into_iter().collect();
    let merged: Vec<Result<KlineSeries, DataError>> = groups
        .into_par_iter()
        .map(|((kind, symbol, iv), parts)| {
            let mut s = KlineSeries::merge(&symbol, kind, iv, parts)?;
            s.retain_range(opts.from_ms, opts.to_ms);
            if let Some(target) = opts.resample {
                s = s.resample(target)?;
            }
            Ok(s)
        })
        .collect();
    for s in merged {
        let mut s = s?;
        if s.is_empty() {
            continue;
        }
        if s.kind == Kind::MarkPrice {
            if opts.gap_policy == GapPolicy::ForwardFill {
                s.forward_fill()?;
            }
            ds.mark.push(s);
        } else {
            ds.gaps.push(s.gaps());
            if opts.gap_policy == GapPolicy::ForwardFill {
                s.forward_fill()?;
            }
            ds.klines.push(s);
        }
    }
    for (symbol, parts) in funding_groups {
        let mut f = FundingSeries::merge(&symbol, parts)?;
        f.retain_range(opts.from_ms, opts.to_ms);
        ds.funding.push(f);
    }
    Ok(ds)
}

impl Dataset {
    /// The distinct kline intervals present.
    pub fn intervals(&self) -> Vec<Interval> {
        let mut v: Vec<Interval> = self.klines.iter().map(|k| k.interval).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Aligns the kline series at `interval` (the only one present when `None`) into a panel.
    pub fn panel(
        &self,
        interval: Option<Interval>,
        align: AlignPolicy,
        gap_policy: GapPolicy,
    ) -> Result<Panel, DataError> {
        let intervals = self.intervals();
        let iv = match (interval, intervals.as_slice()) {
            (Some(iv), _) => iv,
            (None, [only]) => *only,
            (None, []) => return Err(DataError::Selection("no klines were loaded".into())),
            (None, many) => {
                return Err(DataError::Selection(format!(
                    "klines at several intervals ({}); choose one with --interval",
                    many.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let klines: Vec<&KlineSeries> = self.klines.iter().filter(|k| k.interval == iv).collect();
        if klines.is_empty() {
            return Err(DataError::Selection(format!(
                "no klines at {iv} were loaded"
            )));
        }
        Panel::align(&klines, &self.mark, &self.funding, align, gap_policy)
    }

    /// The funding series of `symbol`, if any.
    pub fn funding_of(&self, symbol: &str) -> Option<&FundingSeries> {
        self.funding.iter().find(|f| f.symbol == symbol)
    }
}

/// Loads `paths` and aligns them in one step.
pub fn load_panel(
    paths: &[PathBuf],
    opts: &LoadOptions,
    align: AlignPolicy,
) -> Result<(Panel, Dataset), DataError> {
    let ds = load_dataset(paths, opts)?;
    let panel = ds.panel(opts.resample.or(opts.interval), align, opts.gap_policy)?;
    Ok((panel, ds))
}
