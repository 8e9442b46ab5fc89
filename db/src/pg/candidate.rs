//! The trial to promote: read from a study file through [`StudyFile`] (the one reader of
//! Optuna's tables, with its decoding of params, values and Python-JSON attributes), checked
//! for the refusals of docs/PROMOTION.md, and its stored metrics compared with a re-run. The
//! file is opened read-only and never written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use etrading_kernels::spec::ParamValue;

use crate::study::{Direction, JsonValue, StudyError, StudyFile, TrialState};

/// A study: its id, objectives and attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyInfo {
    /// The file it was read from.
    pub path: PathBuf,
    /// `studies.study_id`.
    pub study_id: i64,
    /// `studies.study_name`.
    pub study_name: String,
    /// One per objective, in objective order.
    pub directions: Vec<Direction>,
    /// Objective names: Optuna's `study:metric_names` system attribute, else the study's
    /// `objective` user attribute, else `objective 0`, `objective 1`, ...
    pub objective_names: Vec<String>,
    /// Study user attributes.
    pub user_attrs: Arc<BTreeMap<String, JsonValue>>,
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
    /// Params in their external representation (`rsi_window = 14`, `side = "long"`).
    pub params: BTreeMap<String, ParamValue>,
    /// Objective values in objective order (infinite values as infinities), empty when none.
    pub values: Vec<f64>,
    /// Name of objective 0.
    pub objective_name: String,
    /// Trial user attributes (metrics, `data_hash`, `engine_version`, `talib_version`,
    /// `pruned_reason`, window scores).
    pub trial_attrs: BTreeMap<String, JsonValue>,
    /// The study's user attributes, shared by its candidates: they stand in for keys the
    /// trial lacks.
    pub study_attrs: Arc<BTreeMap<String, JsonValue>>,
}

impl PromotionCandidate {
    /// The value of objective 0.
    pub fn objective_value(&self) -> Option<f64> {
        self.values.first().copied()
    }

    /// Attribute `key`: the trial's, else the study's.
    pub fn attr(&self, key: &str) -> Option<&JsonValue> {
        self.trial_attrs
            .get(key)
            .or_else(|| self.study_attrs.get(key))
    }

    /// Every attribute by key: the trial's, then the study's for keys the trial lacks.
    pub fn attrs(&self) -> BTreeMap<&str, &JsonValue> {
        let mut all: BTreeMap<&str, &JsonValue> = self
            .study_attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        all.extend(self.trial_attrs.iter().map(|(k, v)| (k.as_str(), v)));
        all
    }

    /// An attribute as a number (Python's `Infinity`, `NaN` understood).
    pub fn number(&self, key: &str) -> Option<f64> {
        self.attr(key).and_then(JsonValue::as_f64)
    }

    /// An attribute as text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(JsonValue::as_str)
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
        let attrs = self.attrs();
        let windows = |suffix: &str| -> Vec<f64> {
            attrs
                .iter()
                .filter(|(k, _)| {
                    k.strip_prefix("oos_")
                        .and_then(|rest| rest.split_once('_'))
                        .is_some_and(|(index, key)| index.parse::<u32>().is_ok() && key == suffix)
                })
                .filter_map(|(_, v)| v.as_f64())
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

    /// The stored metrics: every attribute that is a number, as JSON (the non-finite ones as
    /// the strings `"NaN"`, `"Infinity"`, `"-Infinity"`, which strict JSON cannot hold).
    pub fn metrics(&self) -> BTreeMap<String, Value> {
        self.attrs()
            .into_iter()
            .filter_map(|(k, v)| {
                let json = match *v {
                    JsonValue::Int(i) => Value::from(i),
                    JsonValue::Float(x) => number_json(x),
                    _ => return None,
                };
                Some((k.to_string(), json))
            })
            .collect()
    }
}

/// A number as JSON: finite as a number, else Python's token as a string.
pub fn number_json(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or_else(
        || {
            Value::String(
                if x.is_nan() {
                    "NaN"
                } else if x > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                }
                .to_string(),
            )
        },
        Value::Number,
    )
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
    let [direction] = study.directions[..] else {
        return Err(format!(
            "study {:?} has {} objectives; name the trial to promote with --trial N",
            study.study_name,
            study.directions.len()
        ));
    };
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
            Some(b) => direction.better(v, b),
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

/// Reads study `name` and all its trials from the Optuna SQLite file at `path`.
pub fn read_study(
    path: &Path,
    name: &str,
) -> Result<(StudyInfo, Vec<PromotionCandidate>), StudyError> {
    let study = StudyFile::open(path)?.load(name)?;
    let study_attrs: Arc<BTreeMap<String, JsonValue>> =
        Arc::new(study.user_attrs.iter().cloned().collect());
    let metric_names = study
        .system_attrs
        .iter()
        .find(|(k, _)| k == "study:metric_names");
    let objective_names: Vec<String> = (0..study.directions.len())
        .map(|i| {
            let listed = match metric_names {
                Some((_, JsonValue::Array(names))) => names.get(i).and_then(JsonValue::as_str),
                _ => None,
            };
            listed
                .or_else(|| {
                    (i == 0)
                        .then(|| study_attrs.get("objective").and_then(JsonValue::as_str))
                        .flatten()
                })
                .map_or_else(|| format!("objective {i}"), str::to_string)
        })
        .collect();
    let objective_name = objective_names
        .first()
        .cloned()
        .unwrap_or_else(|| "objective 0".into());
    let candidates = study
        .trials
        .into_iter()
        .map(|t| PromotionCandidate {
            study_name: study.name.clone(),
            study_id: study.study_id,
            trial_id: t.trial_id,
            trial_number: t.number,
            state: t.state,
            params: t.params.into_iter().map(|p| (p.name, p.value)).collect(),
            values: t.values,
            objective_name: objective_name.clone(),
            trial_attrs: t.user_attrs.into_iter().collect(),
            study_attrs: Arc::clone(&study_attrs),
        })
        .collect();
    let info = StudyInfo {
        path: path.to_path_buf(),
        study_id: study.study_id,
        study_name: study.name,
        directions: study.directions,
        objective_names,
        user_attrs: study_attrs,
    };
    Ok((info, candidates))
}
