//! Selection bias of a search's best: the Probabilistic and the Deflated Sharpe Ratio
//! (Bailey and López de Prado, "The Deflated Sharpe Ratio: Correcting for Selection Bias,
//! Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5), 2014).
//!
//! Every Sharpe ratio here is per observation (per bar, not annualised): `mean / sd` of the
//! run's per-bar returns. [`per_observation`] converts an annualised one.
//!
//! - PSR(SR*) = Φ((SR − SR*) √(T − 1) / √(1 − γ3 SR + (γ4 − 1)/4 SR²)): the probability that
//!   the true Sharpe ratio exceeds SR*, given T observations of skewness γ3 and (non-excess)
//!   kurtosis γ4.
//! - SR0 = √V · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e))): the expected maximum Sharpe ratio
//!   of N independent trials of zero true Sharpe whose estimated Sharpe ratios have variance V
//!   (γ the Euler–Mascheroni constant).
//! - DSR = PSR(SR0): the probability that the best is better than the best of N flukes.
//!
//! Pure: no IO; the caller passes the trials' Sharpe ratios and the chosen run's returns.

use statrs::distribution::{ContinuousCDF, Normal};

/// The Euler–Mascheroni constant.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Why a statistic cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverfitError {
    #[error("{what}: {got}, expected {expected}")]
    Input {
        what: &'static str,
        got: String,
        expected: &'static str,
    },
    #[error(
        "the Sharpe ratio {sharpe} with skewness {skew} and kurtosis {kurt} gives a \
         non-positive variance term ({term}): the normal approximation does not hold"
    )]
    Variance {
        sharpe: f64,
        skew: f64,
        kurt: f64,
        term: f64,
    },
}

/// The first four moments of a return series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Observations.
    pub n: usize,
    pub mean: f64,
    /// Standard deviation, sample (n - 1), as the engine's Sharpe ratio uses it
    /// (`engine::MetricsAcc::finish`).
    pub sd: f64,
    /// Skewness γ3.
    pub skew: f64,
    /// Kurtosis γ4, not excess: 3 for a normal distribution.
    pub kurt: f64,
}

impl Moments {
    /// The per-observation Sharpe ratio `mean / sd` (the engine's Sharpe ratio before
    /// annualisation).
    pub fn sharpe(&self) -> f64 {
        self.mean / self.sd
    }
}

/// The moments of `returns` (two passes: the mean, then the central sums; skewness and
/// kurtosis from the population moments). None for fewer than 2 observations, a non-finite
/// value or a constant series.
pub fn moments(returns: &[f64]) -> Option<Moments> {
    let n = returns.len();
    if n < 2 || returns.iter().any(|r| !r.is_finite()) {
        return None;
    }
    let nf = n as f64;
    let mean = returns.iter().sum::<f64>() / nf;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for &r in returns {
        let d = r - mean;
        let d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
        m4 += d2 * d2;
    }
    let (m2, m3, m4) = (m2 / nf, m3 / nf, m4 / nf);
    if m2 <= 0.0 {
        return None;
    }
    Some(Moments {
        n,
        mean,
        sd: (m2 * nf / (nf - 1.0)).sqrt(),
        skew: m3 / m2.powf(1.5),
        kurt: m4 / (m2 * m2),
    })
}

/// A Sharpe ratio annualised over `periods_per_year` observations, per observation.
pub fn per_observation(annualised: f64, periods_per_year: f64) -> f64 {
    annualised / periods_per_year.sqrt()
}

fn normal() -> Normal {
    Normal::standard()
}

/// PSR(`benchmark`): the probability that the true per-observation Sharpe ratio exceeds
/// `benchmark`, given the estimate `sharpe` from `n_obs` returns of skewness `skew` and
/// kurtosis `kurt` (not excess).
pub fn probabilistic_sharpe(
    sharpe: f64,
    benchmark: f64,
    n_obs: usize,
    skew: f64,
    kurt: f64,
) -> Result<f64, OverfitError> {
    if n_obs < 2 {
        return Err(OverfitError::Input {
            what: "observations",
            got: n_obs.to_string(),
            expected: "at least 2",
        });
    }
    for (what, v) in [
        ("Sharpe ratio", sharpe),
        ("skewness", skew),
        ("kurtosis", kurt),
    ] {
        if !v.is_finite() {
            return Err(OverfitError::Input {
                what,
                got: v.to_string(),
                expected: "a finite number",
            });
        }
    }
    let term = 1.0 - skew * sharpe + (kurt - 1.0) / 4.0 * sharpe * sharpe;
    if term <= 0.0 {
        return Err(OverfitError::Variance {
            sharpe,
            skew,
            kurt,
            term,
        });
    }
    let z = (sharpe - benchmark) * ((n_obs - 1) as f64).sqrt() / term.sqrt();
    Ok(normal().cdf(z))
}

/// SR0: the expected maximum per-observation Sharpe ratio of `n_trials` independent trials of
/// zero true Sharpe whose estimates have variance `variance`. 0 for a single trial.
pub fn expected_max_sharpe(n_trials: u64, variance: f64) -> Result<f64, OverfitError> {
    if n_trials == 0 {
        return Err(OverfitError::Input {
            what: "trials",
            got: "0".into(),
            expected: "at least 1",
        });
    }
    if !(variance.is_finite() && variance >= 0.0) {
        return Err(OverfitError::Input {
            what: "variance of the trials' Sharpe ratios",
            got: variance.to_string(),
            expected: "a finite number >= 0",
        });
    }
    if n_trials == 1 {
        return Ok(0.0);
    }
    let n = n_trials as f64;
    let z = normal();
    let a = z.inverse_cdf(1.0 - 1.0 / n);
    let b = z.inverse_cdf(1.0 - 1.0 / (n * std::f64::consts::E));
    Ok(variance.sqrt() * ((1.0 - EULER_GAMMA) * a + EULER_GAMMA * b))
}

/// The Deflated Sharpe Ratio of a chosen run and what it was deflated by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deflated {
    /// The chosen run's per-observation Sharpe ratio.
    pub sharpe: f64,
    /// SR0, the expected best of `trials` flukes (per observation).
    pub expected_max: f64,
    /// Trials the choice was made among (all tried, pruned ones included).
    pub trials: u64,
    /// DSR = PSR(SR0).
    pub dsr: f64,
}

/// DSR of a run with return moments `m` chosen among `n_trials` trials whose per-observation
/// Sharpe ratios have variance `variance`.
pub fn deflated_sharpe(
    m: &Moments,
    n_trials: u64,
    variance: f64,
) -> Result<Deflated, OverfitError> {
    let expected_max = expected_max_sharpe(n_trials, variance)?;
    let sharpe = m.sharpe();
    let dsr = probabilistic_sharpe(sharpe, expected_max, m.n, m.skew, m.kurt)?;
    Ok(Deflated {
        sharpe,
        expected_max,
        trials: n_trials,
        dsr,
    })
}

/// The sample variance (n - 1) of the finite values of `xs`; None for fewer than 2.
pub fn variance(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    // Welford's method: one pass, no cancellation of a large mean.
    let (mut n, mut mean, mut m2) = (0u64, 0.0, 0.0);
    for x in xs.into_iter().filter(|x| x.is_finite()) {
        n += 1;
        let d = x - mean;
        mean += d / n as f64;
        m2 += d * (x - mean);
    }
    (n >= 2).then(|| m2 / (n - 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[track_caller]
    fn check(what: &str, got: f64, want: f64, tol: f64) {
        assert!(
            (got - want).abs() <= tol,
            "{what}: {got} vs {want} (tol {tol})"
        );
    }

    #[test]
    fn the_papers_worked_example() {
        // Bailey and López de Prado (2014), §6: N = 100 trials, variance of their annualised
        // Sharpe ratios 1/2, best annualised SR 2.5 over T = 1,250 daily returns (250 a year)
        // with skewness -3 and kurtosis 10. SR0 = sqrt(1/2) ((1-γ) Φ⁻¹(0.99) + γ Φ⁻¹(1 -
        // 1/(100e))) = 0.7071 x (0.4228 x 2.3263 + 0.5772 x 2.6812) = 1.7898 annualised,
        // 0.1132 daily; DSR = Φ((0.15811 - 0.11320) sqrt(1249) / sqrt(1 + 3 x 0.15811 +
        // 9/4 x 0.15811²)) = Φ(1.2830) = 0.9003 (the paper prints 0.9004 from rounded inputs).
        let var_daily = 0.5 / 250.0;
        let sr0 = expected_max_sharpe(100, var_daily).unwrap();
        check("SR0 daily", sr0, 0.1132, 5e-5);
        check("SR0 annualised", sr0 * 250f64.sqrt(), 1.7898, 5e-4);
        let m = Moments {
            n: 1250,
            mean: per_observation(2.5, 250.0),
            sd: 1.0,
            skew: -3.0,
            kurt: 10.0,
        };
        let d = deflated_sharpe(&m, 100, var_daily).unwrap();
        check("DSR", d.dsr, 0.9003, 5e-4);
        assert_eq!(d.trials, 100);
    }

    #[test]
    fn psr_by_hand_for_normal_returns() {
        // Normal returns (skew 0, kurtosis 3): PSR(0) = Φ(SR sqrt(T-1) / sqrt(1 + SR²/2)).
        // SR 0.1, T 101: z = 0.1 x 10 / sqrt(1.005) = 0.997509; Φ(z) = 0.840741.
        let p = probabilistic_sharpe(0.1, 0.0, 101, 0.0, 3.0).unwrap();
        check("PSR", p, 0.840741, 1e-6);
        // One trial: nothing to deflate, DSR = PSR(0).
        let m = Moments {
            n: 101,
            mean: 0.1,
            sd: 1.0,
            skew: 0.0,
            kurt: 3.0,
        };
        check(
            "DSR of one trial",
            deflated_sharpe(&m, 1, 0.3).unwrap().dsr,
            p,
            1e-15,
        );
        // A benchmark equal to the estimate: one half.
        check(
            "PSR(SR)",
            probabilistic_sharpe(0.1, 0.1, 101, 0.0, 3.0).unwrap(),
            0.5,
            1e-15,
        );
    }

    #[test]
    fn moments_by_hand() {
        // 1, 2, 3, 4, 10: mean 4; deviations -3 -2 -1 0 6; m2 = 50/5 = 10, m3 = (-27 - 8 - 1
        // + 216)/5 = 36, m4 = (81 + 16 + 1 + 1296)/5 = 278.8; skew 36 / 10^1.5 = 1.138420,
        // kurtosis 278.8 / 100 = 2.788; sample sd sqrt(50/4).
        let m = moments(&[1.0, 2.0, 3.0, 4.0, 10.0]).unwrap();
        check("mean", m.mean, 4.0, 1e-15);
        check("sd", m.sd, 12.5f64.sqrt(), 1e-15);
        check("skew", m.skew, 36.0 / 10f64.powf(1.5), 1e-12);
        check("kurt", m.kurt, 2.788, 1e-12);
        assert_eq!(moments(&[1.0]), None);
        assert_eq!(moments(&[2.0, 2.0, 2.0]), None);
        assert_eq!(moments(&[1.0, f64::NAN]), None);
        check(
            "variance",
            variance([1.0, 2.0, 3.0, 4.0, 10.0]).unwrap(),
            12.5,
            1e-12,
        );
        assert_eq!(variance([1.0]), None);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            expected_max_sharpe(0, 1.0),
            Err(OverfitError::Input { .. })
        ));
        assert!(matches!(
            expected_max_sharpe(10, -1.0),
            Err(OverfitError::Input { .. })
        ));
        assert!(matches!(
            probabilistic_sharpe(0.1, 0.0, 1, 0.0, 3.0),
            Err(OverfitError::Input { .. })
        ));
        // 1 - γ3 SR + (γ4 - 1)/4 SR² <= 0: skew 20 at SR 0.5 gives 1 - 10 + 0.5 < 0.
        assert!(matches!(
            probabilistic_sharpe(0.5, 0.0, 100, 20.0, 3.0),
            Err(OverfitError::Variance { .. })
        ));
    }

    /// `trials` random walks of `n` returns, the first with drift `edge` per observation
    /// (in units of the noise's sd): the best by Sharpe, the DSR of that choice.
    fn best_of(trials: usize, n: usize, edge: f64, seed: u64) -> (usize, Deflated) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sharpes = Vec::with_capacity(trials);
        let mut best: Option<(usize, Moments)> = None;
        let mut returns = vec![0.0; n];
        for k in 0..trials {
            for r in returns.iter_mut() {
                // Box-Muller: a standard normal from two uniforms.
                let (u1, u2) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                *r = 0.01 * (z + if k == 0 { edge } else { 0.0 });
            }
            let m = moments(&returns).unwrap();
            sharpes.push(m.sharpe());
            if best.is_none_or(|(_, b)| m.sharpe() > b.sharpe()) {
                best = Some((k, m));
            }
        }
        let (k, m) = best.unwrap();
        let v = variance(sharpes.iter().copied()).unwrap();
        (k, deflated_sharpe(&m, trials as u64, v).unwrap())
    }

    #[test]
    fn the_best_of_pure_noise_is_rejected() {
        // 300 zero-drift random walks of 1,000 returns: the best has a Sharpe ratio far from
        // 0 by luck alone, and the DSR says so (below 0.95), for every seed tried; its PSR(0)
        // alone (no deflation, near-normal moments) would have accepted it.
        for seed in 0..5 {
            let (_, d) = best_of(300, 1000, 0.0, seed);
            assert!(d.dsr < 0.95, "seed {seed}: DSR {} of pure noise", d.dsr);
            let undeflated = probabilistic_sharpe(d.sharpe, 0.0, 1000, 0.0, 3.0).unwrap();
            assert!(
                undeflated > 0.95,
                "seed {seed}: PSR(0) {undeflated}: a weak case"
            );
        }
    }

    #[test]
    fn a_planted_edge_survives_deflation() {
        // The same 300 walks, the first with a drift of 0.2 sd per observation: it is the
        // best, and its DSR is above 0.95.
        for seed in 0..5 {
            let (k, d) = best_of(300, 1000, 0.2, seed);
            assert_eq!(k, 0, "seed {seed}: the planted walk is not the best");
            assert!(d.dsr > 0.95, "seed {seed}: DSR {} of a real edge", d.dsr);
        }
    }
}
