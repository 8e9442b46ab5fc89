//! Search over a spec's parameter space: samplers (grid, random, TPE) that ask and are told in
//! batches, the objectives by name, the filters that discard a trial and the walk-forward
//! aggregation (docs/SEMANTICS.md §3). Pure: no IO, no clock; the caller evaluates each batch
//! with [`crate::batch::run`] and persists the trials.

mod objective;
pub mod overfit;
mod sampler;
mod space;
mod tpe;

pub use objective::{
    DRAWDOWN_FLOOR, Discard, TrialScore, metric_attributes, objective_value, score_trial,
    walk_forward_score,
};
pub use sampler::{Observation, Sampler, SamplerKind, SearchError};
pub use space::{Dim, SearchSpace, same};
pub use tpe::{TpeConfig, gamma};
