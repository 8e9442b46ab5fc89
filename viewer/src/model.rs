//! The documents the viewer reads: `etrading.run/1` and `etrading.study/1`, as their JSON
//! Schemas in `reports/schema/` describe them. The viewer depends on nothing else of
//! e-trading: these types mirror the schema, and a test parses the schema's example files
//! (plain and packed).

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

/// A column of numbers (NaN for a missing cell), read from either form the schemas allow: an
/// array of cells, or a packed object (`{"encoding": "f32", "data": BASE64}`, see the schemas'
/// `packed` definition). Decoded straight into f64s: a million cells are never a million
/// JSON values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cells(pub Vec<f64>);

#[derive(Deserialize)]
#[serde(tag = "encoding", rename_all = "lowercase")]
enum Packed {
    Seq {
        start: u64,
        len: u64,
    },
    Dict8 {
        dict: Vec<Num>,
        data: String,
        compression: Option<String>,
    },
    Dict16 {
        dict: Vec<Num>,
        data: String,
        compression: Option<String>,
    },
    F32 {
        data: String,
        compression: Option<String>,
    },
    F64 {
        data: String,
        compression: Option<String>,
    },
}

/// The bytes of a packed column: base64, inflated when `compression` is `deflate` (raw
/// DEFLATE, RFC 1951).
fn bytes(data: &str, compression: Option<&str>) -> Result<Vec<u8>, String> {
    let raw = base64_decode(data)?;
    match compression {
        None => Ok(raw),
        Some("deflate") => miniz_oxide::inflate::decompress_to_vec(&raw)
            .map_err(|e| format!("deflate data does not inflate: {e:?}")),
        Some(other) => Err(format!(
            "unknown compression `{other}` (this viewer reads deflate)"
        )),
    }
}

impl Packed {
    fn decode(self) -> Result<Vec<f64>, String> {
        let from_dict = |dict: &[Num], code: usize, missing: usize| {
            if code == missing {
                Ok(f64::NAN)
            } else {
                dict.get(code)
                    .map(|n| n.0)
                    .ok_or_else(|| format!("code {code} beyond a dictionary of {}", dict.len()))
            }
        };
        Ok(match self {
            Packed::Seq { start, len } => (start..start + len).map(|x| x as f64).collect(),
            Packed::Dict8 {
                dict,
                data,
                compression,
            } => bytes(&data, compression.as_deref())?
                .into_iter()
                .map(|c| from_dict(&dict, usize::from(c), 255))
                .collect::<Result<_, _>>()?,
            Packed::Dict16 {
                dict,
                data,
                compression,
            } => le_chunks::<2>(&bytes(&data, compression.as_deref())?)?
                .map(|b| from_dict(&dict, usize::from(u16::from_le_bytes(b)), 65_535))
                .collect::<Result<_, _>>()?,
            Packed::F32 { data, compression } => {
                le_chunks::<4>(&bytes(&data, compression.as_deref())?)?
                    .map(|b| f64::from(f32::from_le_bytes(b)))
                    .collect()
            }
            Packed::F64 { data, compression } => {
                le_chunks::<8>(&bytes(&data, compression.as_deref())?)?
                    .map(f64::from_le_bytes)
                    .collect()
            }
        })
    }
}

fn le_chunks<const N: usize>(bytes: &[u8]) -> Result<impl Iterator<Item = [u8; N]> + '_, String> {
    if !bytes.len().is_multiple_of(N) {
        return Err(format!(
            "{} bytes of data is not a whole number of {N}-byte cells",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|c| c.try_into().expect("chunks of N bytes")))
}

/// Standard base64 (RFC 4648, padded) to bytes.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let t = text.as_bytes();
    if !t.len().is_multiple_of(4) {
        return Err(format!(
            "base64 of {} characters (not a multiple of 4)",
            t.len()
        ));
    }
    let value = |c: u8| -> Result<u32, String> {
        Ok(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("`{}` is not a base64 character", char::from(c))),
        }))
    };
    let mut out = Vec::with_capacity(t.len() / 4 * 3);
    for (k, q) in t.chunks_exact(4).enumerate() {
        let last = k + 1 == t.len() / 4;
        let pad = if last {
            q.iter().rev().take_while(|&&c| c == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return Err("base64 with more than two `=`".to_string());
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

impl<'de> Deserialize<'de> for Cells {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cells, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cells;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of cells or a packed column")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Cells, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(Num(x)) = seq.next_element()? {
                    out.push(x);
                }
                Ok(Cells(out))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Cells, A::Error> {
                let p = Packed::deserialize(de::value::MapAccessDeserializer::new(map))?;
                p.decode()
                    .map(Cells)
                    .map_err(|e| de::Error::custom(format!("packed column: {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Study {
    pub schema: String,
    pub study_name: String,
    pub directions: Vec<String>,
    pub n_trials: u64,
    pub states: Vec<String>,
    pub number: Cells,
    pub state: Cells,
    pub params: Vec<ParamColumn>,
    pub values: Vec<Column>,
    pub metrics: Vec<Column>,
    pub pages: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    pub values: Cells,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ParamColumn {
    pub name: String,
    pub distribution: Distribution,
    pub values: Cells,
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
    pub equity: Cells,
    pub drawdown: Cells,
    pub margin_usage: Cells,
    pub funding_paid: Cells,
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
    pub close: Cells,
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
    let n = s.number.0.len();
    let bad = (s.state.0.len() != n)
        .then_some("state")
        .or_else(|| {
            s.params
                .iter()
                .find(|c| c.values.0.len() != n)
                .map(|c| c.name.as_str())
        })
        .or_else(|| {
            s.values
                .iter()
                .chain(&s.metrics)
                .find(|c| c.values.0.len() != n)
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
        ("equity", r.equity.0.len()),
        ("drawdown", r.drawdown.0.len()),
        ("margin_usage", r.margin_usage.0.len()),
        ("funding_paid", r.funding_paid.0.len()),
    ]
    .into_iter()
    .chain(
        r.prices
            .iter()
            .map(|p| (p.symbol.as_str(), p.close.0.len())),
    ) {
        if len != n {
            return Err(format!("series `{name}` has {len} values, bars.n is {n}"));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_cells(json: &str, expect: &[f64]) {
        let Cells(got) = serde_json::from_str(json).unwrap();
        assert_eq!(got.len(), expect.len(), "{json}: {got:?}");
        for (g, e) in got.iter().zip(expect) {
            assert!(
                g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                "{json}: {got:?}"
            );
        }
    }

    fn check_error(json: &str, expect: &str) {
        let e = serde_json::from_str::<Cells>(json).unwrap_err().to_string();
        assert!(e.contains(expect), "{json}: {e}");
    }

    #[test]
    fn cells_in_both_forms() {
        check_cells(
            r#"[1, 2.5, null, "inf", "-inf"]"#,
            &[1.0, 2.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY],
        );
        check_cells(
            r#"{"encoding": "seq", "start": 3, "len": 3}"#,
            &[3.0, 4.0, 5.0],
        );
        // Bytes 01 00 ff 02 00: codes 1, 0, missing, 2, 0.
        check_cells(
            r#"{"encoding": "dict8", "dict": [14, 21, "inf"], "data": "AQD/AgA="}"#,
            &[21.0, 14.0, f64::NAN, f64::INFINITY, 14.0],
        );
        // u16 LE 0x0001, 0xffff (missing), 0x0000.
        check_cells(
            r#"{"encoding": "dict16", "dict": [7, 9], "data": "AQD//wAA"}"#,
            &[9.0, f64::NAN, 7.0],
        );
        // f32 LE: 00 00 80 3f = 1.0, 00 00 00 3f = 0.5, 00 00 c0 7f = NaN.
        check_cells(
            r#"{"encoding": "f32", "data": "AACAPwAAAD8AAMB/"}"#,
            &[1.0, 0.5, f64::NAN],
        );
        // f64 LE of -2.0: 00 .. 00 c0.
        check_cells(r#"{"encoding": "f64", "data": "AAAAAAAAAMA="}"#, &[-2.0]);
        // Raw DEFLATE (Python's zlib, wbits -15) of f32 LE [0, 0, 0, 0, 0, 0, 1.5, 0].
        check_cells(
            r#"{"encoding": "f32", "data": "Y2DABQ7Yg0gA", "compression": "deflate"}"#,
            &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5, 0.0],
        );
        check_error(
            r#"{"encoding": "f32", "data": "Y2DABQ7Yg0gA", "compression": "zstd"}"#,
            "unknown compression `zstd`",
        );
        check_error(
            r#"{"encoding": "f32", "data": "AAAAAA==", "compression": "deflate"}"#,
            "does not inflate",
        );
        check_error(
            r#"{"encoding": "f32", "data": "AAAA"}"#,
            "not a whole number of 4-byte cells",
        );
        check_error(
            r#"{"encoding": "f32", "data": "AA*A"}"#,
            "`*` is not a base64 character",
        );
        check_error(
            r#"{"encoding": "dict8", "dict": [1], "data": "Ag=="}"#,
            "code 2 beyond a dictionary of 1",
        );
        check_error(
            r#"{"encoding": "f16", "data": ""}"#,
            "unknown variant `f16`",
        );
        check_error(r#""x""#, "an array of cells or a packed column");
    }
}
