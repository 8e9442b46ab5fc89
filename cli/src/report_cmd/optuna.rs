//! Read-only access to a study in Optuna's SQLite schema (../shared/optuna-schema/SCHEMA.md),
//! streamed straight into the columnar `etrading.study/1` export: one query per table, no
//! per-trial maps, so a million trials cost their columns and nothing more. Opened with
//! `SQLITE_OPEN_READ_ONLY`; never writes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};

use etrading_reports::study::{Distribution, StudyBuilder, StudyExport, attr_number, python_json};

/// The file of a `sqlite:///PATH` storage URL (`sqlite:////abs/path` for an absolute path).
pub fn storage_path(url: &str) -> anyhow::Result<PathBuf> {
    match url.strip_prefix("sqlite:///") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => bail!(
            "--storage {url:?}: expected sqlite:///PATH (sqlite:////abs/path for an absolute path)"
        ),
    }
}

/// Reads study `name` of the SQLite file at `path`.
pub fn read_study(path: &Path, name: &str) -> anyhow::Result<StudyExport> {
    if !path.is_file() {
        bail!("study storage {} does not exist", path.display());
    }
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", path.display()))?;
    let ctx = || format!("reading study {name:?} from {}", path.display());
    let study_id: Option<i64> = db
        .query_row(
            "SELECT study_id FROM studies WHERE study_name = ?1",
            [name],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .with_context(ctx)?;
    let Some(study_id) = study_id else {
        let mut names: Vec<String> = Vec::new();
        let mut st = db
            .prepare("SELECT study_name FROM studies ORDER BY study_id")
            .with_context(ctx)?;
        for n in st.query_map([], |r| r.get(0)).with_context(ctx)? {
            names.push(n.with_context(ctx)?);
        }
        bail!(
            "{} has no study named {name:?} (its studies: {})",
            path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };

    let mut directions: Vec<String> = Vec::new();
    let mut st = db
        .prepare("SELECT direction FROM study_directions WHERE study_id = ?1 ORDER BY objective")
        .with_context(ctx)?;
    for d in st
        .query_map([study_id], |r| r.get::<_, String>(0))
        .with_context(ctx)?
    {
        directions.push(d.with_context(ctx)?);
    }
    let mut user_attrs = BTreeMap::new();
    let mut st = db
        .prepare("SELECT key, value_json FROM study_user_attributes WHERE study_id = ?1")
        .with_context(ctx)?;
    for kv in st
        .query_map([study_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .with_context(ctx)?
    {
        let (k, v) = kv.with_context(ctx)?;
        let value = serde_json::from_str(&python_json(&v))
            .with_context(|| format!("study user attribute {k:?}: value_json is not JSON: {v}"))?;
        user_attrs.insert(k, value);
    }

    let mut b = StudyBuilder::new(name, directions, user_attrs);
    let mut rows: HashMap<i64, usize> = HashMap::new();
    let mut st = db
        .prepare("SELECT trial_id, number, state FROM trials WHERE study_id = ?1 ORDER BY number")
        .with_context(ctx)?;
    let mut q = st.query([study_id]).with_context(ctx)?;
    while let Some(r) = q.next().with_context(ctx)? {
        let (id, number, state): (i64, i64, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let row = b.trial(number as u64, &state)?;
        rows.insert(id, row);
    }

    // Distributions repeat: parse each distinct text once per param.
    let mut dists: HashMap<(String, String), Distribution> = HashMap::new();
    let mut st = db
        .prepare(
            "SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json \
             FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id WHERE t.study_id = ?1",
        )
        .with_context(ctx)?;
    let mut q = st.query([study_id]).with_context(ctx)?;
    while let Some(r) = q.next().with_context(ctx)? {
        let (id, pname, value, dist): (i64, String, f64, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let Some(&row) = rows.get(&id) else { continue };
        let key = (pname, dist);
        if !dists.contains_key(&key) {
            let d = Distribution::from_optuna_json(&key.1)
                .map_err(|e| anyhow::anyhow!("param {:?} of trial_id {id}: {e}", key.0))?;
            dists.insert(key.clone(), d);
        }
        b.param(row, &key.0, &dists[&key], value)?;
    }

    let mut st = db
        .prepare(
            "SELECT v.trial_id, v.objective, v.value, v.value_type \
             FROM trial_values v JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = ?1",
        )
        .with_context(ctx)?;
    let mut q = st.query([study_id]).with_context(ctx)?;
    while let Some(r) = q.next().with_context(ctx)? {
        let (id, objective, value, kind): (i64, i64, Option<f64>, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let Some(&row) = rows.get(&id) else { continue };
        let v = match (kind.as_str(), value) {
            ("FINITE", Some(v)) => v,
            ("INF_POS", _) => f64::INFINITY,
            ("INF_NEG", _) => f64::NEG_INFINITY,
            _ => bail!("trial_id {id}: objective {objective}: value {value:?} of type {kind:?}"),
        };
        b.value(row, objective as usize, v);
    }

    let mut st = db
        .prepare(
            "SELECT a.trial_id, a.key, a.value_json \
             FROM trial_user_attributes a JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = ?1",
        )
        .with_context(ctx)?;
    let mut q = st.query([study_id]).with_context(ctx)?;
    while let Some(r) = q.next().with_context(ctx)? {
        let (id, key, value): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let Some(&row) = rows.get(&id) else { continue };
        if let Some(x) = attr_number(&value) {
            b.metric(row, &key, x);
        }
    }
    Ok(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A study in Optuna's schema: two trials of `hand` (one COMPLETE with a categorical, an
    /// infinite value and Python-JSON attributes, one FAIL), and a second study whose trial
    /// must not leak in.
    fn hand_made(dir: &Path) -> PathBuf {
        let path = dir.join("s.db");
        let db = Connection::open(&path).unwrap();
        db.execute_batch(include_str!("../../../db/src/study/schema.sql"))
            .unwrap();
        db.execute_batch(
            r#"
            INSERT INTO studies VALUES (1, 'hand'), (2, 'other');
            INSERT INTO study_directions VALUES (1, 'MINIMIZE', 1, 0), (2, 'MAXIMIZE', 2, 0);
            INSERT INTO study_user_attributes VALUES (1, 1, 'spec_file', '"examples/rsi_ema.toml"');
            INSERT INTO trials VALUES (1, 0, 1, 'COMPLETE', NULL, NULL), (2, 1, 1, 'FAIL', NULL, NULL),
                                      (3, 0, 2, 'COMPLETE', NULL, NULL);
            INSERT INTO trial_params VALUES
              (1, 1, 'side', 1.0, '{"name": "CategoricalDistribution", "attributes": {"choices": ["long", "short"]}}'),
              (2, 1, 'leverage', 3.0, '{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 1, "high": 5}}'),
              (3, 2, 'leverage', 5.0, '{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 1, "high": 5}}'),
              (4, 3, 'leverage', 1.0, '{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 1, "high": 5}}');
            INSERT INTO trial_values VALUES (1, 1, 0, NULL, 'INF_NEG'), (2, 3, 0, 9.0, 'FINITE');
            INSERT INTO trial_user_attributes VALUES (1, 1, 'sharpe', '1.25'), (2, 1, 'tail', '[1.0, Infinity]'),
              (3, 1, 'oos_0_sharpe', 'NaN'), (4, 1, 'is_0_sharpe', 'Infinity');
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
        let names: Vec<&str> = e.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["leverage", "side"]);
        assert_eq!(e.values[0].values[0].0, f64::NEG_INFINITY);
        assert!(e.values[0].values[1].0.is_nan());
        let metrics: Vec<&str> = e.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(metrics, ["is_0_sharpe", "oos_0_sharpe", "sharpe"]);
        assert_eq!(
            e.param_texts(0),
            vec![
                ("leverage".into(), "3".into()),
                ("side".into(), "short".into())
            ]
        );
        assert_eq!(
            e.metrics_of(0),
            vec![("is_0_sharpe", f64::INFINITY), ("sharpe", 1.25)]
        );
    }

    #[test]
    fn errors_name_the_study_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = hand_made(dir.path());
        let e = read_study(&path, "nope").unwrap_err().to_string();
        assert!(
            e.contains("no study named \"nope\" (its studies: hand, other)"),
            "{e}"
        );
        let e = read_study(&dir.path().join("missing.db"), "hand")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.db does not exist"), "{e}");
    }
}
