//! A seeded synthetic data set in Binance's archive layout, for benchmarks and stress tests
//! beyond the real data: klines, mark-price klines and funding for any symbols, interval and
//! span, as monthly files (plain CSV, or zips with `.CHECKSUM` files as Binance publishes them).
//!
//! The price model: log returns with Student-t (4 degrees of freedom) innovations scaled to
//! unit variance, in three volatility regimes (calm 35 %, normal 70 %, turbulent 140 % a year,
//! with drifts +30 %, 0 %, -60 % a year) that switch as a Markov chain with a mean stay of two
//! weeks. Highs and lows reach beyond the body by half-normal multiples of the bar volatility;
//! volume grows with the size of the move. The mark price is the last price times (1 + basis),
//! the basis an AR(1) around 0 (about 2 bp). Funding every 8 h is an AR(1) around 1 bp, tilted
//! by the regime and capped at ±0.3 %. The same seed and options always give the same files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, StudentT};
use rayon::prelude::*;

use crate::error::DataError;
use crate::interval::{DAY_MS, HOUR_MS, Interval};
use crate::source::sha256_hex;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub symbols: Vec<String>,
    pub interval: Interval,
    /// First month, inclusive (year, month).
    pub from: (i32, u32),
    /// Last month, inclusive (year, month).
    pub to: (i32, u32),
    pub seed: u64,
    /// Write `.zip` files with `.CHECKSUM` siblings instead of plain CSV.
    pub zip: bool,
    /// Write the header row (newer archive files have one, older ones do not).
    pub header: bool,
    pub mark_price: bool,
    pub funding: bool,
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SynthSummary {
    pub files: u64,
    pub kline_rows: u64,
    pub funding_rows: u64,
    pub bytes: u64,
}

const KLINE_HEADER: &str = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n";
const FUNDING_HEADER: &str = "calc_time,funding_interval_hours,last_funding_rate\n";
const YEAR_MS: f64 = 365.25 * DAY_MS as f64;

/// Parses `YYYY-MM`.
pub fn parse_month(s: &str) -> Option<(i32, u32)> {
    let (y, m) = s.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    ((1970..=9999).contains(&y) && (1..=12).contains(&m)).then_some((y, m))
}

fn month_start_ms((y, m): (i32, u32)) -> i64 {
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

fn next_month((y, m): (i32, u32)) -> (i32, u32) {
    if m == 12 { (y + 1, 1) } else { (y, m + 1) }
}

/// A stable 64-bit hash of a symbol name (FNV-1a), so each symbol's path depends only on the
/// seed and its own name.
fn symbol_seed(seed: u64, symbol: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in symbol.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A plausible starting price and hourly base volume for well-known symbols.
fn start_of(symbol: &str) -> (f64, f64) {
    match symbol {
        "BTCUSDT" => (7200.0, 2500.0),
        "ETHUSDT" => (130.0, 40_000.0),
        "XRPUSDT" => (0.19, 30_000_000.0),
        "LTCUSDT" => (41.0, 150_000.0),
        _ => (100.0, 50_000.0),
    }
}

/// Decimals that give about five significant digits at `price`.
fn decimals_for(price: f64) -> usize {
    (4 - price.log10().floor() as i32).clamp(0, 8) as usize
}

struct Bar {
    t: i64,
    o: f64,
    h: f64,
    l: f64,
    c: f64,
    v: f64,
    basis: f64,
    regime: usize,
}

/// Simulates one symbol over `[start, end)`.
fn simulate(
    symbol: &str,
    opts: &SynthOptions,
    start: i64,
    end: i64,
) -> (Vec<Bar>, Vec<(i64, f64)>) {
    let mut rng = ChaCha8Rng::seed_from_u64(symbol_seed(opts.seed, symbol));
    let iv = opts.interval.ms();
    let dt = iv as f64 / YEAR_MS;
    let vols = [0.35, 0.70, 1.40];
    let drifts = [0.30, 0.0, -0.60];
    let p_switch = (iv as f64 / (14.0 * DAY_MS as f64)).min(0.5);
    let t4 = StudentT::new(4.0).expect("4 degrees of freedom is a valid Student-t");
    let t_scale = (2.0f64 / 4.0).sqrt();
    let (mut price, base_vol) = start_of(symbol);
    let base_vol = base_vol * iv as f64 / HOUR_MS as f64;
    let mut regime = 1usize;
    let mut basis = 0.0f64;
    let n = ((end - start) / iv).max(0) as usize;
    let mut bars = Vec::with_capacity(n);
    let mut t = start;
    while t < end {
        if rng.random::<f64>() < p_switch {
            regime = (regime + 1 + rng.random_range(0..2)) % 3;
        }
        let sigma = vols[regime] * dt.sqrt();
        let z: f64 = t4.sample(&mut rng) * t_scale;
        let r = (drifts[regime] - 0.5 * vols[regime] * vols[regime]) * dt + sigma * z;
        let o = price;
        let c = o * r.exp();
        let up: f64 = rng.sample::<f64, _>(StandardNormal).abs() * 0.5 * sigma;
        let down: f64 = rng.sample::<f64, _>(StandardNormal).abs() * 0.5 * sigma;
        let h = o.max(c) * up.exp();
        let l = o.min(c) * (-down).exp();
        let noise: f64 = rng.sample(StandardNormal);
        let v = base_vol * (0.3 * noise).exp() * (1.0 + (r / sigma.max(1e-12)).abs());
        let shock: f64 = rng.sample(StandardNormal);
        basis = 0.9 * basis + 0.0001 * shock;
        bars.push(Bar {
            t,
            o,
            h,
            l,
            c,
            v,
            basis,
            regime,
        });
        price = c;
        t += iv;
    }
    let mut funding = Vec::new();
    if opts.funding {
        let step = 8 * HOUR_MS;
        let mut ft = start.div_euclid(step) * step;
        if ft < start {
            ft += step;
        }
        let mut rate = 0.0001f64;
        let tilt = [0.0002, 0.0, -0.0002];
        while ft < end {
            let i = ((ft - start) / iv) as usize;
            let reg = bars.get(i).map_or(1, |b| b.regime);
            let shock: f64 = rng.sample(StandardNormal);
            rate = 0.0001 + 0.5 * (rate - 0.0001) + 0.0001 * shock + tilt[reg] * 0.5;
            rate = rate.clamp(-0.003, 0.003);
            funding.push((ft, (rate * 1e8).round() / 1e8));
            ft += step;
        }
    }
    (bars, funding)
}

fn round_to(x: f64, decimals: usize) -> f64 {
    let p = 10f64.powi(decimals as i32);
    (x * p).round() / p
}

fn kline_csv(bars: &[Bar], iv: i64, mark: bool, header: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bars.len() * 110 + 128);
    if header {
        out.extend_from_slice(KLINE_HEADER.as_bytes());
    }
    for b in bars {
        let k = if mark { 1.0 + b.basis } else { 1.0 };
        let d = decimals_for(b.c);
        let o = round_to(b.o * k, d);
        let c = round_to(b.c * k, d);
        let h = round_to(b.h * k, d).max(o).max(c);
        let l = round_to(b.l * k, d)
            .min(o)
            .min(c)
            .max(10f64.powi(-(d as i32)));
        let close_time = b.t + iv - 1;
        if mark {
            let _ = writeln!(
                out,
                "{},{o:.d$},{h:.d$},{l:.d$},{c:.d$},0,{close_time},0,{},0,0,0",
                b.t,
                iv / 1000
            );
        } else {
            let v = round_to(b.v, 3);
            let mid = 0.5 * (o + c);
            let count = (v.sqrt() * 40.0) as u64 + 1;
            let _ = writeln!(
                out,
                "{},{o:.d$},{h:.d$},{l:.d$},{c:.d$},{v:.3},{close_time},{:.4},{count},{:.3},{:.4},0",
                b.t,
                v * mid,
                v * 0.5,
                v * 0.5 * mid
            );
        }
    }
    out
}

fn funding_csv(events: &[(i64, f64)], header: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 32 + 64);
    if header {
        out.extend_from_slice(FUNDING_HEADER.as_bytes());
    }
    for (t, r) in events {
        let _ = writeln!(out, "{t},8,{r:.8}");
    }
    out
}

/// Writes `csv` as `dir/name.csv`, or zipped as `dir/name.zip` with `name.zip.CHECKSUM`.
/// Files are written under a temporary name and renamed, so an interrupted run never leaves a
/// file that looks complete. Returns (files, bytes) written.
fn write_file(dir: &Path, name: &str, csv: &[u8], zip: bool) -> Result<(u64, u64), DataError> {
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir.display().to_string(), e))?;
    let (path, bytes) = if zip {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            let inner = format!("{name}.csv");
            w.start_file(inner.as_str(), opts)
                .and_then(|()| w.write_all(csv).map_err(Into::into))
                .and_then(|()| w.finish().map(|_| ()))
                .map_err(|e| {
                    DataError::file(dir.join(&inner).display().to_string(), e.to_string())
                })?;
        }
        (dir.join(format!("{name}.zip")), buf.into_inner())
    } else {
        (dir.join(format!("{name}.csv")), csv.to_vec())
    };
    let display = path.display().to_string();
    let tmp = path.with_extension("part");
    fs::write(&tmp, &bytes).map_err(|e| DataError::io(&display, e))?;
    fs::rename(&tmp, &path).map_err(|e| DataError::io(&display, e))?;
    let mut files = 1;
    let mut total = bytes.len() as u64;
    if zip {
        let sum = format!("{}  {name}.zip\n", sha256_hex(&bytes));
        let mut sum_path = path.clone().into_os_string();
        sum_path.push(".CHECKSUM");
        let sum_path = PathBuf::from(sum_path);
        fs::write(&sum_path, &sum).map_err(|e| DataError::io(sum_path.display().to_string(), e))?;
        files += 1;
        total += sum.len() as u64;
    }
    Ok((files, total))
}

/// Generates the data set under `dir` in the archive layout
/// (`futures/um/monthly/{klines,markPriceKlines}/SYM/IV/SYM-IV-YYYY-MM.csv` and
/// `futures/um/monthly/fundingRate/SYM/SYM-fundingRate-YYYY-MM.csv`).
pub fn generate(dir: &Path, opts: &SynthOptions) -> Result<SynthSummary, DataError> {
    if opts.from > opts.to {
        return Err(DataError::Selection(format!(
            "--from {}-{:02} is after --to {}-{:02}",
            opts.from.0, opts.from.1, opts.to.0, opts.to.1
        )));
    }
    if DAY_MS % opts.interval.ms() != 0 {
        return Err(DataError::Selection(format!(
            "interval {} does not divide a day; use e.g. 15m, 1h, 4h or 1d",
            opts.interval
        )));
    }
    let start = month_start_ms(opts.from);
    let end = month_start_ms(next_month(opts.to));
    let iv = opts.interval;
    let results: Vec<Result<SynthSummary, DataError>> = opts
        .symbols
        .par_iter()
        .map(|sym| {
            let (bars, funding) = simulate(sym, opts, start, end);
            let mut sum = SynthSummary::default();
            let root = dir.join("futures").join("um").join("monthly");
            let mut month = opts.from;
            while month <= opts.to {
                let (ms, me) = (month_start_ms(month), month_start_ms(next_month(month)));
                let lo = ((ms - start) / iv.ms()) as usize;
                let hi = (((me - start) / iv.ms()) as usize).min(bars.len());
                let tag = format!("{}-{:02}", month.0, month.1);
                let kinds: &[(&str, bool)] = if opts.mark_price {
                    &[("klines", false), ("markPriceKlines", true)]
                } else {
                    &[("klines", false)]
                };
                for &(kind, mark) in kinds {
                    let d = root.join(kind).join(sym).join(iv.to_string());
                    let csv = kline_csv(&bars[lo..hi], iv.ms(), mark, opts.header);
                    let (f, b) = write_file(&d, &format!("{sym}-{iv}-{tag}"), &csv, opts.zip)?;
                    sum.files += f;
                    sum.bytes += b;
                    if !mark {
                        sum.kline_rows += (hi - lo) as u64;
                    }
                }
                if opts.funding {
                    let ev: Vec<(i64, f64)> = funding
                        .iter()
                        .copied()
                        .filter(|&(t, _)| t >= ms && t < me)
                        .collect();
                    let d = root.join("fundingRate").join(sym);
                    let (f, b) = write_file(
                        &d,
                        &format!("{sym}-fundingRate-{tag}"),
                        &funding_csv(&ev, true),
                        opts.zip,
                    )?;
                    sum.files += f;
                    sum.bytes += b;
                    sum.funding_rows += ev.len() as u64;
                }
                month = next_month(month);
            }
            Ok(sum)
        })
        .collect();
    let mut total = SynthSummary::default();
    for r in results {
        let r = r?;
        total.files += r.files;
        total.kline_rows += r.kline_rows;
        total.funding_rows += r.funding_rows;
        total.bytes += r.bytes;
    }
    Ok(total)
}
