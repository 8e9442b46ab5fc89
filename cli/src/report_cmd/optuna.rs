//! A study streamed into the columnar `etrading.study/1` export: [`StudyFile::visit`] reads
//! Optuna's tables (one query per table, read-only) and this maps its rows into the reports'
//! [`StudyBuilder`] cell by cell, keeping no per-trial maps, so a million trials cost their
//! columns and nothing more.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use etrading_db::study::{JsonValue, StudyFile, StudyHeader, StudyVisitor, TrialRow, TrialTable};
use etrading_kernels::spec::{Distribution, ParamValue};
use etrading_reports::study::{self as export, StudyBuilder, StudyExport};

/// Reads study `name` of the study file at `path`.
pub fn read_study(path: &Path, name: &str) -> anyhow::Result<StudyExport> {
    let mut columns = Columns {
        builder: None,
        distributions: HashMap::new(),
    };
    StudyFile::open(path)?.visit(name, &mut columns)?;
    let Some(builder) = columns.builder else {
        unreachable!("visit tells the header before anything else");
    };
    Ok(builder.finish())
}

/// The visitor: trials, params, objective values and numeric user attributes into columns.
struct Columns {
    builder: Option<StudyBuilder>,
    /// Per param name, the last distribution seen and its reports twin (converted once).
    distributions: HashMap<String, (Distribution, export::Distribution)>,
}

impl Columns {
    fn builder(&mut self) -> &mut StudyBuilder {
        self.builder
            .as_mut()
            .expect("visit tells the header before any row")
    }
}

impl StudyVisitor for Columns {
    type Error = anyhow::Error;

    fn wants(&self, table: TrialTable) -> bool {
        matches!(
            table,
            TrialTable::Params | TrialTable::Values | TrialTable::UserAttrs
        )
    }

    fn written_order(&self) -> bool {
        // Cells are addressed by name: the order within a trial does not matter.
        false
    }

    fn study(&mut self, header: StudyHeader) -> anyhow::Result<()> {
        let directions = header
            .directions
            .iter()
            .map(|d| d.as_str().to_string())
            .collect();
        let user_attrs = header
            .user_attrs
            .iter()
            .map(|(k, v)| (k.clone(), strict_json(v)))
            .collect::<BTreeMap<_, _>>();
        self.builder = Some(StudyBuilder::new(&header.name, directions, user_attrs));
        Ok(())
    }

    fn trial(&mut self, trial: &TrialRow<'_>) -> anyhow::Result<()> {
        // Trials are told in order, so the builder's rows are the visitor's trial positions.
        self.builder()
            .trial(trial.number as u64, trial.state.as_str())?;
        Ok(())
    }

    fn param(
        &mut self,
        trial: usize,
        name: &str,
        distribution: &Distribution,
        internal: f64,
    ) -> anyhow::Result<()> {
        let known = matches!(self.distributions.get(name), Some((d, _)) if d == distribution);
        if !known {
            self.distributions.insert(
                name.to_string(),
                (distribution.clone(), report_distribution(distribution)),
            );
        }
        let twin = &self.distributions[name].1;
        let builder = self
            .builder
            .as_mut()
            .expect("visit tells the header before any row");
        builder.param(trial, name, twin, internal)?;
        Ok(())
    }

    fn value(&mut self, trial: usize, objective: usize, value: f64) -> anyhow::Result<()> {
        self.builder().value(trial, objective, value);
        Ok(())
    }

    fn user_attr(&mut self, trial: usize, key: &str, value: JsonValue) -> anyhow::Result<()> {
        // Numbers (Python's NaN and infinities included) and booleans (1 or 0) are metrics;
        // text and lists are not.
        let x = match value {
            JsonValue::Int(i) => i as f64,
            JsonValue::Float(x) => x,
            JsonValue::Bool(b) => f64::from(u8::from(b)),
            _ => return Ok(()),
        };
        self.builder().metric(trial, key, x);
        Ok(())
    }
}

/// A distribution as the reports describe it.
fn report_distribution(distribution: &Distribution) -> export::Distribution {
    match distribution {
        Distribution::Int {
            low,
            high,
            step,
            log,
        } => export::Distribution::Int {
            low: *low as f64,
            high: *high as f64,
            step: *step as f64,
            log: *log,
        },
        Distribution::Float {
            low,
            high,
            step,
            log,
        } => export::Distribution::Float {
            low: *low,
            high: *high,
            step: *step,
            log: *log,
        },
        Distribution::Categorical { choices } => export::Distribution::Categorical {
            choices: choices
                .iter()
                .map(|c| match c {
                    ParamValue::Int(i) => serde_json::Value::from(*i),
                    ParamValue::Float(x) => strict_json(&JsonValue::Float(*x)),
                    ParamValue::Bool(b) => serde_json::Value::Bool(*b),
                    ParamValue::Str(s) => serde_json::Value::String(s.clone()),
                })
                .collect(),
        },
    }
}

/// Python's JSON made strict as the reports write it (`export::python_json`): `Infinity` and
/// `-Infinity` become the strings `"inf"` and `"-inf"`, `NaN` becomes `null`.
fn strict_json(value: &JsonValue) -> serde_json::Value {
    match value {
        JsonValue::Float(x) if x.is_nan() => serde_json::Value::Null,
        JsonValue::Float(x) if x.is_infinite() => {
            serde_json::Value::String(if *x > 0.0 { "inf" } else { "-inf" }.to_string())
        }
        JsonValue::Array(items) => items.iter().map(strict_json).collect(),
        JsonValue::Object(members) => serde_json::Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), strict_json(v)))
                .collect(),
        ),
        other => other.to_serde(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rusqlite::Connection;

    use super::*;

    /// A study in Optuna's schema: two trials of `hand` (one COMPLETE with a categorical, an
    /// infinite value and Python-JSON attributes, one FAIL), and a second study whose trial
    /// must not leak in. Its trial ids run against its numbers (trial 0 is `trial_id` 4), as
    /// in a file where processes interleave.
    fn hand_made(dir: &Path) -> PathBuf {
        let path = dir.join("s.db");
        let db = Connection::open(&path).unwrap();
        db.execute_batch(include_str!("../../../db/src/study/schema.sql"))
            .unwrap();
        db.execute_batch(
            r#"
            INSERT INTO version_info VALUES (1, 12, '5.0.0');
            INSERT INTO alembic_version VALUES ('v3.2.0.a');
            INSERT INTO studies VALUES (1, 'hand'), (2, 'other');
            INSERT INTO study_directions VALUES (1, 'MINIMIZE', 1, 0), (2, 'MAXIMIZE', 2, 0);
            INSERT INTO study_user_attributes VALUES (1, 1, 'spec_file', '"examples/rsi_ema.toml"'),
              (2, 1, 'bounds', '[0.5, Infinity, -Infinity, NaN]');
            INSERT INTO trials VALUES (4, 0, 1, 'COMPLETE', NULL, NULL), (2, 1, 1, 'FAIL', NULL, NULL),
                                      (3, 0, 2, 'COMPLETE', NULL, NULL);
            INSERT INTO trial_params VALUES
              (1, 4, 'side', 1.0, '{"name": "CategoricalDistribution", "attributes": {"choices": ["long", "short"]}}'),
              (2, 4, 'leverage', 3.0, '{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 1, "high": 5}}'),
              (3, 2, 'leverage', 5.0, '{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 1, "high": 5}}'),
              (4, 3, 'leverage', 1.0, '{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 1, "high": 5}}'),
              (5, 4, 'stop', 0.5, '{"name": "FloatDistribution", "attributes": {"step": null, "low": 0.25, "high": 1.0, "log": false}}'),
              (6, 2, 'frac', 2.0, '{"name": "CategoricalDistribution", "attributes": {"choices": [0.5, 1, Infinity]}}');
            INSERT INTO trial_values VALUES (1, 4, 0, NULL, 'INF_NEG'), (2, 3, 0, 9.0, 'FINITE');
            INSERT INTO trial_user_attributes VALUES (1, 4, 'sharpe', '1.25'), (2, 4, 'tail', '[1.0, Infinity]'),
              (3, 4, 'oos_0_sharpe', 'NaN'), (4, 4, 'is_0_sharpe', 'Infinity'), (5, 2, 'liquidated', 'true'),
              (6, 2, 'data_hash', '"abc"'), (7, 3, 'sharpe', '7.0');
            "#,
        )
        .unwrap();
        path
    }

    #[test]
    fn reads_a_study_into_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = hand_made(dir.path());
        let e = read_study(&path, "hand").unwrap();
        assert_eq!(e.number, vec![0, 1]);
        assert_eq!(e.state, vec![2, 4]);
        assert_eq!(e.directions, vec!["MINIMIZE"]);
        assert_eq!(e.user_attrs["spec_file"], "examples/rsi_ema.toml");
        assert_eq!(
            serde_json::Value::Object(e.user_attrs.clone().into_iter().collect()),
            serde_json::json!({"bounds": [0.5, "inf", "-inf", null], "spec_file": "examples/rsi_ema.toml"})
        );
        let names: Vec<&str> = e.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["frac", "leverage", "side", "stop"]);
        assert_eq!(
            e.params[0].distribution,
            export::Distribution::Categorical {
                choices: vec![0.5.into(), 1.into(), "inf".into()]
            }
        );
        assert_eq!(
            e.params[1].distribution,
            export::Distribution::Int {
                low: 1.0,
                high: 5.0,
                step: 1.0,
                log: false
            }
        );
        assert_eq!(
            e.params[3].distribution,
            export::Distribution::Float {
                low: 0.25,
                high: 1.0,
                step: None,
                log: false
            }
        );
        assert_eq!(e.values[0].values[0].0, f64::NEG_INFINITY);
        assert!(e.values[0].values[1].0.is_nan());
        let metrics: Vec<&str> = e.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            metrics,
            ["is_0_sharpe", "liquidated", "oos_0_sharpe", "sharpe"]
        );
        assert_eq!(
            e.param_texts(0),
            vec![
                ("leverage".into(), "3".into()),
                ("side".into(), "short".into()),
                ("stop".into(), "0.5".into())
            ]
        );
        assert_eq!(
            e.metrics_of(0),
            vec![("is_0_sharpe", f64::INFINITY), ("sharpe", 1.25)]
        );
        // Booleans are metrics (1 or 0); text is not.
        assert_eq!(e.metrics_of(1), vec![("liquidated", 1.0)]);
    }

    #[test]
    fn errors_name_the_study_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = hand_made(dir.path());
        let e = read_study(&path, "nope").unwrap_err().to_string();
        assert!(
            e.contains("no study named \"nope\" (studies: \"hand\", \"other\")"),
            "{e}"
        );
        let e = read_study(&dir.path().join("missing.db"), "hand")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.db: no such study file"), "{e}");
    }
}
