//! The viewer against the reports JSON schema's example documents
//! (`reports/schema/examples/`, validated against the schemas by the reports crate's tests):
//! they parse, and the pages' data comes out as those documents say.

use etrading_viewer::heatmap::{Agg, heatmap};
use etrading_viewer::model::{parse_run, parse_study};
use etrading_viewer::pages::{
    is_oos_means, leverage_column, monthly_grid, study_columns, trade_columns, window_metrics,
};
use etrading_viewer::table::{filter_rows, parse_filter, sort_rows};

const STUDY: &str = include_str!("../../reports/schema/examples/study.json");
const RUN: &str = include_str!("../../reports/schema/examples/run.json");
const SMALL: &str = include_str!("../../reports/schema/examples/study-small.json");
const SMALL_PACKED: &str = include_str!("../../reports/schema/examples/study-small.packed.json");

fn check_close(actual: &[f64], expect: &[f64]) {
    assert_eq!(actual.len(), expect.len(), "{actual:?} vs {expect:?}");
    for (a, e) in actual.iter().zip(expect) {
        assert!(
            (a.is_nan() && e.is_nan()) || (a - e).abs() < 1e-9,
            "{actual:?} vs {expect:?}"
        );
    }
}

#[test]
fn study_example() {
    let mut s = parse_study(STUDY).unwrap();
    let cols = study_columns(&mut s);
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "number",
            "state",
            "value",
            "leverage",
            "side",
            "is_0_sharpe",
            "oos_0_sharpe",
            "sharpe"
        ]
    );
    assert_eq!(cols[1].text(2), "FAIL");
    assert_eq!(cols[4].text(1), "short");
    assert_eq!(cols[2].text(1), "-inf");
    // Sorted by value, best first: 0 (1.5), 1 (-inf), 2 (none).
    let mut rows: Vec<u32> = (0..3).collect();
    sort_rows(&mut rows, &cols[2].values, true);
    assert_eq!(rows, [0, 1, 2]);
    let f = parse_filter("side=short", &cols).unwrap();
    assert_eq!(filter_rows(&cols, &f, 3), [1]);
    assert_eq!(window_metrics(&cols), ["sharpe"]);
    let (is, oos) = is_oos_means(&cols, "sharpe", 3);
    check_close(&is, &[1.0, -0.25, f64::NAN]);
    check_close(&oos, &[0.5, -0.75, f64::NAN]);
    assert_eq!(leverage_column(&cols), Some(3));
    let h = heatmap(
        &cols[3].values,
        &cols[4].values,
        &cols[7].values,
        &[0, 1, 2],
        20,
        Agg::Mean,
    );
    // leverage {1, 2} x side {long, short}: (1, long) 0.75, (2, short) -0.5; trial 2 has none.
    check_close(&h.cells, &[0.75, f64::NAN, f64::NAN, -0.5]);
    assert_eq!(s.pages["0"], "hand_made-trial-0.html");
}

/// The packed form of a study (what report pages embed) gives the same table as the plain one.
#[test]
fn packed_study_example() {
    let plain = study_columns(&mut parse_study(SMALL).unwrap());
    let packed = study_columns(&mut parse_study(SMALL_PACKED).unwrap());
    assert_eq!(plain.len(), packed.len());
    for (a, b) in plain.iter().zip(&packed) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.format, b.format);
        // Params, numbers and states are exact; values and metrics agree at f32 precision
        // (the plain form's shortest f32 text is not the f64 of that f32).
        let exact = !matches!(a.name.as_str(), "value" | "sharpe");
        let bits = |c: &etrading_viewer::table::TableColumn| {
            c.values
                .iter()
                .map(|&x| {
                    if exact {
                        x.to_bits()
                    } else {
                        u64::from((x as f32).to_bits())
                    }
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(a), bits(b), "column {}", a.name);
    }
    let names: Vec<&str> = packed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "number", "state", "value", "frac", "leverage", "side", "sharpe"
        ]
    );
    assert_eq!(packed[1].text(5), "PRUNED");
    assert_eq!(packed[5].text(3), "short");
    assert_eq!(packed[6].text(2), "inf");
    assert_eq!(packed[2].text(5), "");
}

#[test]
fn run_example() {
    let r = parse_run(RUN).unwrap();
    assert_eq!(r.bars.times().len(), 5);
    assert_eq!(r.bars.times()[4] - r.bars.times()[3], 3 * 3_600_000);
    assert!(r.prices[0].close.0[4].is_nan());
    let cols = trade_columns(&r);
    assert_eq!(cols[1].text(1), "ETHUSDT");
    assert_eq!(cols[3].text(0), "2025-01-31 23:00");
    assert_eq!(cols[13].text(1), "liquidation");
    let (years, grid) = monthly_grid(&r);
    assert_eq!(years, [2025]);
    // January ends at 1000 (the initial capital), February at 962.39.
    assert_eq!(grid[0][0], 0.0);
    assert!((grid[0][1] + 0.037_61).abs() < 1e-9, "{:?}", grid[0]);
    assert!(grid[0][2].is_nan());
    assert_eq!(r.windows.len(), 2);
    assert!(r.windows[1].is["total_return"].0.is_infinite());
}

#[test]
fn bad_documents_are_refused() {
    let e = parse_study(&STUDY.replace("etrading.study/1", "etrading.study/9")).unwrap_err();
    assert!(e.contains("reads etrading.study/1"), "{e}");
    let e = parse_study(&STUDY.replace("\"state\":[2,2,4]", "\"state\":[2,2]")).unwrap_err();
    assert!(e.contains("`state`"), "{e}");
    let e = parse_run(&RUN.replace("\"n\":5", "\"n\":6")).unwrap_err();
    assert!(e.contains("segments hold 5 bars"), "{e}");
}
