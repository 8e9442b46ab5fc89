//! Parsing one CSV file of klines or funding events into columns, with every row checked.
//!
//! Kline variants read here: the archive's 12 columns with or without a header row, the REST
//! API's camelCase header (`openTime,...,closeTime,quoteVolume,trades,...`), short exports
//! (`open_time,open,high,low,close,volume` or `date,...`), and OHLC-only mark-price files.
//! A file without a header starts with a digit (as freqtrade detects it); its columns are read by
//! position: time, open, high, low, close, volume. Timestamps are Unix seconds, milliseconds or
//! microseconds, detected from the first data row by magnitude (< 1e11 s, < 1e14 ms, else µs)
//! and required to stay in that unit, or ISO-8601 dates in UTC. Every time must lie in the
//! plausible window [`EARLIEST_PLAUSIBLE_MS`] .. [`LATEST_PLAUSIBLE_MS`] (SEMANTICS.md §1.1).
//!
//! Funding variants: the archive's `calc_time,funding_interval_hours,last_funding_rate`, the
//! REST `fundingTime,fundingIntervalHours,fundingRate` (with its few ms of jitter) and
//! two-column `funding_time,funding_rate` dumps. Times are floored to the funding interval
//! (to the hour when the file has no interval column) and must be within a minute of it.

use crate::error::{DataError, RowProblem};
use crate::interval::{Duration, HOUR_MS, Interval, MINUTE_MS, fmt_time, parse_date_ms};
use crate::source::Kind;

/// The columns of one kline file, in file order (which must be time order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KlineChunk {
    pub open_time: Vec<i64>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    /// Base-asset volume; 0 for mark-price klines, which have none.
    pub volume: Vec<f64>,
    /// The 1-based line each row came from, for messages.
    pub lines: Vec<u32>,
}

/// The funding events of one file, in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FundingChunk {
    /// Funding time, floored to the funding interval (ms).
    pub time: Vec<i64>,
    pub interval_hours: Vec<u8>,
    pub rate: Vec<f64>,
    pub lines: Vec<u32>,
}

/// The earliest time a data file may hold: 2017-01-01 00:00 UTC. Binance opened in July 2017
/// (its spot klines start on 2017-08-17, USDT-M futures on 2019-09-08): an earlier time is a
/// wrong unit or a corrupt field, not market data.
pub const EARLIEST_PLAUSIBLE_MS: i64 = 1_483_228_800_000;

/// The end (exclusive) of the times a data file may hold: 2100-01-01 00:00 UTC. A fixed bound
/// rather than "now plus a margin", so whether a file loads never depends on the day it is
/// loaded; with it, no two times are more than 83 years apart.
pub const LATEST_PLAUSIBLE_MS: i64 = 4_102_444_800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeUnit {
    Seconds,
    Millis,
    Micros,
    Iso,
}

impl TimeUnit {
    fn name(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "seconds",
            TimeUnit::Millis => "milliseconds",
            TimeUnit::Micros => "microseconds",
            TimeUnit::Iso => "ISO-8601 dates",
        }
    }
}

/// Reads a timestamp field; the unit of the first row fixes the unit of the file.
struct TimeReader {
    unit: Option<TimeUnit>,
}

impl TimeReader {
    fn read(&mut self, field: &[u8], column: &str) -> Result<i64, RowProblem> {
        let bad = || RowProblem::BadTimestamp {
            column: column.to_string(),
            value: String::from_utf8_lossy(field).into_owned(),
        };
        let (unit, ms) = match parse_int(field) {
            Some(v) if v > 0 && v < 100_000_000_000 => (TimeUnit::Seconds, v * 1000),
            Some(v) if v > 0 && v < 100_000_000_000_000 => (TimeUnit::Millis, v),
            Some(v) if v > 0 && v < 100_000_000_000_000_000 => {
                if v % 1000 != 0 {
                    return Err(bad());
                }
                (TimeUnit::Micros, v / 1000)
            }
            Some(_) => return Err(bad()),
            None => {
                let text = std::str::from_utf8(field).map_err(|_| bad())?;
                (TimeUnit::Iso, parse_date_ms(text).ok_or_else(bad)?)
            }
        };
        match self.unit {
            None => self.unit = Some(unit),
            Some(u) if u != unit => {
                return Err(RowProblem::MixedTimeUnit {
                    found: unit.name(),
                    expected: u.name(),
                });
            }
            Some(_) => {}
        }
        if !(EARLIEST_PLAUSIBLE_MS..LATEST_PLAUSIBLE_MS).contains(&ms) {
            return Err(RowProblem::ImplausibleTime {
                column: column.to_string(),
                time: fmt_time(ms),
            });
        }
        Ok(ms)
    }
}

fn parse_int(field: &[u8]) -> Option<i64> {
    let field = field.trim_ascii();
    if field.is_empty() || field.len() > 18 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        field
            .iter()
            .fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0')),
    )
}

fn parse_f64(field: &[u8], column: &str) -> Result<f64, RowProblem> {
    fast_float2::parse::<f64, _>(field.trim_ascii()).map_err(|_| RowProblem::NotANumber {
        column: column.to_string(),
        value: String::from_utf8_lossy(field).into_owned(),
    })
}

/// Normalises a header name: lowercase, without `_`, `-`, spaces and quotes.
fn norm(name: &[u8]) -> String {
    name.iter()
        .filter(|b| !matches!(b, b'_' | b'-' | b' ' | b'"'))
        .map(|b| b.to_ascii_lowercase() as char)
        .collect()
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

fn reader(bytes: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes)
}

fn line_of(record: &csv::ByteRecord) -> u64 {
    record.position().map_or(0, csv::Position::line)
}

fn malformed(file: &str, e: &csv::Error) -> DataError {
    let line = e.position().map_or(0, csv::Position::line);
    DataError::row(
        file,
        line,
        RowProblem::Malformed {
            detail: e.to_string(),
        },
    )
}

/// Column positions of a kline file.
struct KlineLayout {
    time: usize,
    ohlc: [usize; 4],
    volume: Option<usize>,
    width: usize,
    time_name: String,
}

fn kline_layout(
    header: Option<&csv::ByteRecord>,
    first_width: usize,
    file: &str,
    kind: Kind,
) -> Result<KlineLayout, DataError> {
    let Some(header) = header else {
        if first_width < 5 {
            return Err(DataError::file(
                file,
                format!(
                    "expected at least 5 columns (time, open, high, low, close), found {first_width}"
                ),
            ));
        }
        return Ok(KlineLayout {
            time: 0,
            ohlc: [1, 2, 3, 4],
            volume: (first_width >= 6).then_some(5),
            width: first_width,
            time_name: "open_time".into(),
        });
    };
    let names: Vec<String> = header.iter().map(norm).collect();
    let find = |cands: &[&str]| names.iter().position(|n| cands.contains(&n.as_str()));
    let time = find(&[
        "opentime",
        "timestamp",
        "date",
        "time",
        "datetime",
        "opendate",
    ]);
    let cols = [
        find(&["open"]),
        find(&["high"]),
        find(&["low"]),
        find(&["close"]),
    ];
    let volume = find(&["volume", "vol", "basevolume"]);
    let missing: Vec<&str> = [("open_time", time)]
        .into_iter()
        .chain(["open", "high", "low", "close"].into_iter().zip(cols))
        .chain((kind == Kind::Klines).then_some(("volume", volume)))
        .filter(|(_, c)| c.is_none())
        .map(|(n, _)| n)
        .collect();
    if !missing.is_empty() {
        return Err(DataError::file(
            file,
            format!(
                "line 1: header {:?} lacks the column(s) {}; expected e.g. \
                 open_time,open,high,low,close,volume",
                String::from_utf8_lossy(header.as_slice()),
                missing.join(", ")
            ),
        ));
    }
    let ohlc = cols.map(|c| c.unwrap_or_default());
    Ok(KlineLayout {
        time: time.unwrap_or_default(),
        ohlc,
        volume,
        width: header.len(),
        time_name: String::from_utf8_lossy(&header[time.unwrap_or_default()]).into_owned(),
    })
}

/// Parses the kline CSV `bytes` of `file`. Rows are checked one by one (prices positive and
/// finite, high and low around the body, time strictly increasing); then the bar interval is
/// detected (from `hint`, else the most common step) and every step must be a whole number of
/// bars on the interval grid.
pub fn parse_klines(
    bytes: &[u8],
    file: &str,
    kind: Kind,
    hint: Option<Interval>,
) -> Result<(KlineChunk, Interval), DataError> {
    let bytes = strip_bom(bytes);
    let has_header = bytes.first().is_some_and(|b| !b.is_ascii_digit());
    let mut rdr = reader(bytes);
    let mut rec = csv::ByteRecord::new();
    let mut header = None;
    if has_header {
        if !rdr
            .read_byte_record(&mut rec)
            .map_err(|e| malformed(file, &e))?
        {
            return Err(DataError::file(file, "the file is empty"));
        }
        header = Some(rec.clone());
    }
    // Exact capacity: one row per line (a header or blank line costs one spare slot).
    let estimate = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut chunk = KlineChunk {
        open_time: Vec::with_capacity(estimate),
        open: Vec::with_capacity(estimate),
        high: Vec::with_capacity(estimate),
        low: Vec::with_capacity(estimate),
        close: Vec::with_capacity(estimate),
        volume: Vec::with_capacity(estimate),
        lines: Vec::with_capacity(estimate),
    };
    let mut layout: Option<KlineLayout> = None;
    let mut times = TimeReader { unit: None };
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|e| malformed(file, &e))?
    {
        let line = line_of(&rec);
        if rec.len() == 1 && rec[0].trim_ascii().is_empty() {
            continue;
        }
        let lay = match &layout {
            Some(l) => l,
            None => layout.insert(kline_layout(header.as_ref(), rec.len(), file, kind)?),
        };
        let row = |p| DataError::row(file, line, p);
        if rec.len() != lay.width {
            return Err(row(RowProblem::FieldCount {
                expected: lay.width,
                found: rec.len(),
            }));
        }
        let t = times.read(&rec[lay.time], &lay.time_name).map_err(row)?;
        let [o, h, l, c] =
            [0, 1, 2, 3].map(|i| parse_f64(&rec[lay.ohlc[i]], ["open", "high", "low", "close"][i]));
        let (o, h, l, c) = (
            o.map_err(row)?,
            h.map_err(row)?,
            l.map_err(row)?,
            c.map_err(row)?,
        );
        for (name, v) in [("open", o), ("high", h), ("low", l), ("close", c)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(row(RowProblem::BadPrice {
                    column: name,
                    value: v,
                }));
            }
        }
        let v = match (kind, lay.volume) {
            (Kind::Klines, Some(i)) => {
                let v = parse_f64(&rec[i], "volume").map_err(row)?;
                if !(v.is_finite() && v >= 0.0) {
                    return Err(row(RowProblem::BadVolume { value: v }));
                }
                v
            }
            _ => 0.0,
        };
        if h < o.max(c) {
            return Err(row(RowProblem::HighBelowBody {
                high: h,
                open: o,
                close: c,
            }));
        }
        if l > o.min(c) {
            return Err(row(RowProblem::LowAboveBody {
                low: l,
                open: o,
                close: c,
            }));
        }
        if let Some(&prev) = chunk.open_time.last() {
            if t == prev {
                let first_line = u64::from(chunk.lines[chunk.lines.len() - 1]);
                return Err(row(RowProblem::DuplicateTime {
                    time: fmt_time(t),
                    first_line,
                }));
            }
            if t < prev {
                return Err(row(RowProblem::OutOfOrder {
                    time: fmt_time(t),
                    previous: fmt_time(prev),
                }));
            }
        }
        chunk.open_time.push(t);
        chunk.open.push(o);
        chunk.high.push(h);
        chunk.low.push(l);
        chunk.close.push(c);
        chunk.volume.push(v);
        chunk.lines.push(u32::try_from(line).unwrap_or(u32::MAX));
    }
    if chunk.open_time.is_empty() {
        return Err(DataError::file(file, "no data rows"));
    }
    let interval = detect_interval(&chunk.open_time, &chunk.lines, hint, file)?;
    Ok((chunk, interval))
}

/// The bar interval of a file: the one its name states, else the most common step between
/// rows; then every step must be a whole number of intervals and every bar on the grid.
fn detect_interval(
    times: &[i64],
    lines: &[u32],
    hint: Option<Interval>,
    file: &str,
) -> Result<Interval, DataError> {
    let interval = match hint {
        Some(iv) => iv,
        None => {
            let mut counts: Vec<(i64, usize)> = Vec::new();
            for w in times.windows(2) {
                let d = w[1] - w[0];
                if let Some(k) = counts.iter().position(|&(s, _)| s == d) {
                    counts[k].1 += 1;
                } else if counts.len() < 64 {
                    counts.push((d, 1));
                }
            }
            let (step, _) = counts
                .iter()
                .max_by_key(|&&(s, n)| (n, std::cmp::Reverse(s)))
                .copied()
                .ok_or_else(|| {
                    DataError::file(
                        file,
                        "cannot tell the bar interval from a single row; put it in the file \
                         name (e.g. BTCUSDT-1h-2024-01.csv)",
                    )
                })?;
            Interval::from_ms(step).ok_or_else(|| {
                DataError::file(
                    file,
                    format!("the most common step between bars, {step} ms, is not a whole number of minutes"),
                )
            })?
        }
    };
    let iv = interval.ms();
    if hint.is_some() && times.len() >= 3 && !times.windows(2).any(|w| w[1] - w[0] == iv) {
        let common = detect_interval(times, lines, None, file)?;
        return Err(DataError::file(
            file,
            format!(
                "the file name says {interval} but no two bars are {interval} apart (most are {common} apart)"
            ),
        ));
    }
    for (i, w) in times.windows(2).enumerate() {
        let step = w[1] - w[0];
        if step % iv != 0 {
            return Err(DataError::row(
                file,
                u64::from(lines[i + 1]),
                RowProblem::IntervalMismatch {
                    step: Duration(step).to_string(),
                    interval: interval.to_string(),
                },
            ));
        }
    }
    if let Some(i) = times
        .iter()
        .position(|&t| interval.is_epoch_aligned() && t.rem_euclid(iv) != 0)
    {
        return Err(DataError::row(
            file,
            u64::from(lines[i]),
            RowProblem::Misaligned {
                time: fmt_time(times[i]),
                interval: interval.to_string(),
            },
        ));
    }
    Ok(interval)
}

/// Column positions of a funding file.
struct FundingLayout {
    time: usize,
    interval: Option<usize>,
    rate: usize,
    width: usize,
    time_name: String,
}

fn funding_layout(
    header: Option<&csv::ByteRecord>,
    width: usize,
    file: &str,
) -> Result<FundingLayout, DataError> {
    let Some(header) = header else {
        return match width {
            2 => Ok(FundingLayout {
                time: 0,
                interval: None,
                rate: 1,
                width,
                time_name: "funding_time".into(),
            }),
            3 => Ok(FundingLayout {
                time: 0,
                interval: Some(1),
                rate: 2,
                width,
                time_name: "calc_time".into(),
            }),
            _ => Err(DataError::file(
                file,
                format!(
                    "a funding file without header needs 2 or 3 columns (time, [interval hours], rate), found {width}"
                ),
            )),
        };
    };
    let names: Vec<String> = header.iter().map(norm).collect();
    let find = |cands: &[&str]| names.iter().position(|n| cands.contains(&n.as_str()));
    let time = find(&["calctime", "fundingtime", "time", "timestamp", "date"]);
    let interval = find(&["fundingintervalhours", "intervalhours"]);
    let rate = find(&["lastfundingrate", "fundingrate", "rate"]);
    match (time, rate) {
        (Some(time), Some(rate)) => Ok(FundingLayout {
            time,
            interval,
            rate,
            width: header.len(),
            time_name: String::from_utf8_lossy(&header[time]).into_owned(),
        }),
        _ => Err(DataError::file(
            file,
            format!(
                "line 1: header {:?} is not a funding header; expected \
                 calc_time,funding_interval_hours,last_funding_rate or fundingTime,fundingIntervalHours,fundingRate",
                String::from_utf8_lossy(header.as_slice())
            ),
        )),
    }
}

/// Parses the funding CSV `bytes` of `file`.
pub fn parse_funding(bytes: &[u8], file: &str) -> Result<FundingChunk, DataError> {
    let bytes = strip_bom(bytes);
    let has_header = bytes.first().is_some_and(|b| !b.is_ascii_digit());
    let mut rdr = reader(bytes);
    let mut rec = csv::ByteRecord::new();
    let mut header = None;
    if has_header {
        if !rdr
            .read_byte_record(&mut rec)
            .map_err(|e| malformed(file, &e))?
        {
            return Err(DataError::file(file, "the file is empty"));
        }
        header = Some(rec.clone());
    }
    let mut chunk = FundingChunk::default();
    let mut layout: Option<FundingLayout> = None;
    let mut times = TimeReader { unit: None };
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|e| malformed(file, &e))?
    {
        let line = line_of(&rec);
        if rec.len() == 1 && rec[0].trim_ascii().is_empty() {
            continue;
        }
        let lay = match &layout {
            Some(l) => l,
            None => layout.insert(funding_layout(header.as_ref(), rec.len(), file)?),
        };
        let row = |p| DataError::row(file, line, p);
        if rec.len() != lay.width {
            return Err(row(RowProblem::FieldCount {
                expected: lay.width,
                found: rec.len(),
            }));
        }
        let raw_t = times.read(&rec[lay.time], &lay.time_name).map_err(row)?;
        let hours = match lay.interval {
            Some(i) => {
                let f = rec[i].trim_ascii();
                match parse_int(f) {
                    Some(h @ 1..=24) => h as u8,
                    _ => {
                        return Err(row(RowProblem::BadFundingInterval {
                            value: String::from_utf8_lossy(f).into_owned(),
                        }));
                    }
                }
            }
            None => 0,
        };
        let grid = if hours == 0 {
            HOUR_MS
        } else {
            i64::from(hours) * HOUR_MS
        };
        let t = raw_t.div_euclid(grid) * grid;
        if raw_t - t >= MINUTE_MS {
            return Err(row(RowProblem::FundingOffGrid {
                time: fmt_time(raw_t),
                interval_hours: (grid / HOUR_MS) as u32,
            }));
        }
        let rate = parse_f64(&rec[lay.rate], "funding_rate").map_err(row)?;
        if !(rate.is_finite() && rate.abs() < 1.0) {
            return Err(row(RowProblem::BadFundingRate { value: rate }));
        }
        if let Some(&prev) = chunk.time.last() {
            if t == prev {
                let first_line = u64::from(chunk.lines[chunk.lines.len() - 1]);
                return Err(row(RowProblem::DuplicateTime {
                    time: fmt_time(t),
                    first_line,
                }));
            }
            if t < prev {
                return Err(row(RowProblem::OutOfOrder {
                    time: fmt_time(t),
                    previous: fmt_time(prev),
                }));
            }
        }
        chunk.time.push(t);
        chunk.interval_hours.push(hours);
        chunk.rate.push(rate);
        chunk.lines.push(u32::try_from(line).unwrap_or(u32::MAX));
    }
    if chunk.time.is_empty() {
        return Err(DataError::file(file, "no data rows"));
    }
    Ok(chunk)
}
