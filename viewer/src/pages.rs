//! What the pages show, as plain data: the trials table's columns, IS/OOS scores per trial,
//! the trade table's columns and the monthly returns grid.

use crate::model::{Cells, Run, Study};
use crate::table::{Format, TableColumn};

/// The trials table: number, state, objective values, params, then metrics. The columns' cells
/// move out of `s` (a million trials are never copied).
pub fn study_columns(s: &mut Study) -> Vec<TableColumn> {
    let take = |c: &mut Cells| std::mem::take(&mut c.0);
    let mut cols = vec![
        TableColumn {
            name: "number".into(),
            values: take(&mut s.number),
            format: Format::Int,
        },
        TableColumn {
            name: "state".into(),
            values: take(&mut s.state),
            format: Format::Label(s.states.clone()),
        },
    ];
    for c in &mut s.values {
        cols.push(TableColumn {
            name: c.name.clone(),
            values: take(&mut c.values),
            format: Format::Num(5),
        });
    }
    for p in &mut s.params {
        let format = match (&p.distribution, p.distribution.labels()) {
            (_, Some(labels)) => Format::Label(labels),
            (crate::model::Distribution::Int { .. }, None) => Format::Int,
            _ => Format::Num(5),
        };
        cols.push(TableColumn {
            name: p.name.clone(),
            values: take(&mut p.values),
            format,
        });
    }
    for c in &mut s.metrics {
        cols.push(TableColumn {
            name: c.name.clone(),
            values: take(&mut c.values),
            format: Format::Num(5),
        });
    }
    cols
}

/// Metric names that have walk-forward attributes `is_{k}_{name}` and `oos_{k}_{name}`.
pub fn window_metrics(columns: &[TableColumn]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for c in columns {
        if let Some((_, metric)) = c.name.strip_prefix("is_").and_then(split_window) {
            let has_oos = columns.iter().any(|o| {
                o.name
                    .strip_prefix("oos_")
                    .and_then(split_window)
                    .is_some_and(|(_, m)| m == metric)
            });
            if has_oos && !names.iter().any(|n| n == metric) {
                names.push(metric.to_string());
            }
        }
    }
    names
}

fn split_window(rest: &str) -> Option<(u32, &str)> {
    let (k, metric) = rest.split_once('_')?;
    let window: u32 = k.parse().ok()?;
    (!metric.is_empty()).then_some((window, metric))
}

/// Per trial, the mean of `metric` over its in-sample windows and over its out-of-sample
/// windows (NaN where a trial has none).
pub fn is_oos_means(columns: &[TableColumn], metric: &str, n_rows: usize) -> (Vec<f64>, Vec<f64>) {
    let mean_of = |prefix: &str| {
        let cols: Vec<&TableColumn> = columns
            .iter()
            .filter(|c| {
                c.name
                    .strip_prefix(prefix)
                    .and_then(split_window)
                    .is_some_and(|(_, m)| m == metric)
            })
            .collect();
        (0..n_rows)
            .map(|r| {
                let (sum, n) = cols
                    .iter()
                    .map(|c| c.values[r])
                    .filter(|v| v.is_finite())
                    .fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
                if n == 0 { f64::NAN } else { sum / f64::from(n) }
            })
            .collect::<Vec<f64>>()
    };
    (mean_of("is_"), mean_of("oos_"))
}

/// The leverage column: a param or metric named `leverage`.
pub fn leverage_column(columns: &[TableColumn]) -> Option<usize> {
    columns.iter().position(|c| c.name == "leverage")
}

/// The trade table of a run.
pub fn trade_columns(r: &Run) -> Vec<TableColumn> {
    let t = &r.trades;
    let labels = |f: &dyn Fn(usize) -> String| {
        let mut names: Vec<String> = Vec::new();
        let codes = (0..t.len())
            .map(|i| {
                let s = f(i);
                let k = names.iter().position(|n| *n == s).unwrap_or_else(|| {
                    names.push(s);
                    names.len() - 1
                });
                k as f64
            })
            .collect();
        (codes, names)
    };
    let label_col = |name: &str, f: &dyn Fn(usize) -> String| {
        let (values, names) = labels(f);
        TableColumn {
            name: name.into(),
            values,
            format: Format::Label(names),
        }
    };
    let num = |name: &str, f: &dyn Fn(usize) -> f64, format: Format| TableColumn {
        name: name.into(),
        values: (0..t.len()).map(f).collect(),
        format,
    };
    let times = r.bars.times();
    let at = |bar: u64| times.get(bar as usize).map_or(f64::NAN, |&x| x as f64);
    vec![
        num("id", &|i| t[i].id as f64, Format::Int),
        label_col("symbol", &|i| t[i].symbol.clone()),
        label_col("side", &|i| t[i].side.clone()),
        num("entry_time", &|i| at(t[i].entry_bar), Format::Time),
        num("exit_time", &|i| at(t[i].exit_bar), Format::Time),
        num("entry_price", &|i| t[i].entry_price, Format::Num(6)),
        num("exit_price", &|i| t[i].exit_price, Format::Num(6)),
        num("qty", &|i| t[i].qty, Format::Num(5)),
        num("leverage", &|i| t[i].leverage, Format::Num(3)),
        num("pnl", &|i| t[i].pnl, Format::Num(5)),
        num(
            "return_on_margin",
            &|i| t[i].return_on_margin,
            Format::Num(4),
        ),
        num("fees", &|i| t[i].fees, Format::Num(4)),
        num("funding", &|i| t[i].funding, Format::Num(4)),
        label_col("exit_reason", &|i| t[i].exit_reason.clone()),
        num("mae", &|i| t[i].mae, Format::Num(4)),
        num("mfe", &|i| t[i].mfe, Format::Num(4)),
    ]
}

/// Monthly returns as a grid: the years, and per year twelve returns (NaN where none).
pub fn monthly_grid(r: &Run) -> (Vec<i32>, Vec<[f64; 12]>) {
    let mut years: Vec<i32> = Vec::new();
    let mut grid: Vec<[f64; 12]> = Vec::new();
    for m in &r.monthly_returns {
        let (Some(y), Some(mo)) = (
            m.month.get(..4).and_then(|y| y.parse::<i32>().ok()),
            m.month.get(5..7).and_then(|m| m.parse::<usize>().ok()),
        ) else {
            continue;
        };
        if !(1..=12).contains(&mo) {
            continue;
        }
        let k = match years.iter().position(|&x| x == y) {
            Some(k) => k,
            None => {
                years.push(y);
                grid.push([f64::NAN; 12]);
                years.len() - 1
            }
        };
        grid[k][mo - 1] = m.return_.unwrap_or(f64::NAN);
    }
    (years, grid)
}
