//! Market data for e-trading: Binance USDT-M klines, mark-price klines and funding rates, read
//! strictly from every real CSV variant (and the archive's zips), merged per symbol, checked,
//! and aligned into one columnar multi-asset [`Panel`].
//!
//! Entry points: [`load_dataset`] / [`load_panel`] read files; [`Panel::content_hash`] names the
//! data a result was computed on; [`synth::generate`] writes a synthetic data set in the
//! archive layout. Every error names the file and, where there is one, the line
//! ([`DataError`]). This crate does no computation on prices beyond validation, alignment and
//! resampling.

pub mod error;
pub mod fetch;
pub mod interval;
pub mod load;
pub mod panel;
pub mod parse;
pub mod series;
pub mod source;
pub mod synth;

pub use error::{DataError, RowProblem};
pub use interval::{Interval, fmt_time, parse_date_ms};
pub use load::{Dataset, LoadOptions, Skipped, load_dataset, load_panel};
pub use panel::{AlignPolicy, AlignStats, FundingEvent, Panel, SymbolBars};
pub use series::{FundingSeries, Gap, GapPolicy, KlineSeries};
pub use source::{DataFile, Kind, Market};
