//! Errors of the data layer: every one names the file, and the line where there is one.

use std::fmt;

/// A problem with one row of a CSV file, named by its 1-based line number.
#[derive(Debug, Clone, PartialEq)]
pub enum RowProblem {
    /// A field that should be a number is not one.
    NotANumber { column: String, value: String },
    /// A field that should be a timestamp is not one.
    BadTimestamp { column: String, value: String },
    /// The row has a different number of fields than the header (or the first row).
    FieldCount { expected: usize, found: usize },
    /// A price that is zero, negative, NaN or infinite.
    BadPrice { column: &'static str, value: f64 },
    /// A volume that is negative, NaN or infinite.
    BadVolume { value: f64 },
    /// `high < max(open, close)`.
    HighBelowBody { high: f64, open: f64, close: f64 },
    /// `low > min(open, close)`.
    LowAboveBody { low: f64, open: f64, close: f64 },
    /// A timestamp outside the plausible window ([`crate::parse::EARLIEST_PLAUSIBLE_MS`] to
    /// [`crate::parse::LATEST_PLAUSIBLE_MS`]).
    ImplausibleTime { column: String, time: String },
    /// A timestamp earlier than the row before it.
    OutOfOrder { time: String, previous: String },
    /// The same timestamp twice in one file.
    DuplicateTime { time: String, first_line: u64 },
    /// A step between bars that is not a whole number of bar intervals.
    IntervalMismatch { step: String, interval: String },
    /// A bar whose open time is not on the interval grid (e.g. 10:07 in a 15m file).
    Misaligned { time: String, interval: String },
    /// The time unit differs from the unit detected on the first data row.
    MixedTimeUnit {
        found: &'static str,
        expected: &'static str,
    },
    /// A funding time more than a minute away from the funding grid.
    FundingOffGrid { time: String, interval_hours: u32 },
    /// A funding rate that is NaN, infinite or implausibly large.
    BadFundingRate { value: f64 },
    /// A funding interval that is not a positive whole number of hours.
    BadFundingInterval { value: String },
    /// The CSV reader could not read the row (bad quoting, invalid UTF-8...).
    Malformed { detail: String },
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowProblem::NotANumber { column, value } => {
                write!(f, "column `{column}`: expected a number, found {value:?}")
            }
            RowProblem::BadTimestamp { column, value } => write!(
                f,
                "column `{column}`: expected a Unix time in s, ms or µs, or an ISO-8601 UTC date, found {value:?}"
            ),
            RowProblem::FieldCount { expected, found } => {
                write!(f, "expected {expected} fields, found {found}")
            }
            RowProblem::BadPrice { column, value } => {
                write!(
                    f,
                    "column `{column}`: price must be positive and finite, found {value}"
                )
            }
            RowProblem::BadVolume { value } => {
                write!(
                    f,
                    "column `volume`: volume must be finite and >= 0, found {value}"
                )
            }
            RowProblem::HighBelowBody { high, open, close } => {
                write!(f, "high {high} is below max(open {open}, close {close})")
            }
            RowProblem::LowAboveBody { low, open, close } => {
                write!(f, "low {low} is above min(open {open}, close {close})")
            }
            RowProblem::ImplausibleTime { column, time } => write!(
                f,
                "column `{column}`: time {time} is outside the plausible window \
                 2017-01-01 .. 2100-01-01 (Binance's data starts in 2017)"
            ),
            RowProblem::OutOfOrder { time, previous } => write!(
                f,
                "timestamp {time} is earlier than the previous row's {previous} (rows must be in time order)"
            ),
            RowProblem::DuplicateTime { time, first_line } => {
                write!(
                    f,
                    "duplicate timestamp {time} (first seen on line {first_line})"
                )
            }
            RowProblem::IntervalMismatch { step, interval } => write!(
                f,
                "bar interval mismatch: a step of {step} is not a whole number of {interval} bars"
            ),
            RowProblem::Misaligned { time, interval } => {
                write!(f, "bar open time {time} is not on the {interval} grid")
            }
            RowProblem::MixedTimeUnit { found, expected } => write!(
                f,
                "timestamp is in {found} but the file's first row is in {expected}"
            ),
            RowProblem::FundingOffGrid {
                time,
                interval_hours,
            } => write!(
                f,
                "funding time {time} is more than a minute away from the {interval_hours}h funding grid"
            ),
            RowProblem::BadFundingRate { value } => write!(
                f,
                "funding rate must be finite with |rate| < 1, found {value}"
            ),
            RowProblem::BadFundingInterval { value } => write!(
                f,
                "funding interval must be a whole number of hours between 1 and 24, found {value:?}"
            ),
            RowProblem::Malformed { detail } => write!(f, "unreadable row: {detail}"),
        }
    }
}

/// Everything that can go wrong while finding, reading, validating and aligning market data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read. The message includes the I/O error's text, so it
    /// is not also chained as a `source` (an `{:#}` chain would print it twice).
    #[error("{file}: {error}")]
    Io { file: String, error: std::io::Error },
    /// One row is invalid.
    #[error("{file}:{line}: {problem}")]
    Row {
        file: String,
        line: u64,
        problem: RowProblem,
    },
    /// The file as a whole is unusable (bad header, empty, unknown layout, bad zip...).
    #[error("{file}: {message}")]
    File { file: String, message: String },
    /// A zip does not match its sibling `.CHECKSUM` file.
    #[error("{file}: SHA-256 {actual} does not match {expected} from {checksum_file}")]
    Checksum {
        file: String,
        checksum_file: String,
        expected: String,
        actual: String,
    },
    /// Two files hold different values for the same bar.
    #[error(
        "{file_a}:{line_a} and {file_b}:{line_b}: both hold {what} at {time} but with different values"
    )]
    Conflict {
        what: String,
        time: String,
        file_a: String,
        line_a: u64,
        file_b: String,
        line_b: u64,
    },
    /// The set of files cannot be combined as asked (several intervals, nothing loaded...).
    #[error("{0}")]
    Selection(String),
}

impl DataError {
    pub(crate) fn io(file: impl Into<String>, error: std::io::Error) -> Self {
        DataError::Io {
            file: file.into(),
            error,
        }
    }
    pub(crate) fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        DataError::File {
            file: file.into(),
            message: message.into(),
        }
    }
    pub(crate) fn row(file: impl Into<String>, line: u64, problem: RowProblem) -> Self {
        DataError::Row {
            file: file.into(),
            line,
            problem,
        }
    }
}
