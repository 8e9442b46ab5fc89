//! Every trial of a study in one compact, columnar document: schema `etrading.study/1`
//! (`reports/schema/etrading.study-1.schema.json`). One array per column (trial numbers,
//! states, each param, each objective value, each numeric user attribute), so a million trials
//! cost a few bytes per cell and no repeated keys.
//!
//! Cells: params are exact (categoricals as the index into their `choices`, as Optuna stores
//! them); objective values and metrics are written at f32 precision; a missing value is `null`,
//! the infinities are `"inf"` and `"-inf"`.
//!
//! Report pages embed the same document with every column [`Packed`] ([`StudyExport::packed`]):
//! little-endian binary in base64, dictionary codes for params and metrics with few distinct
//! values; a million trials of the rsi_ema shape cost tens of MB instead of hundreds.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::run::{Approx, Exact, Packed};

pub const SCHEMA: &str = "etrading.study/1";

/// Trial states, in the order of their codes in [`StudyExport::state`].
pub const STATES: [&str; 5] = ["RUNNING", "WAITING", "COMPLETE", "PRUNED", "FAIL"];

#[derive(Debug, Clone, Serialize)]
pub struct StudyExport {
    pub schema: &'static str,
    pub study_name: String,
    /// `MINIMIZE` or `MAXIMIZE`, one per objective.
    pub directions: Vec<String>,
    /// The study's user attributes, as stored.
    pub user_attrs: BTreeMap<String, serde_json::Value>,
    pub n_trials: u64,
    /// The names of the state codes.
    pub states: [&'static str; 5],
    /// Trial numbers (0-based, per study), ascending.
    pub number: Vec<u64>,
    /// State code per trial, an index into `states`.
    pub state: Vec<u8>,
    pub params: Vec<ParamColumn>,
    /// One column per objective, named `value` (single objective) or `value_{k}`.
    pub values: Vec<Column<Approx>>,
    /// Numeric user attributes of the trials (metrics, walk-forward `is_{k}_*`/`oos_{k}_*`).
    pub metrics: Vec<Column<Approx>>,
    /// Report pages written next to this export, by trial number (empty in a plain export).
    pub pages: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Column<T> {
    pub name: String,
    pub values: Vec<T>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParamColumn {
    pub name: String,
    pub distribution: Distribution,
    pub values: Vec<Exact>,
}

/// A param's distribution, as Optuna describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Distribution {
    Int {
        low: f64,
        high: f64,
        step: f64,
        log: bool,
    },
    Float {
        low: f64,
        high: f64,
        step: Option<f64>,
        log: bool,
    },
    Categorical {
        choices: Vec<serde_json::Value>,
    },
}

impl Distribution {
    /// Parses Optuna's `distribution_json` (`{"name": "IntDistribution", "attributes": {...}}`).
    pub fn from_optuna_json(text: &str) -> Result<Distribution, String> {
        let v: serde_json::Value = serde_json::from_str(&python_json(text))
            .map_err(|e| format!("not JSON ({e}): {text}"))?;
        let name = v["name"].as_str().unwrap_or_default();
        let a = &v["attributes"];
        let num = |k: &str| {
            a[k].as_f64()
                .ok_or_else(|| format!("{name}: attribute `{k}` is not a number: {text}"))
        };
        let log = a["log"].as_bool().unwrap_or(false);
        match name {
            "IntDistribution" | "IntUniformDistribution" | "IntLogUniformDistribution" => {
                Ok(Distribution::Int {
                    low: num("low")?,
                    high: num("high")?,
                    step: a["step"].as_f64().unwrap_or(1.0),
                    log,
                })
            }
            "FloatDistribution"
            | "UniformDistribution"
            | "LogUniformDistribution"
            | "DiscreteUniformDistribution" => Ok(Distribution::Float {
                low: num("low")?,
                high: num("high")?,
                step: a["step"].as_f64().or_else(|| a["q"].as_f64()),
                log,
            }),
            "CategoricalDistribution" => Ok(Distribution::Categorical {
                choices: a["choices"]
                    .as_array()
                    .cloned()
                    .ok_or_else(|| format!("CategoricalDistribution without choices: {text}"))?,
            }),
            _ => Err(format!("unknown distribution `{name}`: {text}")),
        }
    }
}

/// Python's `json.dumps` output made strict: the bare tokens `Infinity`, `-Infinity` and `NaN`
/// (outside strings) become `"inf"`, `"-inf"` and `null`.
pub fn python_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let (token, replacement) = if rest.starts_with("-Infinity") {
            ("-Infinity", "\"-inf\"")
        } else if rest.starts_with("Infinity") {
            ("Infinity", "\"inf\"")
        } else if rest.starts_with("NaN") {
            ("NaN", "null")
        } else {
            if c == '"' {
                in_str = true;
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        out.push_str(replacement);
        rest = &rest[token.len()..];
    }
    out
}

/// A user attribute's `value_json` as a number: numbers, the Python tokens `Infinity`,
/// `-Infinity`, `NaN`, and booleans (1 or 0); anything else (text, lists) is not a metric.
pub fn attr_number(value_json: &str) -> Option<f64> {
    let t = value_json.trim();
    match t {
        "true" => Some(1.0),
        "false" => Some(0.0),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => t.parse().ok(),
        _ => None,
    }
}

/// A study export could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StudyError {
    #[error("trial {number}: unknown state `{state}` (expected one of {STATES:?})")]
    State { number: u64, state: String },
    #[error(
        "param `{name}`: trial {number} has distribution {found:?}, earlier trials {expected:?}"
    )]
    Distribution {
        name: String,
        number: u64,
        expected: Box<Distribution>,
        found: Box<Distribution>,
    },
}

/// Builds a [`StudyExport`] one cell at a time, in any order of trials and columns; cells never
/// set are `null`.
#[derive(Debug, Clone)]
pub struct StudyBuilder {
    export: StudyExport,
    params: BTreeMap<String, usize>,
    metrics: BTreeMap<String, usize>,
}

impl StudyBuilder {
    pub fn new(
        study_name: &str,
        directions: Vec<String>,
        user_attrs: BTreeMap<String, serde_json::Value>,
    ) -> StudyBuilder {
        let n_objectives = directions.len();
        let values = (0..n_objectives)
            .map(|k| Column {
                name: if n_objectives == 1 {
                    "value".to_string()
                } else {
                    format!("value_{k}")
                },
                values: Vec::new(),
            })
            .collect();
        StudyBuilder {
            export: StudyExport {
                schema: SCHEMA,
                study_name: study_name.to_string(),
                directions,
                user_attrs,
                n_trials: 0,
                states: STATES,
                number: Vec::new(),
                state: Vec::new(),
                params: Vec::new(),
                values,
                metrics: Vec::new(),
                pages: BTreeMap::new(),
            },
            params: BTreeMap::new(),
            metrics: BTreeMap::new(),
        }
    }

    /// Adds a trial; returns its row.
    pub fn trial(&mut self, number: u64, state: &str) -> Result<usize, StudyError> {
        let code = STATES
            .iter()
            .position(|s| *s == state)
            .ok_or_else(|| StudyError::State {
                number,
                state: state.to_string(),
            })?;
        let e = &mut self.export;
        e.number.push(number);
        e.state.push(code as u8);
        e.n_trials += 1;
        for c in &mut e.values {
            c.values.push(Approx(f64::NAN));
        }
        for c in &mut e.params {
            c.values.push(Exact(f64::NAN));
        }
        for c in &mut e.metrics {
            c.values.push(Approx(f64::NAN));
        }
        Ok(e.number.len() - 1)
    }

    /// Sets a param of the trial at `row` (Optuna's internal value: a categorical's index).
    pub fn param(
        &mut self,
        row: usize,
        name: &str,
        distribution: &Distribution,
        internal_value: f64,
    ) -> Result<(), StudyError> {
        let n = self.export.number.len();
        let idx = match self.params.get(name) {
            Some(&i) => {
                let col = &self.export.params[i];
                if col.distribution != *distribution {
                    return Err(StudyError::Distribution {
                        name: name.to_string(),
                        number: self.export.number[row],
                        expected: Box::new(col.distribution.clone()),
                        found: Box::new(distribution.clone()),
                    });
                }
                i
            }
            None => {
                self.export.params.push(ParamColumn {
                    name: name.to_string(),
                    distribution: distribution.clone(),
                    values: vec![Exact(f64::NAN); n],
                });
                self.params
                    .insert(name.to_string(), self.export.params.len() - 1);
                self.export.params.len() - 1
            }
        };
        self.export.params[idx].values[row] = Exact(internal_value);
        Ok(())
    }

    /// Sets objective `k`'s value of the trial at `row` (ignored for an objective the study
    /// does not have).
    pub fn value(&mut self, row: usize, k: usize, value: f64) {
        if let Some(c) = self.export.values.get_mut(k) {
            c.values[row] = Approx(value);
        }
    }

    /// Sets a numeric user attribute of the trial at `row`.
    pub fn metric(&mut self, row: usize, name: &str, value: f64) {
        let n = self.export.number.len();
        let idx = *self.metrics.entry(name.to_string()).or_insert_with(|| {
            self.export.metrics.push(Column {
                name: name.to_string(),
                values: vec![Approx(f64::NAN); n],
            });
            self.export.metrics.len() - 1
        });
        self.export.metrics[idx].values[row] = Approx(value);
    }

    /// The export, its param and metric columns sorted by name and its trials by number.
    pub fn finish(self) -> StudyExport {
        let mut e = self.export;
        e.params.sort_by(|a, b| a.name.cmp(&b.name));
        e.metrics.sort_by(|a, b| a.name.cmp(&b.name));
        let mut order: Vec<usize> = (0..e.number.len()).collect();
        order.sort_by_key(|&i| e.number[i]);
        if order.iter().enumerate().any(|(k, &i)| k != i) {
            let permute = |v: &mut Vec<Approx>| *v = order.iter().map(|&i| v[i]).collect();
            e.number = order.iter().map(|&i| e.number[i]).collect();
            e.state = order.iter().map(|&i| e.state[i]).collect();
            for c in &mut e.params {
                c.values = order.iter().map(|&i| c.values[i]).collect();
            }
            e.values.iter_mut().for_each(|c| permute(&mut c.values));
            e.metrics.iter_mut().for_each(|c| permute(&mut c.values));
        }
        e
    }
}

/// [`StudyExport`] with every column [`Packed`]: the same document, the schema's packed
/// column form.
#[derive(Debug, Clone, Serialize)]
pub struct PackedStudy<'a> {
    pub schema: &'static str,
    pub study_name: &'a str,
    pub directions: &'a [String],
    pub user_attrs: &'a BTreeMap<String, serde_json::Value>,
    pub n_trials: u64,
    pub states: [&'static str; 5],
    pub number: Packed,
    pub state: Packed,
    pub params: Vec<PackedParam<'a>>,
    pub values: Vec<PackedColumn>,
    pub metrics: Vec<PackedColumn>,
    pub pages: &'a BTreeMap<String, String>,
}

/// A [`Column`] with its cells [`Packed`] (at f32 precision).
#[derive(Debug, Clone, Serialize)]
pub struct PackedColumn {
    pub name: String,
    pub values: Packed,
}

/// A [`ParamColumn`] with its cells [`Packed`] (exactly).
#[derive(Debug, Clone, Serialize)]
pub struct PackedParam<'a> {
    pub name: &'a str,
    pub distribution: &'a Distribution,
    pub values: Packed,
}

impl StudyExport {
    /// The export with its columns packed (what `etrading report` embeds in index.html).
    pub fn packed(&self) -> PackedStudy<'_> {
        let approx = |cols: &[Column<Approx>]| {
            cols.iter()
                .map(|c| PackedColumn {
                    name: c.name.clone(),
                    values: Packed::approx(&c.values.iter().map(|a| a.0).collect::<Vec<_>>()),
                })
                .collect()
        };
        PackedStudy {
            schema: self.schema,
            study_name: &self.study_name,
            directions: &self.directions,
            user_attrs: &self.user_attrs,
            n_trials: self.n_trials,
            states: self.states,
            number: Packed::integers(&self.number),
            state: Packed::exact(&self.state.iter().map(|&c| f64::from(c)).collect::<Vec<_>>()),
            params: self
                .params
                .iter()
                .map(|p| PackedParam {
                    name: &p.name,
                    distribution: &p.distribution,
                    values: Packed::exact(&p.values.iter().map(|e| e.0).collect::<Vec<_>>()),
                })
                .collect(),
            values: approx(&self.values),
            metrics: approx(&self.metrics),
            pages: &self.pages,
        }
    }

    /// The row of trial `number`.
    pub fn row_of(&self, number: u64) -> Option<usize> {
        self.number.binary_search(&number).ok()
    }

    /// The state name of the trial at `row`.
    pub fn state_name(&self, row: usize) -> &'static str {
        STATES[usize::from(self.state[row])]
    }

    /// The numeric user attributes of the trial at `row` that it has.
    pub fn metrics_of(&self, row: usize) -> Vec<(&str, f64)> {
        self.metrics
            .iter()
            .map(|c| (c.name.as_str(), c.values[row].0))
            .filter(|(_, v)| !v.is_nan())
            .collect()
    }

    /// The rows of the `k` best trials with a value for objective 0, best first (ties by
    /// trial number).
    pub fn top(&self, k: usize) -> Vec<usize> {
        let Some(col) = self.values.first() else {
            return Vec::new();
        };
        let maximize = self.directions.first().is_some_and(|d| d == "MAXIMIZE");
        let mut rows: Vec<usize> = (0..self.number.len())
            .filter(|&i| !col.values[i].0.is_nan())
            .collect();
        rows.sort_by(|&a, &b| {
            let (x, y) = (col.values[a].0, col.values[b].0);
            let ord = if maximize {
                y.total_cmp(&x)
            } else {
                x.total_cmp(&y)
            };
            ord.then(self.number[a].cmp(&self.number[b]))
        });
        rows.truncate(k);
        rows
    }

    /// The `--set name=value` texts of the trial at `row`'s params (categoricals by choice).
    pub fn param_texts(&self, row: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for c in &self.params {
            let v = c.values[row].0;
            if v.is_nan() {
                continue;
            }
            let text = match &c.distribution {
                Distribution::Categorical { choices } => match choices.get(v as usize) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => continue,
                },
                Distribution::Int { .. } => format!("{}", v as i64),
                Distribution::Float { .. } => format!("{v}"),
            };
            out.push((c.name.clone(), text));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_python_json(input: &str, expect: &str) {
        assert_eq!(python_json(input), expect);
    }

    #[test]
    fn python_tokens() {
        check_python_json(
            "[10000.0, 10100.5, Infinity]",
            "[10000.0, 10100.5, \"inf\"]",
        );
        check_python_json(
            "{\"a\": -Infinity, \"b\": NaN}",
            "{\"a\": \"-inf\", \"b\": null}",
        );
        check_python_json("\"NaN Infinity\"", "\"NaN Infinity\"");
        check_python_json("\"a\\\"NaN\"", "\"a\\\"NaN\"");
    }

    #[test]
    fn attr_numbers() {
        assert_eq!(attr_number("1.2345"), Some(1.2345));
        assert_eq!(attr_number("42"), Some(42.0));
        assert_eq!(attr_number("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(attr_number("NaN").unwrap().is_nan());
        assert_eq!(attr_number("true"), Some(1.0));
        assert_eq!(attr_number("\"enqueue\""), None);
        assert_eq!(attr_number("[1, 2]"), None);
    }

    #[test]
    fn distributions() {
        let d = Distribution::from_optuna_json(
            r#"{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 7, "high": 28}}"#,
        )
        .unwrap();
        assert_eq!(
            d,
            Distribution::Int {
                low: 7.0,
                high: 28.0,
                step: 1.0,
                log: false
            }
        );
        let d = Distribution::from_optuna_json(
            r#"{"name": "FloatDistribution", "attributes": {"step": null, "low": 0.001, "high": 0.1, "log": true}}"#,
        )
        .unwrap();
        assert_eq!(
            d,
            Distribution::Float {
                low: 0.001,
                high: 0.1,
                step: None,
                log: true
            }
        );
        let e = Distribution::from_optuna_json(r#"{"name": "Weird", "attributes": {}}"#);
        assert!(e.unwrap_err().contains("unknown distribution `Weird`"));
    }

    /// Compares `text` with `reports/schema/examples/NAME`, or rewrites it under
    /// `UPDATE_GOLDEN=1`.
    fn check_example(name: &str, text: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schema/examples")
            .join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, text).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
        assert_eq!(
            expected,
            text,
            "{} differs (UPDATE_GOLDEN=1 refreshes it)",
            path.display()
        );
    }

    fn check_valid(doc: &serde_json::Value) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schema/etrading.study-1.schema.json");
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let v = jsonschema::validator_for(&schema).unwrap();
        let errs: Vec<String> = v
            .iter_errors(doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errs.is_empty(), "{errs:#?}");
    }

    /// Six trials (numbers 0..6) with an int param, a categorical, a float param of six
    /// distinct values, one objective and a metric with a missing cell and an infinity.
    fn small_study() -> StudyExport {
        let int = Distribution::Int {
            low: 1.0,
            high: 3.0,
            step: 1.0,
            log: false,
        };
        let side = Distribution::Categorical {
            choices: vec!["long".into(), "short".into()],
        };
        let float = Distribution::Float {
            low: 0.0,
            high: 1.0,
            step: None,
            log: false,
        };
        let mut b = StudyBuilder::new("small", vec!["MAXIMIZE".into()], BTreeMap::new());
        for i in 0..6u32 {
            let row = b
                .trial(u64::from(i), if i == 5 { "PRUNED" } else { "COMPLETE" })
                .unwrap();
            b.param(row, "leverage", &int, f64::from(i % 3 + 1))
                .unwrap();
            b.param(row, "side", &side, f64::from(i % 2)).unwrap();
            b.param(row, "frac", &float, f64::from(i) / 7.0).unwrap();
            if i != 5 {
                b.value(row, 0, f64::from(i) * 0.25 - 0.5);
            }
            b.metric(
                row,
                "sharpe",
                if i == 2 {
                    f64::INFINITY
                } else {
                    f64::from(i) / 3.0
                },
            );
        }
        b.finish()
    }

    #[test]
    fn packed_study_matches_schema_and_examples() {
        let s = small_study();
        let plain = serde_json::to_string(&s).unwrap();
        let packed = serde_json::to_string(&s.packed()).unwrap();
        check_valid(&serde_json::from_str(&plain).unwrap());
        let doc: serde_json::Value = serde_json::from_str(&packed).unwrap();
        check_valid(&doc);
        assert_eq!(
            doc["number"],
            serde_json::json!({"encoding": "seq", "start": 0, "len": 6})
        );
        // States COMPLETE x5 then PRUNED: dict [2, 3], codes 0 0 0 0 0 1.
        assert_eq!(
            doc["state"],
            serde_json::json!({"encoding": "dict8", "dict": [2, 3], "data": "AAAAAAAB"})
        );
        // The viewer's tests parse both and expect the same columns.
        check_example("study-small.json", &format!("{plain}\n"));
        check_example("study-small.packed.json", &format!("{packed}\n"));
        let mut bad = doc;
        bad["metrics"][0]["values"]["data"] = "not base64!".into();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schema/etrading.study-1.schema.json");
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(!jsonschema::validator_for(&schema).unwrap().is_valid(&bad));
    }

    #[test]
    fn builder_pads_and_sorts() {
        let int = Distribution::Int {
            low: 1.0,
            high: 10.0,
            step: 1.0,
            log: false,
        };
        let mut b = StudyBuilder::new("s", vec!["MAXIMIZE".into()], BTreeMap::new());
        let r1 = b.trial(1, "COMPLETE").unwrap();
        b.param(r1, "lev", &int, 5.0).unwrap();
        b.value(r1, 0, 2.0);
        let r0 = b.trial(0, "FAIL").unwrap();
        b.metric(r0, "sharpe", 0.5);
        assert!(matches!(
            b.trial(2, "DONE"),
            Err(StudyError::State { number: 2, .. })
        ));
        let other = Distribution::Int {
            low: 1.0,
            high: 20.0,
            step: 1.0,
            log: false,
        };
        assert!(b.param(r0, "lev", &other, 3.0).is_err());
        let e = b.finish();
        assert_eq!(e.number, vec![0, 1]);
        assert_eq!(e.state, vec![4, 2]);
        assert!(e.params[0].values[0].0.is_nan());
        assert_eq!(e.params[0].values[1], Exact(5.0));
        assert_eq!(e.metrics[0].values[0], Approx(0.5));
        assert!(e.metrics[0].values[1].0.is_nan());
        assert_eq!(e.values[0].name, "value");
        assert_eq!(e.top(5), vec![1]);
        assert_eq!(e.param_texts(1), vec![("lev".to_string(), "5".to_string())]);
        assert_eq!(e.row_of(1), Some(1));
        assert_eq!(e.state_name(0), "FAIL");
    }
}
