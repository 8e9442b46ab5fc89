//! `etrading study list|show|best|export`: reading Optuna-compatible study files (ours or
//! Optuna's).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use etrading_db::study::{
    self, JsonValue, Study, StudyFile, Trial, TrialState, param_json, python_float,
};
use etrading_reports::table::{Batch, Cell, ColumnType, Field, TableWriter};

#[derive(Debug, Subcommand)]
pub enum StudyCommand {
    /// Every study of the file: trials per state and the best value.
    List(ListArgs),
    /// One study: its attributes, trials per state, and its best trials.
    Show(ShowArgs),
    /// The best trial of a study: value, params and attributes.
    Best(NameArgs),
    /// Every trial of a study as CSV, JSON or Parquet (columns as Optuna's
    /// `trials_dataframe`; Parquet needs --out).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct StorageArg {
    /// The study file: `sqlite:///PATH` (relative) or `sqlite:////ABS/PATH`.
    #[arg(long, default_value = "sqlite:///db/optimization_study.db")]
    pub storage: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub storage: StorageArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The study's name.
    pub name: String,
    #[command(flatten)]
    pub storage: StorageArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The study's name.
    pub name: String,
    #[command(flatten)]
    pub storage: StorageArg,
    /// How many of the best trials to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The study's name.
    pub name: String,
    #[command(flatten)]
    pub storage: StorageArg,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
    Parquet,
}

pub fn run(cmd: StudyCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        StudyCommand::List(args) => list(&args, out),
        StudyCommand::Show(args) => show(&args, out),
        StudyCommand::Best(args) => best(&args, out),
        StudyCommand::Export(args) => export(&args, out),
    }
}

fn open(storage: &StorageArg) -> anyhow::Result<StudyFile> {
    let path = study::parse_storage_url(&storage.storage)?;
    Ok(StudyFile::open(&path)?)
}

fn value_text(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.6}"))
}

fn list(args: &ListArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let file = open(&args.storage)?;
    let studies = file.studies()?;
    if args.json {
        let doc = json!({
            "schema": "etrading.study-list/1",
            "storage": file.path().display().to_string(),
            "studies": studies.iter().map(|s| json!({
                "name": s.name,
                "directions": s.directions.iter().map(|d| d.as_str().to_lowercase()).collect::<Vec<_>>(),
                "trials": s.n_trials,
                "states": s.states.iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "best_value": s.best_value.filter(|v| v.is_finite()),
            })).collect::<Vec<_>>(),
        });
        serde_json::to_writer(&mut *out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<32} {:<9} {:>8} {:>9} {:>8} {:>6} {:>8} {:>14}",
        "study", "direction", "trials", "complete", "pruned", "fail", "running", "best"
    )?;
    for s in &studies {
        let count = |state| s.states.get(&state).copied().unwrap_or(0);
        writeln!(
            out,
            "{:<32} {:<9} {:>8} {:>9} {:>8} {:>6} {:>8} {:>14}",
            s.name,
            s.directions
                .iter()
                .map(|d| d.as_str().to_lowercase())
                .collect::<Vec<_>>()
                .join(","),
            s.n_trials,
            count(TrialState::Complete),
            count(TrialState::Pruned),
            count(TrialState::Fail),
            count(TrialState::Running),
            value_text(s.best_value)
        )?;
    }
    Ok(())
}

fn params_text(trial: &Trial) -> String {
    trial
        .params
        .iter()
        .map(|p| format!("{}={}", p.name, p.value))
        .collect::<Vec<_>>()
        .join(" ")
}

fn show(args: &ShowArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let file = open(&args.storage)?;
    let study = file.load(&args.name)?;
    writeln!(out, "study    {} (id {})", study.name, study.study_id)?;
    writeln!(
        out,
        "direction {}",
        study
            .directions
            .iter()
            .map(|d| d.as_str().to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    for (key, value) in &study.user_attrs {
        if key == "spec" {
            continue;
        }
        writeln!(out, "attr     {key} = {value}")?;
    }
    let counts = study.state_counts();
    writeln!(
        out,
        "trials   {} ({})",
        study.trials.len(),
        counts
            .iter()
            .map(|(s, n)| format!("{} {n}", s.as_str().to_lowercase()))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    let ranked = ranked_complete(&study);
    writeln!(out)?;
    writeln!(out, "{:>7} {:>14}  params", "number", "value")?;
    for trial in ranked.iter().take(args.top) {
        writeln!(
            out,
            "{:>7} {:>14}  {}",
            trial.number,
            value_text(trial.value()),
            params_text(trial)
        )?;
    }
    Ok(())
}

/// COMPLETE trials, best first (ties by number).
fn ranked_complete(study: &Study) -> Vec<&Trial> {
    let maximize = study
        .directions
        .first()
        .is_none_or(|d| *d == study::Direction::Maximize);
    let mut ranked: Vec<&Trial> = study
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.value().is_some_and(|v| !v.is_nan()))
        .collect();
    ranked.sort_by(|a, b| {
        let (va, vb) = (a.value().unwrap_or(0.0), b.value().unwrap_or(0.0));
        let order = if maximize {
            vb.total_cmp(&va)
        } else {
            va.total_cmp(&vb)
        };
        order.then(a.number.cmp(&b.number))
    });
    ranked
}

fn attrs_json(attrs: &[(String, JsonValue)]) -> serde_json::Value {
    serde_json::Value::Object(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_serde()))
            .collect(),
    )
}

fn trial_json(trial: &Trial) -> serde_json::Value {
    json!({
        "number": trial.number,
        "state": trial.state.as_str(),
        "values": trial.values.iter().map(|v| v.is_finite().then_some(*v)).collect::<Vec<_>>(),
        "datetime_start": trial.datetime_start,
        "datetime_complete": trial.datetime_complete,
        "params": trial.params.iter().map(|p| (p.name.clone(), param_json(&p.value).to_serde())).collect::<serde_json::Map<_, _>>(),
        "user_attrs": attrs_json(&trial.user_attrs),
        "system_attrs": attrs_json(&trial.system_attrs),
    })
}

fn best(args: &NameArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let file = open(&args.storage)?;
    let study = file.load(&args.name)?;
    let Some(trial) = study.best_trial() else {
        bail!("study {:?} has no COMPLETE trial", study.name);
    };
    // The deflated Sharpe ratio `etrading optimize` stored, if it is this trial's.
    let deflated = study
        .user_attr(crate::optimize_cmd::DEFLATED_SHARPE_ATTR)
        .and_then(|v| match v {
            JsonValue::Object(fields) => Some(fields),
            _ => None,
        });
    let field = |name: &str| {
        deflated
            .and_then(|f| f.iter().find(|(k, _)| k == name))
            .map(|(_, v)| match v {
                JsonValue::Int(i) => *i as f64,
                JsonValue::Float(x) => *x,
                _ => f64::NAN,
            })
    };
    // Stored for a trial number (optimize) or a grid point (sweep --study).
    let grid_index = match trial.system_attr("grid_index") {
        Some(JsonValue::Int(i)) => Some(*i as f64),
        _ => None,
    };
    let stored_for = field("trial").or(field("grid_index"));
    let is_this = match (field("trial"), field("grid_index")) {
        (Some(n), _) => n == trial.number as f64,
        (None, Some(g)) => Some(g) == grid_index,
        (None, None) => false,
    };
    let dsr = field("dsr").filter(|_| is_this);
    if args.json {
        let mut doc = trial_json(trial);
        doc["schema"] = json!("etrading.study-best/1");
        doc["study"] = json!(study.name);
        doc["dsr"] = json!(dsr.filter(|d| d.is_finite()));
        serde_json::to_writer(&mut *out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "study    {}", study.name)?;
    writeln!(
        out,
        "trial    {} ({})",
        trial.number,
        trial.state.as_str().to_lowercase()
    )?;
    writeln!(out, "value    {}", value_text(trial.value()))?;
    for p in &trial.params {
        writeln!(out, "param    {} = {}", p.name, p.value)?;
    }
    for (key, value) in &trial.user_attrs {
        writeln!(out, "attr     {key} = {value}")?;
    }
    match (dsr, stored_for) {
        (Some(d), _) => writeln!(
            out,
            "dsr      {d:.3}: deflated Sharpe ratio as the best of {} trials (expected best \
             Sharpe {:.2}), stored by etrading optimize or sweep --study",
            field("trials").unwrap_or(f64::NAN),
            field("expected_max_sharpe").unwrap_or(f64::NAN)
        )?,
        (None, Some(_)) => writeln!(
            out,
            "dsr      stored for another trial, which is no longer the best: a new \
             `etrading optimize --resume` or `sweep --study` computes it again"
        )?,
        (None, None) => {}
    }
    Ok(())
}

fn export(args: &ExportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let file = open(&args.storage)?;
    let study = file.load(&args.name)?;
    let mut buf: Vec<u8> = Vec::new();
    match args.format {
        ExportFormat::Json => {
            let doc = json!({
                "schema": "etrading.study-export/1",
                "study": study.name,
                "directions": study.directions.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
                "user_attrs": attrs_json(&study.user_attrs),
                "trials": study.trials.iter().map(trial_json).collect::<Vec<_>>(),
            });
            serde_json::to_writer(&mut buf, &doc)?;
            buf.push(b'\n');
        }
        ExportFormat::Csv => write_csv(&study, &mut buf)?,
        ExportFormat::Parquet => {
            let Some(path) = &args.out else {
                bail!("--format parquet writes a binary file: give --out FILE.parquet");
            };
            let (tmp, rows) = write_parquet(&study, path)?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
            writeln!(
                out,
                "wrote {rows} trials of study {:?} to {}",
                study.name,
                path.display()
            )?;
            return Ok(());
        }
    }
    match &args.out {
        Some(path) => {
            let mut tmp = temp_beside(path)?;
            tmp.write_all(&buf)?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => out.write_all(&buf)?,
    }
    Ok(())
}

/// A temporary file in the folder of `path`, persisted over it once complete.
fn temp_beside(path: &std::path::Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))
}

/// The Parquet column type of cells that are all of one JSON kind: ints, numbers (ints and
/// floats), booleans; anything else (strings, mixed kinds, arrays, objects) is text, as in the
/// CSV export. Nulls fit every type.
fn column_type<'a>(values: impl Iterator<Item = &'a JsonValue>) -> ColumnType {
    let (mut ints, mut floats, mut bools, mut other) = (0, 0, 0, 0);
    for v in values {
        match v {
            JsonValue::Null => {}
            JsonValue::Int(_) => ints += 1,
            JsonValue::Float(_) => floats += 1,
            JsonValue::Bool(_) => bools += 1,
            _ => other += 1,
        }
    }
    match (ints, floats, bools, other) {
        (_, 0, 0, 0) => ColumnType::Int64,
        (_, _, 0, 0) => ColumnType::Float64,
        (0, 0, _, 0) => ColumnType::Bool,
        _ => ColumnType::Utf8,
    }
}

/// The cell of a JSON value in a column of type `kind` (text as in the CSV export).
fn json_cell(value: Option<&JsonValue>, kind: ColumnType) -> Cell {
    match (value, kind) {
        (None | Some(JsonValue::Null), _) => Cell::Null,
        (Some(JsonValue::Int(i)), ColumnType::Int64 | ColumnType::Float64) => Cell::Int(*i),
        (Some(JsonValue::Float(x)), ColumnType::Float64) => Cell::Float(*x),
        (Some(JsonValue::Bool(b)), ColumnType::Bool) => Cell::Bool(*b),
        (Some(JsonValue::Str(s)), _) => Cell::Str(s.clone()),
        (Some(other), _) => Cell::Str(other.dumps()),
    }
}

/// The study as Parquet, with the CSV export's columns (Optuna's `trials_dataframe` names)
/// typed: `number` int64, `value` double, the datetimes and `state` text, each param and user
/// attribute typed by the values it holds ([`column_type`]). Written to a temporary file
/// beside `path`; returns it with the row count.
fn write_parquet(
    study: &Study,
    path: &std::path::Path,
) -> anyhow::Result<(tempfile::NamedTempFile, u64)> {
    let params: BTreeSet<&str> = study
        .trials
        .iter()
        .flat_map(|t| t.params.iter().map(|p| p.name.as_str()))
        .collect();
    let attrs: BTreeSet<&str> = study
        .trials
        .iter()
        .flat_map(|t| t.user_attrs.iter().map(|(k, _)| k.as_str()))
        .collect();
    let param_json_of = |t: &Trial, p: &str| t.param(p).map(|tp| param_json(&tp.value));
    let param_types: Vec<ColumnType> = params
        .iter()
        .map(|p| {
            let values: Vec<JsonValue> = study
                .trials
                .iter()
                .filter_map(|t| param_json_of(t, p))
                .collect();
            column_type(values.iter())
        })
        .collect();
    let attr_types: Vec<ColumnType> = attrs
        .iter()
        .map(|a| column_type(study.trials.iter().filter_map(|t| t.user_attr(a))))
        .collect();
    let mut fields = vec![
        Field::new("number", ColumnType::Int64),
        Field::new("value", ColumnType::Float64),
        Field::new("datetime_start", ColumnType::Utf8),
        Field::new("datetime_complete", ColumnType::Utf8),
    ];
    fields.extend(
        params
            .iter()
            .zip(&param_types)
            .map(|(p, &kind)| Field::new(format!("params_{p}"), kind)),
    );
    fields.extend(
        attrs
            .iter()
            .zip(&attr_types)
            .map(|(a, &kind)| Field::new(format!("user_attrs_{a}"), kind)),
    );
    fields.push(Field::new("state", ColumnType::Utf8));
    let mut batch = Batch::new(&fields);
    let text = |s: &Option<String>| s.clone().map_or(Cell::Null, Cell::Str);
    for trial in &study.trials {
        let mut row = vec![
            Cell::Int(trial.number),
            trial.value().map_or(Cell::Null, Cell::Float),
            text(&trial.datetime_start),
            text(&trial.datetime_complete),
        ];
        for (p, &kind) in params.iter().zip(&param_types) {
            row.push(json_cell(param_json_of(trial, p).as_ref(), kind));
        }
        for (a, &kind) in attrs.iter().zip(&attr_types) {
            row.push(json_cell(trial.user_attr(a), kind));
        }
        row.push(Cell::Str(trial.state.as_str().to_string()));
        batch.push_row(row)?;
    }
    let tmp = temp_beside(path)?;
    let file = tmp
        .as_file()
        .try_clone()
        .with_context(|| format!("opening {}", tmp.path().display()))?;
    let mut writer = TableWriter::parquet(path.display().to_string(), file, fields)?;
    writer.write_batch(&batch)?;
    let rows = writer.finish()?;
    Ok((tmp, rows))
}

/// Optuna's `trials_dataframe` columns: number, value, datetime_start, datetime_complete,
/// `params_<name>`..., `user_attrs_<key>`..., state.
fn write_csv(study: &Study, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let params: BTreeSet<&str> = study
        .trials
        .iter()
        .flat_map(|t| t.params.iter().map(|p| p.name.as_str()))
        .collect();
    let attrs: BTreeSet<&str> = study
        .trials
        .iter()
        .flat_map(|t| t.user_attrs.iter().map(|(k, _)| k.as_str()))
        .collect();
    let mut header = vec![
        "number".to_string(),
        "value".to_string(),
        "datetime_start".to_string(),
        "datetime_complete".to_string(),
    ];
    header.extend(params.iter().map(|p| format!("params_{p}")));
    header.extend(attrs.iter().map(|a| format!("user_attrs_{a}")));
    header.push("state".to_string());
    let mut lines = vec![
        header
            .iter()
            .map(|h| csv_field(h))
            .collect::<Vec<_>>()
            .join(","),
    ];
    for trial in &study.trials {
        let mut row = vec![
            trial.number.to_string(),
            trial.value().map(python_float).unwrap_or_default(),
            trial.datetime_start.clone().unwrap_or_default(),
            trial.datetime_complete.clone().unwrap_or_default(),
        ];
        for p in &params {
            row.push(
                trial
                    .param(p)
                    .map_or_else(String::new, |tp| match &tp.value {
                        etrading_kernels::spec::ParamValue::Str(s) => s.clone(),
                        other => param_json(other).dumps(),
                    }),
            );
        }
        for a in &attrs {
            row.push(trial.user_attr(a).map_or_else(String::new, |v| match v {
                JsonValue::Str(s) => s.clone(),
                JsonValue::Null => String::new(),
                other => other.dumps(),
            }));
        }
        row.push(trial.state.as_str().to_string());
        lines.push(
            row.iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    for line in lines {
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
    }
    Ok(())
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[derive(Debug, Args)]
pub struct BenchStudyArgs {
    /// Trials to persist.
    #[arg(long, default_value_t = 200_000)]
    pub trials: usize,
    /// Trials per batch (one start and one finish message each, as `etrading optimize`).
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Walk-forward windows whose attributes each trial carries (10 attributes per window:
    /// 5 for the IS and 5 for the OOS part). 0 is the shape of examples/rsi_ema.toml, which
    /// has no `[walk_forward]`.
    #[arg(long, default_value_t = 0)]
    pub windows: usize,
    /// The study file (a temporary file by default, removed afterwards).
    #[arg(long)]
    pub storage: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Persists synthetic trials shaped as `etrading optimize` writes them for
/// examples/rsi_ema.toml (5 params; metrics, provenance and per-window attributes) through the
/// writer thread: RUNNING inserts per batch, then the outcomes, timed until the last commit.
pub fn bench_study(args: &BenchStudyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    use etrading_db::study::{
        Direction, NewTrial, OpenMode, StudyOptions, StudyWriter, TrialOutcome,
    };
    use etrading_kernels::spec::{Distribution, ParamValue};
    if args.trials == 0 || args.batch == 0 {
        bail!("--trials and --batch must be at least 1");
    }
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let path = match &args.storage {
        Some(url) => study::parse_storage_url(url)?,
        None => tmp.path().join("bench.db"),
    };
    let int = |low, high, step| Distribution::Int {
        low,
        high,
        step,
        log: false,
    };
    let cat = |v: &[i64]| Distribution::Categorical {
        choices: v.iter().map(|&x| ParamValue::Int(x)).collect(),
    };
    let params = vec![
        ("rsi_window".to_string(), cat(&[14, 21])),
        ("rsi_lower".to_string(), int(20, 40, 5)),
        ("rsi_upper".to_string(), int(60, 80, 5)),
        ("ema_long".to_string(), cat(&[50, 100, 200])),
        ("leverage".to_string(), int(1, 10, 1)),
    ];
    let name = format!("bench-{}", std::process::id());
    let started = std::time::Instant::now();
    let (writer, _) = StudyWriter::open(
        &path,
        StudyOptions {
            name: name.clone(),
            direction: Direction::Maximize,
            mode: OpenMode::Create,
            params,
            user_attrs: Vec::new(),
            identity: Vec::new(),
        },
    )?;
    let metric_keys = [
        "total_return",
        "cagr",
        "max_drawdown",
        "calmar",
        "sharpe",
        "win_rate",
        "fees",
        "funding",
        "full_objective",
    ];
    let mut window_keys = Vec::new();
    for w in 0..args.windows {
        for kind in ["is", "oos"] {
            for metric in ["total_return", "max_drawdown", "objective"] {
                window_keys.push(format!("{kind}_{w}_{metric}"));
            }
            window_keys.push(format!("{kind}_{w}_n_trades"));
            window_keys.push(format!("{kind}_{w}_liquidations"));
        }
    }
    let hash = JsonValue::Str("0".repeat(64));
    let mut attrs_per_trial = 0;
    let mut done = 0;
    while done < args.trials {
        let n = args.batch.min(args.trials - done);
        let trials: Vec<NewTrial> = (0..n)
            .map(|i| {
                let k = (done + i) as f64;
                NewTrial {
                    params: vec![
                        k % 2.0,
                        20.0 + 5.0 * (k % 5.0),
                        60.0,
                        k % 3.0,
                        1.0 + k % 10.0,
                    ],
                    system_attrs: Vec::new(),
                }
            })
            .collect();
        let handles = writer.start_trials(trials)?;
        let outcomes: Vec<TrialOutcome> = handles
            .iter()
            .map(|h| {
                let x = h.number as f64 * 1e-4;
                let mut user_attrs: Vec<(String, JsonValue)> = metric_keys
                    .iter()
                    .map(|k| (k.to_string(), JsonValue::Float(x + 0.125)))
                    .collect();
                user_attrs.extend(
                    window_keys
                        .iter()
                        .map(|k| (k.clone(), JsonValue::Float(x - 0.25))),
                );
                user_attrs.push(("n_trades".into(), JsonValue::Int(42)));
                user_attrs.push(("liquidations".into(), JsonValue::Int(0)));
                user_attrs.push(("leverage".into(), JsonValue::Int(3)));
                user_attrs.push(("data_hash".into(), hash.clone()));
                user_attrs.push(("engine_version".into(), JsonValue::Str("0.1.0".into())));
                user_attrs.push(("talib_version".into(), JsonValue::Str("0.4.0".into())));
                attrs_per_trial = user_attrs.len();
                TrialOutcome {
                    trial_id: h.trial_id,
                    state: TrialState::Complete,
                    value: Some(x),
                    user_attrs,
                }
            })
            .collect();
        writer.finish_trials(outcomes)?;
        done += n;
    }
    let stats = writer.close()?;
    let seconds = started.elapsed().as_secs_f64();
    let per_second = args.trials as f64 / seconds;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if args.json {
        let doc = json!({
            "schema": "etrading.bench-study/1",
            "trials": args.trials,
            "batch": args.batch,
            "params_per_trial": 5,
            "user_attrs_per_trial": attrs_per_trial,
            "seconds": seconds,
            "trials_per_second": per_second,
            "transactions": stats.transactions,
            "file_bytes": bytes,
            "target_trials_per_second": 20_000,
        });
        serde_json::to_writer(&mut *out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "study bench: {} trials (5 params, {attrs_per_trial} user attributes each) in batches of {}, RUNNING then COMPLETE, WAL + synchronous=NORMAL",
        args.trials, args.batch
    )?;
    writeln!(
        out,
        "persisted in {seconds:.2} s: {per_second:.0} trials/s ({} transactions, file {:.1} MiB; target >= 20,000 trials/s)",
        stats.transactions,
        bytes as f64 / (1 << 20) as f64
    )?;
    Ok(())
}
