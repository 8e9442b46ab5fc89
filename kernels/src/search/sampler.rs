//! Batched samplers over a spec's parameter space: grid (a seeded permutation of the whole
//! grid), random and TPE. Ask a batch, evaluate it in one kernel dispatch, tell the batch (the
//! caller passes every finished trial back as history on the next ask).
//!
//! On a finite grid no sampler proposes a point twice (neither one already in the history nor
//! one earlier in the same batch); when the grid is exhausted `ask` returns fewer sets.
//! Seeded runs are reproducible: the stream depends on the seed and the number of finished
//! trials at construction, so a resumed run does not replay the first run's draws.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::space::SearchSpace;
use super::tpe::{TpeConfig, TpeModel};
use crate::spec::{GridError, ParamSet, ParamSpace};

/// Which sampler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerKind {
    Grid,
    Random,
    Tpe,
}

impl SamplerKind {
    pub const ALL: [(&'static str, SamplerKind); 3] = [
        ("grid", SamplerKind::Grid),
        ("random", SamplerKind::Random),
        ("tpe", SamplerKind::Tpe),
    ];

    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Grid => "grid",
            SamplerKind::Random => "random",
            SamplerKind::Tpe => "tpe",
        }
    }

    pub fn from_name(name: &str) -> Option<SamplerKind> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }
}

/// One finished trial: its params and objective (higher is better), `None` when it was
/// discarded by a filter (ranked below every scored trial).
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub set: ParamSet,
    pub value: Option<f64>,
}

/// A sampler that cannot run on this space.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SearchError {
    /// The message includes the grid's, so it is not also chained as a `source`.
    #[error("grid sampler: {0}")]
    Grid(GridError),
}

impl From<GridError> for SearchError {
    fn from(e: GridError) -> SearchError {
        SearchError::Grid(e)
    }
}

/// A seeded bijection `k -> (a k + b) mod len` of the grid indices (`gcd(a, len) = 1`).
#[derive(Clone, Debug)]
struct GridOrder {
    len: u64,
    a: u64,
    b: u64,
    next: u64,
}

impl GridOrder {
    fn new(len: u64, rng: &mut impl Rng) -> GridOrder {
        let (a, b) = if len <= 1 {
            (1, 0)
        } else {
            let mut a = rng.random_range(1..len);
            while gcd(a, len) != 1 {
                a = rng.random_range(1..len);
            }
            (a, rng.random_range(0..len))
        };
        GridOrder { len, a, b, next: 0 }
    }

    fn at(&self, k: u64) -> u64 {
        ((u128::from(self.a) * u128::from(k) + u128::from(self.b)) % u128::from(self.len)) as u64
    }

    /// The next index in the permutation not in `seen`, or `None` when all are.
    fn next_unseen(&mut self, seen: &HashSet<u64>) -> Option<u64> {
        while self.next < self.len {
            let index = self.at(self.next);
            self.next += 1;
            if !seen.contains(&index) {
                return Some(index);
            }
        }
        None
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A sampler with its random stream and the grid points it has seen.
#[derive(Clone, Debug)]
pub struct Sampler {
    kind: SamplerKind,
    space: SearchSpace,
    param_space: ParamSpace,
    rng: ChaCha8Rng,
    tpe: TpeConfig,
    /// The grid's order (every kind on a finite grid: the grid sampler's sequence, the others'
    /// fallback when their draws keep hitting seen points).
    order: Option<GridOrder>,
    seen: HashSet<u64>,
}

/// Draws per point before a sampler on a finite grid falls back to the grid order.
const DRAWS_PER_POINT: usize = 32;

impl Sampler {
    /// A sampler of `kind` over `space`, seeded with `seed`, that will not repeat the grid
    /// points of `history` (a resumed study's finished trials).
    pub fn new(
        kind: SamplerKind,
        space: &ParamSpace,
        seed: u64,
        tpe: TpeConfig,
        history: &[Observation],
    ) -> Result<Sampler, SearchError> {
        let search = SearchSpace::new(space);
        let grid_len = match space.grid_len() {
            Ok(len) => Some(len),
            Err(e) if kind == SamplerKind::Grid => return Err(e.into()),
            Err(_) => None,
        };
        let stream = seed ^ (history.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = ChaCha8Rng::seed_from_u64(stream);
        let order = grid_len.map(|len| GridOrder::new(len, &mut rng));
        let seen = history
            .iter()
            .filter_map(|o| search.grid_index(&o.set))
            .collect();
        Ok(Sampler {
            kind,
            space: search,
            param_space: space.clone(),
            rng,
            tpe,
            order,
            seen,
        })
    }

    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    /// The number of grid points, when the space is a finite grid.
    pub fn grid_len(&self) -> Option<u64> {
        self.order.as_ref().map(|o| o.len)
    }

    /// Up to `n` new param sets, given every finished trial so far (`history`, in any order).
    /// Fewer than `n` only when a finite grid has no unseen point left.
    pub fn ask(&mut self, history: &[Observation], n: usize) -> Vec<ParamSet> {
        for o in history {
            if let Some(index) = self.space.grid_index(&o.set) {
                self.seen.insert(index);
            }
        }
        let model = match self.kind {
            SamplerKind::Tpe => self.fit(history),
            SamplerKind::Grid | SamplerKind::Random => None,
        };
        let mut sets = Vec::with_capacity(n);
        for _ in 0..n {
            let next = match self.kind {
                SamplerKind::Grid => self.next_grid_point(),
                SamplerKind::Random | SamplerKind::Tpe => self.draw_unseen(model.as_ref()),
            };
            match next {
                Some(set) => sets.push(set),
                None => break,
            }
        }
        sets
    }

    fn fit(&self, history: &[Observation]) -> Option<TpeModel> {
        let mut coords = Vec::with_capacity(history.len());
        let mut values = Vec::with_capacity(history.len());
        for o in history {
            let c: Option<Vec<f64>> = o
                .set
                .values
                .iter()
                .enumerate()
                .map(|(d, v)| self.space.coordinate_of(d, v))
                .collect();
            if let (Some(c), true) = (c, o.set.values.len() == self.space.dims.len()) {
                coords.push(c);
                values.push(o.value.filter(|v| v.is_finite()));
            }
        }
        if coords.len() < self.tpe.n_startup || values.iter().all(Option::is_none) {
            return None;
        }
        Some(TpeModel::fit(&self.space, &coords, &values, &self.tpe))
    }

    fn next_grid_point(&mut self) -> Option<ParamSet> {
        let index = self.order.as_mut()?.next_unseen(&self.seen)?;
        self.seen.insert(index);
        self.param_space.decode(index).ok()
    }

    /// A draw (TPE when fitted, else uniform) that is not a seen grid point; on a grid whose
    /// draws keep landing on seen points, the next unseen point of the grid order.
    fn draw_unseen(&mut self, model: Option<&TpeModel>) -> Option<ParamSet> {
        let finite = self.order.is_some();
        for _ in 0..DRAWS_PER_POINT {
            let set = match model {
                Some(model) => {
                    let coords = model.suggest(&self.space, &mut self.rng);
                    ParamSet {
                        values: coords
                            .iter()
                            .enumerate()
                            .map(|(d, &c)| self.space.value_at(d, c))
                            .collect(),
                    }
                }
                None => self.space.random_set(&mut self.rng),
            };
            if !finite {
                return Some(set);
            }
            if let Some(index) = self.space.grid_index(&set)
                && self.seen.insert(index)
            {
                return Some(set);
            }
        }
        self.next_grid_point()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_order_is_a_permutation() {
        let check = |len: u64, seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let order = GridOrder::new(len, &mut rng);
            let mut all: Vec<u64> = (0..len).map(|k| order.at(k)).collect();
            all.sort_unstable();
            assert_eq!(all, (0..len).collect::<Vec<_>>(), "len {len} seed {seed}");
        };
        check(1, 0);
        check(2, 1);
        check(1500, 7);
        check(97, 3);
        check(360, 11);
    }
}

#[cfg(test)]
mod space_tests {
    use super::*;
    use crate::spec::Spec;

    const SPEC: &str = r#"
[strategy]
id = "t"
symbols = ["BTCUSDT"]
interval = "1h"
[indicators]
rsi = { fn = "RSI", input = "close", timeperiod = "rsi_window" }
[params]
rsi_window = [14, 21]
rsi_lower = { low = 20, high = 40, step = 5 }
stop = { low = 0.01, high = 0.05, step = 0.01 }
leverage = { low = 1, high = 3, step = 1 }
[rules]
long_entry = "rsi < rsi_lower"
long_exit = "rsi > 70"
[risk]
margin_mode = "isolated"
position_size = 0.25
max_concurrent_positions = 1
stop_loss = "stop"
[execution]
fill = "close"
taker_fee = 0.0005
slippage = 0.0
funding = "none"
"#;

    fn space() -> ParamSpace {
        Spec::parse("t.toml", SPEC).expect("spec").params
    }

    #[test]
    fn every_sampler_covers_the_grid_without_repeats_then_stops() {
        let space = space();
        let len = space.grid_len().expect("grid") as usize; // 2 x 5 x 5 x 3 = 150
        for kind in [SamplerKind::Grid, SamplerKind::Random, SamplerKind::Tpe] {
            let mut sampler = Sampler::new(kind, &space, 7, TpeConfig::default(), &[]).unwrap();
            let mut history: Vec<Observation> = Vec::new();
            let search = SearchSpace::new(&space);
            loop {
                let sets = sampler.ask(&history, 16);
                if sets.is_empty() {
                    break;
                }
                for set in sets {
                    let index = search.grid_index(&set).expect("on the grid");
                    let value = Some(-((index % 17) as f64));
                    history.push(Observation { set, value });
                }
            }
            let mut indices: Vec<u64> = history
                .iter()
                .map(|o| search.grid_index(&o.set).unwrap())
                .collect();
            indices.sort_unstable();
            assert_eq!(indices, (0..len as u64).collect::<Vec<_>>(), "{kind:?}");
        }
    }

    #[test]
    fn seeded_runs_repeat_and_resume_skips_finished_points() {
        let space = space();
        let run = |seed: u64| {
            let mut sampler =
                Sampler::new(SamplerKind::Tpe, &space, seed, TpeConfig::default(), &[]).unwrap();
            let mut history = Vec::new();
            for _ in 0..4 {
                for set in sampler.ask(&history, 8) {
                    let value = set.values[1].as_f64();
                    history.push(Observation { set, value });
                }
            }
            history
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        let first = run(3);
        let search = SearchSpace::new(&space);
        let mut grid =
            Sampler::new(SamplerKind::Grid, &space, 3, TpeConfig::default(), &first).unwrap();
        let rest = grid.ask(&[], 1000);
        assert_eq!(rest.len() + first.len(), 150);
        for set in &rest {
            assert!(
                !first.iter().any(|o| o.set == *set),
                "grid point {} sampled again",
                search.grid_index(set).unwrap()
            );
        }
    }
}
