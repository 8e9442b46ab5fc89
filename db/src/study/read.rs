//! Reading study files: the list of studies, and one study with every trial's params (with
//! their distributions), values, intermediate values, states and attributes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

use etrading_kernels::spec::{Distribution, ParamValue};

use super::distribution::{external_value, parse_distribution};
use super::pyjson::JsonValue;
use super::schema::{open_for_reading, sqlite_error};
use super::{Direction, StudyError, TrialState, display};

/// A study file opened for reading.
#[derive(Debug)]
pub struct StudyFile {
    conn: Connection,
    path: PathBuf,
}

/// One line of `etrading study list`.
#[derive(Clone, Debug, PartialEq)]
pub struct StudySummary {
    pub study_id: i64,
    pub name: String,
    pub directions: Vec<Direction>,
    pub n_trials: usize,
    /// Trials per state.
    pub states: BTreeMap<TrialState, usize>,
    /// The best value of the first objective among COMPLETE trials.
    pub best_value: Option<f64>,
    pub user_attrs: Vec<(String, JsonValue)>,
}

/// One param of a trial.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialParam {
    pub name: String,
    /// The value it stands for (a categorical's choice, an int as an int).
    pub value: ParamValue,
    /// `trial_params.param_value`: Optuna's internal representation.
    pub internal: f64,
    pub distribution: Distribution,
}

/// One trial.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    pub trial_id: i64,
    pub number: i64,
    pub state: TrialState,
    pub datetime_start: Option<String>,
    pub datetime_complete: Option<String>,
    /// In the order they were written.
    pub params: Vec<TrialParam>,
    /// One per objective (infinities restored from `value_type`); empty when the trial has no
    /// value.
    pub values: Vec<f64>,
    /// `(step, value)`, NaN restored from `intermediate_value_type`.
    pub intermediate_values: Vec<(i64, f64)>,
    pub user_attrs: Vec<(String, JsonValue)>,
    pub system_attrs: Vec<(String, JsonValue)>,
}

impl Trial {
    pub fn param(&self, name: &str) -> Option<&TrialParam> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn user_attr(&self, key: &str) -> Option<&JsonValue> {
        self.user_attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn system_attr(&self, key: &str) -> Option<&JsonValue> {
        self.system_attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The first objective's value.
    pub fn value(&self) -> Option<f64> {
        self.values.first().copied()
    }
}

/// One study with all its trials, ordered by number.
#[derive(Clone, Debug, PartialEq)]
pub struct Study {
    pub study_id: i64,
    pub name: String,
    pub directions: Vec<Direction>,
    pub user_attrs: Vec<(String, JsonValue)>,
    pub system_attrs: Vec<(String, JsonValue)>,
    pub trials: Vec<Trial>,
}

impl Study {
    /// The COMPLETE trial with the best first-objective value (the lowest number among ties),
    /// as `study.best_trial` in Optuna.
    pub fn best_trial(&self) -> Option<&Trial> {
        let direction = *self.directions.first()?;
        let mut best: Option<&Trial> = None;
        for trial in &self.trials {
            let (TrialState::Complete, Some(value)) = (trial.state, trial.value()) else {
                continue;
            };
            if value.is_nan() {
                continue;
            }
            if best.is_none_or(|b| direction.better(value, b.value().unwrap_or(f64::NAN))) {
                best = Some(trial);
            }
        }
        best
    }

    pub fn user_attr(&self, key: &str) -> Option<&JsonValue> {
        self.user_attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Trials per state.
    pub fn state_counts(&self) -> BTreeMap<TrialState, usize> {
        let mut counts = BTreeMap::new();
        for trial in &self.trials {
            *counts.entry(trial.state).or_insert(0) += 1;
        }
        counts
    }
}

impl StudyFile {
    /// Opens an existing study file (refusing one whose schema revision is not Optuna 5's).
    pub fn open(path: &Path) -> Result<StudyFile, StudyError> {
        Ok(StudyFile {
            conn: open_for_reading(path)?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every study in the file, by id.
    pub fn studies(&self) -> Result<Vec<StudySummary>, StudyError> {
        let err = sqlite_error(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT study_id, study_name FROM studies ORDER BY study_id")
            .map_err(&err)?;
        let rows: Vec<(i64, String)> = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?;
        let mut out = Vec::with_capacity(rows.len());
        for (study_id, name) in rows {
            let directions = self.directions(study_id, &name)?;
            let mut states = BTreeMap::new();
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT state, COUNT(*) FROM trials WHERE study_id = ?1 GROUP BY state",
                )
                .map_err(&err)?;
            let counts: Vec<(String, i64)> = stmt
                .query_map([study_id], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(&err)?
                .collect::<Result<_, _>>()
                .map_err(&err)?;
            let mut n_trials = 0;
            for (state, count) in counts {
                let state = TrialState::parse(&state).ok_or_else(|| StudyError::BadStudy {
                    path: display(&self.path),
                    study: name.clone(),
                    message: format!("unknown trial state {state:?}"),
                })?;
                states.insert(state, count as usize);
                n_trials += count as usize;
            }
            let aggregate = match directions.first() {
                Some(Direction::Minimize) => "MIN",
                _ => "MAX",
            };
            let best_value: Option<f64> = self
                .conn
                .query_row(
                    &format!(
                        "SELECT {aggregate}(CASE v.value_type WHEN 'FINITE' THEN v.value \
                         WHEN 'INF_POS' THEN 9e999 ELSE -9e999 END) \
                         FROM trial_values v JOIN trials t ON v.trial_id = t.trial_id \
                         WHERE t.study_id = ?1 AND t.state = 'COMPLETE' AND v.objective = 0"
                    ),
                    [study_id],
                    |row| row.get(0),
                )
                .map_err(&err)?;
            out.push(StudySummary {
                study_id,
                user_attrs: self.attrs(
                    "SELECT key, value_json FROM study_user_attributes WHERE study_id = ?1 ORDER BY study_user_attribute_id",
                    study_id,
                    &name,
                )?,
                name,
                directions,
                n_trials,
                states,
                best_value,
            });
        }
        Ok(out)
    }

    fn directions(&self, study_id: i64, name: &str) -> Result<Vec<Direction>, StudyError> {
        let err = sqlite_error(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT direction FROM study_directions WHERE study_id = ?1 ORDER BY objective",
            )
            .map_err(&err)?;
        let texts: Vec<String> = stmt
            .query_map([study_id], |row| row.get(0))
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?;
        texts
            .iter()
            .map(|t| {
                Direction::parse(t).ok_or_else(|| StudyError::BadStudy {
                    path: display(&self.path),
                    study: name.to_string(),
                    message: format!("unknown direction {t:?}"),
                })
            })
            .collect()
    }

    fn attrs(
        &self,
        sql: &str,
        id: i64,
        study: &str,
    ) -> Result<Vec<(String, JsonValue)>, StudyError> {
        let err = sqlite_error(&self.path);
        let mut stmt = self.conn.prepare_cached(sql).map_err(&err)?;
        let rows: Vec<(String, String)> = stmt
            .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?;
        rows.into_iter()
            .map(|(key, text)| {
                JsonValue::parse(&text)
                    .map(|v| (key.clone(), v))
                    .map_err(|e| StudyError::BadStudy {
                        path: display(&self.path),
                        study: study.to_string(),
                        message: format!("attribute {key:?}: invalid JSON {text:?}: {e}"),
                    })
            })
            .collect()
    }

    /// The study called `name` with all its trials.
    pub fn load(&self, name: &str) -> Result<Study, StudyError> {
        let err = sqlite_error(&self.path);
        let study_id: Option<i64> = self
            .conn
            .query_row(
                "SELECT study_id FROM studies WHERE study_name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()
            .map_err(&err)?;
        let Some(study_id) = study_id else {
            let available = self
                .studies()?
                .into_iter()
                .map(|s| format!("{:?}", s.name))
                .collect::<Vec<_>>();
            return Err(StudyError::NoStudy {
                path: display(&self.path),
                name: name.to_string(),
                available: if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                },
            });
        };
        let bad = |number: i64, message: String| StudyError::BadTrial {
            path: display(&self.path),
            study: name.to_string(),
            number,
            message,
        };
        let mut trials: Vec<Trial> = Vec::new();
        let mut index: HashMap<i64, usize> = HashMap::new();
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT trial_id, number, state, datetime_start, datetime_complete \
                     FROM trials WHERE study_id = ?1 ORDER BY number, trial_id",
                )
                .map_err(&err)?;
            let mut rows = stmt.query([study_id]).map_err(&err)?;
            while let Some(row) = rows.next().map_err(&err)? {
                let trial_id: i64 = row.get(0).map_err(&err)?;
                let number: i64 = row.get::<_, Option<i64>>(1).map_err(&err)?.unwrap_or(-1);
                let state_text: String = row.get(2).map_err(&err)?;
                let state = TrialState::parse(&state_text)
                    .ok_or_else(|| bad(number, format!("unknown state {state_text:?}")))?;
                index.insert(trial_id, trials.len());
                trials.push(Trial {
                    trial_id,
                    number,
                    state,
                    datetime_start: row.get(3).map_err(&err)?,
                    datetime_complete: row.get(4).map_err(&err)?,
                    params: Vec::new(),
                    values: Vec::new(),
                    intermediate_values: Vec::new(),
                    user_attrs: Vec::new(),
                    system_attrs: Vec::new(),
                });
            }
        }
        // Params: distributions are shared by most trials, so each JSON text is parsed once.
        let mut distributions: HashMap<String, Distribution> = HashMap::new();
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json \
                     FROM trial_params p JOIN trials t ON p.trial_id = t.trial_id \
                     WHERE t.study_id = ?1 ORDER BY p.param_id",
                )
                .map_err(&err)?;
            let mut rows = stmt.query([study_id]).map_err(&err)?;
            while let Some(row) = rows.next().map_err(&err)? {
                let trial_id: i64 = row.get(0).map_err(&err)?;
                let Some(&i) = index.get(&trial_id) else {
                    continue;
                };
                let number = trials[i].number;
                let param_name: String = row.get(1).map_err(&err)?;
                let internal: f64 = row.get(2).map_err(&err)?;
                let json: String = row.get(3).map_err(&err)?;
                let distribution = match distributions.get(&json) {
                    Some(d) => d.clone(),
                    None => {
                        let d = parse_distribution(&json).map_err(|e| {
                            bad(
                                number,
                                format!("param {param_name:?}: distribution {json}: {e}"),
                            )
                        })?;
                        distributions.insert(json, d.clone());
                        d
                    }
                };
                let value = external_value(&distribution, internal)
                    .map_err(|e| bad(number, format!("param {param_name:?}: {e}")))?;
                trials[i].params.push(TrialParam {
                    name: param_name,
                    value,
                    internal,
                    distribution,
                });
            }
        }
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT v.trial_id, v.objective, v.value, v.value_type \
                     FROM trial_values v JOIN trials t ON v.trial_id = t.trial_id \
                     WHERE t.study_id = ?1 ORDER BY v.trial_id, v.objective",
                )
                .map_err(&err)?;
            let mut rows = stmt.query([study_id]).map_err(&err)?;
            while let Some(row) = rows.next().map_err(&err)? {
                let trial_id: i64 = row.get(0).map_err(&err)?;
                let Some(&i) = index.get(&trial_id) else {
                    continue;
                };
                let value: Option<f64> = row.get(2).map_err(&err)?;
                let kind: String = row.get(3).map_err(&err)?;
                let Some(value) = stored_value(&kind, value) else {
                    return Err(bad(
                        trials[i].number,
                        format!("value type {kind:?} with value {value:?}"),
                    ));
                };
                trials[i].values.push(value);
            }
        }
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT v.trial_id, v.step, v.intermediate_value, v.intermediate_value_type \
                     FROM trial_intermediate_values v JOIN trials t ON v.trial_id = t.trial_id \
                     WHERE t.study_id = ?1 ORDER BY v.trial_id, v.step",
                )
                .map_err(&err)?;
            let mut rows = stmt.query([study_id]).map_err(&err)?;
            while let Some(row) = rows.next().map_err(&err)? {
                let trial_id: i64 = row.get(0).map_err(&err)?;
                let Some(&i) = index.get(&trial_id) else {
                    continue;
                };
                let step: i64 = row.get(1).map_err(&err)?;
                let value: Option<f64> = row.get(2).map_err(&err)?;
                let kind: String = row.get(3).map_err(&err)?;
                // Optuna writes NAN (NULL value) for a NaN intermediate value.
                let value = stored_value(&kind, value).unwrap_or(f64::NAN);
                trials[i].intermediate_values.push((step, value));
            }
        }
        for (table, system) in [
            ("trial_user_attributes", false),
            ("trial_system_attributes", true),
        ] {
            let id_column = if system {
                "trial_system_attribute_id"
            } else {
                "trial_user_attribute_id"
            };
            let mut stmt = self
                .conn
                .prepare(&format!(
                    "SELECT a.trial_id, a.key, a.value_json FROM {table} a \
                     JOIN trials t ON a.trial_id = t.trial_id WHERE t.study_id = ?1 \
                     ORDER BY a.{id_column}"
                ))
                .map_err(&err)?;
            let mut rows = stmt.query([study_id]).map_err(&err)?;
            while let Some(row) = rows.next().map_err(&err)? {
                let trial_id: i64 = row.get(0).map_err(&err)?;
                let Some(&i) = index.get(&trial_id) else {
                    continue;
                };
                let key: String = row.get(1).map_err(&err)?;
                let text: String = row.get(2).map_err(&err)?;
                let value = JsonValue::parse(&text).map_err(|e| {
                    bad(
                        trials[i].number,
                        format!("attribute {key:?}: invalid JSON {text:?}: {e}"),
                    )
                })?;
                if system {
                    trials[i].system_attrs.push((key, value));
                } else {
                    trials[i].user_attrs.push((key, value));
                }
            }
        }
        Ok(Study {
            study_id,
            directions: self.directions(study_id, name)?,
            user_attrs: self.attrs(
                "SELECT key, value_json FROM study_user_attributes WHERE study_id = ?1 ORDER BY study_user_attribute_id",
                study_id,
                name,
            )?,
            system_attrs: self.attrs(
                "SELECT key, value_json FROM study_system_attributes WHERE study_id = ?1 ORDER BY study_system_attribute_id",
                study_id,
                name,
            )?,
            name: name.to_string(),
            trials,
        })
    }
}

/// A value as Optuna stores it: `FINITE` with the number, or `INF_POS` / `INF_NEG` (value
/// NULL); `None` for any other pair.
fn stored_value(kind: &str, value: Option<f64>) -> Option<f64> {
    match (kind, value) {
        ("FINITE", Some(v)) => Some(v),
        ("INF_POS", _) => Some(f64::INFINITY),
        ("INF_NEG", _) => Some(f64::NEG_INFINITY),
        _ => None,
    }
}
