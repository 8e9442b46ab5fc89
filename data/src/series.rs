//! One symbol's bars (or funding events) from all its files: merged into one strictly
//! increasing series, identical overlaps merged and counted, conflicting overlaps refused;
//! gaps found; optionally forward-filled; resampled to coarser intervals.

use crate::error::DataError;
use crate::interval::{Interval, fmt_time};
use crate::parse::{FundingChunk, KlineChunk};
use crate::source::Kind;

/// A run of missing bars between two present ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Open time of the first missing bar (ms).
    pub first_missing: i64,
    /// Open time of the last missing bar (ms).
    pub last_missing: i64,
    /// How many bars are missing.
    pub bars: u64,
}

/// What to do with missing bars inside a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GapPolicy {
    /// Leave them missing: the series (and an intersection panel) has holes in its time index.
    #[default]
    Keep,
    /// Insert a flat bar at the previous close (open = high = low = close, volume 0) for each.
    ForwardFill,
}

/// The most bars a series may hold after [`KlineSeries::forward_fill`]: 10,000,000, 19 years
/// of 1m bars (480 MB of columns), about twice Binance's whole history at the finest interval.
/// A fill past it means a far-apart pair of bars (a corrupt time, or files of different eras),
/// not a gap worth materialising.
pub const MAX_FILLED_SERIES_BARS: u64 = 10_000_000;

/// Bars of one symbol and kind at one interval, in strictly increasing time order.
#[derive(Debug, Clone, PartialEq)]
pub struct KlineSeries {
    pub symbol: String,
    pub kind: Kind,
    pub interval: Interval,
    pub open_time: Vec<i64>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
    /// The files it was read from, in time order.
    pub files: Vec<String>,
    /// Rows that appeared identically in two files and were kept once.
    pub duplicates_merged: u64,
    /// Bars inserted by [`GapPolicy::ForwardFill`].
    pub filled_bars: u64,
    /// Buckets of a resampled series that lacked some of their source bars.
    pub partial_buckets: u64,
}

/// One row during a merge: which part (file) and line it came from.
#[derive(Debug, Clone, Copy)]
struct Origin {
    part: u32,
    line: u32,
}

/// A file's parsed rows, named for messages.
#[derive(Debug)]
pub struct Part<C> {
    pub file: String,
    pub chunk: C,
}

impl KlineSeries {
    pub fn len(&self) -> usize {
        self.open_time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open_time.is_empty()
    }

    /// Merges the parsed files of one symbol, kind and interval. Files may come in any order
    /// and may overlap (monthly and daily archives); an overlapping bar must be identical in
    /// every field, or the merge fails naming both files and lines.
    pub fn merge(
        symbol: &str,
        kind: Kind,
        interval: Interval,
        mut parts: Vec<Part<KlineChunk>>,
    ) -> Result<KlineSeries, DataError> {
        parts.sort_by(|a, b| {
            (a.chunk.open_time.first(), &a.file).cmp(&(b.chunk.open_time.first(), &b.file))
        });
        let total: usize = parts.iter().map(|p| p.chunk.open_time.len()).sum();
        let files: Vec<String> = parts.iter().map(|p| p.file.clone()).collect();
        let mut s = KlineSeries {
            symbol: symbol.to_string(),
            kind,
            interval,
            open_time: Vec::with_capacity(total),
            open: Vec::with_capacity(total),
            high: Vec::with_capacity(total),
            low: Vec::with_capacity(total),
            close: Vec::with_capacity(total),
            volume: Vec::with_capacity(total),
            files: Vec::new(),
            duplicates_merged: 0,
            filled_bars: 0,
            partial_buckets: 0,
        };
        let mut origin: Vec<Origin> = Vec::with_capacity(total);
        // Each file's columns are freed as soon as they are merged, so the peak is the merged
        // series plus one file.
        for (pi, part) in parts.into_iter().enumerate() {
            let c = part.chunk;
            let overlaps = match (s.open_time.last(), c.open_time.first()) {
                (Some(&last), Some(&first)) => first <= last,
                _ => false,
            };
            if !overlaps {
                s.open_time.extend_from_slice(&c.open_time);
                s.open.extend_from_slice(&c.open);
                s.high.extend_from_slice(&c.high);
                s.low.extend_from_slice(&c.low);
                s.close.extend_from_slice(&c.close);
                s.volume.extend_from_slice(&c.volume);
                origin.extend(c.lines.iter().map(|&line| Origin {
                    part: pi as u32,
                    line,
                }));
                continue;
            }
            let merged = merge_overlap(&s, &origin, &c, pi as u32, &files, kind)?;
            s.duplicates_merged += merged.dups;
            s.open_time = merged.series.open_time;
            s.open = merged.series.open;
            s.high = merged.series.high;
            s.low = merged.series.low;
            s.close = merged.series.close;
            s.volume = merged.series.volume;
            origin = merged.origin;
        }
        s.files = files;
        Ok(s)
    }

    /// Runs of missing bars.
    pub fn gaps(&self) -> Vec<Gap> {
        gaps_of(&self.open_time, self.interval)
    }

    /// Keeps only bars with `from <= open_time < to` (ms).
    pub fn retain_range(&mut self, from: Option<i64>, to: Option<i64>) {
        let lo = from.map_or(0, |f| self.open_time.partition_point(|&t| t < f));
        let hi = to.map_or(self.len(), |t| self.open_time.partition_point(|&x| x < t));
        let hi = hi.max(lo);
        for col in [
            &mut self.open,
            &mut self.high,
            &mut self.low,
            &mut self.close,
            &mut self.volume,
        ] {
            col.truncate(hi);
            col.drain(..lo);
        }
        self.open_time.truncate(hi);
        self.open_time.drain(..lo);
    }

    /// Inserts a flat bar at the previous close for every missing bar (see [`GapPolicy`]).
    /// Refused, before anything is allocated, when the filled series would hold more than
    /// [`MAX_FILLED_SERIES_BARS`] bars.
    pub fn forward_fill(&mut self) -> Result<(), DataError> {
        let gaps = self.gaps();
        if gaps.is_empty() {
            return Ok(());
        }
        let added: u64 = gaps.iter().map(|g| g.bars).sum();
        let total = self.len() as u64 + added;
        if total > MAX_FILLED_SERIES_BARS {
            let largest = gaps
                .iter()
                .max_by_key(|g| (g.bars, std::cmp::Reverse(g.first_missing)))
                .copied()
                .unwrap_or(gaps[0]);
            return Err(DataError::Selection(format!(
                "{} {} {}: --gaps ffill would add {added} bars (the largest gap is {} bars, \
                 {} .. {}), {total} in all, over the limit of {MAX_FILLED_SERIES_BARS}; \
                 use --gaps keep or narrow --from/--to (files: {})",
                self.symbol,
                self.kind.name(),
                self.interval,
                largest.bars,
                fmt_time(largest.first_missing),
                fmt_time(largest.last_missing),
                list_files(&self.files)
            )));
        }
        let n = total as usize;
        let iv = self.interval.ms();
        let mut out = KlineSeries {
            open_time: Vec::with_capacity(n),
            open: Vec::with_capacity(n),
            high: Vec::with_capacity(n),
            low: Vec::with_capacity(n),
            close: Vec::with_capacity(n),
            volume: Vec::with_capacity(n),
            files: Vec::new(),
            ..self.clone_meta()
        };
        for i in 0..self.len() {
            if i > 0 {
                let prev_close = self.close[i - 1];
                let mut t = self.open_time[i - 1] + iv;
                while t < self.open_time[i] {
                    out.push_bar(t, [prev_close; 4], 0.0);
                    t += iv;
                }
            }
            out.push_bar(
                self.open_time[i],
                [self.open[i], self.high[i], self.low[i], self.close[i]],
                self.volume[i],
            );
        }
        out.files = std::mem::take(&mut self.files);
        out.filled_bars = self.filled_bars + added;
        *self = out;
        Ok(())
    }

    /// Aggregates bars into `target` bars: open of the first, highest high, lowest low, close of
    /// the last, summed volume. A bucket is kept even when some of its source bars are missing
    /// (counted in `partial_buckets`); buckets with no bar at all are gaps.
    pub fn resample(&self, target: Interval) -> Result<KlineSeries, DataError> {
        if target == self.interval {
            return Ok(self.clone());
        }
        if target.ms() % self.interval.ms() != 0 || !target.is_epoch_aligned() {
            return Err(DataError::Selection(format!(
                "{} {}: cannot resample {} bars to {}: the target must be a whole multiple of \
                 the source interval and divide a day",
                self.symbol,
                self.kind.name(),
                self.interval,
                target
            )));
        }
        let per_bucket = (target.ms() / self.interval.ms()) as usize;
        let mut out = KlineSeries {
            interval: target,
            open_time: Vec::with_capacity(self.len() / per_bucket + 1),
            open: Vec::new(),
            high: Vec::new(),
            low: Vec::new(),
            close: Vec::new(),
            volume: Vec::new(),
            files: self.files.clone(),
            ..self.clone_meta()
        };
        let mut i = 0;
        while i < self.len() {
            let bucket = target.floor(self.open_time[i]);
            let start = i;
            let (mut h, mut l, mut v) = (self.high[i], self.low[i], 0.0);
            while i < self.len() && target.floor(self.open_time[i]) == bucket {
                h = h.max(self.high[i]);
                l = l.min(self.low[i]);
                v += self.volume[i];
                i += 1;
            }
            if i - start < per_bucket {
                out.partial_buckets += 1;
            }
            out.push_bar(bucket, [self.open[start], h, l, self.close[i - 1]], v);
        }
        Ok(out)
    }

    fn clone_meta(&self) -> KlineSeries {
        KlineSeries {
            symbol: self.symbol.clone(),
            kind: self.kind,
            interval: self.interval,
            open_time: Vec::new(),
            open: Vec::new(),
            high: Vec::new(),
            low: Vec::new(),
            close: Vec::new(),
            volume: Vec::new(),
            files: Vec::new(),
            duplicates_merged: self.duplicates_merged,
            filled_bars: self.filled_bars,
            partial_buckets: self.partial_buckets,
        }
    }

    fn push_bar(&mut self, t: i64, [o, h, l, c]: [f64; 4], v: f64) {
        self.open_time.push(t);
        self.open.push(o);
        self.high.push(h);
        self.low.push(l);
        self.close.push(c);
        self.volume.push(v);
    }
}

/// Up to three file names, then how many more.
fn list_files(files: &[String]) -> String {
    let shown = files.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    match files.len() {
        n if n > 3 => format!("{shown} and {} more", n - 3),
        _ => shown,
    }
}

struct Merged {
    series: KlineSeries,
    origin: Vec<Origin>,
    dups: u64,
}

/// The slow path of [`KlineSeries::merge`]: a two-way merge of what is merged so far with a
/// file that overlaps it.
fn merge_overlap(
    s: &KlineSeries,
    origin: &[Origin],
    c: &KlineChunk,
    part: u32,
    files: &[String],
    kind: Kind,
) -> Result<Merged, DataError> {
    let n = s.len() + c.open_time.len();
    let mut out = KlineSeries {
        open_time: Vec::with_capacity(n),
        open: Vec::with_capacity(n),
        high: Vec::with_capacity(n),
        low: Vec::with_capacity(n),
        close: Vec::with_capacity(n),
        volume: Vec::with_capacity(n),
        ..s.clone_meta()
    };
    let mut out_origin = Vec::with_capacity(n);
    let (mut i, mut j, mut dups) = (0, 0, 0);
    while i < s.len() || j < c.open_time.len() {
        let take_a = j >= c.open_time.len() || (i < s.len() && s.open_time[i] <= c.open_time[j]);
        if take_a {
            if j < c.open_time.len() && s.open_time[i] == c.open_time[j] {
                let same = s.open[i] == c.open[j]
                    && s.high[i] == c.high[j]
                    && s.low[i] == c.low[j]
                    && s.close[i] == c.close[j]
                    && s.volume[i] == c.volume[j];
                if !same {
                    let a = origin[i];
                    return Err(DataError::Conflict {
                        what: format!("{} {}", s.symbol, kind.name()),
                        time: fmt_time(s.open_time[i]),
                        file_a: files[a.part as usize].clone(),
                        line_a: u64::from(a.line),
                        file_b: files[part as usize].clone(),
                        line_b: u64::from(c.lines[j]),
                    });
                }
                dups += 1;
                j += 1;
            }
            out.push_bar(
                s.open_time[i],
                [s.open[i], s.high[i], s.low[i], s.close[i]],
                s.volume[i],
            );
            out_origin.push(origin[i]);
            i += 1;
        } else {
            out.push_bar(
                c.open_time[j],
                [c.open[j], c.high[j], c.low[j], c.close[j]],
                c.volume[j],
            );
            out_origin.push(Origin {
                part,
                line: c.lines[j],
            });
            j += 1;
        }
    }
    Ok(Merged {
        series: out,
        origin: out_origin,
        dups,
    })
}

fn gaps_of(times: &[i64], interval: Interval) -> Vec<Gap> {
    let iv = interval.ms();
    times
        .windows(2)
        .filter(|w| w[1] - w[0] > iv)
        .map(|w| Gap {
            first_missing: w[0] + iv,
            last_missing: w[1] - iv,
            bars: ((w[1] - w[0]) / iv - 1) as u64,
        })
        .collect()
}

/// Funding events of one symbol, in strictly increasing time order.
#[derive(Debug, Clone, PartialEq)]
pub struct FundingSeries {
    pub symbol: String,
    /// Funding times, floored to the funding grid (ms).
    pub time: Vec<i64>,
    /// Hours between fundings at each event (from the file, or inferred from the spacing when
    /// the file has no interval column).
    pub interval_hours: Vec<u8>,
    /// The realised rate as a fraction (positive: longs pay shorts).
    pub rate: Vec<f64>,
    pub files: Vec<String>,
    pub duplicates_merged: u64,
}

impl FundingSeries {
    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// Merges the funding files of one symbol; identical overlapping events are kept once, a
    /// different rate at the same time is an error naming both files and lines.
    pub fn merge(symbol: &str, parts: Vec<Part<FundingChunk>>) -> Result<FundingSeries, DataError> {
        let mut rows: Vec<(i64, u8, f64, u32, u32)> = Vec::new();
        for (pi, p) in parts.iter().enumerate() {
            let c = &p.chunk;
            rows.extend((0..c.time.len()).map(|k| {
                (
                    c.time[k],
                    c.interval_hours[k],
                    c.rate[k],
                    pi as u32,
                    c.lines[k],
                )
            }));
        }
        rows.sort_by_key(|r| (r.0, r.3, r.4));
        let mut s = FundingSeries {
            symbol: symbol.to_string(),
            time: Vec::with_capacity(rows.len()),
            interval_hours: Vec::with_capacity(rows.len()),
            rate: Vec::with_capacity(rows.len()),
            files: parts.iter().map(|p| p.file.clone()).collect(),
            duplicates_merged: 0,
        };
        let mut last: Option<(i64, u8, f64, u32, u32)> = None;
        for r in rows {
            if let Some(prev) = last.filter(|p| p.0 == r.0) {
                if prev.2 != r.2 || (prev.1 != r.1 && prev.1 != 0 && r.1 != 0) {
                    return Err(DataError::Conflict {
                        what: format!("{symbol} funding"),
                        time: fmt_time(r.0),
                        file_a: parts[prev.3 as usize].file.clone(),
                        line_a: u64::from(prev.4),
                        file_b: parts[r.3 as usize].file.clone(),
                        line_b: u64::from(r.4),
                    });
                }
                s.duplicates_merged += 1;
                continue;
            }
            s.time.push(r.0);
            s.interval_hours.push(r.1);
            s.rate.push(r.2);
            last = Some(r);
        }
        s.infer_missing_intervals();
        Ok(s)
    }

    /// Files without an interval column leave 0: use the spacing to the next event (to the
    /// previous one for the last event), or 8 h for a lone event.
    fn infer_missing_intervals(&mut self) {
        let n = self.time.len();
        for k in 0..n {
            if self.interval_hours[k] != 0 {
                continue;
            }
            let step = if k + 1 < n {
                self.time[k + 1] - self.time[k]
            } else if k > 0 {
                self.time[k] - self.time[k - 1]
            } else {
                8 * crate::interval::HOUR_MS
            };
            let h = step / crate::interval::HOUR_MS;
            self.interval_hours[k] = if (1..=24).contains(&h) { h as u8 } else { 8 };
        }
    }

    /// Keeps only events with `from <= time < to` (ms).
    pub fn retain_range(&mut self, from: Option<i64>, to: Option<i64>) {
        let lo = from.map_or(0, |f| self.time.partition_point(|&t| t < f));
        let hi = to.map_or(self.len(), |t| self.time.partition_point(|&x| x < t));
        let hi = hi.max(lo);
        self.time.truncate(hi);
        self.time.drain(..lo);
        self.interval_hours.truncate(hi);
        self.interval_hours.drain(..lo);
        self.rate.truncate(hi);
        self.rate.drain(..lo);
    }

    /// Events within `[from, to)` and how many the funding schedule expects there (every
    /// multiple of the most common interval in the range, 8 h when there is none).
    pub fn coverage(&self, from: i64, to: i64) -> (u64, u64) {
        let lo = self.time.partition_point(|&t| t < from);
        let hi = self.time.partition_point(|&t| t < to);
        let present = (hi - lo) as u64;
        let mut counts = [0u32; 25];
        for &h in &self.interval_hours[lo..hi] {
            counts[usize::from(h)] += 1;
        }
        let hours = (1..=24)
            .max_by_key(|&h| (counts[h], h == 8))
            .filter(|&h| counts[h] > 0)
            .unwrap_or(8);
        let step = hours as i64 * crate::interval::HOUR_MS;
        let first =
            from.div_euclid(step) * step + if from.rem_euclid(step) == 0 { 0 } else { step };
        let expected = if first < to {
            ((to - 1 - first) / step + 1) as u64
        } else {
            0
        };
        (present, expected.max(present))
    }
}
