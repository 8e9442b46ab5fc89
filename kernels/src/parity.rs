//! The parity harness's comparisons: named tolerances (docs/SEMANTICS.md §4.3), metric rows and
//! trade lists of a backend against the reference, reporting the first difference with both
//! values and the tolerance that was applied.

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

    /// f32 arithmetic against the f64 reference (money values).
    pub const F32: Tolerance = Tolerance {
        name: "f32",
        rel: 1e-3,
        abs: 1e-4,
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
        check(Tolerance::F32, 10_000.0, 10_005.0, true);
        check(Tolerance::F32, 10_000.0, 10_020.0, false);
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
}
