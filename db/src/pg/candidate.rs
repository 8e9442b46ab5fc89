//! The trial to promote: read from a study file in Optuna's SQLite schema, checked for the
//! refusals of docs/PROMOTION.md, and its stored metrics compared with a re-run.
//!
//! This reads Optuna's tables directly (`studies`, `study_directions`, `trials`,
//! `trial_params`, `trial_values`, `trial_user_attributes`, `study_user_attributes`,
//! `study_system_attributes`; ../shared/optuna-schema/SCHEMA.md) with its encodings: params in
//! their internal representation (a categorical is an index into the choices of its
//! `distribution_json`), infinite objective values as NULL plus `value_type`, attribute JSON
//! written by Python's `json.dumps` (bare `NaN`, `Infinity`, `-Infinity`). It opens the file
//! read-only and never writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::Value;

/// A study file that cannot be read as an Optuna study.
#[derive(Debug, thiserror::Error)]
pub enum StudyReadError {
    /// SQLite failed (not a database, missing table, locked).
    #[error("{path}: {message}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// No study by that name.
    #[error("{path}: no study named {name:?} (studies in the file: {available})")]
    NoStudy {
        /// The file.
        path: PathBuf,
        /// Name asked for.
        name: String,
        /// Names present.
        available: String,
    },
    /// A row holds something Optuna would not write.
    #[error("{path}: trial id {trial_id}: {message}")]
    BadRow {
        /// The file.
        path: PathBuf,
        /// The trial.
        trial_id: i64,
        /// What is wrong.
        message: String,
    },
}

/// A trial's state, as Optuna names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrialState {
    /// Finished with values.
    Complete,
    /// Stopped by a pruner or a filter.
    Pruned,
    /// Raised or returned NaN.
    Fail,
    /// Still running (or abandoned).
    Running,
    /// Enqueued, not started.
    Waiting,
}

impl TrialState {
    fn parse(text: &str) -> Option<TrialState> {
        Some(match text {
            "COMPLETE" => TrialState::Complete,
            "PRUNED" => TrialState::Pruned,
            "FAIL" => TrialState::Fail,
            "RUNNING" => TrialState::Running,
            "WAITING" => TrialState::Waiting,
            _ => return None,
        })
    }

    /// Optuna's name (`COMPLETE`).
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Complete => "COMPLETE",
            TrialState::Pruned => "PRUNED",
            TrialState::Fail => "FAIL",
            TrialState::Running => "RUNNING",
            TrialState::Waiting => "WAITING",
        }
    }
}

/// A study: its id, objectives and attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyInfo {
    /// The file it was read from.
    pub path: PathBuf,
    /// `studies.study_id`.
    pub study_id: i64,
    /// `studies.study_name`.
    pub study_name: String,
    /// `true` per objective to maximise, in objective order.
    pub maximize: Vec<bool>,
    /// Objective names: Optuna's `study:metric_names` system attribute, else the study's
    /// `objective` user attribute, else `objective 0`, `objective 1`, ...
    pub objective_names: Vec<String>,
    /// Study user attributes.
    pub user_attrs: BTreeMap<String, Value>,
}

/// One trial of a study, everything promotion needs from it.
#[derive(Clone, Debug, PartialEq)]
pub struct PromotionCandidate {
    /// Study name.
    pub study_name: String,
    /// Study id.
    pub study_id: i64,
    /// `trials.trial_id` (global in the file).
    pub trial_id: i64,
    /// `trials.number` (0-based in the study).
    pub trial_number: i64,
    /// State.
    pub state: TrialState,
    /// Params in their external representation (`{"rsi_window": 14, "side": "long"}`).
    pub params: BTreeMap<String, Value>,
    /// Objective values in objective order (infinite values as infinities), empty when none.
    pub values: Vec<f64>,
    /// Name of objective 0.
    pub objective_name: String,
    /// Trial user attributes, then the study's for keys the trial lacks (metrics,
    /// `data_hash`, `engine_version`, `talib_version`, `pruned_reason`, window scores).
    pub attrs: BTreeMap<String, Value>,
}

impl PromotionCandidate {
    /// The value of objective 0.
    pub fn objective_value(&self) -> Option<f64> {
        self.values.first().copied()
    }

    /// An attribute as a number (`Infinity`, `NaN` understood).
    pub fn number(&self, key: &str) -> Option<f64> {
        self.attrs.get(key).and_then(attr_f64)
    }

    /// An attribute as text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).and_then(Value::as_str)
    }

    /// Why the trial was pruned, as stored (`pruned_reason`, else `prune_reason`).
    pub fn pruned_reason(&self) -> Option<&str> {
        self.text("pruned_reason")
            .or_else(|| self.text("prune_reason"))
    }

    /// Out-of-sample key metrics: the attributes `oos_apr`, `oos_max_drawdown`, `oos_calmar`,
    /// `oos_n_trades` when stored; else, from the walk-forward windows' `oos_<k>_max_drawdown`
    /// and `oos_<k>_n_trades`, the largest drawdown and the total trades (APR and Calmar need
    /// the windows' durations, which the windows' attributes do not carry: absent then).
    pub fn oos(&self) -> crate::pg::OosMetrics {
        let windows = |suffix: &str| -> Vec<f64> {
            self.attrs
                .iter()
                .filter(|(k, _)| {
                    k.strip_prefix("oos_")
                        .and_then(|rest| rest.split_once('_'))
                        .is_some_and(|(index, key)| index.parse::<u32>().is_ok() && key == suffix)
                })
                .filter_map(|(_, v)| attr_f64(v))
                .collect()
        };
        let drawdowns = windows("max_drawdown");
        let trades = windows("n_trades");
        crate::pg::OosMetrics {
            apr: self.number("oos_apr"),
            max_drawdown: self.number("oos_max_drawdown").or_else(|| {
                (!drawdowns.is_empty()).then(|| drawdowns.iter().copied().fold(f64::MIN, f64::max))
            }),
            calmar: self.number("oos_calmar"),
            trades: self
                .number("oos_n_trades")
                .or_else(|| (!trades.is_empty()).then(|| trades.iter().sum()))
                .map(|n| n as i64),
        }
    }

    /// The stored metrics: every attribute that is a number.
    pub fn metrics(&self) -> BTreeMap<String, Value> {
        self.attrs
            .iter()
            .filter(|(_, v)| attr_f64(v).is_some())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Why a trial is not promoted.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// Not COMPLETE nor PRUNED: no result to promote.
    NotFinished {
        /// Its state.
        state: TrialState,
    },
    /// Pruned (by a filter: liquidation, trade minimum, drawdown cap).
    Pruned {
        /// The stored reason.
        reason: Option<String>,
    },
    /// The trial has no objective value (or a NaN one).
    NoObjectiveValue,
    /// At least one liquidation.
    Liquidated {
        /// How many.
        count: f64,
    },
    /// Fewer trades than the minimum.
    TooFewTrades {
        /// Trades.
        trades: f64,
        /// Minimum.
        minimum: u64,
    },
    /// The trial ran on other data than the data given.
    DataHash {
        /// The trial's hash.
        trial: String,
        /// The hash of the data given.
        data: String,
    },
    /// An attribute promotion needs is missing.
    MissingAttribute {
        /// The key.
        key: &'static str,
    },
}

impl Refusal {
    /// Whether `--force` with a reason may override it. A trial without a result, or without
    /// the attributes that trace it, cannot be promoted at all.
    pub fn forceable(&self) -> bool {
        matches!(
            self,
            Refusal::Pruned { .. }
                | Refusal::Liquidated { .. }
                | Refusal::TooFewTrades { .. }
                | Refusal::DataHash { .. }
        )
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotFinished { state } => {
                write!(f, "the trial is {} (no result to promote)", state.as_str())
            }
            Refusal::Pruned { reason: Some(r) } => write!(f, "the trial was pruned: {r}"),
            Refusal::Pruned { reason: None } => write!(f, "the trial was pruned"),
            Refusal::NoObjectiveValue => write!(f, "the trial has no objective value"),
            Refusal::Liquidated { count } => {
                write!(f, "the trial was liquidated ({count} liquidations)")
            }
            Refusal::TooFewTrades { trades, minimum } => {
                write!(
                    f,
                    "the trial made {trades} trades, fewer than the minimum {minimum}"
                )
            }
            Refusal::DataHash { trial, data } => write!(
                f,
                "the trial ran on data sha256:{trial}, the data given is sha256:{data}"
            ),
            Refusal::MissingAttribute { key } => {
                write!(f, "the trial stores no `{key}` user attribute")
            }
        }
    }
}

/// What a trial must satisfy to be promoted.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Fewest trades (the trial's `n_trades`).
    pub min_trades: u64,
    /// Content hash of the data the user points at.
    pub data_hash: String,
}

/// Every reason to refuse `c` under `policy` (empty: eligible).
pub fn refusals(c: &PromotionCandidate, policy: &Policy) -> Vec<Refusal> {
    let mut out = Vec::new();
    match c.state {
        TrialState::Complete => {}
        TrialState::Pruned => out.push(Refusal::Pruned {
            reason: c.pruned_reason().map(str::to_string),
        }),
        state => out.push(Refusal::NotFinished { state }),
    }
    if matches!(c.state, TrialState::Complete | TrialState::Pruned)
        && c.objective_value().is_none_or(f64::is_nan)
    {
        out.push(Refusal::NoObjectiveValue);
    }
    match c.number("liquidations") {
        Some(n) if n > 0.0 => out.push(Refusal::Liquidated { count: n }),
        Some(_) => {}
        None => out.push(Refusal::MissingAttribute {
            key: "liquidations",
        }),
    }
    match c.number("n_trades") {
        Some(n) if n < policy.min_trades as f64 => out.push(Refusal::TooFewTrades {
            trades: n,
            minimum: policy.min_trades,
        }),
        Some(_) => {}
        None => out.push(Refusal::MissingAttribute { key: "n_trades" }),
    }
    match c.text("data_hash") {
        Some(h) if h != policy.data_hash => out.push(Refusal::DataHash {
            trial: h.to_string(),
            data: policy.data_hash.clone(),
        }),
        Some(_) => {}
        None => out.push(Refusal::MissingAttribute { key: "data_hash" }),
    }
    if c.text("engine_version").is_none() {
        out.push(Refusal::MissingAttribute {
            key: "engine_version",
        });
    }
    out
}

/// The best trial with no refusal, by objective 0 in the study's direction (ties: the lowest
/// number). Errors say why nothing is eligible.
pub fn best_eligible<'a>(
    study: &StudyInfo,
    candidates: &'a [PromotionCandidate],
    policy: &Policy,
) -> Result<&'a PromotionCandidate, String> {
    if study.maximize.len() != 1 {
        return Err(format!(
            "study {:?} has {} objectives; name the trial to promote with --trial N",
            study.study_name,
            study.maximize.len()
        ));
    }
    let maximize = study.maximize[0];
    let mut best: Option<&PromotionCandidate> = None;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for c in candidates {
        let refused = refusals(c, policy);
        if let Some(first) = refused.first() {
            *counts.entry(refusal_kind(first)).or_default() += 1;
            continue;
        }
        let v = c.objective_value().unwrap_or(f64::NAN);
        let better = match best.and_then(PromotionCandidate::objective_value) {
            None => true,
            Some(b) => {
                if maximize {
                    v > b
                } else {
                    v < b
                }
            }
        };
        if better {
            best = Some(c);
        }
    }
    best.ok_or_else(|| {
        let why: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        format!(
            "study {:?} has no eligible trial among {} ({})",
            study.study_name,
            candidates.len(),
            if why.is_empty() {
                "no trials".to_string()
            } else {
                why.join(", ")
            }
        )
    })
}

fn refusal_kind(r: &Refusal) -> String {
    match r {
        Refusal::NotFinished { state } => state.as_str().to_string(),
        Refusal::Pruned { .. } => "PRUNED".into(),
        Refusal::NoObjectiveValue => "without objective value".into(),
        Refusal::Liquidated { .. } => "liquidated".into(),
        Refusal::TooFewTrades { .. } => "below the trade minimum".into(),
        Refusal::DataHash { .. } => "on other data".into(),
        Refusal::MissingAttribute { key } => format!("without `{key}`"),
    }
}

/// Relative and absolute tolerance: `|a - b| <= abs + rel * max(|a|, |b|)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative part.
    pub rel: f64,
    /// Absolute part.
    pub abs: f64,
}

impl Tolerance {
    /// The re-run check: the reference engine is deterministic f64, so a re-run of the same
    /// trial on the same data agrees to rounding of the stored decimal text.
    pub const RERUN: Tolerance = Tolerance {
        rel: 1e-9,
        abs: 1e-12,
    };

    /// Whether `a` and `b` agree (equal infinities agree; NaN agrees only with NaN).
    pub fn agrees(self, a: f64, b: f64) -> bool {
        if a.is_nan() || b.is_nan() {
            return a.is_nan() && b.is_nan();
        }
        if a.is_infinite() || b.is_infinite() {
            return a == b;
        }
        (a - b).abs() <= self.abs + self.rel * a.abs().max(b.abs())
    }
}

/// A stored metric the re-run does not reproduce.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricMismatch {
    /// Attribute key.
    pub key: String,
    /// Stored value.
    pub stored: f64,
    /// Re-run value.
    pub rerun: f64,
}

impl std::fmt::Display for MetricMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: stored {:?}, re-run {:?}",
            self.key, self.stored, self.rerun
        )
    }
}

/// Compares every stored attribute that names a re-run metric; returns the keys compared and
/// the mismatches. `n_trades` must be among the stored keys, and one more metric at least.
pub fn compare_metrics(
    c: &PromotionCandidate,
    rerun: &[(&str, f64)],
    tolerance: Tolerance,
) -> Result<(Vec<String>, Vec<MetricMismatch>), String> {
    let mut compared = Vec::new();
    let mut mismatches = Vec::new();
    for &(key, value) in rerun {
        let Some(stored) = c.number(key) else {
            continue;
        };
        compared.push(key.to_string());
        if !tolerance.agrees(stored, value) {
            mismatches.push(MetricMismatch {
                key: key.to_string(),
                stored,
                rerun: value,
            });
        }
    }
    if !compared.iter().any(|k| k == "n_trades") || compared.len() < 2 {
        let names: Vec<&str> = rerun.iter().map(|(k, _)| *k).collect();
        return Err(format!(
            "trial {} stores too few metrics to check a re-run against (found {:?}; needs \
             n_trades and one of {})",
            c.trial_number,
            compared,
            names.join(", ")
        ));
    }
    Ok((compared, mismatches))
}

/// A number from attribute JSON: a JSON number, or Python's `NaN` / `Infinity` tokens.
pub fn attr_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            PY_NAN => Some(f64::NAN),
            PY_INF => Some(f64::INFINITY),
            PY_NEG_INF => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

const PY_NAN: &str = "NaN";
const PY_INF: &str = "Infinity";
const PY_NEG_INF: &str = "-Infinity";

/// Parses JSON written by Python's `json.dumps` (which writes bare `NaN`, `Infinity`,
/// `-Infinity`): those tokens outside strings become the strings `"NaN"`, `"Infinity"`,
/// `"-Infinity"` ([`attr_f64`] reads them back as numbers).
pub fn parse_python_json(text: &str) -> Result<Value, serde_json::Error> {
    let mut out = String::with_capacity(text.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        if in_string {
            out.push(ch);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
            rest = &rest[ch.len_utf8()..];
            continue;
        }
        if ch == '"' {
            in_string = true;
            out.push(ch);
            rest = &rest[1..];
            continue;
        }
        let token = [PY_NEG_INF, PY_INF, PY_NAN]
            .into_iter()
            .find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push('"');
            out.push_str(t);
            out.push('"');
            rest = &rest[t.len()..];
        } else {
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
    }
    serde_json::from_str(&out)
}

/// Reads study `name` and all its trials from the Optuna SQLite file at `path`.
pub fn read_study(
    path: &Path,
    name: &str,
) -> Result<(StudyInfo, Vec<PromotionCandidate>), StudyReadError> {
    let sqlite = |e: rusqlite::Error| StudyReadError::Sqlite {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if !path.is_file() {
        return Err(StudyReadError::Sqlite {
            path: path.to_path_buf(),
            message: "no such study file".into(),
        });
    }
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite)?;
    db.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite)?;
    let study_id: Option<i64> = db
        .query_row(
            "SELECT study_id FROM studies WHERE study_name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite)?;
    let Some(study_id) = study_id else {
        let mut stmt = db
            .prepare("SELECT study_name FROM studies ORDER BY study_id")
            .map_err(sqlite)?;
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(sqlite)?
            .collect::<Result<_, _>>()
            .map_err(sqlite)?;
        return Err(StudyReadError::NoStudy {
            path: path.to_path_buf(),
            name: name.to_string(),
            available: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
        });
    };
    let bad = |trial_id: i64, message: String| StudyReadError::BadRow {
        path: path.to_path_buf(),
        trial_id,
        message,
    };

    let mut stmt = db
        .prepare("SELECT direction FROM study_directions WHERE study_id = ?1 ORDER BY objective")
        .map_err(sqlite)?;
    let maximize: Vec<bool> = stmt
        .query_map([study_id], |r| r.get::<_, String>(0))
        .map_err(sqlite)?
        .map(|d| d.map(|d| d == "MAXIMIZE"))
        .collect::<Result<_, _>>()
        .map_err(sqlite)?;

    let attrs = |sql: &str, id: i64| -> Result<BTreeMap<String, Value>, StudyReadError> {
        let mut stmt = db.prepare(sql).map_err(sqlite)?;
        let rows: Vec<(String, String)> = stmt
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sqlite)?
            .collect::<Result<_, _>>()
            .map_err(sqlite)?;
        rows.into_iter()
            .map(|(k, v)| {
                parse_python_json(&v)
                    .map(|j| (k.clone(), j))
                    .map_err(|e| bad(id, format!("attribute {k:?}: {e} in {v:?}")))
            })
            .collect()
    };
    let study_attrs = attrs(
        "SELECT key, value_json FROM study_user_attributes WHERE study_id = ?1",
        study_id,
    )?;
    let system_attrs = attrs(
        "SELECT key, value_json FROM study_system_attributes WHERE study_id = ?1",
        study_id,
    )?;
    let objective_names: Vec<String> = (0..maximize.len())
        .map(|i| {
            system_attrs
                .get("study:metric_names")
                .and_then(|v| v.get(i))
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    (i == 0)
                        .then(|| study_attrs.get("objective").and_then(Value::as_str))
                        .flatten()
                        .map(str::to_string)
                })
                .unwrap_or_else(|| format!("objective {i}"))
        })
        .collect();
    let study = StudyInfo {
        path: path.to_path_buf(),
        study_id,
        study_name: name.to_string(),
        maximize,
        objective_names,
        user_attrs: study_attrs,
    };

    let mut stmt = db
        .prepare("SELECT trial_id, number, state FROM trials WHERE study_id = ?1 ORDER BY number")
        .map_err(sqlite)?;
    let trials: Vec<(i64, i64, String)> = stmt
        .query_map([study_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sqlite)?
        .collect::<Result<_, _>>()
        .map_err(sqlite)?;
    let mut params_stmt = db
        .prepare(
            "SELECT param_name, param_value, distribution_json FROM trial_params \
             WHERE trial_id = ?1 ORDER BY param_id",
        )
        .map_err(sqlite)?;
    let mut values_stmt = db
        .prepare(
            "SELECT objective, value, value_type FROM trial_values WHERE trial_id = ?1 \
             ORDER BY objective",
        )
        .map_err(sqlite)?;
    let mut candidates = Vec::with_capacity(trials.len());
    for (trial_id, number, state_text) in trials {
        let state = TrialState::parse(&state_text)
            .ok_or_else(|| bad(trial_id, format!("unknown state {state_text:?}")))?;
        let raw: Vec<(String, f64, String)> = params_stmt
            .query_map([trial_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sqlite)?
            .collect::<Result<_, _>>()
            .map_err(sqlite)?;
        let mut params = BTreeMap::new();
        for (pname, internal, dist) in raw {
            let value = external_value(internal, &dist)
                .map_err(|m| bad(trial_id, format!("param {pname:?}: {m}")))?;
            params.insert(pname, value);
        }
        let raw: Vec<(i64, Option<f64>, String)> = values_stmt
            .query_map([trial_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sqlite)?
            .collect::<Result<_, _>>()
            .map_err(sqlite)?;
        let mut values = Vec::with_capacity(raw.len());
        for (objective, value, kind) in raw {
            if objective != values.len() as i64 {
                return Err(bad(trial_id, format!("objective {objective} out of order")));
            }
            values.push(match (kind.as_str(), value) {
                ("FINITE", Some(v)) => v,
                ("INF_POS", _) => f64::INFINITY,
                ("INF_NEG", _) => f64::NEG_INFINITY,
                _ => {
                    return Err(bad(
                        trial_id,
                        format!("value_type {kind:?} with value {value:?}"),
                    ));
                }
            });
        }
        let mut trial_attrs = attrs(
            "SELECT key, value_json FROM trial_user_attributes WHERE trial_id = ?1",
            trial_id,
        )?;
        for (k, v) in &study.user_attrs {
            trial_attrs.entry(k.clone()).or_insert_with(|| v.clone());
        }
        candidates.push(PromotionCandidate {
            study_name: study.study_name.clone(),
            study_id,
            trial_id,
            trial_number: number,
            state,
            params,
            values,
            objective_name: study
                .objective_names
                .first()
                .cloned()
                .unwrap_or_else(|| "objective 0".into()),
            attrs: trial_attrs,
        });
    }
    Ok((study, candidates))
}

/// A param's external value from its internal one and `distribution_json`.
fn external_value(internal: f64, distribution: &str) -> Result<Value, String> {
    let d: Value = parse_python_json(distribution)
        .map_err(|e| format!("distribution_json {distribution:?}: {e}"))?;
    let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
    match name {
        "IntDistribution" | "IntUniformDistribution" | "IntLogUniformDistribution" => {
            if internal.fract() != 0.0 || !internal.is_finite() {
                return Err(format!("int param stored as {internal}"));
            }
            Ok(Value::from(internal as i64))
        }
        "FloatDistribution"
        | "UniformDistribution"
        | "LogUniformDistribution"
        | "DiscreteUniformDistribution" => serde_json::Number::from_f64(internal)
            .map(Value::Number)
            .ok_or_else(|| format!("float param stored as {internal}")),
        "CategoricalDistribution" => {
            let choices = d
                .get("attributes")
                .and_then(|a| a.get("choices"))
                .and_then(Value::as_array)
                .ok_or_else(|| format!("categorical without choices: {distribution}"))?;
            let index = internal as usize;
            if internal.fract() != 0.0 || internal < 0.0 || index >= choices.len() {
                return Err(format!(
                    "choice index {internal} outside its {} choices",
                    choices.len()
                ));
            }
            Ok(choices[index].clone())
        }
        other => Err(format!("unknown distribution {other:?}")),
    }
}
