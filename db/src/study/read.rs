//! Reading study files: the list of studies, and one study with every trial's params (with
//! their distributions), values, intermediate values, states and attributes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use etrading_kernels::spec::{Distribution, ParamValue};

use super::distribution::external_value;
use super::pyjson::JsonValue;
use super::schema::{open_for_reading, sqlite_error};
use super::visit::{StudyHeader, StudyVisitor, TrialRow, TrialTable, find};
use super::{Direction, StudyError, TrialState, display};

/// A study file opened for reading.
#[derive(Debug)]
pub struct StudyFile {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
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
        find(&self.user_attrs, key)
    }

    pub fn system_attr(&self, key: &str) -> Option<&JsonValue> {
        find(&self.system_attrs, key)
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
        find(&self.user_attrs, key)
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

    pub(super) fn directions(
        &self,
        study_id: i64,
        name: &str,
    ) -> Result<Vec<Direction>, StudyError> {
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

    pub(super) fn attrs(
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

    /// The study called `name` with all its trials (every row of every trial table, through
    /// [`StudyFile::visit`]).
    pub fn load(&self, name: &str) -> Result<Study, StudyError> {
        let mut collect = Collect {
            path: &self.path,
            header: None,
            trials: Vec::new(),
        };
        self.visit(name, &mut collect)?;
        let Some(header) = collect.header else {
            unreachable!("visit tells the header before anything else");
        };
        Ok(Study {
            study_id: header.study_id,
            name: header.name,
            directions: header.directions,
            user_attrs: header.user_attrs,
            system_attrs: header.system_attrs,
            trials: collect.trials,
        })
    }
}

/// The visitor behind [`StudyFile::load`]: every row into its [`Trial`].
struct Collect<'a> {
    path: &'a Path,
    header: Option<StudyHeader>,
    trials: Vec<Trial>,
}

impl Collect<'_> {
    fn bad(&self, trial: usize, message: String) -> StudyError {
        StudyError::BadTrial {
            path: display(self.path),
            study: self
                .header
                .as_ref()
                .map_or_else(String::new, |h| h.name.clone()),
            number: self.trials[trial].number,
            message,
        }
    }
}

impl StudyVisitor for Collect<'_> {
    type Error = StudyError;

    fn wants(&self, _: TrialTable) -> bool {
        true
    }

    fn study(&mut self, header: StudyHeader) -> Result<(), StudyError> {
        self.header = Some(header);
        Ok(())
    }

    fn trial(&mut self, t: &TrialRow<'_>) -> Result<(), StudyError> {
        self.trials.push(Trial {
            trial_id: t.trial_id,
            number: t.number,
            state: t.state,
            datetime_start: t.datetime_start.map(str::to_string),
            datetime_complete: t.datetime_complete.map(str::to_string),
            params: Vec::new(),
            values: Vec::new(),
            intermediate_values: Vec::new(),
            user_attrs: Vec::new(),
            system_attrs: Vec::new(),
        });
        Ok(())
    }

    fn param(
        &mut self,
        trial: usize,
        name: &str,
        distribution: &Distribution,
        internal: f64,
    ) -> Result<(), StudyError> {
        let value = external_value(distribution, internal)
            .map_err(|e| self.bad(trial, format!("param {name:?}: {e}")))?;
        self.trials[trial].params.push(TrialParam {
            name: name.to_string(),
            value,
            internal,
            distribution: distribution.clone(),
        });
        Ok(())
    }

    fn value(&mut self, trial: usize, objective: usize, value: f64) -> Result<(), StudyError> {
        // Rows come by objective: a gap would shift the values that follow it.
        let values = &self.trials[trial].values;
        if objective != values.len() {
            let message = format!(
                "objective {objective} has a value but objective {} has none",
                values.len()
            );
            return Err(self.bad(trial, message));
        }
        self.trials[trial].values.push(value);
        Ok(())
    }

    fn intermediate_value(
        &mut self,
        trial: usize,
        step: i64,
        value: f64,
    ) -> Result<(), StudyError> {
        self.trials[trial].intermediate_values.push((step, value));
        Ok(())
    }

    fn user_attr(&mut self, trial: usize, key: &str, value: JsonValue) -> Result<(), StudyError> {
        self.trials[trial].user_attrs.push((key.to_string(), value));
        Ok(())
    }

    fn system_attr(&mut self, trial: usize, key: &str, value: JsonValue) -> Result<(), StudyError> {
        self.trials[trial]
            .system_attrs
            .push((key.to_string(), value));
        Ok(())
    }
}
