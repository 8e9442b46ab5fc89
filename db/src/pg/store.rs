//! `active_configs` and `config_history`: promote, roll back, list.
//!
//! Every change runs in one transaction: take the strategy's advisory lock
//! (`pg_advisory_xact_lock` on a hash of its id, so changes of one strategy queue behind each
//! other while other strategies proceed), number the new version after the newest in
//! `config_history`, append the history row, then replace the strategy's row in
//! `active_configs` with a copy of it (an upsert: no DELETE privilege needed). Until the commit
//! no other session sees any of it; after it, both tables agree. Each transaction first checks
//! that the database is at the newest migration ([`check_schema`]); none runs DDL.
//! [`begin_promotion`] and [`begin_rollback`] stop before the commit and hand back a
//! [`PendingChange`], so a caller (or a test) can look from another session, commit, or drop
//! it (which rolls back).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use etrading_kernels::spec::MarginMode;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{Client, GenericClient, Row, Transaction};

use super::PgError;
use super::migrate::check_schema;

/// The query the live bot runs to read its configuration (docs/PROMOTION.md shows it; a test
/// checks that the two agree). `$1` is the strategy id; no row means "do not trade".
pub const LIVE_BOT_QUERY: &str = "SELECT version, params, symbols, bar_interval, leverage, \
margin_mode, max_position_size, max_concurrent_positions, symbol_leverage, resolved, spec_json, \
data_hash, engine_commit, promoted_at FROM active_configs WHERE strategy_id = $1";

/// The columns of a config that a rollback copies from the version it restores.
const CONFIG_COLUMNS: &str = "spec_text, spec_json, params, symbols, bar_interval, leverage, \
margin_mode, max_position_size, max_concurrent_positions, leverage_caps, symbol_leverage, \
resolved, study_name, study_id, trial_id, trial_number, objective_name, objective_value, \
oos_apr, oos_max_drawdown, oos_calmar, oos_trades, metrics, rerun_metrics, data_hash, \
engine_version, talib_version, engine_commit, forced, force_reason";

/// Every column of a history row, in [`ConfigRow`] order (`active_configs` has the same ones).
const ROW_COLUMNS: &str = "history_id, strategy_id, version, action, source_version, \
previous_version, spec_text, spec_json, params, symbols, bar_interval, leverage, margin_mode, \
max_position_size, max_concurrent_positions, leverage_caps, symbol_leverage, resolved, \
study_name, study_id, trial_id, trial_number, objective_name, objective_value, oos_apr, \
oos_max_drawdown, oos_calmar, oos_trades, metrics, rerun_metrics, data_hash, engine_version, \
talib_version, engine_commit, forced, force_reason, note, promoted_at, promoted_by";

/// Key metrics of the out-of-sample windows, as the study stored them (absent when the study
/// had no walk-forward windows).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OosMetrics {
    /// Annualised return.
    pub apr: Option<f64>,
    /// Largest peak-to-trough loss, a fraction.
    pub max_drawdown: Option<f64>,
    /// Return over drawdown.
    pub calmar: Option<f64>,
    /// Closed trades.
    pub trades: Option<i64>,
}

/// A config to promote: the spec, the chosen trial and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigRecord {
    /// The spec's `[strategy] id`.
    pub strategy_id: String,
    /// The spec file's text.
    pub spec_text: String,
    /// The spec as JSON (the TOML document converted).
    pub spec_json: Value,
    /// The chosen params, `{name: value}`.
    pub params: Value,
    /// Symbols traded.
    pub symbols: Vec<String>,
    /// Bar interval (`1h`).
    pub bar_interval: String,
    /// The `leverage` param (1 without one).
    pub leverage: f64,
    /// Cross or isolated.
    pub margin_mode: MarginMode,
    /// Fraction of equity posted as margin per position, in (0, 1].
    pub max_position_size: f64,
    /// Most positions open at once.
    pub max_concurrent_positions: i32,
    /// Per-symbol leverage caps of the spec.
    pub leverage_caps: BTreeMap<String, f64>,
    /// Leverage per symbol after the caps.
    pub symbol_leverage: BTreeMap<String, f64>,
    /// The resolved `[risk]` and `[execution]` sections.
    pub resolved: Value,
    /// Study name.
    pub study_name: String,
    /// Study id in the study file.
    pub study_id: i64,
    /// Trial id in the study file (global across its studies).
    pub trial_id: i64,
    /// Trial number in its study (0-based).
    pub trial_number: i64,
    /// Objective name (`calmar`).
    pub objective_name: String,
    /// Objective value (`None` when the trial has none).
    pub objective_value: Option<f64>,
    /// Out-of-sample key metrics.
    pub oos: OosMetrics,
    /// Every metric the trial stored.
    pub metrics: Value,
    /// The reference engine's re-run (`None` only when not run).
    pub rerun_metrics: Option<Value>,
    /// Panel content hash of the data the trial ran on.
    pub data_hash: String,
    /// Engine version of the trial.
    pub engine_version: String,
    /// TA-Lib version of the trial.
    pub talib_version: String,
    /// Git commit of the engine that promotes (with `-dirty` for uncommitted changes).
    pub engine_commit: String,
    /// Refusals overridden with `--force`.
    pub forced: Vec<String>,
    /// Why they were overridden (required when `forced` is not empty).
    pub force_reason: Option<String>,
    /// Who promotes.
    pub promoted_by: String,
}

impl ConfigRecord {
    /// Checks what the tables' constraints would refuse, with clearer messages.
    pub fn validate(&self) -> Result<(), PgError> {
        let fail = |reason: String| {
            Err(PgError::InvalidConfig {
                strategy_id: self.strategy_id.clone(),
                reason,
            })
        };
        if self.strategy_id.trim().is_empty() {
            return fail("the strategy id is empty".into());
        }
        if self.symbols.is_empty() {
            return fail("no symbols".into());
        }
        if !(self.leverage.is_finite() && self.leverage >= 1.0) {
            return fail(format!("leverage {} is not a number >= 1", self.leverage));
        }
        if !(self.max_position_size > 0.0 && self.max_position_size <= 1.0) {
            return fail(format!(
                "max_position_size {} is not in (0, 1]",
                self.max_position_size
            ));
        }
        if self.max_concurrent_positions < 1 {
            return fail("max_concurrent_positions is below 1".into());
        }
        if !self.params.is_object() {
            return fail("params is not a JSON object".into());
        }
        if self.data_hash.is_empty() {
            return fail("no data hash".into());
        }
        if self.promoted_by.trim().is_empty() {
            return fail("promoted_by is empty".into());
        }
        if !self.forced.is_empty()
            && self
                .force_reason
                .as_deref()
                .is_none_or(|r| r.trim().is_empty())
        {
            return fail("refusals were overridden without a reason".into());
        }
        Ok(())
    }
}

/// A row of `config_history` or `active_configs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigRow {
    /// Row id in `config_history`.
    pub history_id: i64,
    /// The strategy.
    pub strategy_id: String,
    /// 1, 2, ... per strategy.
    pub version: i32,
    /// `promote` or `rollback`.
    pub action: String,
    /// The version whose config this is (itself for a promotion).
    pub source_version: i32,
    /// The version active before this one.
    pub previous_version: Option<i32>,
    /// Spec text.
    pub spec_text: String,
    /// Spec as JSON.
    pub spec_json: Value,
    /// Params.
    pub params: Value,
    /// Symbols.
    pub symbols: Vec<String>,
    /// Bar interval.
    pub bar_interval: String,
    /// Leverage.
    pub leverage: f64,
    /// `isolated` or `cross`.
    pub margin_mode: String,
    /// Fraction of equity per position.
    pub max_position_size: f64,
    /// Positions at once.
    pub max_concurrent_positions: i32,
    /// Per-symbol caps.
    pub leverage_caps: Value,
    /// Per-symbol leverage after caps.
    pub symbol_leverage: Value,
    /// Resolved risk and execution.
    pub resolved: Value,
    /// Study name.
    pub study_name: String,
    /// Study id.
    pub study_id: i64,
    /// Trial id.
    pub trial_id: i64,
    /// Trial number.
    pub trial_number: i64,
    /// Objective name.
    pub objective_name: String,
    /// Objective value.
    pub objective_value: Option<f64>,
    /// Out-of-sample metrics.
    pub oos: OosMetrics,
    /// Stored metrics.
    pub metrics: Value,
    /// Re-run metrics.
    pub rerun_metrics: Option<Value>,
    /// Data hash.
    pub data_hash: String,
    /// Engine version.
    pub engine_version: String,
    /// TA-Lib version.
    pub talib_version: String,
    /// Engine git commit.
    pub engine_commit: String,
    /// Overridden refusals.
    pub forced: Value,
    /// Why.
    pub force_reason: Option<String>,
    /// Rollback note.
    pub note: Option<String>,
    /// When (UTC, RFC 3339).
    pub promoted_at: String,
    /// Who.
    pub promoted_by: String,
}

impl ConfigRow {
    fn from_row(row: &Row) -> ConfigRow {
        let promoted_at: DateTime<Utc> = row.get("promoted_at");
        ConfigRow {
            history_id: row.get("history_id"),
            strategy_id: row.get("strategy_id"),
            version: row.get("version"),
            action: row.get("action"),
            source_version: row.get("source_version"),
            previous_version: row.get("previous_version"),
            spec_text: row.get("spec_text"),
            spec_json: row.get("spec_json"),
            params: row.get("params"),
            symbols: row.get("symbols"),
            bar_interval: row.get("bar_interval"),
            leverage: row.get("leverage"),
            margin_mode: row.get("margin_mode"),
            max_position_size: row.get("max_position_size"),
            max_concurrent_positions: row.get("max_concurrent_positions"),
            leverage_caps: row.get("leverage_caps"),
            symbol_leverage: row.get("symbol_leverage"),
            resolved: row.get("resolved"),
            study_name: row.get("study_name"),
            study_id: row.get("study_id"),
            trial_id: row.get("trial_id"),
            trial_number: row.get("trial_number"),
            objective_name: row.get("objective_name"),
            objective_value: row.get("objective_value"),
            oos: OosMetrics {
                apr: row.get("oos_apr"),
                max_drawdown: row.get("oos_max_drawdown"),
                calmar: row.get("oos_calmar"),
                trades: row.get("oos_trades"),
            },
            metrics: row.get("metrics"),
            rerun_metrics: row.get("rerun_metrics"),
            data_hash: row.get("data_hash"),
            engine_version: row.get("engine_version"),
            talib_version: row.get("talib_version"),
            engine_commit: row.get("engine_commit"),
            forced: row.get("forced"),
            force_reason: row.get("force_reason"),
            note: row.get("note"),
            promoted_at: promoted_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            promoted_by: row.get("promoted_by"),
        }
    }
}

/// What a promotion or rollback did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangeOutcome {
    /// The strategy.
    pub strategy_id: String,
    /// The new version, now active.
    pub version: i32,
    /// `promote` or `rollback`.
    pub action: String,
    /// The version whose config is now active.
    pub source_version: i32,
    /// The version active before.
    pub previous_version: Option<i32>,
    /// Its row in `config_history`.
    pub history_id: i64,
}

/// A change written inside an open transaction: invisible to other sessions until
/// [`PendingChange::commit`]; dropping it rolls everything back.
pub struct PendingChange<'a> {
    tx: Transaction<'a>,
    /// What the change will be once committed.
    pub outcome: ChangeOutcome,
}

impl std::fmt::Debug for PendingChange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingChange")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl PendingChange<'_> {
    /// Commits: the new version becomes active and visible, atomically.
    pub async fn commit(self) -> Result<ChangeOutcome, PgError> {
        self.tx.commit().await.map_err(|e| {
            PgError::query(
                format!(
                    "committing version {} of {}",
                    self.outcome.version, self.outcome.strategy_id
                ),
                &e,
            )
        })?;
        Ok(self.outcome)
    }

    /// Rolls back explicitly (dropping does the same without waiting for the server).
    pub async fn abort(self) -> Result<(), PgError> {
        self.tx
            .rollback()
            .await
            .map_err(|e| PgError::query("rolling back", &e))
    }
}

/// The active row and the next version of `strategy_id`, after taking its lock.
struct Current {
    active: Option<(i32, i32)>,
    next_version: i32,
}

async fn lock_strategy(tx: &Transaction<'_>, strategy_id: &str) -> Result<Current, PgError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('etrading.config:' || $1, 0))",
        &[&strategy_id],
    )
    .await
    .map_err(|e| PgError::query(format!("locking strategy {strategy_id}"), &e))?;
    let active = tx
        .query_opt(
            "SELECT version, source_version FROM active_configs WHERE strategy_id = $1",
            &[&strategy_id],
        )
        .await
        .map_err(|e| PgError::query("reading active_configs", &e))?
        .map(|r| (r.get(0), r.get(1)));
    let next_version: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) + 1 FROM config_history WHERE strategy_id = $1",
            &[&strategy_id],
        )
        .await
        .map_err(|e| PgError::query("reading config_history", &e))?
        .get(0);
    Ok(Current {
        active,
        next_version,
    })
}

/// Replaces the strategy's active row by a copy of history row `history_id`: one upsert, so a
/// promoter role needs INSERT and UPDATE on `active_configs` but never DELETE.
async fn activate(tx: &Transaction<'_>, history_id: i64) -> Result<(), PgError> {
    let updates: Vec<String> = ROW_COLUMNS
        .split(',')
        .map(str::trim)
        .filter(|c| *c != "strategy_id")
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let sql = format!(
        "INSERT INTO active_configs ({ROW_COLUMNS}) SELECT {ROW_COLUMNS} FROM config_history \
         WHERE history_id = $1 ON CONFLICT (strategy_id) DO UPDATE SET {}",
        updates.join(", ")
    );
    let written = tx
        .execute(&sql, &[&history_id])
        .await
        .map_err(|e| PgError::query("writing the active config", &e))?;
    if written != 1 {
        return Err(PgError::Query {
            context: "writing the active config".into(),
            reason: format!("{written} rows written instead of 1"),
        });
    }
    Ok(())
}

fn margin_mode_text(mode: MarginMode) -> &'static str {
    match mode {
        MarginMode::Cross => "cross",
        MarginMode::Isolated => "isolated",
    }
}

fn caps_json(caps: &BTreeMap<String, f64>) -> Value {
    caps.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number),
            )
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

/// Writes a promotion of `record` as the next version of its strategy, without committing.
pub async fn begin_promotion<'a>(
    client: &'a mut Client,
    record: &ConfigRecord,
) -> Result<PendingChange<'a>, PgError> {
    record.validate()?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| PgError::query("starting the promotion transaction", &e))?;
    check_schema(&tx).await?;
    let id = record.strategy_id.as_str();
    let current = lock_strategy(&tx, id).await?;
    let version = current.next_version;
    let previous_version = current.active.map(|(v, _)| v);
    let forced = Value::from(record.forced.clone());
    let row = tx
        .query_one(
            "INSERT INTO config_history (strategy_id, version, action, source_version, \
             previous_version, spec_text, spec_json, params, symbols, bar_interval, leverage, \
             margin_mode, max_position_size, max_concurrent_positions, leverage_caps, \
             symbol_leverage, resolved, study_name, study_id, trial_id, trial_number, \
             objective_name, objective_value, oos_apr, oos_max_drawdown, oos_calmar, oos_trades, \
             metrics, rerun_metrics, data_hash, engine_version, talib_version, engine_commit, \
             forced, force_reason, promoted_by) \
             VALUES ($1, $2, 'promote', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, \
             $32, $33, $34) RETURNING history_id",
            &[
                &id,
                &version,
                &previous_version,
                &record.spec_text,
                &record.spec_json,
                &record.params,
                &record.symbols,
                &record.bar_interval,
                &record.leverage,
                &margin_mode_text(record.margin_mode),
                &record.max_position_size,
                &record.max_concurrent_positions,
                &caps_json(&record.leverage_caps),
                &caps_json(&record.symbol_leverage),
                &record.resolved,
                &record.study_name,
                &record.study_id,
                &record.trial_id,
                &record.trial_number,
                &record.objective_name,
                &record.objective_value,
                &record.oos.apr,
                &record.oos.max_drawdown,
                &record.oos.calmar,
                &record.oos.trades,
                &record.metrics,
                &record.rerun_metrics,
                &record.data_hash,
                &record.engine_version,
                &record.talib_version,
                &record.engine_commit,
                &forced,
                &record.force_reason,
                &record.promoted_by,
            ],
        )
        .await
        .map_err(|e| PgError::query("appending the promotion to config_history", &e))?;
    let history_id: i64 = row.get(0);
    activate(&tx, history_id).await?;
    Ok(PendingChange {
        tx,
        outcome: ChangeOutcome {
            strategy_id: id.to_string(),
            version,
            action: "promote".into(),
            source_version: version,
            previous_version,
            history_id,
        },
    })
}

/// Promotes `record`: the next version of its strategy, active once this returns.
pub async fn promote(client: &mut Client, record: &ConfigRecord) -> Result<ChangeOutcome, PgError> {
    begin_promotion(client, record).await?.commit().await
}

/// Writes a rollback of `strategy_id` without committing: a new version carrying the config of
/// version `to`, or, without `to`, of the newest promotion older than the config now active.
pub async fn begin_rollback<'a>(
    client: &'a mut Client,
    strategy_id: &str,
    to: Option<i32>,
    promoted_by: &str,
    note: Option<&str>,
) -> Result<PendingChange<'a>, PgError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| PgError::query("starting the rollback transaction", &e))?;
    check_schema(&tx).await?;
    let current = lock_strategy(&tx, strategy_id).await?;
    let Some((active_version, active_source)) = current.active else {
        return Err(PgError::NoActiveConfig {
            strategy_id: strategy_id.to_string(),
        });
    };
    let source_version: i32 = match to {
        Some(version) => {
            let row = tx
                .query_opt(
                    "SELECT source_version FROM config_history WHERE strategy_id = $1 AND \
                     version = $2",
                    &[&strategy_id, &version],
                )
                .await
                .map_err(|e| PgError::query("reading config_history", &e))?;
            let Some(row) = row else {
                return Err(PgError::NoSuchVersion {
                    strategy_id: strategy_id.to_string(),
                    version,
                    newest: current.next_version - 1,
                });
            };
            let source: i32 = row.get(0);
            if source == active_source {
                return Err(PgError::AlreadyActive {
                    strategy_id: strategy_id.to_string(),
                    version,
                    active: active_version,
                });
            }
            source
        }
        None => tx
            .query_one(
                "SELECT max(version) FROM config_history WHERE strategy_id = $1 AND \
                 action = 'promote' AND version < $2",
                &[&strategy_id, &active_source],
            )
            .await
            .map_err(|e| PgError::query("reading config_history", &e))?
            .get::<_, Option<i32>>(0)
            .ok_or_else(|| PgError::NothingToRollBack {
                strategy_id: strategy_id.to_string(),
                source_version: active_source,
            })?,
    };
    if promoted_by.trim().is_empty() {
        return Err(PgError::InvalidConfig {
            strategy_id: strategy_id.to_string(),
            reason: "promoted_by is empty".into(),
        });
    }
    let version = current.next_version;
    let sql = format!(
        "INSERT INTO config_history (strategy_id, version, action, source_version, \
         previous_version, note, promoted_by, {CONFIG_COLUMNS}) \
         SELECT strategy_id, $3, 'rollback', $2, $4, $5, $6, {CONFIG_COLUMNS} \
         FROM config_history WHERE strategy_id = $1 AND version = $2 RETURNING history_id"
    );
    let row = tx
        .query_one(
            &sql,
            &[
                &strategy_id,
                &source_version,
                &version,
                &active_version,
                &note,
                &promoted_by,
            ],
        )
        .await
        .map_err(|e| PgError::query("appending the rollback to config_history", &e))?;
    let history_id: i64 = row.get(0);
    activate(&tx, history_id).await?;
    Ok(PendingChange {
        tx,
        outcome: ChangeOutcome {
            strategy_id: strategy_id.to_string(),
            version,
            action: "rollback".into(),
            source_version,
            previous_version: Some(active_version),
            history_id,
        },
    })
}

/// Rolls `strategy_id` back (see [`begin_rollback`]), active once this returns.
pub async fn rollback(
    client: &mut Client,
    strategy_id: &str,
    to: Option<i32>,
    promoted_by: &str,
    note: Option<&str>,
) -> Result<ChangeOutcome, PgError> {
    begin_rollback(client, strategy_id, to, promoted_by, note)
        .await?
        .commit()
        .await
}

/// Every active config, by strategy id.
pub async fn list_active(client: &impl GenericClient) -> Result<Vec<ConfigRow>, PgError> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM active_configs ORDER BY strategy_id");
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| PgError::query("reading active_configs", &e))?;
    Ok(rows.iter().map(ConfigRow::from_row).collect())
}

/// The active config of one strategy.
pub async fn active_config(
    client: &impl GenericClient,
    strategy_id: &str,
) -> Result<Option<ConfigRow>, PgError> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM active_configs WHERE strategy_id = $1");
    let row = client
        .query_opt(&sql, &[&strategy_id])
        .await
        .map_err(|e| PgError::query("reading active_configs", &e))?;
    Ok(row.as_ref().map(ConfigRow::from_row))
}

/// The history, oldest first: of one strategy, or of all (by strategy, then version).
pub async fn history(
    client: &impl GenericClient,
    strategy_id: Option<&str>,
) -> Result<Vec<ConfigRow>, PgError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM config_history WHERE $1::text IS NULL OR strategy_id = $1 \
         ORDER BY strategy_id, version"
    );
    let rows = client
        .query(&sql, &[&strategy_id])
        .await
        .map_err(|e| PgError::query("reading config_history", &e))?;
    Ok(rows.iter().map(ConfigRow::from_row).collect())
}
