//! The parity harness's comparisons: named tolerances (docs/SEMANTICS.md §4.3), metric rows and
//! trade lists of a backend against the reference, reporting the first difference with both
//! values and the tolerance that was applied, and the policies (share of rows that must agree)
//! of each precision.

use std::fmt;

use crate::engine::{Metrics, Trade};

/// `|found - expected| <= abs + rel x |expected|`; NaN matches only NaN.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub name: &'static str,
    pub rel: f64,
    pub abs: f64,
}

impl Tolerance {
    /// Bit-identical up to the sign of zero: the f64 SIMD backend against the reference.
    pub const EXACT: Tolerance = Tolerance {
        name: "exact",
        rel: 0.0,
        abs: 0.0,
    };

    /// The same f64 program on another CPU architecture: IEEE arithmetic is identical, but
    /// `powf` (CAGR) comes from each platform's libm and may differ in the last bits.
    pub const CROSS_PLATFORM: Tolerance = Tolerance {
        name: "cross-platform",
        rel: 1e-12,
        abs: 1e-12,
    };

    /// f64 with a different order of operations (FMA or reassociation, e.g. WGSL's f64).
    pub const F64_REORDERED: Tolerance = Tolerance {
        name: "f64-reordered",
        rel: 1e-9,
        abs: 1e-9,
    };

    /// f32 arithmetic against the f64 reference (SEMANTICS.md §5.3, the SIMD f32 lanes and the
    /// GPU's f32 shader).
    pub const F32: Tolerance = Tolerance {
        name: "f32",
        rel: 2e-3,
        abs: 2e-4,
    };

    pub fn accepts(&self, expected: f64, found: f64) -> bool {
        if expected.is_nan() || found.is_nan() {
            return expected.is_nan() && found.is_nan();
        }
        if expected == found {
            return true;
        }
        (found - expected).abs() <= self.abs + self.rel * expected.abs()
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rel {:e}, abs {:e})", self.name, self.rel, self.abs)
    }
}

/// The metrics as `(name, value)` pairs, counts as f64.
pub fn metric_fields(m: &Metrics) -> [(&'static str, f64); 15] {
    [
        ("final_equity", m.final_equity),
        ("total_return", m.total_return),
        ("cagr", m.cagr),
        ("apr", m.apr),
        ("max_drawdown", m.max_drawdown),
        ("calmar", m.calmar),
        ("sharpe", m.sharpe),
        ("sortino", m.sortino),
        ("win_rate", m.win_rate),
        ("profit_factor", m.profit_factor),
        ("n_trades", m.n_trades as f64),
        ("exposure", m.exposure),
        ("fees_paid", m.fees_paid),
        ("funding_paid", m.funding_paid),
        ("liquidations", m.liquidations as f64),
    ]
}

/// Discrete metrics, compared exactly whatever the tolerance.
pub const EXACT_FIELDS: [&str; 2] = ["n_trades", "liquidations"];

/// A value that differs beyond its tolerance.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// What differs: a metric name, or `trade 3 exit_price`.
    pub field: String,
    pub expected: f64,
    pub found: f64,
    pub tolerance: Tolerance,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: reference {} vs {} (tolerance {})",
            self.field, self.expected, self.found, self.tolerance
        )
    }
}

/// The first metric of `found` outside its tolerance against `expected`.
pub fn compare_metrics(expected: &Metrics, found: &Metrics, tol: Tolerance) -> Option<Difference> {
    metric_fields(expected)
        .into_iter()
        .zip(metric_fields(found))
        .find_map(|((name, e), (_, f))| {
            let tolerance = if EXACT_FIELDS.contains(&name) {
                Tolerance::EXACT
            } else {
                tol
            };
            (!tolerance.accepts(e, f)).then(|| Difference {
                field: name.to_string(),
                expected: e,
                found: f,
                tolerance,
            })
        })
}

/// How much of a backend's table must agree with the reference's: the float policy of one
/// precision (SEMANTICS.md §4.3, §5.2-5.3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Tolerance of every float metric in rows whose counts agree.
    pub tolerance: Tolerance,
    /// Share of (set, window) rows whose trade and liquidation counts must equal the
    /// reference's.
    pub min_count_agreement: f64,
    /// Share of the count-agreeing rows whose float metrics must all be within `tolerance`.
    pub min_float_agreement: f64,
}

impl Policy {
    /// Every row identical (the f64 SIMD lanes).
    pub const EXACT: Policy = Policy {
        tolerance: Tolerance::EXACT,
        min_count_agreement: 1.0,
        min_float_agreement: 1.0,
    };

    /// Every row within [`Tolerance::F64_REORDERED`] (the GPU's f64 shader).
    pub const F64_REORDERED: Policy = Policy {
        tolerance: Tolerance::F64_REORDERED,
        min_count_agreement: 1.0,
        min_float_agreement: 1.0,
    };

    /// Counts equal in at least 99 % of rows, floats within [`Tolerance::F32`] in at least
    /// 99 % of those (the SIMD f32 lanes and the GPU's f32 shader).
    pub const F32: Policy = Policy {
        tolerance: Tolerance::F32,
        min_count_agreement: 0.99,
        min_float_agreement: 0.99,
    };
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min_count_agreement >= 1.0 && self.min_float_agreement >= 1.0 {
            write!(f, "{} in every row", self.tolerance)
        } else {
            write!(
                f,
                "counts equal in {} % of rows, {} in {} % of those",
                self.min_count_agreement * 100.0,
                self.tolerance,
                self.min_float_agreement * 100.0
            )
        }
    }
}

/// A backend's metric rows against the reference's, row by row (see [`compare_rows`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowAgreement {
    pub rows: usize,
    /// Rows whose trade and liquidation counts equal the reference's.
    pub count_agree: usize,
    /// Rows among those whose float metrics are all within the tolerance.
    pub float_agree: usize,
    /// The first row whose counts differ, and the difference.
    pub first_count_miss: Option<(usize, Difference)>,
    /// The first count-agreeing row with a float outside the tolerance, and the difference.
    pub first_float_miss: Option<(usize, Difference)>,
    /// Per float metric, the largest relative difference among count-agreeing rows
    /// (`|found - expected| / |expected|`; an absolute difference where `expected` is 0).
    pub worst_relative: Vec<(&'static str, f64)>,
}

impl RowAgreement {
    /// Whether the shares meet `policy`.
    pub fn meets(&self, policy: &Policy) -> bool {
        // Shares compared as counts, with a margin for the decimal shares' rounding.
        let enough = |part: usize, whole: usize, share: f64| {
            part as f64 >= share * whole as f64 - 1e-9 * whole as f64
        };
        enough(self.count_agree, self.rows, policy.min_count_agreement)
            && enough(
                self.float_agree,
                self.count_agree,
                policy.min_float_agreement,
            )
    }
}

impl fmt::Display for RowAgreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |part: usize, whole: usize| 100.0 * part as f64 / whole.max(1) as f64;
        write!(
            f,
            "counts equal in {}/{} rows ({:.2} %), floats within tolerance in {}/{} of those ({:.2} %)",
            self.count_agree,
            self.rows,
            pct(self.count_agree, self.rows),
            self.float_agree,
            self.count_agree,
            pct(self.float_agree, self.count_agree)
        )
    }
}

/// `found` against `expected` row by row (same length): counts exactly, floats under `tol`.
pub fn compare_rows(expected: &[Metrics], found: &[Metrics], tol: Tolerance) -> RowAgreement {
    let mut agreement = RowAgreement {
        rows: expected.len().min(found.len()),
        worst_relative: metric_fields(&Metrics::default())
            .into_iter()
            .filter(|(name, _)| !EXACT_FIELDS.contains(name))
            .map(|(name, _)| (name, 0.0))
            .collect(),
        ..RowAgreement::default()
    };
    for (row, (e, f)) in expected.iter().zip(found).enumerate() {
        // Counts first: compare_metrics reports the first field that differs, which may be a
        // float ahead of a differing count.
        let counts = metric_fields(e)
            .into_iter()
            .zip(metric_fields(f))
            .find(|((name, ev), (_, fv))| EXACT_FIELDS.contains(name) && ev != fv);
        if let Some(((name, ev), (_, fv))) = counts {
            agreement.first_count_miss.get_or_insert((
                row,
                Difference {
                    field: name.to_string(),
                    expected: ev,
                    found: fv,
                    tolerance: Tolerance::EXACT,
                },
            ));
            continue;
        }
        agreement.count_agree += 1;
        match compare_metrics(e, f, tol) {
            Some(d) => {
                agreement.first_float_miss.get_or_insert((row, d));
            }
            None => agreement.float_agree += 1,
        }
        for ((name, ev), (_, fv)) in metric_fields(e).into_iter().zip(metric_fields(f)) {
            if let Some(worst) = agreement.worst_relative.iter_mut().find(|w| w.0 == name)
                && ev.is_finite()
                && fv.is_finite()
            {
                let diff = (fv - ev).abs();
                let rel = if ev == 0.0 { diff } else { diff / ev.abs() };
                worst.1 = worst.1.max(rel);
            }
        }
    }
    agreement
}

/// The first difference between two trade lists: count, then per trade the symbol, side,
/// bars and exit reason exactly, prices and money under `tol`.
pub fn compare_trades(expected: &[Trade], found: &[Trade], tol: Tolerance) -> Option<Difference> {
    if expected.len() != found.len() {
        return Some(Difference {
            field: "trade count".to_string(),
            expected: expected.len() as f64,
            found: found.len() as f64,
            tolerance: Tolerance::EXACT,
        });
    }
    for (i, (e, f)) in expected.iter().zip(found).enumerate() {
        let exact = [
            ("symbol", e.symbol as f64, f.symbol as f64),
            ("side", e.side.sign(), f.side.sign()),
            ("entry_bar", e.entry_bar as f64, f.entry_bar as f64),
            ("exit_bar", e.exit_bar as f64, f.exit_bar as f64),
            (
                "exit_reason",
                e.exit_reason as u8 as f64,
                f.exit_reason as u8 as f64,
            ),
        ];
        let approximate = [
            ("entry_price", e.entry_price, f.entry_price),
            ("exit_price", e.exit_price, f.exit_price),
            ("qty", e.qty, f.qty),
            ("notional", e.notional, f.notional),
            ("leverage", e.leverage, f.leverage),
            ("fees", e.fees, f.fees),
            ("liquidation_fee", e.liquidation_fee, f.liquidation_fee),
            ("funding", e.funding, f.funding),
            ("pnl", e.pnl, f.pnl),
            ("mae", e.mae, f.mae),
            ("mfe", e.mfe, f.mfe),
        ];
        let checks = exact
            .into_iter()
            .map(|c| (c, Tolerance::EXACT))
            .chain(approximate.into_iter().map(|c| (c, tol)));
        for ((name, ev, fv), tolerance) in checks {
            if !tolerance.accepts(ev, fv) {
                return Some(Difference {
                    field: format!("trade {i} {name}"),
                    expected: ev,
                    found: fv,
                    tolerance,
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances() {
        let check = |tol: Tolerance, e: f64, f: f64, ok: bool| {
            assert_eq!(tol.accepts(e, f), ok, "{tol} {e} {f}")
        };
        check(Tolerance::EXACT, 1.0, 1.0, true);
        check(Tolerance::EXACT, 1.0, 1.0 + f64::EPSILON, false);
        check(Tolerance::EXACT, 0.0, -0.0, true);
        check(Tolerance::EXACT, f64::NAN, f64::NAN, true);
        check(Tolerance::EXACT, f64::NAN, 0.0, false);
        check(Tolerance::F64_REORDERED, 1000.0, 1000.0 + 1e-7, true);
        check(Tolerance::F64_REORDERED, 1000.0, 1000.1, false);
        // f32: 10,000 x 2e-3 + 2e-4 = 20.0002.
        check(Tolerance::F32, 10_000.0, 10_020.0, true);
        check(Tolerance::F32, 10_000.0, 10_020.001, false);
        check(Tolerance::F32, 0.0, 2e-4, true);
        check(Tolerance::F32, 0.0, 3e-4, false);
    }

    #[test]
    fn counts_are_exact_under_any_tolerance() {
        let e = Metrics {
            n_trades: 10,
            ..Metrics::default()
        };
        let f = Metrics {
            n_trades: 11,
            ..Metrics::default()
        };
        let d = compare_metrics(&e, &f, Tolerance::F32).unwrap();
        assert_eq!(d.field, "n_trades");
        assert_eq!(d.tolerance, Tolerance::EXACT);
    }

    fn row(n_trades: u64, final_equity: f64) -> Metrics {
        Metrics {
            n_trades,
            final_equity,
            ..Metrics::default()
        }
    }

    /// `rows` reference rows of 10 trades and equity 100, against rows of which the first
    /// `count_misses` differ in trades and the next `float_misses` in equity by 1 %.
    fn check_agreement(rows: usize, count_misses: usize, float_misses: usize, meets_f32: bool) {
        let expected = vec![row(10, 100.0); rows];
        let found: Vec<Metrics> = (0..rows)
            .map(|i| match i {
                // A differing count behind a differing float is still a count miss.
                i if i < count_misses => row(11, 150.0),
                i if i < count_misses + float_misses => row(10, 101.0),
                _ => row(10, 100.0 * (1.0 + 1e-4)),
            })
            .collect();
        let a = compare_rows(&expected, &found, Tolerance::F32);
        assert_eq!(
            (a.rows, a.count_agree, a.float_agree),
            (
                rows,
                rows - count_misses,
                rows - count_misses - float_misses
            )
        );
        assert_eq!(a.meets(&Policy::F32), meets_f32, "{a}");
        assert!(!a.meets(&Policy::EXACT) || count_misses + float_misses == 0);
        assert_eq!(a.first_count_miss.is_some(), count_misses > 0);
        assert_eq!(a.first_float_miss.is_some(), float_misses > 0);
        let worst = a
            .worst_relative
            .iter()
            .find(|w| w.0 == "final_equity")
            .unwrap()
            .1;
        let want = if float_misses > 0 { 0.01 } else { 1e-4 };
        assert!((worst - want).abs() < 1e-12, "worst {worst}, want {want}");
    }

    #[test]
    fn policies_count_rows() {
        check_agreement(100, 0, 0, true);
        check_agreement(100, 1, 0, true);
        check_agreement(100, 2, 0, false);
        // 99 agreeing rows: 1 float miss leaves 98 of 99, below 99 %.
        check_agreement(100, 1, 1, false);
        check_agreement(1000, 10, 9, true);
        check_agreement(1000, 10, 10, false);
        check_agreement(1000, 11, 0, false);
    }
}
