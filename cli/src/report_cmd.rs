//! `etrading report`: self-contained HTML reports. `--study NAME` writes `DIR/index.html` (the
//! study browser over every trial, `etrading.study/1`) and one page per chosen trial
//! (`DIR/{strategy_id}-trial-N.html`, `etrading.run/1`: the trial's params re-run with the
//! reference engine); `--spec SPEC --set k=v ...` writes one page for one run
//! (`DIR/{strategy_id}.html`). Each page embeds the viewer (wasm as base64 and its JS glue,
//! compiled into this binary by viewer/build.rs) and its data as compact JSON whose columns and
//! per-bar curves are packed (little-endian binary in base64, dictionary codes where few values
//! repeat; the schemas' `packed` form): no server, no network, it opens from `file://`. When
//! the viewer has drawn, the page's `<body>` gets `data-ready` (milliseconds since navigation,
//! what tests/browser/bench-viewer.mjs measures).

mod optuna;

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use etrading_data::Panel;
use etrading_kernels::batch::WindowPlan;
use etrading_kernels::reference::{self, ENGINE_VERSION};
use etrading_kernels::search::{metric_attributes, score_trial};
use etrading_kernels::spec::{ParamSet, ParamValue, Spec};
use etrading_reports::backtest::Provenance;
use etrading_reports::run::{
    Exact, RunMarket, RunReport, TrialRef, run_report, windows_from_attrs,
};
use etrading_reports::study::StudyExport;

use crate::backtest_cmd::{
    bracket_tables, funding_of, load_for_spec, market, param_set, read_spec, read_spec_and_text,
    talib_version,
};
use crate::data_cmd::DataSelection;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The study to report on (its trials table, heatmaps and scatters, and pages for the
    /// chosen trials).
    #[arg(long)]
    pub study: Option<String>,
    /// The study's SQLite file in Optuna's schema: `sqlite:///PATH` or a path.
    #[arg(long, default_value = "sqlite:///db/optimization_study.db")]
    pub storage: String,
    /// Write a page for this trial number (repeatable).
    #[arg(long, conflicts_with = "top")]
    pub trial: Vec<u64>,
    /// Write pages for the K best trials by the first objective [default: 1].
    #[arg(long)]
    pub top: Option<usize>,
    /// Output folder.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// The strategy spec: without --study, the spec of the single run to report. With
    /// --study the spec text the study stored is used; a --spec whose text differs from it is
    /// refused unless --force (a study that stored no text, as Optuna's own, needs --spec or
    /// reads the file its `spec_file` attribute names).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// With --study: report even when --spec differs from the stored spec text, or when the
    /// data differ from the data the study was run on (the pages then say what they re-ran).
    #[arg(long)]
    pub force: bool,
    /// A param value for the single run, `name=value` (without --study).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Market data: files or folders.
    #[arg(long, default_value = "data/sample")]
    pub data: Vec<PathBuf>,
    #[command(flatten)]
    pub select: DataSelection,
    /// Starting wallet balance, USDT [default: the study's `initial_capital` attribute, else
    /// 10000].
    #[arg(long)]
    pub capital: Option<f64>,
    /// Leverage brackets from a JSON file (Binance's leverageBracket format).
    #[arg(long)]
    pub brackets: Option<PathBuf>,
}

/// The viewer compiled into this binary, or a clear error saying how to build it.
fn viewer() -> anyhow::Result<etrading_viewer::dist::Viewer> {
    etrading_viewer::dist::EMBEDDED.context(
        "this etrading binary was built without the report viewer: run `bash scripts/build-viewer.sh` \
         (it writes target/viewer-dist), then rebuild etrading (cargo build -p etrading-cli)",
    )
}

pub fn run(args: &ReportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let viewer = viewer()?;
    if let Some(c) = args.capital
        && !(c.is_finite() && c > 0.0)
    {
        bail!("--capital must be a positive number of USDT");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    match &args.study {
        Some(name) => study_report(args, name, viewer, out),
        None => {
            let Some(spec_path) = &args.spec else {
                bail!(
                    "give --study NAME (a study's report) or --spec SPEC --set k=v ... (one run's)"
                );
            };
            if !args.trial.is_empty() || args.top.is_some() {
                bail!("--trial and --top choose trials of a study: give --study NAME");
            }
            let spec = read_spec(spec_path)?;
            let params = param_set(&spec, &args.set)?;
            let runner = Runner::new(args, spec_path, spec, args.capital.unwrap_or(10_000.0))?;
            let report = runner.run(&params, None, Vec::new())?;
            let file = format!("{}.html", safe_name(&report.provenance.strategy_id));
            write_page(
                &args.out.join(&file),
                &report.provenance.strategy_id,
                "show_run",
                report.to_packed_json(),
                viewer,
            )?;
            writeln!(out, "{}", args.out.join(file).display())?;
            Ok(())
        }
    }
}

fn study_report(
    args: &ReportArgs,
    name: &str,
    viewer: etrading_viewer::dist::Viewer,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let path = etrading_db::study::parse_storage_url(&args.storage)?;
    let mut export = optuna::read_study(&path, name)?;
    let rows: Vec<usize> = if args.trial.is_empty() {
        export.top(args.top.unwrap_or(1))
    } else {
        args.trial
            .iter()
            .map(|&n| {
                export
                    .row_of(n)
                    .with_context(|| format!("study {name:?} has no trial number {n}"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let mut written = Vec::new();
    if !rows.is_empty() {
        let (spec_path, spec) = study_spec(args, name, &export)?;
        let capital = args
            .capital
            .or_else(|| {
                export
                    .user_attrs
                    .get("initial_capital")
                    .and_then(serde_json::Value::as_f64)
            })
            .unwrap_or(10_000.0);
        let runner = Runner::new(args, &spec_path, spec, capital)?;
        if let Some(recorded) = export.user_attrs.get("data_hash").and_then(|v| v.as_str())
            && recorded != runner.panel.content_hash()
        {
            let what = format!(
                "study {name:?} was run on data sha256:{recorded}; this report would re-run its trials on sha256:{}",
                runner.panel.content_hash()
            );
            if !args.force {
                bail!(
                    "{what}, so its pages would not show the trials' own runs: pass the study's --data and data options (or --force to report on these data)"
                );
            }
            eprintln!("warning: {what} (--force)");
        }
        for row in rows {
            let number = export.number[row];
            let sets: Vec<String> = export
                .param_texts(row)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let params = param_set(&runner.spec, &sets).with_context(|| {
                format!(
                    "trial {number}: its params do not fit {}",
                    spec_path.display()
                )
            })?;
            let trial = TrialRef {
                study_name: name.to_string(),
                number,
                state: export.state_name(row).to_string(),
                values: export
                    .values
                    .iter()
                    .map(|c| Exact(c.values[row].0))
                    .collect(),
            };
            let windows = windows_from_attrs(export.metrics_of(row));
            let report = runner
                .run(&params, Some(trial), windows)
                .with_context(|| format!("re-running trial {number}"))?;
            let file = format!(
                "{}-trial-{number}.html",
                safe_name(&runner.spec.strategy.id)
            );
            let title = format!("{} trial {number}", runner.spec.strategy.id);
            write_page(
                &args.out.join(&file),
                &title,
                "show_run",
                report.to_packed_json(),
                viewer,
            )?;
            export.pages.insert(number.to_string(), file.clone());
            written.push(file);
        }
    }
    let index = args.out.join("index.html");
    write_page(
        &index,
        &format!("study {name}"),
        "show_study",
        serde_json::to_string(&export.packed()),
        viewer,
    )?;
    writeln!(out, "{}", index.display())?;
    for f in written {
        writeln!(out, "{}", args.out.join(f).display())?;
    }
    Ok(())
}

/// The spec a study's trials are re-run with, and the path its pages name: the spec text the
/// study stored (user attribute `spec`, written by `sweep --study` and `optimize`), checked
/// against `--spec` when one is given (refused when it differs, unless `--force`); for a study
/// that stored no text, `--spec` or the file its `spec_file` attribute names.
fn study_spec(
    args: &ReportArgs,
    name: &str,
    export: &StudyExport,
) -> anyhow::Result<(PathBuf, Spec)> {
    let attr = |key: &str| match export.user_attrs.get(key) {
        Some(serde_json::Value::String(v)) => Some(v.as_str()),
        _ => None,
    };
    let recorded_path = attr("spec_file")
        .or_else(|| attr("spec_path"))
        .map(PathBuf::from);
    let Some(stored) = attr("spec") else {
        let Some(path) = args.spec.clone().or(recorded_path) else {
            bail!(
                "study {name:?} records neither its spec text (user attribute `spec`) nor a spec file (`spec_file`); pass --spec SPEC"
            );
        };
        let spec = read_spec(&path)?;
        return Ok((path, spec));
    };
    if let Some(path) = &args.spec {
        let (spec, text) = read_spec_and_text(path)?;
        if text == stored {
            return Ok((path.clone(), spec));
        }
        let line = text
            .lines()
            .zip(stored.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(text.lines().count().min(stored.lines().count()))
            + 1;
        if !args.force {
            bail!(
                "{}: its text differs from the spec study {name:?} was run with (first at line {line}), so its trials would be re-run with other rules; leave out --spec to use the stored text, or pass --force",
                path.display()
            );
        }
        eprintln!(
            "warning: {}: its text differs from the spec study {name:?} was run with (first at line {line}); re-running its trials with it (--force)",
            path.display()
        );
        return Ok((path.clone(), spec));
    }
    let path = recorded_path.unwrap_or_else(|| PathBuf::from(format!("study {name} spec")));
    let label = format!("{} (as stored in study {name:?})", path.display());
    let spec = Spec::parse(&label, stored).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((path, spec))
}

/// Loads the data once and runs param sets of one spec with the reference engine.
struct Runner {
    spec: Spec,
    spec_file: String,
    panel: Panel,
    tables: Vec<etrading_kernels::brackets::BracketTable>,
    brackets_label: String,
    capital: f64,
}

impl Runner {
    fn new(
        args: &ReportArgs,
        spec_path: &Path,
        spec: Spec,
        capital: f64,
    ) -> anyhow::Result<Runner> {
        let panel = load_for_spec(&spec, &args.data, &args.select)?;
        let (tables, brackets_label) = bracket_tables(&panel.symbols, args.brackets.as_ref())?;
        Ok(Runner {
            spec,
            spec_file: spec_path.display().to_string(),
            panel,
            tables,
            brackets_label,
            capital,
        })
    }

    /// Runs `params`. The window table: when the spec has `[walk_forward]`, every window
    /// re-run with the reference engine and named as a study stores them
    /// (`metric_attributes`: `is_0_total_return`, ..., `oos_0_objective`); otherwise
    /// `stored_windows` (a trial's stored attributes, empty for a single run).
    fn run(
        &self,
        params: &ParamSet,
        trial: Option<TrialRef>,
        stored_windows: Vec<etrading_reports::run::WindowRow>,
    ) -> anyhow::Result<RunReport> {
        let spec = &self.spec;
        let resolved = spec
            .resolve(params)
            .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
        let funding = funding_of(&self.panel);
        let bt = reference::run(
            spec,
            &resolved,
            &market(&self.panel, &funding),
            &self.tables,
            self.capital,
        )
        .context("running the backtest")?;
        let p = &self.panel;
        let windows = match &spec.walk_forward {
            Some(wf) => {
                let plan = WindowPlan::walk_forward(wf, &p.open_time, p.interval.ms())
                    .with_context(|| format!("{}: [walk_forward]", spec.file))?;
                let (_, results) = reference::run_windows(
                    spec,
                    &resolved,
                    &market(p, &funding),
                    &self.tables,
                    self.capital,
                    &plan.ranges(),
                )
                .context("running the walk-forward windows")?;
                let metrics: Vec<_> = results.iter().map(|r| r.metrics).collect();
                let leverage = spec.leverage_used(params);
                let score = score_trial(&spec.objective, &plan, &metrics, leverage);
                let attrs = metric_attributes(&plan, &metrics, &score);
                windows_from_attrs(attrs.iter().map(|(k, v)| (k.as_str(), *v)))
            }
            None => stored_windows,
        };
        let provenance = Provenance {
            strategy_id: spec.strategy.id.clone(),
            spec_file: self.spec_file.clone(),
            params: spec
                .params
                .params
                .iter()
                .zip(&params.values)
                .map(|(p, v)| (p.name.clone(), json_value(v)))
                .collect(),
            symbols: p.symbols.clone(),
            interval: p.interval.to_string(),
            first_bar: p.open_time.first().map(|&t| etrading_reports::iso_time(t)),
            last_bar: p.open_time.last().map(|&t| etrading_reports::iso_time(t)),
            bars: p.n_bars() as u64,
            data_hash: p.content_hash(),
            engine_version: ENGINE_VERSION.to_string(),
            talib_version: talib_version(),
            brackets: self.brackets_label.clone(),
            initial_capital: self.capital,
        };
        let closes: Vec<&[f64]> = (0..p.n_symbols()).map(|s| p.bars(s).close).collect();
        Ok(run_report(
            provenance,
            RunMarket {
                open_time: &p.open_time,
                interval_ms: p.interval.ms(),
                close: &closes,
            },
            &bt.result,
            trial,
            windows,
        ))
    }
}

fn json_value(v: &ParamValue) -> serde_json::Value {
    match v {
        ParamValue::Int(i) => (*i).into(),
        ParamValue::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        ParamValue::Bool(b) => (*b).into(),
        ParamValue::Str(s) => s.clone().into(),
    }
}

/// A file name part: letters, digits, `-`, `_` and `.` kept, anything else `_`.
fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

const STYLE: &str = "body{font:13px system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:14px 0 6px}\
.summary,.hint{color:#555;margin:2px 0}.status{margin-left:10px;color:#555}.status.error{color:#c0262d}\
#filter{width:460px;padding:4px}.filter{margin:10px 0}\
.vtable{position:relative;overflow:auto;height:462px;border:1px solid #ccc;background:#fff;max-width:100%}\
.vhead{position:sticky;top:0;display:grid;background:#eef;z-index:1;height:22px;cursor:pointer;font-weight:600}\
.vbody{position:absolute;left:0}.vrow{display:grid;height:22px;cursor:pointer}.vrow:hover{background:#ffd}\
.vcell{padding:3px 6px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;border-bottom:1px solid #eee}\
.charts,.lower{display:flex;flex-wrap:wrap;gap:16px}.chart{background:#fff;border:1px solid #ddd;padding:8px}\
canvas{display:block;background:#fff}.timechart{margin:4px 0;cursor:grab}.controls{margin-bottom:6px}\
.metrics{display:flex;flex-wrap:wrap;gap:6px;margin:10px 0}.metric{background:#fff;border:1px solid #ddd;padding:4px 8px}\
.metric .name{color:#666;margin-right:6px}table.windows{border-collapse:collapse;background:#fff}\
table.windows td,table.windows th{border:1px solid #ddd;padding:3px 8px;text-align:right}";

/// Writes one self-contained page: the data as JSON in a script element (`<` escaped, so the
/// text cannot close it), the wasm-bindgen glue, the wasm as base64, and a call of `entry`.
fn write_page(
    path: &Path,
    title: &str,
    entry: &str,
    data: serde_json::Result<String>,
    viewer: etrading_viewer::dist::Viewer,
) -> anyhow::Result<()> {
    let json = data?.replace('<', "\\u003c");
    let mut html =
        String::with_capacity(json.len() + viewer.wasm.len() * 4 / 3 + viewer.js.len() + 4096);
    let title = title.replace('&', "&amp;").replace('<', "&lt;");
    write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{STYLE}</style></head>\n<body>\n<script type=\"application/json\" id=\"etrading-data\">{json}</script>\n<script>\n{}\n</script>\n<script>\n(function () {{\n  var b64 = \"",
        viewer.js.replace("</script", "<\\/script")
    )?;
    html.push_str(&etrading_reports::run::base64(viewer.wasm));
    write!(
        html,
        "\";\n  var bin = atob(b64), bytes = new Uint8Array(bin.length);\n  for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);\n  wasm_bindgen.initSync({{ module: bytes }});\n  wasm_bindgen.{entry}(document.getElementById(\"etrading-data\").textContent);\n  document.body.setAttribute(\"data-ready\", String(performance.now()));\n}})();\n</script>\n</body></html>\n"
    )?;
    let tmp = path.with_extension("html.part");
    std::fs::write(&tmp, html).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A single run of a spec with `[walk_forward]` gets its window table from re-running
    /// every window (two rolling windows of 60 + 30 days over the 2025 sample data), named as
    /// a study stores them, with the IS/OOS metrics of that window's own account.
    #[test]
    fn walk_forward_windows_are_re_run() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            report: super::ReportArgs,
        }
        let dir = tempfile::tempdir().unwrap();
        let spec_path = dir.path().join("wf.toml");
        let text = std::fs::read_to_string("../examples/rsi_ema.toml").unwrap()
            + "\n[walk_forward]\nmode = \"rolling\"\nwindows = 2\nin_sample = \"60d\"\nout_of_sample = \"30d\"\n";
        std::fs::write(&spec_path, text).unwrap();
        let args = Cli::parse_from(["report", "--data", "../data/sample"]).report;
        let spec = super::read_spec(&spec_path).unwrap();
        let sets = [
            "rsi_window=14",
            "rsi_lower=35",
            "rsi_upper=65",
            "ema_long=100",
            "leverage=2",
        ]
        .map(String::from);
        let params = super::param_set(&spec, &sets).unwrap();
        let runner = super::Runner::new(&args, &spec_path, spec, 10_000.0).unwrap();
        let report = runner.run(&params, None, Vec::new()).unwrap();
        let w = &report.windows;
        assert_eq!(w.iter().map(|r| r.window).collect::<Vec<_>>(), [0, 1]);
        let keys: Vec<&str> = w[0].is.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "liquidations",
                "max_drawdown",
                "n_trades",
                "objective",
                "total_return"
            ]
        );
        assert_eq!(
            w[1].oos.keys().collect::<Vec<_>>(),
            w[0].is.keys().collect::<Vec<_>>()
        );
        // Each window is its own account: fewer trades than the full year (32), some in all.
        let full = report.metrics.n_trades;
        assert_eq!(full, 32);
        let in_windows: f64 = w
            .iter()
            .map(|r| r.is["n_trades"].0 + r.oos["n_trades"].0)
            .sum();
        assert!(in_windows > 0.0);
        for row in w {
            for side in [&row.is, &row.oos] {
                let n = side["n_trades"].0;
                assert!(
                    n >= 0.0 && n < full as f64,
                    "window {}: {n} of {full} trades",
                    row.window
                );
            }
        }
        // Stored attributes are not used when the spec re-runs its windows.
        let stored = etrading_reports::run::windows_from_attrs([("is_7_sharpe", 1.0)]);
        let again = runner.run(&params, None, stored).unwrap();
        assert_eq!(again.windows, report.windows);
    }

    #[test]
    fn names_and_storage() {
        assert_eq!(super::safe_name("rsi ema/1"), "rsi_ema_1");
        let storage = etrading_db::study::parse_storage_url;
        assert_eq!(
            storage("sqlite:///db/x.db").unwrap(),
            std::path::PathBuf::from("db/x.db")
        );
        assert!(storage("postgres://x").is_err());
    }
}
