//! `etrading promote`, `etrading rollback`, `etrading configs` and `etrading db migrate`:
//! promotion of a study's trial to PostgreSQL's `active_configs` for the live bot, with its
//! checks (docs/PROMOTION.md): the trial's refusals, the data hash, and a re-run with the
//! reference engine that must reproduce the stored metrics.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use etrading_db::pg::{
    self, ConfigRecord, ConfigRow, Policy, PromotionCandidate, StudyInfo, Target, TlsDefaults,
    Tolerance,
};
use etrading_db::study::{self, JsonValue};
use etrading_kernels::reference::{self, ENGINE_VERSION};
use etrading_kernels::spec::{ParamValue, Spec};

use crate::backtest_cmd::{
    bracket_tables, funding_of, load_for_spec, market, param_set, talib_version,
};
use crate::data_cmd::DataSelection;

/// Git commit of the engine (cli/build.rs): `git rev-parse HEAD`, `-dirty` with uncommitted
/// changes to tracked files, `unknown` outside a git checkout.
pub const ENGINE_COMMIT: &str = env!("ETRADING_GIT_COMMIT");

/// Default study file (as `etrading optimize` writes it).
const DEFAULT_STORAGE: &str = "db/optimization_study.db";

/// Where PostgreSQL is.
#[derive(Debug, Args)]
pub struct PgArgs {
    /// PostgreSQL connection URL (`postgresql://role:password@host:5432/db`) or `key=value`
    /// string; without it, the DATABASE_URL environment variable (preferred: a password on the
    /// command line is visible to other users of the machine). The password is never printed.
    /// TLS as libpq: `sslmode=disable|prefer|require|verify-ca|verify-full` and
    /// `sslrootcert=PATH` in the string, else the PGSSLMODE and PGSSLROOTCERT environment
    /// variables (docs/PROMOTION.md).
    #[arg(long = "pg", value_name = "URL")]
    pub pg: Option<String>,
}

impl PgArgs {
    fn target(&self) -> anyhow::Result<Target> {
        let url = match &self.pg {
            Some(url) => url.clone(),
            None => std::env::var("DATABASE_URL").map_err(|_| {
                anyhow::anyhow!("no PostgreSQL given: pass --pg URL or set DATABASE_URL")
            })?,
        };
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let defaults = TlsDefaults {
            sslmode: env("PGSSLMODE").map(|v| v.to_string_lossy().into_owned()),
            sslrootcert: env("PGSSLROOTCERT").map(PathBuf::from),
        };
        Ok(Target::parse_with(&url, &defaults)?)
    }
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The study to promote from.
    #[arg(long)]
    pub study: String,
    /// The trial number to promote (the best eligible trial otherwise).
    #[arg(long)]
    pub trial: Option<i64>,
    /// The study file: `sqlite:///PATH` or a path.
    #[arg(long, default_value = DEFAULT_STORAGE)]
    pub storage: String,
    /// The strategy spec, when the study does not carry its text (as the `spec` study user
    /// attribute); when both exist they must be identical.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Market data the trial is re-run on: files or folders. Its content hash must equal the
    /// trial's `data_hash`.
    #[arg(long, default_value = "data/sample")]
    pub data: Vec<PathBuf>,
    #[command(flatten)]
    pub select: DataSelection,
    /// Starting wallet balance of the re-run, USDT (default: the study's `initial_capital`
    /// attribute, else 10000).
    #[arg(long)]
    pub capital: Option<f64>,
    /// Leverage brackets JSON for the re-run (the bundled tables otherwise).
    #[arg(long)]
    pub brackets: Option<PathBuf>,
    /// Fewest trades of an eligible trial.
    #[arg(long, default_value_t = 20)]
    pub min_trades: u64,
    /// Promote despite the refusals that can be overridden (pruned, liquidated, too few trades,
    /// other data); needs --reason, which is recorded with them.
    #[arg(long, requires = "reason")]
    pub force: bool,
    /// Why --force was needed (recorded in config_history).
    #[arg(long, requires = "force")]
    pub reason: Option<String>,
    /// Who promotes (default: $USER, else the database role).
    #[arg(long)]
    pub by: Option<String>,
    /// Check everything (refusals, data hash, re-run) but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub pg: PgArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The strategy id.
    #[arg(long)]
    pub strategy: String,
    /// The version whose config to restore (default: the promotion before the active one).
    #[arg(long)]
    pub to: Option<i32>,
    /// Why (recorded in config_history).
    #[arg(long)]
    pub reason: Option<String>,
    /// Who rolls back (default: $USER, else the database role).
    #[arg(long)]
    pub by: Option<String>,
    #[command(flatten)]
    pub pg: PgArgs,
}

#[derive(Debug, Args)]
pub struct ConfigsArgs {
    /// Every promotion and rollback, not only the active configs.
    #[arg(long)]
    pub history: bool,
    /// Only this strategy.
    #[arg(long)]
    pub strategy: Option<String>,
    /// Print the rows as JSON (schema etrading.configs/1).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pg: PgArgs,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Applies the PostgreSQL schema migrations (idempotent), as the role that will own the
    /// tables; the only command that creates or changes them.
    Migrate {
        /// Then give ROLE exactly what promote, rollback and configs need (SELECT and INSERT on
        /// config_history, SELECT, INSERT and UPDATE on active_configs, SELECT on
        /// etrading_migrations; no ownership). Repeatable.
        #[arg(long = "grant-promoter", value_name = "ROLE")]
        grant_promoter: Vec<String>,
        #[command(flatten)]
        pg: PgArgs,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn connect(target: &Target) -> anyhow::Result<tokio_postgres::Client> {
    Ok(pg::connect(target).await?)
}

/// `--by`, else $USER / $LOGNAME, else the database role.
async fn who(by: Option<&str>, client: &tokio_postgres::Client) -> anyhow::Result<String> {
    if let Some(by) = by.filter(|b| !b.trim().is_empty()) {
        return Ok(by.to_string());
    }
    for var in ["USER", "LOGNAME"] {
        if let Ok(user) = std::env::var(var)
            && !user.trim().is_empty()
        {
            return Ok(user);
        }
    }
    let row = client
        .query_one("SELECT session_user::text", &[])
        .await
        .map_err(|e| anyhow::anyhow!("reading the database role: {}", pg::one_line(&e)))?;
    Ok(row.get(0))
}

pub fn run_db(cmd: DbCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        DbCommand::Migrate {
            grant_promoter,
            pg: pg_args,
        } => {
            let target = pg_args.target()?;
            let list = |v: &[i32]| {
                v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let privileges: Vec<String> = pg::PROMOTER_PRIVILEGES
                .iter()
                .map(|(table, privileges)| format!("{privileges} on {table}"))
                .collect();
            runtime()?.block_on(async {
                let mut client = connect(&target).await?;
                let report = pg::migrate(&mut client).await?;
                if report.applied.is_empty() {
                    writeln!(
                        out,
                        "{target}: up to date (migrations {})",
                        list(&report.already_applied)
                    )?;
                } else {
                    writeln!(
                        out,
                        "{target}: applied migrations {}",
                        list(&report.applied)
                    )?;
                }
                for role in &grant_promoter {
                    pg::grant_promoter(&mut client, role).await?;
                    writeln!(
                        out,
                        "{target}: role {role:?} may promote and roll back: {} (nothing else on \
                         these tables)",
                        privileges.join("; ")
                    )?;
                }
                anyhow::Ok(())
            })
        }
    }
}

/// The spec text: `--spec`, or the study's `spec` attribute; both must agree when both exist.
fn spec_text(args: &PromoteArgs, study: &StudyInfo) -> anyhow::Result<(String, String)> {
    let stored = study.user_attrs.get("spec").and_then(JsonValue::as_str);
    match (&args.spec, stored) {
        (Some(path), stored) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading spec {}", path.display()))?;
            if let Some(stored) = stored
                && stored != text
            {
                bail!(
                    "{} differs from the spec stored with study {:?}; promote with the spec the \
                     study ran (or leave out --spec)",
                    path.display(),
                    study.study_name
                );
            }
            Ok((path.display().to_string(), text))
        }
        (None, Some(stored)) => Ok((
            format!("spec of study {}", study.study_name),
            stored.to_string(),
        )),
        (None, None) => bail!(
            "study {:?} does not carry its spec (no `spec` study attribute); pass --spec FILE",
            study.study_name
        ),
    }
}

fn param_json(v: &ParamValue) -> Value {
    match v {
        ParamValue::Int(i) => (*i).into(),
        ParamValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Into::into),
        ParamValue::Bool(b) => (*b).into(),
        ParamValue::Str(s) => s.clone().into(),
    }
}

/// The trial's params as `--set name=value` strings, for [`param_set`] to validate.
fn param_sets(c: &PromotionCandidate) -> anyhow::Result<Vec<String>> {
    c.params
        .iter()
        .map(|(name, value)| {
            let text = match value {
                ParamValue::Str(s) => s.clone(),
                ParamValue::Int(i) => i.to_string(),
                ParamValue::Float(f) if f.is_finite() => format!("{f:?}"),
                ParamValue::Float(f) => {
                    bail!("param {name}: {f} is not a number the spec can take")
                }
                ParamValue::Bool(b) => b.to_string(),
            };
            Ok(format!("{name}={text}"))
        })
        .collect()
}

pub fn run_promote(args: &PromoteArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = study::parse_storage_url(&args.storage)?;
    let (study, candidates) = pg::read_study(&path, &args.study)?;
    let (spec_label, text) = spec_text(args, &study)?;
    let spec = Spec::parse(&spec_label, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let panel = load_for_spec(&spec, &args.data, &args.select)?;
    let data_hash = panel.content_hash();
    let policy = Policy {
        min_trades: args.min_trades,
        data_hash: data_hash.clone(),
    };
    let candidate = match args.trial {
        Some(n) => candidates
            .iter()
            .find(|c| c.trial_number == n)
            .with_context(|| {
                format!(
                    "study {:?} has no trial {n} (its trials: 0 to {})",
                    study.study_name,
                    candidates.len() as i64 - 1
                )
            })?,
        None => pg::best_eligible(&study, &candidates, &policy).map_err(anyhow::Error::msg)?,
    };
    let what = format!(
        "study {:?} trial {} (id {})",
        study.study_name, candidate.trial_number, candidate.trial_id
    );

    // Refusals: those nothing overrides, then those --force with a reason overrides.
    let refusals = pg::refusals(candidate, &policy);
    let hard: Vec<String> = refusals
        .iter()
        .filter(|r| !r.forceable())
        .map(ToString::to_string)
        .collect();
    if !hard.is_empty() {
        bail!("{what} cannot be promoted: {}", hard.join("; "));
    }
    let forced: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    if !forced.is_empty() && !args.force {
        bail!(
            "{what} is refused: {} (override with --force --reason TEXT)",
            forced.join("; ")
        );
    }
    let data_forced = refusals
        .iter()
        .any(|r| matches!(r, pg::Refusal::DataHash { .. }));

    // Re-run with the reference engine.
    let params = param_set(&spec, &param_sets(candidate)?)
        .with_context(|| format!("the params of {what} do not fit {spec_label}"))?;
    let resolved = spec
        .resolve(&params)
        .map_err(|e| anyhow::anyhow!("{spec_label}: {e}"))?;
    let capital = match args.capital {
        Some(c) => c,
        None => candidate.number("initial_capital").unwrap_or(10_000.0),
    };
    if !(capital.is_finite() && capital > 0.0) {
        bail!("--capital must be a positive number of USDT");
    }
    let funding = funding_of(&panel);
    let (tables, _) = bracket_tables(&panel.symbols, args.brackets.as_ref())?;
    let bt = reference::run(
        &spec,
        &resolved,
        &market(&panel, &funding),
        &tables,
        capital,
    )
    .context("re-running the trial")?;
    let m = &bt.result.metrics;
    let rerun: Vec<(&str, f64)> = vec![
        ("n_trades", m.n_trades as f64),
        ("liquidations", m.liquidations as f64),
        ("total_return", m.total_return),
        ("cagr", m.cagr),
        ("apr", m.apr),
        ("max_drawdown", m.max_drawdown),
        ("calmar", m.calmar),
        ("sharpe", m.sharpe),
        ("sortino", m.sortino),
        ("win_rate", m.win_rate),
        ("profit_factor", m.profit_factor),
        ("exposure", m.exposure),
        ("final_equity", m.final_equity),
        ("fees", m.fees_paid),
        ("fees_paid", m.fees_paid),
        ("funding", m.funding_paid),
        ("funding_paid", m.funding_paid),
    ];
    let tolerance = Tolerance::RERUN;
    let rerun_line = match pg::compare_metrics(candidate, &rerun, tolerance) {
        Ok((compared, mismatches)) if mismatches.is_empty() => format!(
            "{} stored metrics reproduced within rel {:e} ({})",
            compared.len(),
            tolerance.rel,
            compared.join(", ")
        ),
        Ok((_, mismatches)) if data_forced => format!(
            "metrics differ on the other data ({} of them; forced): {}",
            mismatches.len(),
            mismatches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Ok((_, mismatches)) => bail!(
            "the reference engine does not reproduce {what} (tolerance rel {:e}): {}",
            tolerance.rel,
            mismatches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Err(e) => bail!("{e}"),
    };

    let spec_json: Value = toml::from_str(&text)
        .with_context(|| format!("{spec_label}: converting the spec to JSON"))?;
    let risk = &resolved.risk;
    let record_for = |promoted_by: String| ConfigRecord {
        strategy_id: spec.strategy.id.clone(),
        spec_text: text.clone(),
        spec_json: spec_json.clone(),
        params: spec
            .params
            .params
            .iter()
            .zip(&params.values)
            .map(|(p, v)| (p.name.clone(), param_json(v)))
            .collect::<serde_json::Map<String, Value>>()
            .into(),
        symbols: spec.strategy.symbols.clone(),
        bar_interval: panel.interval.to_string(),
        leverage: f64::from(risk.leverage),
        margin_mode: risk.margin_mode,
        max_position_size: risk.position_size,
        max_concurrent_positions: i32::try_from(risk.max_concurrent_positions).unwrap_or(i32::MAX),
        leverage_caps: risk
            .max_leverage
            .iter()
            .map(|(s, &cap)| (s.clone(), f64::from(cap)))
            .collect(),
        symbol_leverage: spec
            .strategy
            .symbols
            .iter()
            .map(|s| (s.clone(), f64::from(risk.leverage_for(s))))
            .collect(),
        resolved: json!({"risk": &resolved.risk, "execution": &resolved.execution}),
        study_name: study.study_name.clone(),
        study_id: study.study_id,
        trial_id: candidate.trial_id,
        trial_number: candidate.trial_number,
        objective_name: candidate.objective_name.clone(),
        objective_value: candidate.objective_value(),
        oos: candidate.oos(),
        metrics: candidate
            .metrics()
            .into_iter()
            .collect::<serde_json::Map<_, _>>()
            .into(),
        rerun_metrics: Some(
            rerun
                .iter()
                .map(|(k, v)| (k.to_string(), pg::number_json(*v)))
                .collect::<BTreeMap<String, Value>>()
                .into_iter()
                .collect::<serde_json::Map<_, _>>()
                .into(),
        ),
        data_hash: candidate
            .text("data_hash")
            .unwrap_or(&data_hash)
            .to_string(),
        engine_version: ENGINE_VERSION.to_string(),
        talib_version: talib_version(),
        engine_commit: ENGINE_COMMIT.to_string(),
        forced: forced.clone(),
        force_reason: args.reason.clone(),
        promoted_by,
    };

    writeln!(
        out,
        "trial    {what}, {} = {}",
        candidate.objective_name,
        candidate
            .objective_value()
            .map_or("-".to_string(), |v| format!("{v}"))
    )?;
    writeln!(out, "params   {}", spec.params.describe(&params))?;
    writeln!(
        out,
        "data     sha256:{data_hash}{}",
        if data_forced {
            " (differs from the trial's: forced)"
        } else {
            ", as the trial"
        }
    )?;
    writeln!(out, "re-run   {rerun_line}")?;
    if let Some(v) = candidate.text("engine_version")
        && v != ENGINE_VERSION
    {
        writeln!(
            out,
            "engine   the trial ran on engine {v}, this is {ENGINE_VERSION} (re-run agrees)"
        )?;
    }
    if !forced.is_empty() {
        writeln!(
            out,
            "forced   {} (reason: {})",
            forced.join("; "),
            args.reason.as_deref().unwrap_or_default()
        )?;
    }
    if args.dry_run {
        writeln!(out, "dry run: nothing written")?;
        return Ok(());
    }

    let target = args.pg.target()?;
    let outcome = runtime()?.block_on(async {
        let mut client = connect(&target).await?;
        let by = who(args.by.as_deref(), &client).await?;
        let record = record_for(by);
        anyhow::Ok(pg::promote(&mut client, &record).await?)
    })?;
    writeln!(
        out,
        "promoted {} version {}{} at {target}",
        outcome.strategy_id,
        outcome.version,
        outcome
            .previous_version
            .map_or(String::new(), |v| format!(" (was version {v})"))
    )?;
    Ok(())
}

pub fn run_rollback(args: &RollbackArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let target = args.pg.target()?;
    let outcome = runtime()?.block_on(async {
        let mut client = connect(&target).await?;
        let by = who(args.by.as_deref(), &client).await?;
        anyhow::Ok(
            pg::rollback(
                &mut client,
                &args.strategy,
                args.to,
                &by,
                args.reason.as_deref(),
            )
            .await?,
        )
    })?;
    writeln!(
        out,
        "rolled back {} to the config of version {}: now version {} (was version {}) at {target}",
        outcome.strategy_id,
        outcome.source_version,
        outcome.version,
        outcome.previous_version.unwrap_or_default()
    )?;
    Ok(())
}

pub fn run_configs(args: &ConfigsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let target = args.pg.target()?;
    let rows: Vec<ConfigRow> = runtime()?.block_on(async {
        let client = connect(&target).await?;
        pg::check_schema(&client).await?;
        let rows = if args.history {
            pg::history(&client, args.strategy.as_deref()).await?
        } else {
            let mut rows = pg::list_active(&client).await?;
            if let Some(s) = &args.strategy {
                rows.retain(|r| &r.strategy_id == s);
            }
            rows
        };
        anyhow::Ok(rows)
    })?;
    if args.json {
        let doc = json!({
            "schema": "etrading.configs/1",
            "kind": if args.history { "history" } else { "active" },
            "configs": rows,
        });
        serde_json::to_writer(&mut *out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(
            out,
            "{}",
            if args.history {
                "no promotions yet"
            } else {
                "no active configs"
            }
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:>3} {:<8} {:>4} {:<20} {:>6} {:>5} {:<8} {:<16} {:<27} by",
        "strategy",
        "ver",
        "action",
        "from",
        "study",
        "trial",
        "lev",
        "margin",
        "objective",
        "promoted at"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<16} {:>3} {:<8} {:>4} {:<20} {:>6} {:>5} {:<8} {:<16} {:<27} {}{}",
            r.strategy_id,
            r.version,
            r.action,
            r.source_version,
            r.study_name,
            r.trial_number,
            r.leverage,
            r.margin_mode,
            format!(
                "{}={}",
                r.objective_name,
                r.objective_value
                    .map_or("-".to_string(), |v| format!("{v:.4}"))
            ),
            r.promoted_at,
            r.promoted_by,
            if r.forced.as_array().is_some_and(|a| !a.is_empty()) {
                " (forced)"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}
