//! Streaming one study out of its file, table by table: [`StudyFile::visit`] hands a
//! [`StudyVisitor`] the study's header, then every trial in order, then the rows of each trial
//! table it asks for (params, values, intermediate values, user and system attributes), one
//! query per table. Rows name their trial by its position in the trial order, so a visitor
//! that fills columns needs no map of its own; the reader keeps one sorted `trial_id` index
//! (16 bytes a trial) and one parsed distribution per distinct `distribution_json` text.
//!
//! The queries walk `ix_trials_study_id` and each table's `(trial_id, ...)` index and order by
//! `t.trial_id` first, so SQLite sorts at most one trial's rows at a time ("TEMP B-TREE FOR
//! RIGHT PART OF ORDER BY"), never a whole table.
//! [`StudyFile::load`] is the visitor that collects every row into [`Study`](super::Study).
//!
//! Every Optuna encoding is decoded here: directions and states by name, distributions from
//! `distribution_json` (a categorical's stored index is checked against its choices), infinite
//! values from `value_type`, attribute values as Python's JSON ([`JsonValue`]).

use std::collections::HashMap;

use rusqlite::OptionalExtension;
use rusqlite::types::ValueRef;

use etrading_kernels::spec::Distribution;

use super::distribution::parse_distribution;
use super::pyjson::JsonValue;
use super::read::StudyFile;
use super::schema::sqlite_error;
use super::{Direction, StudyError, TrialState, display};

/// A study without its trials: what a visitor is told first.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyHeader {
    pub study_id: i64,
    pub name: String,
    pub directions: Vec<Direction>,
    /// `study_user_attributes`, in the order they were written.
    pub user_attrs: Vec<(String, JsonValue)>,
    /// `study_system_attributes`, in the order they were written.
    pub system_attrs: Vec<(String, JsonValue)>,
}

impl StudyHeader {
    pub fn user_attr(&self, key: &str) -> Option<&JsonValue> {
        find(&self.user_attrs, key)
    }

    pub fn system_attr(&self, key: &str) -> Option<&JsonValue> {
        find(&self.system_attrs, key)
    }
}

pub(crate) fn find<'a>(attrs: &'a [(String, JsonValue)], key: &str) -> Option<&'a JsonValue> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// One row of `trials`, its texts borrowed from the statement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrialRow<'a> {
    pub trial_id: i64,
    /// `trials.number` (-1 where it is NULL, which Optuna never writes).
    pub number: i64,
    pub state: TrialState,
    /// `None` also when the visitor does not want [`TrialTable::Datetimes`].
    pub datetime_start: Option<&'a str>,
    pub datetime_complete: Option<&'a str>,
}

/// The per-trial tables a visitor can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrialTable {
    /// `trials.datetime_start` and `datetime_complete` (without them, SQLite sorts the trials
    /// by number without their texts).
    Datetimes,
    Params,
    Values,
    IntermediateValues,
    UserAttrs,
    SystemAttrs,
}

/// What [`StudyFile::visit`] calls, in this order: [`study`](Self::study) once, then
/// [`trial`](Self::trial) for every trial by number (ties by `trial_id`), then, table by table
/// and for the tables [`wants`](Self::wants) names, one call per row. `trial` in the row calls
/// is the position of the row's trial in that order (0 for the first trial told). Within a
/// table, rows come trial by trial in `trial_id` order, and a trial's rows in the order they
/// were written (params, attributes; by name where [`written_order`](Self::written_order) is
/// false) or by objective and step (values, intermediate values).
pub trait StudyVisitor {
    /// The visitor's error; the reader's own errors convert into it.
    type Error: From<StudyError>;

    /// Whether to read `table` (a table not wanted is not queried).
    fn wants(&self, table: TrialTable) -> bool;

    /// Whether a trial's params and attributes must come in the order they were written
    /// (the default); without it they come by name (the order of their unique index), which
    /// spares SQLite a sort per trial (measured: about 15% of a 200,000-trial report's time).
    fn written_order(&self) -> bool {
        true
    }

    fn study(&mut self, header: StudyHeader) -> Result<(), Self::Error>;

    fn trial(&mut self, trial: &TrialRow<'_>) -> Result<(), Self::Error>;

    /// A param in Optuna's internal representation (ints as floats, a categorical's index,
    /// checked to be one of its choices) with its distribution.
    fn param(
        &mut self,
        trial: usize,
        name: &str,
        distribution: &Distribution,
        internal: f64,
    ) -> Result<(), Self::Error> {
        let _ = (trial, name, distribution, internal);
        Ok(())
    }

    /// Objective `objective`'s value (infinities restored from `value_type`).
    fn value(&mut self, trial: usize, objective: usize, value: f64) -> Result<(), Self::Error> {
        let _ = (trial, objective, value);
        Ok(())
    }

    /// An intermediate value (NaN restored from `intermediate_value_type`).
    fn intermediate_value(
        &mut self,
        trial: usize,
        step: i64,
        value: f64,
    ) -> Result<(), Self::Error> {
        let _ = (trial, step, value);
        Ok(())
    }

    fn user_attr(&mut self, trial: usize, key: &str, value: JsonValue) -> Result<(), Self::Error> {
        let _ = (trial, key, value);
        Ok(())
    }

    fn system_attr(
        &mut self,
        trial: usize,
        key: &str,
        value: JsonValue,
    ) -> Result<(), Self::Error> {
        let _ = (trial, key, value);
        Ok(())
    }
}

/// `trial_id` to position in the trial order: sorted pairs, binary search, and the last hit
/// remembered (the rows of one trial come together).
struct TrialIndex {
    sorted: Vec<(i64, usize)>,
    last: Option<(i64, usize)>,
}

impl TrialIndex {
    fn new(mut ids: Vec<(i64, usize)>) -> TrialIndex {
        ids.sort_unstable();
        TrialIndex {
            sorted: ids,
            last: None,
        }
    }

    fn get(&mut self, trial_id: i64) -> Option<usize> {
        if let Some((id, i)) = self.last
            && id == trial_id
        {
            return Some(i);
        }
        let at = self
            .sorted
            .binary_search_by_key(&trial_id, |&(id, _)| id)
            .ok()?;
        let i = self.sorted[at].1;
        self.last = Some((trial_id, i));
        Some(i)
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

/// Text of a column that holds TEXT (or NULL).
fn text<'a>(value: ValueRef<'a>, column: &str) -> Result<Option<&'a str>, String> {
    match value {
        ValueRef::Null => Ok(None),
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("{column} is not UTF-8")),
        other => Err(format!(
            "{column} is {:?}, expected text",
            other.data_type()
        )),
    }
}

impl StudyFile {
    /// The id of study `name`; the error lists the studies the file holds.
    pub(crate) fn study_id(&self, name: &str) -> Result<i64, StudyError> {
        let study_id: Option<i64> = self
            .conn
            .query_row(
                "SELECT study_id FROM studies WHERE study_name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite_error(&self.path))?;
        if let Some(id) = study_id {
            return Ok(id);
        }
        let available = self
            .studies()?
            .into_iter()
            .map(|s| format!("{:?}", s.name))
            .collect::<Vec<_>>();
        Err(StudyError::NoStudy {
            path: display(&self.path),
            name: name.to_string(),
            available: if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            },
        })
    }

    /// The study called `name` without its trials.
    pub fn header(&self, name: &str) -> Result<StudyHeader, StudyError> {
        let study_id = self.study_id(name)?;
        Ok(StudyHeader {
            study_id,
            name: name.to_string(),
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
        })
    }

    /// Runs `sql` (`?1` the study's id, the first column a trial id) and hands every row of a
    /// trial the header listed to `each` with the trial's position; rows of other trials
    /// (none in a consistent file) are skipped.
    fn each_trial_row<E: From<StudyError>>(
        &self,
        sql: &str,
        study_id: i64,
        index: &mut TrialIndex,
        mut each: impl FnMut(usize, i64, &rusqlite::Row<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let err = sqlite_error(&self.path);
        let mut stmt = self.conn.prepare(sql).map_err(&err)?;
        let mut rows = stmt.query([study_id]).map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            let trial_id: i64 = row.get(0).map_err(&err)?;
            if let Some(i) = index.get(trial_id) {
                each(i, trial_id, row)?;
            }
        }
        Ok(())
    }

    /// Streams study `name` into `visitor` (see [`StudyVisitor`] for the order of the calls).
    /// Memory: the visitor's, plus 16 bytes a trial and the distinct distributions.
    pub fn visit<V: StudyVisitor>(&self, name: &str, visitor: &mut V) -> Result<(), V::Error> {
        let header = self.header(name)?;
        let study_id = header.study_id;
        visitor.study(header)?;
        let err = sqlite_error(&self.path);
        let bad = |number: i64, message: String| StudyError::BadTrial {
            path: display(&self.path),
            study: name.to_string(),
            number,
            message,
        };
        // Errors in the per-trial tables name the trial's number, looked up then.
        let bad_id = |trial_id: i64, message: String| -> StudyError {
            match self.conn.query_row(
                "SELECT number FROM trials WHERE trial_id = ?1",
                [trial_id],
                |row| row.get::<_, Option<i64>>(0),
            ) {
                Ok(number) => bad(number.unwrap_or(-1), message),
                Err(e) => err(e),
            }
        };

        let mut ids: Vec<(i64, usize)> = Vec::new();
        {
            let datetimes = visitor.wants(TrialTable::Datetimes);
            let mut stmt = self
                .conn
                .prepare(if datetimes {
                    "SELECT trial_id, number, state, datetime_start, datetime_complete \
                     FROM trials WHERE study_id = ?1 ORDER BY number, trial_id"
                } else {
                    "SELECT trial_id, number, state, NULL, NULL \
                     FROM trials WHERE study_id = ?1 ORDER BY number, trial_id"
                })
                .map_err(&err)?;
            let mut rows = stmt.query([study_id]).map_err(&err)?;
            while let Some(row) = rows.next().map_err(&err)? {
                let trial_id: i64 = row.get(0).map_err(&err)?;
                let number: i64 = row.get::<_, Option<i64>>(1).map_err(&err)?.unwrap_or(-1);
                let column = |i: usize, name: &str| {
                    text(row.get_ref(i).map_err(&err)?, name).map_err(|m| bad(number, m))
                };
                let state_text = column(2, "state")?.unwrap_or_default();
                let state = TrialState::parse(state_text)
                    .ok_or_else(|| bad(number, format!("unknown state {state_text:?}")))?;
                let trial = TrialRow {
                    trial_id,
                    number,
                    state,
                    datetime_start: column(3, "datetime_start")?,
                    datetime_complete: column(4, "datetime_complete")?,
                };
                ids.push((trial_id, ids.len()));
                visitor.trial(&trial)?;
            }
        }
        let mut index = TrialIndex::new(ids);
        // A trial's rows in the order they were written: sorted per trial ("RIGHT PART").
        let written = visitor.written_order();

        if visitor.wants(TrialTable::Params) {
            // Distributions are shared by most trials: each distinct text is parsed once.
            let mut distributions: HashMap<String, Distribution> = HashMap::new();
            self.each_trial_row(&format!(
                    "SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json \
                     FROM trial_params p JOIN trials t ON p.trial_id = t.trial_id \
                     WHERE t.study_id = ?1 ORDER BY t.trial_id{}",
                    if written { ", p.param_id" } else { "" }
                ), study_id, &mut index, |i, trial_id, row| -> Result<(), V::Error> {
                let param_name = text(row.get_ref(1).map_err(&err)?, "param_name")
                    .map_err(|m| bad_id(trial_id, m))?
                    .unwrap_or_default();
                let internal: f64 = row.get(2).map_err(&err)?;
                let json = text(row.get_ref(3).map_err(&err)?, "distribution_json")
                    .map_err(|m| bad_id(trial_id, format!("param {param_name:?}: {m}")))?
                    .unwrap_or_default();
                if !distributions.contains_key(json) {
                    let d = parse_distribution(json).map_err(|e| {
                        bad_id(
                            trial_id,
                            format!("param {param_name:?}: distribution {json}: {e}"),
                        )
                    })?;
                    distributions.insert(json.to_string(), d);
                }
                let distribution = &distributions[json];
                if let Distribution::Categorical { choices } = distribution
                    && !(internal >= 0.0
                        && internal.fract() == 0.0
                        && (internal as usize) < choices.len())
                {
                    return Err(bad_id(
                        trial_id,
                        format!(
                            "param {param_name:?}: categorical index {internal} is out of range for {} choices",
                            choices.len()
                        ),
                    )
                    .into());
                }
                visitor.param(i, param_name, distribution, internal)?;
                Ok(())
            })?;
        }

        if visitor.wants(TrialTable::Values) {
            self.each_trial_row(
                "SELECT v.trial_id, v.objective, v.value, v.value_type \
                     FROM trial_values v JOIN trials t ON v.trial_id = t.trial_id \
                     WHERE t.study_id = ?1 ORDER BY t.trial_id, v.objective",
                study_id,
                &mut index,
                |i, trial_id, row| -> Result<(), V::Error> {
                    let objective: i64 = row.get(1).map_err(&err)?;
                    let value: Option<f64> = row.get(2).map_err(&err)?;
                    let kind = text(row.get_ref(3).map_err(&err)?, "value_type")
                        .map_err(|m| bad_id(trial_id, m))?
                        .unwrap_or_default();
                    let (Some(value), Ok(objective)) =
                        (stored_value(kind, value), usize::try_from(objective))
                    else {
                        return Err(bad_id(
                            trial_id,
                            format!(
                                "objective {objective}: value type {kind:?} with value {value:?}"
                            ),
                        )
                        .into());
                    };
                    visitor.value(i, objective, value)?;
                    Ok(())
                },
            )?;
        }

        if visitor.wants(TrialTable::IntermediateValues) {
            self.each_trial_row(
                "SELECT v.trial_id, v.step, v.intermediate_value, v.intermediate_value_type \
                     FROM trial_intermediate_values v JOIN trials t ON v.trial_id = t.trial_id \
                     WHERE t.study_id = ?1 ORDER BY t.trial_id, v.step",
                study_id,
                &mut index,
                |i, trial_id, row| -> Result<(), V::Error> {
                    let step: i64 = row.get(1).map_err(&err)?;
                    let value: Option<f64> = row.get(2).map_err(&err)?;
                    let kind = text(row.get_ref(3).map_err(&err)?, "intermediate_value_type")
                        .map_err(|m| bad_id(trial_id, m))?
                        .unwrap_or_default();
                    // Optuna writes NAN (NULL value) for a NaN intermediate value.
                    let value = stored_value(kind, value).unwrap_or(f64::NAN);
                    visitor.intermediate_value(i, step, value)?;
                    Ok(())
                },
            )?;
        }

        for (table, system) in [
            (TrialTable::UserAttrs, false),
            (TrialTable::SystemAttrs, true),
        ] {
            if !visitor.wants(table) {
                continue;
            }
            let (table_name, id_column) = if system {
                ("trial_system_attributes", "trial_system_attribute_id")
            } else {
                ("trial_user_attributes", "trial_user_attribute_id")
            };
            self.each_trial_row(
                &format!(
                    "SELECT a.trial_id, a.key, a.value_json FROM {table_name} a \
                     JOIN trials t ON a.trial_id = t.trial_id WHERE t.study_id = ?1 \
                     ORDER BY t.trial_id{}",
                    if written {
                        format!(", a.{id_column}")
                    } else {
                        String::new()
                    }
                ),
                study_id,
                &mut index,
                |i, trial_id, row| -> Result<(), V::Error> {
                    let key = text(row.get_ref(1).map_err(&err)?, "key")
                        .map_err(|m| bad_id(trial_id, m))?
                        .unwrap_or_default();
                    let json = text(row.get_ref(2).map_err(&err)?, "value_json")
                        .map_err(|m| bad_id(trial_id, format!("attribute {key:?}: {m}")))?
                        .unwrap_or_default();
                    let value = JsonValue::parse(json).map_err(|e| {
                        bad_id(
                            trial_id,
                            format!("attribute {key:?}: invalid JSON {json:?}: {e}"),
                        )
                    })?;
                    if system {
                        visitor.system_attr(i, key, value)?;
                    } else {
                        visitor.user_attr(i, key, value)?;
                    }
                    Ok(())
                },
            )?;
        }
        Ok(())
    }
}
