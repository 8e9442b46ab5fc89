//! The fused SIMD lane kernel.

use super::{BatchError, BatchInput};
use crate::engine::Metrics;
use crate::spec::ParamSet;

/// Runs the SIMD backend.
pub fn run(
    _input: &BatchInput<'_>,
    _sets: &[ParamSet],
    _out: &mut [Metrics],
    _progress: &(dyn Fn(usize) + Sync),
) -> Result<(), BatchError> {
    Err(BatchError::Unsupported(
        "the SIMD backend is being written".to_string(),
    ))
}
