//! The Tree-structured Parzen Estimator (Bergstra et al. 2011), independent per parameter, in
//! the form of Optuna's default `TPESampler`: the finished trials are split into the best
//! `gamma(n) = min(ceil(0.1 n), 25)` ("below") and the rest ("above"); each side becomes a
//! Parzen mixture (truncated Gaussians on numeric coordinates, smoothed frequencies on choices)
//! with a prior component; `n_candidates` draws from the "below" mixture are scored by
//! `log l(x) - log g(x)` and the best is taken.

use rand::Rng;

use super::space::{Dim, SearchSpace};

/// TPE settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TpeConfig {
    /// Trials sampled at random before the model is used (Optuna's default: 10).
    pub n_startup: usize,
    /// Draws from `l(x)` scored per parameter (Optuna's default: 24).
    pub n_candidates: usize,
    /// Weight of the prior component of each mixture (Optuna's default: 1.0).
    pub prior_weight: f64,
    /// One joint mixture over every parameter (Optuna's `multivariate=True`), which sees
    /// interactions between parameters; else one mixture per parameter.
    pub multivariate: bool,
}

impl Default for TpeConfig {
    fn default() -> Self {
        TpeConfig {
            n_startup: 10,
            n_candidates: 24,
            prior_weight: 1.0,
            multivariate: true,
        }
    }
}

/// Size of the "below" group among `n` finished trials.
pub fn gamma(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// A mixture of truncated Gaussians on `[low, high]`.
#[derive(Clone, Debug)]
pub(crate) struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    /// `ln(weight / normaliser of the truncated Gaussian)`, per component.
    log_scale: Vec<f64>,
    cumulative: Vec<f64>,
    low: f64,
    high: f64,
}

impl Parzen {
    /// The mixture of the observations `xs` plus a prior centred on the interval with width
    /// `high - low`. Bandwidths: the larger distance to a neighbour (the interval's ends at the
    /// edges), clipped to `[(high - low) / min(100, 1 + n), high - low]`.
    pub(crate) fn new(xs: &[f64], low: f64, high: f64, prior_weight: f64) -> Parzen {
        let width = (high - low).max(f64::MIN_POSITIVE);
        let mut comps: Vec<(f64, f64, bool)> = xs.iter().map(|&x| (x, 1.0, false)).collect();
        comps.push((0.5 * (low + high), prior_weight, true));
        comps.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = comps.len();
        let min_sigma = width / (100.0_f64).min(1.0 + n as f64);
        let total_weight: f64 = comps.iter().map(|c| c.1).sum();
        let mut parzen = Parzen {
            mus: Vec::with_capacity(n),
            sigmas: Vec::with_capacity(n),
            log_scale: Vec::with_capacity(n),
            cumulative: Vec::with_capacity(n),
            low,
            high,
        };
        let mut acc = 0.0;
        for i in 0..n {
            let (mu, weight, prior) = comps[i];
            let sigma = if prior {
                width
            } else {
                let left = if i == 0 {
                    mu - low
                } else {
                    mu - comps[i - 1].0
                };
                let right = if i + 1 == n {
                    high - mu
                } else {
                    comps[i + 1].0 - mu
                };
                left.max(right).clamp(min_sigma, width)
            };
            let mass =
                (normal_cdf((high - mu) / sigma) - normal_cdf((low - mu) / sigma)).max(1e-300);
            let weight = weight / total_weight;
            parzen.mus.push(mu);
            parzen.sigmas.push(sigma);
            parzen.log_scale.push(
                weight.ln() - mass.ln() - sigma.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln(),
            );
            acc += weight;
            parzen.cumulative.push(acc);
        }
        parzen
    }

    /// `ln` of the mixture density at `x`.
    pub(crate) fn log_pdf(&self, x: f64) -> f64 {
        let terms =
            self.mus
                .iter()
                .zip(&self.sigmas)
                .zip(&self.log_scale)
                .map(|((mu, sigma), scale)| {
                    let z = (x - mu) / sigma;
                    scale - 0.5 * z * z
                });
        log_sum_exp(terms)
    }

    /// One draw: a component by weight, then its Gaussian truncated to `[low, high]` (by
    /// rejection; a uniform draw after 64 rejections).
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> f64 {
        let u: f64 = rng.random::<f64>() * self.cumulative.last().copied().unwrap_or(1.0);
        let j = self
            .cumulative
            .partition_point(|&c| c < u)
            .min(self.mus.len() - 1);
        for _ in 0..64 {
            let x = self.mus[j] + self.sigmas[j] * standard_normal(rng);
            if x >= self.low && x <= self.high {
                return x;
            }
        }
        self.low + (self.high - self.low) * rng.random::<f64>()
    }
}

/// Smoothed choice frequencies: `(count_k + prior / K) / (n + prior)`.
#[derive(Clone, Debug)]
pub(crate) struct Frequencies {
    log_p: Vec<f64>,
    cumulative: Vec<f64>,
}

impl Frequencies {
    pub(crate) fn new(indices: &[f64], k: usize, prior_weight: f64) -> Frequencies {
        let mut counts = vec![prior_weight / k as f64; k];
        for &i in indices {
            if let Some(c) = counts.get_mut(i as usize) {
                *c += 1.0;
            }
        }
        let total: f64 = counts.iter().sum();
        let mut acc = 0.0;
        let cumulative = counts
            .iter()
            .map(|c| {
                acc += c / total;
                acc
            })
            .collect();
        Frequencies {
            log_p: counts.iter().map(|c| (c / total).ln()).collect(),
            cumulative,
        }
    }

    pub(crate) fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random::<f64>() * self.cumulative.last().copied().unwrap_or(1.0);
        self.cumulative
            .partition_point(|&c| c < u)
            .min(self.log_p.len() - 1)
    }
}

/// The two models of one dimension.
#[derive(Clone, Debug)]
enum DimModel {
    Fixed,
    Numeric {
        below: Parzen,
        above: Parzen,
    },
    Choice {
        below: Frequencies,
        above: Frequencies,
    },
}

/// The fitted TPE: one pair of models per dimension, or one joint pair.
#[derive(Clone, Debug)]
pub(crate) struct TpeModel {
    dims: Vec<DimModel>,
    joint: Option<(Joint, Joint)>,
    n_candidates: usize,
}

/// One kernel per observation over every dimension jointly, plus the prior: Gaussians (sigma
/// by Scott's rule as Optuna's multivariate TPE, `0.2 n^(-1/(d+4)) (high - low)`) truncated
/// to the bounds on numeric coordinates, and on choices `1 + prior / K` on the observed one,
/// `prior / K` on the others, normalised.
#[derive(Clone, Debug)]
pub(crate) struct Joint {
    /// `points[j][d]`: component `j`'s centre (numeric) or observed index (choice); the last
    /// component is the prior.
    points: Vec<Vec<f64>>,
    log_weights: Vec<f64>,
    cumulative: Vec<f64>,
    /// Per dimension: `None` for fixed, `Some(Numeric)` or `Some(Choice)`.
    dims: Vec<JointDim>,
}

#[derive(Clone, Debug)]
enum JointDim {
    Fixed,
    Numeric {
        low: f64,
        high: f64,
        sigma: f64,
        prior_sigma: f64,
        discrete: bool,
    },
    Choice {
        k: usize,
        prior_weight: f64,
    },
}

impl Joint {
    fn new(space: &SearchSpace, rows: &[&Vec<f64>], prior_weight: f64) -> Joint {
        let n = rows.len().max(1) as f64;
        let d = space.dims.len() as f64;
        let dims = (0..space.dims.len())
            .map(|i| match &space.dims[i] {
                Dim::Fixed(_) => JointDim::Fixed,
                Dim::Choice(values) => JointDim::Choice {
                    k: values.len(),
                    prior_weight,
                },
                Dim::Steps { .. } | Dim::Continuous { .. } => {
                    let (low, high) = space.coordinate_bounds(i).unwrap_or((0.0, 1.0));
                    let width = (high - low).max(f64::MIN_POSITIVE);
                    JointDim::Numeric {
                        low,
                        high,
                        sigma: (0.2 * n.powf(-1.0 / (d + 4.0)) * width).max(width / 100.0),
                        prior_sigma: width,
                        discrete: matches!(space.dims[i], Dim::Steps { .. }),
                    }
                }
            })
            .collect::<Vec<_>>();
        let mut points: Vec<Vec<f64>> = rows.iter().map(|r| (*r).clone()).collect();
        points.push(
            dims.iter()
                .map(|dim| match dim {
                    JointDim::Numeric { low, high, .. } => 0.5 * (low + high),
                    _ => -1.0,
                })
                .collect(),
        );
        let total = rows.len() as f64 + prior_weight;
        let mut log_weights = vec![(1.0 / total).ln(); rows.len()];
        log_weights.push((prior_weight / total).ln());
        let mut acc = 0.0;
        let cumulative = log_weights
            .iter()
            .map(|w| {
                acc += w.exp();
                acc
            })
            .collect();
        Joint {
            points,
            log_weights,
            cumulative,
            dims,
        }
    }

    fn is_prior(&self, j: usize) -> bool {
        j + 1 == self.points.len()
    }

    /// `ln` of component `j`'s kernel in dimension `d` at `x`.
    fn log_kernel(&self, j: usize, d: usize, x: f64) -> f64 {
        match &self.dims[d] {
            JointDim::Fixed => 0.0,
            JointDim::Numeric {
                low,
                high,
                sigma,
                prior_sigma,
                ..
            } => {
                let mu = self.points[j][d];
                let s = if self.is_prior(j) {
                    *prior_sigma
                } else {
                    *sigma
                };
                let mass = (normal_cdf((high - mu) / s) - normal_cdf((low - mu) / s)).max(1e-300);
                let z = (x - mu) / s;
                -0.5 * z * z - s.ln() - mass.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
            }
            JointDim::Choice { k, prior_weight } => {
                let kf = *k as f64;
                if self.is_prior(j) {
                    -(kf.ln())
                } else {
                    let base = prior_weight / kf;
                    let p = if x == self.points[j][d] {
                        base + 1.0
                    } else {
                        base
                    };
                    (p / (1.0 + prior_weight)).ln()
                }
            }
        }
    }

    fn log_pdf(&self, x: &[f64]) -> f64 {
        let terms = (0..self.points.len()).map(|j| {
            self.log_weights[j]
                + (0..x.len())
                    .map(|d| self.log_kernel(j, d, x[d]))
                    .sum::<f64>()
        });
        log_sum_exp(terms)
    }

    fn sample(&self, rng: &mut impl Rng) -> Vec<f64> {
        let u: f64 = rng.random::<f64>() * self.cumulative.last().copied().unwrap_or(1.0);
        let j = self
            .cumulative
            .partition_point(|&c| c < u)
            .min(self.points.len() - 1);
        self.dims
            .iter()
            .enumerate()
            .map(|(d, dim)| match dim {
                JointDim::Fixed => 0.0,
                JointDim::Numeric {
                    low,
                    high,
                    sigma,
                    prior_sigma,
                    discrete,
                } => {
                    let mu = self.points[j][d];
                    let s = if self.is_prior(j) {
                        *prior_sigma
                    } else {
                        *sigma
                    };
                    let mut x = low + (high - low) * rng.random::<f64>();
                    for _ in 0..64 {
                        let y = mu + s * standard_normal(rng);
                        if y >= *low && y <= *high {
                            x = y;
                            break;
                        }
                    }
                    if *discrete {
                        x.round().clamp(0.0, high - 0.5)
                    } else {
                        x
                    }
                }
                JointDim::Choice { k, prior_weight } => {
                    let kf = *k as f64;
                    if self.is_prior(j) {
                        rng.random_range(0..*k) as f64
                    } else {
                        // Observed choice with probability (1 + prior/K) / (1 + prior).
                        let keep = (1.0 + prior_weight / kf) / (1.0 + prior_weight);
                        if rng.random::<f64>() < keep {
                            self.points[j][d]
                        } else {
                            let other = rng.random_range(0..k - 1);
                            let observed = self.points[j][d] as usize;
                            (if other >= observed { other + 1 } else { other }) as f64
                        }
                    }
                }
            })
            .collect()
    }
}

impl TpeModel {
    /// Fits the models: `coords[i]` holds observation `i`'s coordinate per dimension and
    /// `values[i]` its objective (higher is better; `None` for a discarded trial, the worst).
    pub(crate) fn fit(
        space: &SearchSpace,
        coords: &[Vec<f64>],
        values: &[Option<f64>],
        config: &TpeConfig,
    ) -> TpeModel {
        let mut order: Vec<usize> = (0..coords.len()).collect();
        order.sort_by(|&a, &b| {
            let va = values[a].unwrap_or(f64::NEG_INFINITY);
            let vb = values[b].unwrap_or(f64::NEG_INFINITY);
            vb.total_cmp(&va).then(a.cmp(&b))
        });
        let valid = values.iter().filter(|v| v.is_some()).count();
        let n_below = gamma(coords.len()).min(valid).max(1);
        let (below, above) = order.split_at(n_below.min(order.len()));
        let column =
            |rows: &[usize], d: usize| -> Vec<f64> { rows.iter().map(|&i| coords[i][d]).collect() };
        let dims = (0..space.dims.len())
            .map(|d| match &space.dims[d] {
                Dim::Fixed(_) => DimModel::Fixed,
                Dim::Choice(values) => DimModel::Choice {
                    below: Frequencies::new(&column(below, d), values.len(), config.prior_weight),
                    above: Frequencies::new(&column(above, d), values.len(), config.prior_weight),
                },
                Dim::Steps { .. } | Dim::Continuous { .. } => {
                    let (low, high) = space.coordinate_bounds(d).unwrap_or((0.0, 1.0));
                    DimModel::Numeric {
                        below: Parzen::new(&column(below, d), low, high, config.prior_weight),
                        above: Parzen::new(&column(above, d), low, high, config.prior_weight),
                    }
                }
            })
            .collect();
        let joint = config.multivariate.then(|| {
            let rows = |group: &[usize]| group.iter().map(|&i| &coords[i]).collect::<Vec<_>>();
            (
                Joint::new(space, &rows(below), config.prior_weight),
                Joint::new(space, &rows(above), config.prior_weight),
            )
        });
        TpeModel {
            dims,
            joint,
            n_candidates: config.n_candidates.max(1),
        }
    }

    /// One suggested coordinate per dimension.
    pub(crate) fn suggest(&self, space: &SearchSpace, rng: &mut impl Rng) -> Vec<f64> {
        if let Some((below, above)) = &self.joint {
            let mut best = (f64::NEG_INFINITY, Vec::new());
            for _ in 0..self.n_candidates {
                let x = below.sample(rng);
                let score = below.log_pdf(&x) - above.log_pdf(&x);
                if score > best.0 || best.1.is_empty() {
                    best = (score, x);
                }
            }
            return best.1;
        }
        self.dims
            .iter()
            .enumerate()
            .map(|(d, model)| match model {
                DimModel::Fixed => 0.0,
                DimModel::Choice { below, above } => {
                    let mut best = (f64::NEG_INFINITY, 0usize);
                    for _ in 0..self.n_candidates {
                        let k = below.sample(rng);
                        let score = below.log_p[k] - above.log_p[k];
                        if score > best.0 {
                            best = (score, k);
                        }
                    }
                    best.1 as f64
                }
                DimModel::Numeric { below, above } => {
                    let discrete = matches!(space.dims[d], Dim::Steps { .. });
                    let mut best = (f64::NEG_INFINITY, below.mus[0]);
                    for _ in 0..self.n_candidates {
                        let mut x = below.sample(rng);
                        if discrete {
                            x = x.round().clamp(0.0, below.high - 0.5);
                        }
                        let score = below.log_pdf(x) - above.log_pdf(x);
                        if score > best.0 {
                            best = (score, x);
                        }
                    }
                    best.1
                }
            })
            .collect()
    }
}

fn log_sum_exp(terms: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = terms.clone().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + terms.map(|t| (t - max).exp()).sum::<f64>().ln()
}

/// A standard normal draw (Box-Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The standard normal CDF, through `erf` (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

fn erf(x: f64) -> f64 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    sign * (1.0 - poly * (-x * x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_follows_optuna() {
        let check = |n: usize, expect: usize| assert_eq!(gamma(n), expect, "gamma({n})");
        check(1, 1);
        check(10, 1);
        check(11, 2);
        check(100, 10);
        check(1000, 25);
    }

    #[test]
    fn normal_cdf_matches_tables() {
        let check = |z: f64, expect: f64| {
            assert!(
                (normal_cdf(z) - expect).abs() < 2e-7,
                "Phi({z}) = {}",
                normal_cdf(z)
            );
        };
        check(0.0, 0.5);
        check(1.0, 0.841_344_746);
        check(-1.96, 0.024_997_895);
    }

    #[test]
    fn parzen_density_integrates_to_one() {
        let parzen = Parzen::new(&[0.2, 0.25, 0.9], 0.0, 1.0, 1.0);
        let n = 10_000;
        let integral: f64 = (0..n)
            .map(|i| parzen.log_pdf((i as f64 + 0.5) / n as f64).exp() / n as f64)
            .sum();
        assert!((integral - 1.0).abs() < 1e-3, "integral {integral}");
    }
}
