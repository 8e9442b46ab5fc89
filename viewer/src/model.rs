//! The documents the viewer reads: `etrading.run/1` and `etrading.study/1`, as their JSON
//! Schemas in `reports/schema/` describe them. The viewer depends on nothing else of
//! e-trading: these types mirror the schema, and a test parses the schema's example files.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

pub const RUN_SCHEMA: &str = "etrading.run/1";
pub const STUDY_SCHEMA: &str = "etrading.study/1";

/// A cell: a number, `null` (NaN here) or `"inf"`/`"-inf"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, null, \"inf\" or \"-inf\"")
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Num, E> {
                Ok(Num(x))
            }
            fn visit_i64<E: de::Error>(self, x: i64) -> Result<Num, E> {
                Ok(Num(x as f64))
            }
            fn visit_u64<E: de::Error>(self, x: u64) -> Result<Num, E> {
                Ok(Num(x as f64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Num, E> {
                Ok(Num(f64::NAN))
            }
            fn visit_none<E: de::Error>(self) -> Result<Num, E> {
                Ok(Num(f64::NAN))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Num, E> {
                match s {
                    "inf" => Ok(Num(f64::INFINITY)),
                    "-inf" => Ok(Num(f64::NEG_INFINITY)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A column of cells as plain f64 (NaN for missing).
pub fn floats(cells: Vec<Num>) -> Vec<f64> {
    cells.into_iter().map(|n| n.0).collect()
}

#[derive(Debug, Clone, Deserialize)]
pub struct Study {
    pub schema: String,
    pub study_name: String,
    pub directions: Vec<String>,
    pub n_trials: u64,
    pub states: Vec<String>,
    pub number: Vec<u64>,
    pub state: Vec<u8>,
    pub params: Vec<ParamColumn>,
    pub values: Vec<Column>,
    pub metrics: Vec<Column>,
    pub pages: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    pub values: Vec<Num>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ParamColumn {
    pub name: String,
    pub distribution: Distribution,
    pub values: Vec<Num>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Distribution {
    Int { low: f64, high: f64 },
    Float { low: f64, high: f64 },
    Categorical { choices: Vec<serde_json::Value> },
}

impl Distribution {
    /// Labels of a categorical's choices.
    pub fn labels(&self) -> Option<Vec<String>> {
        match self {
            Distribution::Categorical { choices } => Some(
                choices
                    .iter()
                    .map(|c| match c {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    pub schema: String,
    pub provenance: Provenance,
    pub metrics: BTreeMap<String, serde_json::Value>,
    pub trial: Option<TrialRef>,
    pub bars: Bars,
    pub prices: Vec<Price>,
    pub equity: Vec<Num>,
    pub drawdown: Vec<Num>,
    pub margin_usage: Vec<Num>,
    pub funding_paid: Vec<Num>,
    pub trades: Vec<Trade>,
    pub monthly_returns: Vec<MonthlyReturn>,
    pub windows: Vec<Window>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Provenance {
    pub strategy_id: String,
    pub spec_file: String,
    pub params: BTreeMap<String, serde_json::Value>,
    pub symbols: Vec<String>,
    pub interval: String,
    pub first_bar: Option<String>,
    pub last_bar: Option<String>,
    pub bars: u64,
    pub data_hash: String,
    pub engine_version: String,
    pub talib_version: String,
    pub brackets: String,
    pub initial_capital: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TrialRef {
    pub study_name: String,
    pub number: u64,
    pub state: String,
    pub values: Vec<Num>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Bars {
    pub n: u64,
    pub interval_ms: i64,
    pub segments: Vec<[i64; 2]>,
}

impl Bars {
    /// The open time of every bar.
    pub fn times(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.n as usize);
        for &[t0, count] in &self.segments {
            out.extend((0..count).map(|k| t0 + k * self.interval_ms));
        }
        out
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Price {
    pub symbol: String,
    pub close: Vec<Num>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Trade {
    pub id: u64,
    pub symbol: String,
    pub side: String,
    pub entry_time: String,
    pub exit_time: String,
    pub entry_price: f64,
    pub exit_price: f64,
    pub qty: f64,
    pub notional: f64,
    pub leverage: f64,
    pub margin: f64,
    pub fees: f64,
    pub liquidation_fee: f64,
    pub funding: f64,
    pub pnl: f64,
    pub return_on_margin: f64,
    pub exit_reason: String,
    pub mae: f64,
    pub mfe: f64,
    pub entry_bar: u64,
    pub exit_bar: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MonthlyReturn {
    pub month: String,
    #[serde(rename = "return")]
    pub return_: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Window {
    pub window: u32,
    pub is: BTreeMap<String, Num>,
    pub oos: BTreeMap<String, Num>,
}

/// Parses an `etrading.study/1` document, checking its schema and column lengths.
pub fn parse_study(text: &str) -> Result<Study, String> {
    let s: Study = serde_json::from_str(text).map_err(|e| format!("study JSON: {e}"))?;
    if s.schema != STUDY_SCHEMA {
        return Err(format!(
            "this viewer reads {STUDY_SCHEMA}, the document is {}",
            s.schema
        ));
    }
    let n = s.number.len();
    let bad = (s.state.len() != n)
        .then_some("state")
        .or_else(|| {
            s.params
                .iter()
                .find(|c| c.values.len() != n)
                .map(|c| c.name.as_str())
        })
        .or_else(|| {
            s.values
                .iter()
                .chain(&s.metrics)
                .find(|c| c.values.len() != n)
                .map(|c| c.name.as_str())
        });
    if let Some(col) = bad {
        return Err(format!("study column `{col}` does not have {n} cells"));
    }
    Ok(s)
}

/// Parses an `etrading.run/1` document, checking its schema and series lengths.
pub fn parse_run(text: &str) -> Result<Run, String> {
    let r: Run = serde_json::from_str(text).map_err(|e| format!("run JSON: {e}"))?;
    if r.schema != RUN_SCHEMA {
        return Err(format!(
            "this viewer reads {RUN_SCHEMA}, the document is {}",
            r.schema
        ));
    }
    let n = r.bars.n as usize;
    let seg: i64 = r.bars.segments.iter().map(|s| s[1]).sum();
    if seg as usize != n {
        return Err(format!("bar segments hold {seg} bars, bars.n is {n}"));
    }
    for (name, len) in [
        ("equity", r.equity.len()),
        ("drawdown", r.drawdown.len()),
        ("margin_usage", r.margin_usage.len()),
        ("funding_paid", r.funding_paid.len()),
    ]
    .into_iter()
    .chain(r.prices.iter().map(|p| (p.symbol.as_str(), p.close.len())))
    {
        if len != n {
            return Err(format!("series `{name}` has {len} values, bars.n is {n}"));
        }
    }
    Ok(r)
}
