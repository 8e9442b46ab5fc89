//! Objectives by name, the filters that discard a trial, and the walk-forward aggregation
//! (docs/SEMANTICS.md §3). Pure arithmetic on [`Metrics`] rows: one row per window of a
//! [`WindowPlan`], in plan order.

use crate::batch::{WindowKind, WindowPlan};
use crate::engine::Metrics;
use crate::spec::{ObjectiveName, ObjectiveSpec};

/// A drawdown below this counts as this much in the ratio objectives (1 %): a run without a
/// drawdown still has a finite score, and a single lucky trade with a 0.2 % drawdown cannot
/// score like a strong run (with a floor of 0.1 %, +1 % at 0.2 % scored as +60 % at 12 %).
pub const DRAWDOWN_FLOOR: f64 = 1e-2;

/// The annualised log return of a window: `ln(final / initial) / years` over the window's
/// time span ([`Metrics::years`]). Linear in time, so windows of different lengths compare
/// (a CAGR compounds a short window's return into a huge number; a log return per year does
/// not). A total loss counts as a return of -100 % + 1e-12.
pub fn annual_log_return(m: &Metrics) -> f64 {
    if m.years.is_nan() || m.years <= 0.0 {
        return f64::NAN;
    }
    (1.0 + m.total_return).max(1e-12).ln() / m.years
}

/// `reward` penalised by `risk` (at least [`DRAWDOWN_FLOOR`], a drawdown, or a drawdown times
/// leverage): divided by it when the reward is a gain, multiplied by it when it is a loss, so
/// that more risk always scores lower, for both signs (dividing a loss by its drawdown would
/// make a larger drawdown score higher). Increasing in `reward`, continuous at 0.
pub fn penalised(reward: f64, risk: f64) -> f64 {
    if reward >= 0.0 {
        reward / risk
    } else {
        reward * risk
    }
}

/// The objective `name` of one window's metrics at `leverage` (the leverage the set trades at
/// after the spec's caps, [`crate::spec::Spec::leverage_used`]; 1 without a `leverage` param),
/// with `g` = [`annual_log_return`] and `dd = max(max_drawdown, DRAWDOWN_FLOOR)`:
/// - `return_over_drawdown`: `penalised(g, dd)`;
/// - `risk_adjusted`: `penalised(g, dd x leverage)`;
/// - `robust`: `penalised(g x |g|, dd x leverage^2 / q)` with `q = (1 + win_rate) / 2` (a win
///   rate that is NaN, no trade, counts as 0).
///
/// Each is monotone: a run with a lower return, a larger drawdown, a higher leverage or (for
/// `robust`) a lower win rate, the rest equal, never scores higher, whatever the return's
/// sign. The result is NaN only when a metric it reads is NaN.
pub fn objective_value(name: ObjectiveName, metrics: &Metrics, leverage: f64) -> f64 {
    let dd = metrics.max_drawdown.max(DRAWDOWN_FLOOR);
    let g = annual_log_return(metrics);
    let leverage = leverage.max(1.0);
    match name {
        ObjectiveName::ReturnOverDrawdown => penalised(g, dd),
        ObjectiveName::RiskAdjusted => penalised(g, dd * leverage),
        ObjectiveName::Robust => {
            let win_rate = if metrics.win_rate.is_nan() {
                0.0
            } else {
                metrics.win_rate
            };
            let q = 0.5 * (1.0 + win_rate);
            penalised(g * g.abs(), dd * leverage * leverage / q)
        }
    }
}

/// Walk-forward aggregation: `median(oos) - std(oos) - max(0, mean(is) - mean(oos))`, with the
/// population standard deviation (divisor n). `oos` must not be empty; `is` may be (no
/// penalty then).
pub fn walk_forward_score(in_sample: &[f64], out_of_sample: &[f64]) -> f64 {
    let median = median(out_of_sample);
    let mean_oos = mean(out_of_sample);
    let var = out_of_sample
        .iter()
        .map(|x| (x - mean_oos) * (x - mean_oos))
        .sum::<f64>()
        / out_of_sample.len() as f64;
    let overfit = if in_sample.is_empty() {
        0.0
    } else {
        (mean(in_sample) - mean_oos).max(0.0)
    };
    median - var.sqrt() - overfit
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn median(xs: &[f64]) -> f64 {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// Why a trial is discarded (stored as PRUNED with this reason, never the best).
#[derive(Clone, Debug, PartialEq)]
pub enum Discard {
    /// A position was liquidated in a window.
    Liquidation { window: String, liquidations: u64 },
    /// Too few trades in a window.
    TooFewTrades {
        window: String,
        n_trades: u64,
        min_trades: u64,
    },
    /// The drawdown exceeds the cap for the trial's leverage in a window.
    Drawdown {
        window: String,
        max_drawdown: f64,
        cap: f64,
        leverage: f64,
    },
    /// The objective is NaN (a metric it reads has no value).
    NotANumber { window: String },
}

impl Discard {
    /// `liquidation`, `min_trades`, `drawdown_cap` or `nan`: the filter's short name.
    pub fn filter(&self) -> &'static str {
        match self {
            Discard::Liquidation { .. } => "liquidation",
            Discard::TooFewTrades { .. } => "min_trades",
            Discard::Drawdown { .. } => "drawdown_cap",
            Discard::NotANumber { .. } => "nan",
        }
    }
}

impl std::fmt::Display for Discard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Discard::Liquidation {
                window,
                liquidations,
            } => write!(f, "liquidation: {liquidations} in window {window}"),
            Discard::TooFewTrades {
                window,
                n_trades,
                min_trades,
            } => write!(
                f,
                "min_trades: {n_trades} trades in window {window}, at least {min_trades} needed"
            ),
            Discard::Drawdown {
                window,
                max_drawdown,
                cap,
                leverage,
            } => write!(
                f,
                "drawdown_cap: max drawdown {max_drawdown:.4} in window {window} exceeds the cap {cap} at leverage {leverage}"
            ),
            Discard::NotANumber { window } => {
                write!(f, "nan: the objective has no value in window {window}")
            }
        }
    }
}

/// The score of one trial: its value (or why it is discarded) and the objective per window.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialScore {
    /// The objective (walk-forward aggregate when the plan has OOS windows), or the discard.
    pub value: Result<f64, Discard>,
    /// `(label, objective)` per window, in plan order (`full`, `is_0`, `oos_0`, ...).
    pub per_window: Vec<(String, f64)>,
}

/// Scores one trial: `metrics[w]` is window `w` of `plan`. Filters, in this order, over every
/// window (`full` first, then each IS and OOS window): any liquidation; fewer than
/// `min_trades` trades; a max drawdown above `spec.drawdown_cap(leverage)`. A trial that passes
/// scores the objective of the full run, or the walk-forward aggregate over its IS/OOS windows
/// when the plan has any.
pub fn score_trial(
    spec: &ObjectiveSpec,
    plan: &WindowPlan,
    metrics: &[Metrics],
    leverage: f64,
) -> TrialScore {
    let windows = plan.windows();
    debug_assert_eq!(windows.len(), metrics.len());
    let per_window: Vec<(String, f64)> = windows
        .iter()
        .zip(metrics)
        .map(|(w, m)| (w.kind.label(), objective_value(spec.name, m, leverage)))
        .collect();
    let cap = spec.drawdown_cap(leverage);
    let mut discard = None;
    for (window, m) in windows.iter().zip(metrics) {
        let label = || window.kind.label();
        if m.liquidations > 0 {
            discard = Some(Discard::Liquidation {
                window: label(),
                liquidations: m.liquidations,
            });
        } else if m.n_trades < spec.min_trades {
            discard = Some(Discard::TooFewTrades {
                window: label(),
                n_trades: m.n_trades,
                min_trades: spec.min_trades,
            });
        } else if m.max_drawdown > cap {
            discard = Some(Discard::Drawdown {
                window: label(),
                max_drawdown: m.max_drawdown,
                cap,
                leverage,
            });
        }
        if discard.is_some() {
            break;
        }
    }
    if let Some(discard) = discard {
        return TrialScore {
            value: Err(discard),
            per_window,
        };
    }
    let mut in_sample = Vec::new();
    let mut out_of_sample = Vec::new();
    for (window, (_, value)) in windows.iter().zip(&per_window) {
        match window.kind {
            WindowKind::Full => {}
            WindowKind::InSample(_) => in_sample.push(*value),
            WindowKind::OutOfSample(_) => out_of_sample.push(*value),
        }
    }
    let nan_window = per_window
        .iter()
        .zip(windows)
        .find(|((_, value), window)| {
            value.is_nan() && (out_of_sample.is_empty() || window.kind != WindowKind::Full)
        })
        .map(|((label, _), _)| label.clone());
    if let Some(window) = nan_window {
        return TrialScore {
            value: Err(Discard::NotANumber { window }),
            per_window,
        };
    }
    let value = if out_of_sample.is_empty() {
        per_window[0].1
    } else {
        walk_forward_score(&in_sample, &out_of_sample)
    };
    TrialScore {
        value: Ok(value),
        per_window,
    }
}

/// The numbers stored with a trial (as Optuna user attributes): the full run's `total_return`,
/// `cagr`, `max_drawdown`, `calmar`, `sharpe`, `win_rate`, `n_trades`, `liquidations`, `fees`
/// and `funding`, the objective of the full run (`full_objective`), and for every walk-forward
/// window its `total_return`, `max_drawdown`, `n_trades`, `liquidations` and `objective`
/// prefixed by the window's label (`is_0_total_return`, `oos_0_objective`, ...). NaN values
/// are kept: the writer decides how to store them.
pub fn metric_attributes(
    plan: &WindowPlan,
    metrics: &[Metrics],
    score: &TrialScore,
) -> Vec<(String, f64)> {
    let mut attrs = Vec::with_capacity(11 + 5 * metrics.len());
    if let Some(full) = metrics.first() {
        attrs.extend([
            ("total_return".to_string(), full.total_return),
            ("cagr".to_string(), full.cagr),
            ("max_drawdown".to_string(), full.max_drawdown),
            ("calmar".to_string(), full.calmar),
            ("sharpe".to_string(), full.sharpe),
            ("win_rate".to_string(), full.win_rate),
            ("n_trades".to_string(), full.n_trades as f64),
            ("liquidations".to_string(), full.liquidations as f64),
            ("fees".to_string(), full.fees_paid),
            ("funding".to_string(), full.funding_paid),
        ]);
    }
    for ((window, m), (label, objective)) in
        plan.windows().iter().zip(metrics).zip(&score.per_window)
    {
        if window.kind == WindowKind::Full {
            attrs.push(("full_objective".to_string(), *objective));
            continue;
        }
        attrs.extend([
            (format!("{label}_total_return"), m.total_return),
            (format!("{label}_max_drawdown"), m.max_drawdown),
            (format!("{label}_n_trades"), m.n_trades as f64),
            (format!("{label}_liquidations"), m.liquidations as f64),
            (format!("{label}_objective"), *objective),
        ]);
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{DEFAULT_DRAWDOWN_CAPS, WalkForwardMode, WalkForwardSpec};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A window of `years` whose annualised log return is `g` (total return `e^(g x years) - 1`).
    fn window(g: f64, years: f64, max_drawdown: f64, win_rate: f64) -> Metrics {
        Metrics {
            total_return: (g * years).exp() - 1.0,
            years,
            max_drawdown,
            win_rate,
            n_trades: 20,
            ..Metrics::default()
        }
    }

    fn metrics(g: f64, max_drawdown: f64, win_rate: f64) -> Metrics {
        window(g, 1.0, max_drawdown, win_rate)
    }

    #[test]
    fn objectives_by_hand() {
        let check = |name: ObjectiveName, m: Metrics, leverage: f64, expect: f64| {
            let got = objective_value(name, &m, leverage);
            assert!(
                (got - expect).abs() < 1e-12,
                "{name:?} at leverage {leverage}: {got} != {expect}"
            );
        };
        use ObjectiveName::{ReturnOverDrawdown, RiskAdjusted, Robust};
        // return_over_drawdown: g 0.30 a year over dd 0.15 = 2.
        check(ReturnOverDrawdown, metrics(0.30, 0.15, 0.5), 3.0, 2.0);
        // The same g over half a year (total return e^0.15 - 1) scores the same: 2.
        check(ReturnOverDrawdown, window(0.30, 0.5, 0.15, 0.5), 1.0, 2.0);
        // A loss is multiplied by its drawdown: -0.2 x 0.25 = -0.05.
        check(ReturnOverDrawdown, metrics(-0.2, 0.25, 0.5), 1.0, -0.05);
        // risk_adjusted: 0.30 / (0.15 x 4) = 0.5; a loss: -0.3 x (0.15 x 4) = -0.18.
        check(RiskAdjusted, metrics(0.30, 0.15, 0.5), 4.0, 0.5);
        check(RiskAdjusted, metrics(-0.30, 0.15, 0.5), 4.0, -0.18);
        // robust: g 0.2, q = (1 + 0.6) / 2 = 0.8, risk 0.1 x 2^2 / 0.8 = 0.5: 0.2^2 / 0.5 = 0.08.
        check(Robust, metrics(0.2, 0.1, 0.6), 2.0, 0.08);
        // robust of a loss: q 0.75, risk 0.2 / 0.75; -(0.1^2) x 0.2 / 0.75 = -0.002666...
        check(Robust, metrics(-0.1, 0.2, 0.5), 1.0, -0.01 * 0.2 / 0.75);
        // No drawdown: the floor 0.01 applies, 0.01 / 0.01 = 1.
        check(ReturnOverDrawdown, metrics(0.01, 0.0, 1.0), 1.0, 1.0);
        // No trade: win rate NaN counts as 0; no return scores 0.
        check(Robust, metrics(0.0, 0.0, f64::NAN), 1.0, 0.0);
        // A leverage below 1 (a spec without the param) counts as 1.
        check(RiskAdjusted, metrics(0.30, 0.15, 0.5), 0.0, 2.0);
        // A window without time has no annualised return.
        assert!(objective_value(ReturnOverDrawdown, &window(0.1, 0.0, 0.1, 0.5), 1.0).is_nan());
    }

    /// One run, and the same run made worse in one respect (return, drawdown, leverage, win
    /// rate): every objective scores the worse one no higher, for gains and losses alike.
    #[test]
    fn every_objective_is_monotone_for_both_signs() {
        let mut rng = ChaCha8Rng::seed_from_u64(20);
        let mut checked = [0usize; 4];
        for _ in 0..200_000 {
            // Edge-biased: returns near 0 of both signs, drawdowns at and below the floor.
            let g = match rng.random_range(0..4) {
                0 => rng.random_range(-1e-3..1e-3),
                1 => rng.random_range(-3.0..0.0),
                _ => rng.random_range(-3.0..3.0),
            };
            let dd = match rng.random_range(0..3) {
                0 => rng.random_range(0.0..DRAWDOWN_FLOOR * 2.0),
                _ => rng.random_range(0.0..1.0),
            };
            let win = if rng.random_bool(0.05) {
                f64::NAN
            } else {
                rng.random_range(0.0..=1.0)
            };
            let years = rng.random_range(0.02..6.0);
            let leverage: f64 = rng.random_range(1..=20) as f64;
            let base = window(g, years, dd, win);
            let mut worse = [base; 4];
            worse[0] = window(g - rng.random_range(1e-6..1.0), years, dd, win);
            worse[1] = window(g, years, dd + rng.random_range(1e-6..0.5), win);
            let worse_leverage = leverage + f64::from(rng.random_range(1..=5));
            let lower_win = if win.is_nan() {
                0.0
            } else {
                win * rng.random_range(0.0..1.0)
            };
            worse[3] = window(g, years, dd, lower_win);
            for name in [
                ObjectiveName::ReturnOverDrawdown,
                ObjectiveName::RiskAdjusted,
                ObjectiveName::Robust,
            ] {
                let good = objective_value(name, &base, leverage);
                let cases = [
                    (0, objective_value(name, &worse[0], leverage)),
                    (1, objective_value(name, &worse[1], leverage)),
                    (2, objective_value(name, &base, worse_leverage)),
                    (3, objective_value(name, &worse[3], leverage)),
                ];
                for (what, bad) in cases {
                    assert!(
                        bad <= good,
                        "{name:?}: worse in respect {what} scores {bad} > {good}: g {g} dd {dd} win {win} years {years} leverage {leverage}"
                    );
                    checked[what] += 1;
                }
            }
        }
        assert!(checked.iter().all(|&n| n > 500_000), "{checked:?}");
    }

    #[test]
    fn walk_forward_by_hand() {
        let check = |is: &[f64], oos: &[f64], expect: f64| {
            let got = walk_forward_score(is, oos);
            assert!(
                (got - expect).abs() < 1e-12,
                "{is:?} {oos:?}: {got} != {expect}"
            );
        };
        // OOS 1, 2, 3: median 2, population std sqrt(2/3); IS mean 3 > OOS mean 2: penalty 1.
        check(
            &[2.0, 3.0, 4.0],
            &[1.0, 2.0, 3.0],
            2.0 - (2.0_f64 / 3.0).sqrt() - 1.0,
        );
        // IS below OOS: no penalty. OOS 1, 3: median 2, std 1.
        check(&[0.0, 0.0], &[1.0, 3.0], 1.0);
        // One window: std 0, median = the value, penalty 0.5 - 0.2.
        check(&[0.5], &[0.2], 0.2 - 0.3);
    }

    /// A steady strategy (+5 % a month, 2 % drawdown in every window) over 180-day IS and
    /// 60-day OOS windows: with annualised returns its IS and OOS windows score alike, so it
    /// scores its per-window objective, above a flat strategy's 0. (With the former total
    /// return per window, IS 1.05^5.9 - 1 = 0.334 over 0.02 = 16.7 against OOS 0.102 / 0.02 =
    /// 5.1, the penalty 11.6 made it score -6.5, below the flat one.)
    #[test]
    fn a_steady_strategy_outscores_a_flat_one_whatever_the_window_lengths() {
        let day = 1.0 / 365.25;
        let g = 12.0 * 1.05f64.ln(); // 5 % a month, as a log return a year
        let spec = ObjectiveSpec {
            name: ObjectiveName::ReturnOverDrawdown,
            min_trades: 1,
            max_drawdown_by_leverage: DEFAULT_DRAWDOWN_CAPS.to_vec(),
        };
        let hour = 3_600_000i64;
        let open_time: Vec<i64> = (0..(500 * 24)).map(|h| h * hour).collect();
        let wf = WalkForwardSpec {
            mode: WalkForwardMode::Rolling,
            windows: 4,
            in_sample_ms: 180 * 86_400_000,
            out_of_sample_ms: 60 * 86_400_000,
            gap_ms: 0,
        };
        let plan = WindowPlan::walk_forward(&wf, &open_time, hour).unwrap();
        let rows_of = |g: f64, dd: f64| -> Vec<Metrics> {
            plan.windows()
                .iter()
                .map(|w| window(g, (w.end - w.start) as f64 / 24.0 * day, dd, 0.6))
                .collect()
        };
        let steady = score_trial(&spec, &plan, &rows_of(g, 0.02), 1.0)
            .value
            .unwrap();
        let flat = score_trial(&spec, &plan, &rows_of(0.0, 0.0), 1.0)
            .value
            .unwrap();
        assert!((steady - g / 0.02).abs() < 1e-9, "{steady}");
        assert_eq!(flat, 0.0);
        assert!(steady > flat);
    }

    fn plan_with_windows() -> WindowPlan {
        // 4 days of hourly bars, 2 rolling windows of 1 day IS + 1 day OOS.
        let open_time: Vec<i64> = (0..96).map(|h| h * 3_600_000).collect();
        let spec = WalkForwardSpec {
            mode: WalkForwardMode::Rolling,
            windows: 2,
            in_sample_ms: 86_400_000,
            out_of_sample_ms: 86_400_000,
            gap_ms: 0,
        };
        WindowPlan::walk_forward(&spec, &open_time, 3_600_000).expect("plan")
    }

    #[test]
    fn filters_and_aggregation() {
        let plan = plan_with_windows();
        assert_eq!(plan.len(), 5, "full, is_0, oos_0, is_1, oos_1");
        let spec = ObjectiveSpec {
            name: ObjectiveName::ReturnOverDrawdown,
            min_trades: 5,
            max_drawdown_by_leverage: DEFAULT_DRAWDOWN_CAPS.to_vec(),
        };
        // Per window (g / dd): full 1.0, is_0 3.0, oos_0 1.0, is_1 3.0, oos_1 2.0.
        let rows = vec![
            metrics(0.2, 0.2, 0.5),
            metrics(0.3, 0.1, 0.5),
            metrics(0.1, 0.1, 0.5),
            metrics(0.3, 0.1, 0.5),
            metrics(0.2, 0.1, 0.5),
        ];
        let check = |rows: &[Metrics], leverage: f64, expect: Result<f64, &str>| {
            let score = score_trial(&spec, &plan, rows, leverage);
            match (&score.value, expect) {
                (Ok(got), Ok(want)) => assert!((got - want).abs() < 1e-12, "{got} != {want}"),
                (Err(d), Err(want)) => assert_eq!(d.to_string(), want),
                (got, want) => panic!("got {got:?}, expected {want:?}"),
            }
        };
        // OOS 1, 2: median 1.5, std 0.5; IS mean 3 - OOS mean 1.5 = 1.5: 1.5 - 0.5 - 1.5.
        check(&rows, 1.0, Ok(-0.5));
        let mut liquidated = rows.clone();
        liquidated[4].liquidations = 1;
        check(&liquidated, 1.0, Err("liquidation: 1 in window oos_1"));
        let mut few = rows.clone();
        few[1].n_trades = 4;
        check(
            &few,
            1.0,
            Err("min_trades: 4 trades in window is_0, at least 5 needed"),
        );
        // Leverage 10: cap 0.15; the full run's 0.2 drawdown exceeds it.
        check(
            &rows,
            10.0,
            Err(
                "drawdown_cap: max drawdown 0.2000 in window full exceeds the cap 0.15 at leverage 10",
            ),
        );
        // Without walk-forward windows the full run's objective is the value.
        let full = WindowPlan::full(96);
        let score = score_trial(&spec, &full, &rows[..1], 1.0);
        assert!((score.value.clone().unwrap() - 1.0).abs() < 1e-12);
        let attrs = metric_attributes(&plan, &rows, &score_trial(&spec, &plan, &rows, 1.0));
        let get = |key: &str| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
        assert!((get("oos_1_objective").unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(get("is_0_n_trades"), Some(20.0));
        assert!((get("full_objective").unwrap() - 1.0).abs() < 1e-12);
    }
}
