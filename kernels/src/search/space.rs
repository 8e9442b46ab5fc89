//! The parameter space as the samplers see it: each param becomes a dimension with an internal
//! coordinate (a grid index, a choice index, or a number on a linear or log scale), so that
//! samplers never look at TOML domains.

use rand::Rng;

use crate::spec::{ParamDomain, ParamSet, ParamSpace, ParamValue};

/// One param, for sampling.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    /// One value.
    Fixed(ParamValue),
    /// Unordered choices (a list or `choices`): sampled by index.
    Choice(Vec<ParamValue>),
    /// An ordered grid `low + i x step`, `i` in `0..n` (int or float range with a step).
    Steps {
        /// The domain (for its values).
        domain: ParamDomain,
        /// Number of points.
        n: u64,
    },
    /// A continuous range; `log` samples `ln x` uniformly; `integer` rounds to an integer.
    Continuous {
        low: f64,
        high: f64,
        log: bool,
        integer: bool,
    },
}

/// The dimensions of a [`ParamSpace`], in its order.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchSpace {
    pub names: Vec<String>,
    pub dims: Vec<Dim>,
    /// Grid values of each `Steps` dimension (empty for the others).
    step_values: Vec<Vec<ParamValue>>,
}

impl SearchSpace {
    pub fn new(space: &ParamSpace) -> SearchSpace {
        let mut dims = Vec::with_capacity(space.params.len());
        let mut step_values = Vec::with_capacity(space.params.len());
        for param in &space.params {
            let (dim, values) = match &param.domain {
                ParamDomain::Fixed(value) => (Dim::Fixed(value.clone()), Vec::new()),
                ParamDomain::Categorical(values) => (Dim::Choice(values.clone()), Vec::new()),
                domain @ (ParamDomain::IntRange { .. } | ParamDomain::FloatRange { .. }) => {
                    let values = domain.discrete_values().unwrap_or_default();
                    (
                        Dim::Steps {
                            domain: domain.clone(),
                            n: values.len() as u64,
                        },
                        values,
                    )
                }
                ParamDomain::Continuous {
                    low,
                    high,
                    log,
                    integer,
                } => (
                    Dim::Continuous {
                        low: *low,
                        high: *high,
                        log: *log,
                        integer: *integer,
                    },
                    Vec::new(),
                ),
            };
            dims.push(dim);
            step_values.push(values);
        }
        SearchSpace {
            names: space.params.iter().map(|p| p.name.clone()).collect(),
            dims,
            step_values,
        }
    }

    /// Whether every dimension is discrete (the space is a finite grid).
    pub fn is_discrete(&self) -> bool {
        !self
            .dims
            .iter()
            .any(|d| matches!(d, Dim::Continuous { .. }))
    }

    /// Number of values of dimension `d` when discrete.
    pub fn cardinality(&self, d: usize) -> Option<u64> {
        match &self.dims[d] {
            Dim::Fixed(_) => Some(1),
            Dim::Choice(values) => Some(values.len() as u64),
            Dim::Steps { n, .. } => Some(*n),
            Dim::Continuous { .. } => None,
        }
    }

    /// The sampling interval of a numeric dimension's coordinate: `[-0.5, n - 0.5]` for a
    /// grid index, `[low, high]` (or their logs) for a continuous range, widened by half a
    /// unit for integers so both ends are as likely as the inner values.
    pub fn coordinate_bounds(&self, d: usize) -> Option<(f64, f64)> {
        match &self.dims[d] {
            Dim::Steps { n, .. } => Some((-0.5, *n as f64 - 0.5)),
            Dim::Continuous {
                low,
                high,
                log: true,
                integer,
            } => {
                let (low, high) = if *integer {
                    (low - 0.5, high + 0.5)
                } else {
                    (*low, *high)
                };
                Some((low.ln(), high.ln()))
            }
            Dim::Continuous {
                low,
                high,
                log: false,
                integer,
            } => Some(if *integer {
                (low - 0.5, high + 0.5)
            } else {
                (*low, *high)
            }),
            Dim::Fixed(_) | Dim::Choice(_) => None,
        }
    }

    /// The value of dimension `d` at a numeric coordinate (rounded to the grid, clamped).
    pub fn value_at(&self, d: usize, coordinate: f64) -> ParamValue {
        match &self.dims[d] {
            Dim::Steps { n, .. } => {
                let index = coordinate.round().clamp(0.0, *n as f64 - 1.0) as usize;
                self.step_values[d][index].clone()
            }
            Dim::Continuous {
                low,
                high,
                log,
                integer,
            } => {
                let x = if *log { coordinate.exp() } else { coordinate };
                if *integer {
                    ParamValue::Int(x.round().clamp(*low, *high) as i64)
                } else {
                    ParamValue::Float(x.clamp(*low, *high))
                }
            }
            Dim::Fixed(value) => value.clone(),
            Dim::Choice(values) => values[coordinate as usize].clone(),
        }
    }

    /// The value of a discrete dimension `d` at index `i`.
    pub fn value_at_index(&self, d: usize, i: u64) -> ParamValue {
        match &self.dims[d] {
            Dim::Fixed(value) => value.clone(),
            Dim::Choice(values) => values[i as usize].clone(),
            Dim::Steps { .. } => self.step_values[d][i as usize].clone(),
            Dim::Continuous { .. } => self.value_at(d, i as f64),
        }
    }

    /// The coordinate of `value` in dimension `d`: its index for a discrete dimension, the
    /// number (or its log) for a continuous one; `None` when the value is not in the domain.
    pub fn coordinate_of(&self, d: usize, value: &ParamValue) -> Option<f64> {
        match &self.dims[d] {
            Dim::Fixed(fixed) => same(fixed, value).then_some(0.0),
            Dim::Choice(values) => values.iter().position(|v| same(v, value)).map(|i| i as f64),
            Dim::Steps { .. } => self.step_values[d]
                .iter()
                .position(|v| same(v, value))
                .map(|i| i as f64),
            Dim::Continuous {
                low,
                high,
                log,
                integer,
            } => {
                let x = value.as_f64()?;
                let inside = x >= *low && x <= *high && (!*integer || x.fract() == 0.0);
                inside.then(|| if *log { x.ln() } else { x })
            }
        }
    }

    /// The grid index of `set` (mixed radix, last param fastest, as
    /// [`ParamSpace::decode`]); `None` when a value is off the grid or the space is continuous.
    pub fn grid_index(&self, set: &ParamSet) -> Option<u64> {
        if set.values.len() != self.dims.len() {
            return None;
        }
        let mut index: u64 = 0;
        for (d, value) in set.values.iter().enumerate() {
            let radix = self.cardinality(d)?;
            let i = self.coordinate_of(d, value)? as u64;
            index = index.checked_mul(radix)?.checked_add(i)?;
        }
        Some(index)
    }

    /// A uniformly random set (log-uniform on log ranges).
    pub fn random_set(&self, rng: &mut impl Rng) -> ParamSet {
        let values = (0..self.dims.len())
            .map(|d| match &self.dims[d] {
                Dim::Fixed(value) => value.clone(),
                Dim::Choice(values) => values[rng.random_range(0..values.len())].clone(),
                Dim::Steps { n, .. } => self.value_at_index(d, rng.random_range(0..*n)),
                Dim::Continuous { .. } => {
                    let (low, high) = self.coordinate_bounds(d).unwrap_or((0.0, 0.0));
                    self.value_at(d, low + (high - low) * rng.random::<f64>())
                }
            })
            .collect();
        ParamSet { values }
    }
}

/// Equal values, counting an integer and a float of the same number as equal (Optuna stores
/// every number as a float).
pub fn same(a: &ParamValue, b: &ParamValue) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}
