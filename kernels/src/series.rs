//! The OHLCV price series that rules and indicators read, as borrowed columns.

use std::fmt;

/// One of the five bar series every engine provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Series {
    /// Opening price of the bar.
    Open,
    /// Highest price of the bar.
    High,
    /// Lowest price of the bar.
    Low,
    /// Closing price of the bar.
    Close,
    /// Traded volume of the bar (base asset).
    Volume,
}

impl Series {
    /// All series, in the order `open high low close volume`.
    pub const ALL: [Series; 5] = [
        Series::Open,
        Series::High,
        Series::Low,
        Series::Close,
        Series::Volume,
    ];

    /// The name used in specs and expressions (`close`).
    pub fn name(self) -> &'static str {
        match self {
            Series::Open => "open",
            Series::High => "high",
            Series::Low => "low",
            Series::Close => "close",
            Series::Volume => "volume",
        }
    }

    /// Parses a spec name (`"close"`) into a series.
    pub fn from_name(name: &str) -> Option<Series> {
        Series::ALL.into_iter().find(|series| series.name() == name)
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Borrowed OHLCV columns of one symbol, one value per bar, all of the same length.
#[derive(Clone, Copy, Debug)]
pub struct BarColumns<'a> {
    /// Opening prices.
    pub open: &'a [f64],
    /// High prices.
    pub high: &'a [f64],
    /// Low prices.
    pub low: &'a [f64],
    /// Closing prices.
    pub close: &'a [f64],
    /// Volumes.
    pub volume: &'a [f64],
}

impl<'a> BarColumns<'a> {
    /// The column of one series.
    pub fn get(&self, series: Series) -> &'a [f64] {
        match series {
            Series::Open => self.open,
            Series::High => self.high,
            Series::Low => self.low,
            Series::Close => self.close,
            Series::Volume => self.volume,
        }
    }

    /// Number of bars, or `None` when the five columns differ in length.
    pub fn bar_count(&self) -> Option<usize> {
        let bar_count = self.close.len();
        Series::ALL
            .iter()
            .all(|&series| self.get(series).len() == bar_count)
            .then_some(bar_count)
    }
}
