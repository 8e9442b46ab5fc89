//! `etrading backtest SPEC --set k=v ...`: one reference backtest of a strategy spec on market
//! data, printing its metrics (or metrics and trades as JSON).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use etrading_data::{FundingEvent, Interval, Panel, load_dataset};
use etrading_kernels::brackets::{self, BracketTable};
use etrading_kernels::engine::FundingAt;
use etrading_kernels::reference::{self, ENGINE_VERSION, Market, MarketSymbol};
use etrading_kernels::spec::{ParamDomain, ParamSet, ParamValue, Spec};
use etrading_reports::backtest::{Provenance, report};

use crate::data_cmd::{DataSelection, unverified_warning};
use crate::research::SpecRunArgs;

#[derive(Debug, Args)]
#[command(mut_arg("set", |a| a.help(
    "A param value, `name=value`; every param with more than one value needs one"
)))]
pub struct BacktestArgs {
    #[command(flatten)]
    pub run: SpecRunArgs,
    /// Print metrics and trades as JSON (schema etrading.backtest/1).
    #[arg(long)]
    pub json: bool,
    /// Also write the trades as CSV to this file.
    #[arg(long)]
    pub trades: Option<PathBuf>,
    /// Also write every bar's indicator outputs and the four rule signals as CSV to this file
    /// (one row per symbol and bar; for checks against TA-Lib and other engines).
    #[arg(long, value_name = "FILE")]
    pub signals: Option<PathBuf>,
}

/// Reads and validates a spec file.
pub fn read_spec(path: &PathBuf) -> anyhow::Result<Spec> {
    Ok(read_spec_and_text(path)?.0)
}

/// Reads and validates a spec file; also returns its text as read.
pub fn read_spec_and_text(path: &PathBuf) -> anyhow::Result<(Spec, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading spec {}", path.display()))?;
    let spec =
        Spec::parse(&path.display().to_string(), &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((spec, text))
}

/// One `--set NAME=VALUE` flag: the param's index and the value's text.
pub(crate) fn assignment<'t>(spec: &Spec, text: &'t str) -> anyhow::Result<(usize, &'t str)> {
    let (k, v) = text
        .split_once('=')
        .with_context(|| format!("--set {text:?}: expected NAME=VALUE"))?;
    let Some(index) = spec.params.index_of(k.trim()) else {
        let names: Vec<&str> = spec.params.params.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "--set {text:?}: {} has no param `{}` (its params: {})",
            spec.file,
            k.trim(),
            names.join(", ")
        );
    };
    Ok((index, v.trim()))
}

/// The param set from `--set name=value` flags: every param with one value takes it; the
/// others must be set, to one of their values (or within the bounds of a continuous range).
pub fn param_set(spec: &Spec, sets: &[String]) -> anyhow::Result<ParamSet> {
    let mut given: BTreeMap<&str, &str> = BTreeMap::new();
    for s in sets {
        let (index, v) = assignment(spec, s)?;
        given.insert(spec.params.params[index].name.as_str(), v);
    }
    let mut values = Vec::with_capacity(spec.params.params.len());
    let mut missing = Vec::new();
    for p in &spec.params.params {
        let choices = p.domain.discrete_values();
        let value = match (given.get(p.name.as_str()), &choices) {
            (Some(text), Some(choices)) => choices
                .iter()
                .find(|c| same_value(c, text))
                .cloned()
                .with_context(|| {
                    format!(
                        "--set {}={text}: not one of its values {}",
                        p.name,
                        list(choices)
                    )
                })?,
            (Some(text), None) => {
                let x: f64 = text
                    .parse()
                    .with_context(|| format!("--set {}={text}: expected a number", p.name))?;
                match p.domain.numeric_bounds() {
                    Some((lo, hi)) if x >= lo && x <= hi => ParamValue::Float(x),
                    bounds => bail!("--set {}={text}: outside its range {bounds:?}", p.name),
                }
            }
            (None, Some(choices)) if choices.len() == 1 => choices[0].clone(),
            (None, _) => {
                missing.push(format!(
                    "{} ({})",
                    p.name,
                    choices
                        .as_ref()
                        .map_or_else(|| range_text(&p.domain), |c| list(c))
                ));
                continue;
            }
        };
        values.push(value);
    }
    if !missing.is_empty() {
        bail!(
            "set a value for each of these params with --set NAME=VALUE: {}",
            missing.join("; ")
        );
    }
    Ok(ParamSet { values })
}

pub(crate) fn same_value(v: &ParamValue, text: &str) -> bool {
    match v {
        ParamValue::Int(i) => text.parse::<i64>().is_ok_and(|t| t == *i),
        ParamValue::Float(f) => text
            .parse::<f64>()
            .is_ok_and(|t| (t - f).abs() <= 1e-12 * f.abs().max(1.0)),
        ParamValue::Bool(b) => text.parse::<bool>().is_ok_and(|t| t == *b),
        ParamValue::Str(s) => s == text,
    }
}

fn list(values: &[ParamValue]) -> String {
    let shown: Vec<String> = values.iter().take(12).map(ToString::to_string).collect();
    if values.len() > 12 {
        format!("{} ... {} values", shown.join(", "), values.len())
    } else {
        shown.join(", ")
    }
}

fn range_text(d: &ParamDomain) -> String {
    d.numeric_bounds()
        .map_or_else(|| "no grid".to_string(), |(lo, hi)| format!("{lo} to {hi}"))
}

/// The market columns of a panel, as the kernels read them.
pub fn market<'a>(panel: &'a Panel, funding: &'a [Vec<FundingAt>]) -> Market<'a> {
    Market {
        open_time: &panel.open_time,
        interval_ms: panel.interval.ms(),
        symbols: (0..panel.n_symbols())
            .map(|s| {
                let b = panel.bars(s);
                MarketSymbol {
                    name: &panel.symbols[s],
                    open: b.open,
                    high: b.high,
                    low: b.low,
                    close: b.close,
                    volume: b.volume,
                    mark_open: b.mark_open,
                    mark_high: b.mark_high,
                    mark_low: b.mark_low,
                    funding: &funding[s],
                }
            })
            .collect(),
    }
}

/// Funding events of a panel in the kernels' form.
pub fn funding_of(panel: &Panel) -> Vec<Vec<FundingAt>> {
    panel
        .funding
        .iter()
        .map(|ev: &Vec<FundingEvent>| {
            ev.iter()
                .map(|e| FundingAt {
                    bar: e.bar,
                    rate: e.rate,
                })
                .collect()
        })
        .collect()
}

/// The spec's symbols at its interval from `paths`, aligned.
pub fn load_for_spec(
    spec: &Spec,
    paths: &[PathBuf],
    select: &DataSelection,
) -> anyhow::Result<Panel> {
    let interval: Interval = spec
        .strategy
        .interval
        .parse()
        .with_context(|| format!("{}: [strategy] interval", spec.file))?;
    let mut opts = select.load_options()?;
    // `--symbols` narrows the spec's symbols (it cannot add one the spec does not trade).
    let symbols = match &select.symbols {
        Some(list) => {
            if let Some(extra) = list.iter().find(|s| !spec.strategy.symbols.contains(s)) {
                bail!(
                    "--symbols {extra}: {} trades only {}",
                    spec.file,
                    spec.strategy.symbols.join(", ")
                );
            }
            list.clone()
        }
        None => spec.strategy.symbols.clone(),
    };
    opts.symbols = Some(symbols.clone());
    let explicit = opts.interval.is_some() || opts.resample.is_some();
    if !explicit {
        // The spec's interval, else resampled from the coarsest finer interval dividing it.
        opts.interval = Some(interval);
    }
    let mut ds = load_dataset(paths, &opts).context("loading market data")?;
    if ds.klines.is_empty() && !explicit {
        let mut all = opts.clone();
        all.interval = None;
        let found = load_dataset(paths, &all)
            .context("loading market data")?
            .intervals();
        if let Some(&src) = found.iter().rev().find(|s| interval.ms() % s.ms() == 0) {
            opts.interval = Some(src);
            opts.resample = Some(interval);
            ds = load_dataset(paths, &opts).context("loading market data")?;
        }
    }
    if ds.klines.is_empty() {
        bail!(
            "{} asks for {} klines of {}; the data under {} has none at that interval or finer",
            spec.file,
            spec.strategy.interval,
            spec.strategy.symbols.join(", "),
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    if let Some(warning) = unverified_warning(&ds) {
        eprintln!("warning: {warning}");
    }
    let panel = ds
        .panel(
            Some(opts.resample.unwrap_or(interval)),
            select.align_policy(),
            select.gap_policy(),
        )
        .context("aligning symbols")?;
    let missing: Vec<&String> = symbols
        .iter()
        .filter(|s| panel.symbol_index(s).is_none())
        .collect();
    if !missing.is_empty() {
        bail!(
            "no {} klines for {} under {}",
            interval,
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if panel.n_bars() == 0 {
        bail!("the symbols have no bar time in common in the data selected");
    }
    Ok(panel)
}

/// The bracket tables for `symbols`: the override file's, else the bundled ones.
pub fn bracket_tables(
    symbols: &[String],
    file: Option<&PathBuf>,
) -> anyhow::Result<(Vec<BracketTable>, String)> {
    let (overrides, label) = match file {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            (
                brackets::parse_json(&text, &f.display().to_string())?,
                format!("file {}", f.display()),
            )
        }
        None => (Vec::new(), format!("bundled {}", brackets::BUNDLED_AS_OF)),
    };
    Ok((brackets::resolve(symbols, &overrides)?, label))
}

/// TA-Lib's version without the build timestamp it appends (`0.4.0 (Nov 21 2026 06:48:05)`),
/// so that rebuilding the same sources records the same version.
pub fn talib_version() -> String {
    #[cfg(feature = "talib")]
    return etrading_kernels::talib::version()
        .split(" (")
        .next()
        .unwrap_or_default()
        .to_string();
    #[cfg(not(feature = "talib"))]
    return "none".to_string();
}

pub fn run(args: &BacktestArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let run = &args.run;
    let capital = run.capital()?;
    let spec = read_spec(&run.spec)?;
    let params = param_set(&spec, &run.set)?;
    let resolved = spec
        .resolve(&params)
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec.file))?;
    let panel = load_for_spec(&spec, &run.data, &run.select)?;
    let funding = funding_of(&panel);
    let (tables, brackets_label) = bracket_tables(&panel.symbols, run.brackets.as_ref())?;
    let bt = reference::run(
        &spec,
        &resolved,
        &market(&panel, &funding),
        &tables,
        capital,
    )
    .context("running the backtest")?;
    let provenance = Provenance {
        strategy_id: spec.strategy.id.clone(),
        spec_file: run.spec.display().to_string(),
        params: spec
            .params
            .params
            .iter()
            .zip(&params.values)
            .map(|(p, v)| (p.name.clone(), json_value(v)))
            .collect(),
        symbols: panel.symbols.clone(),
        interval: panel.interval.to_string(),
        first_bar: panel
            .open_time
            .first()
            .map(|&t| etrading_reports::iso_time(t)),
        last_bar: panel
            .open_time
            .last()
            .map(|&t| etrading_reports::iso_time(t)),
        bars: panel.n_bars() as u64,
        data_hash: panel.content_hash(),
        engine_version: ENGINE_VERSION.to_string(),
        talib_version: talib_version(),
        brackets: brackets_label,
        initial_capital: capital,
    };
    let rep = report(provenance, &bt.result);
    if let Some(path) = &args.trades {
        write_trades_csv(path, &rep.trades)?;
    }
    if let Some(path) = &args.signals {
        write_signals_csv(path, &resolved, &panel, &bt.signals)?;
    }
    if args.json {
        serde_json::to_writer(&mut *out, &rep)?;
        writeln!(out)?;
        return Ok(());
    }
    let p = &rep.provenance;
    let m = &rep.metrics;
    writeln!(out, "strategy {} ({})", p.strategy_id, p.spec_file)?;
    writeln!(out, "params   {}", spec.params.describe(&params))?;
    writeln!(
        out,
        "data     {} x {} bars {} .. {}, sha256:{}",
        p.symbols.join(","),
        p.bars,
        p.first_bar.as_deref().unwrap_or("-"),
        p.last_bar.as_deref().unwrap_or("-"),
        p.data_hash
    )?;
    writeln!(
        out,
        "engine   {}, TA-Lib {}, brackets {}",
        p.engine_version, p.talib_version, p.brackets
    )?;
    writeln!(out)?;
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
    let num = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    let usd = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
    let rows = [
        ("final equity (USDT)", usd(m.final_equity)),
        ("total return", pct(m.total_return)),
        ("CAGR", pct(m.cagr)),
        ("APR", pct(m.apr)),
        ("max drawdown", pct(m.max_drawdown)),
        ("Calmar", num(m.calmar)),
        ("Sharpe", num(m.sharpe)),
        ("Sortino", num(m.sortino)),
        ("trades", m.n_trades.to_string()),
        ("win rate", pct(m.win_rate)),
        ("profit factor", num(m.profit_factor)),
        ("exposure", pct(m.exposure)),
        ("fees paid (USDT)", usd(m.fees_paid)),
        ("funding paid (USDT)", usd(m.funding_paid)),
        ("liquidations", m.liquidations.to_string()),
        ("entries skipped", m.skipped_entries.to_string()),
    ];
    for (k, v) in rows {
        writeln!(out, "{k:<26}{v:>14}")?;
    }
    Ok(())
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

fn write_trades_csv(
    path: &PathBuf,
    trades: &[etrading_reports::backtest::TradeReport],
) -> anyhow::Result<()> {
    let mut text = String::from(
        "id,symbol,side,entry_time,exit_time,entry_price,exit_price,qty,notional,leverage,margin,fees,liquidation_fee,funding,pnl,return_on_margin,exit_reason,mae,mfe\n",
    );
    for t in trades {
        text.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            t.id,
            t.symbol,
            t.side,
            t.entry_time,
            t.exit_time,
            t.entry_price,
            t.exit_price,
            t.qty,
            t.notional,
            t.leverage,
            t.margin,
            t.fees,
            t.liquidation_fee,
            t.funding,
            t.pnl,
            t.return_on_margin,
            t.exit_reason,
            t.mae,
            t.mfe
        ));
    }
    let tmp = path.with_extension("csv.part");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `--signals FILE`: `symbol,open_time`, one column per indicator output (named as rules name
/// them: `rsi`, `bb.upper`), then `long_entry,long_exit,short_entry,short_exit` as 0/1. Values
/// are written in full precision (NaN during warm-up).
fn write_signals_csv(
    path: &PathBuf,
    resolved: &etrading_kernels::spec::ResolvedSpec,
    panel: &Panel,
    signals: &[reference::SymbolSignals],
) -> anyhow::Result<()> {
    let mut columns: Vec<(String, usize)> = Vec::new();
    for ind in &resolved.indicators {
        for (k, output) in ind.output_names.iter().enumerate() {
            let name = if ind.output_names.len() == 1 {
                ind.name.clone()
            } else {
                format!("{}.{output}", ind.name)
            };
            columns.push((name, ind.first_slot + k));
        }
    }
    let mut text = String::from("symbol,open_time");
    for (name, _) in &columns {
        text.push(',');
        text.push_str(name);
    }
    text.push_str(",long_entry,long_exit,short_entry,short_exit\n");
    for (symbol, sg) in panel.symbols.iter().zip(signals) {
        for (t, &time) in panel.open_time.iter().enumerate() {
            text.push_str(&format!("{symbol},{}", etrading_reports::iso_time(time)));
            for &(_, slot) in &columns {
                text.push_str(&format!(",{}", sg.indicators[slot][t]));
            }
            for flags in [
                &sg.long_entry,
                &sg.long_exit,
                &sg.short_entry,
                &sg.short_exit,
            ] {
                text.push_str(if flags[t] { ",1" } else { ",0" });
            }
            text.push('\n');
        }
    }
    let tmp = path.with_extension("csv.part");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
