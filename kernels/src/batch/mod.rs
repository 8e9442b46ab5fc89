//! Batch kernels: many param sets of one spec over one market in one call, each set's metrics
//! (full run and every walk-forward window) written into a preallocated table. No per-set
//! time series is kept: memory is O(bars x symbols) for inputs plus O(sets x windows) for the
//! results (docs/SEMANTICS.md §4, kernels/ARCHITECTURE.md).
//!
//! Backends: [`Backend::Scalar`] runs [`crate::reference`] per set (the yardstick);
//! [`Backend::Simd`] is the fused lane kernel of [`simd`], in f64 (bit-identical to the
//! reference) or f32 (twice the lanes per vector, within the `f32` tolerance of
//! docs/SEMANTICS.md §4.3). All fill the same [`Metrics`] rows; `etrading parity` compares them.

pub mod indicators;
pub mod lanes;
pub mod simd;
mod windows;

pub use windows::{Window, WindowKind, WindowPlan, WindowPlanError};

/// Float precision of a batch backend, one enum for the SIMD and the GPU kernels (defined
/// with the GPU backend, whose default is f32; the CPU's default is f64: callers name it).
pub use crate::gpu::Precision;

use rayon::prelude::*;

use crate::brackets::BracketTable;
use crate::engine::Metrics;
use crate::reference::{self, Market, ReferenceError};
use crate::spec::{ParamSet, ResolveError, Spec};
use lanes::SimdLevel;

/// Which engine evaluates a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The scalar reference engine, one set after the other (per thread).
    Scalar,
    /// The fused SIMD lane kernel at the given precision (f64: bit-identical to the
    /// reference; f32: twice the lanes, SEMANTICS.md §4.3).
    Simd(Precision),
    /// The WGSL compute kernel of [`crate::gpu`] at the given precision.
    Gpu(Precision),
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Simd(_) => "simd",
            Backend::Gpu(_) => "gpu",
        }
    }

    /// The precision of its arithmetic (the scalar reference: f64).
    pub fn precision(self) -> Precision {
        match self {
            Backend::Scalar => Precision::F64,
            Backend::Simd(p) | Backend::Gpu(p) => p,
        }
    }
}

/// Everything a batch reads besides the param sets.
#[derive(Debug, Clone)]
pub struct BatchInput<'a> {
    pub spec: &'a Spec,
    pub market: &'a Market<'a>,
    /// Bracket tables; matched to the market's symbols by name.
    pub brackets: &'a [BracketTable],
    pub initial_capital: f64,
    /// The bar ranges to score; `windows.windows()[0]` is the full run.
    pub windows: &'a WindowPlan,
}

/// A batch that cannot run. Raised before any hot loop starts.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The message includes the resolve error's, so it is not also chained as a `source`.
    #[error("param set {index}: {error}")]
    Resolve { index: usize, error: ResolveError },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("result table holds {found} rows, the batch needs {expected} (sets x windows)")]
    OutputLength { expected: usize, found: usize },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Gpu(String),
}

/// What a run reports besides its table: the sets a GPU run handed to the CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Sets computed by the SIMD backend after a GPU dispatch failed (their rows are exact).
    pub cpu_fallback_sets: usize,
    /// Why the GPU stopped, when it did.
    pub fallback_reason: Option<String>,
}

impl RunReport {
    /// A line for the user when the GPU did not compute every set.
    pub fn fallback_note(&self) -> Option<String> {
        (self.cpu_fallback_sets > 0).then(|| {
            format!(
                "{} sets ran on the CPU after the GPU failed: {}",
                self.cpu_fallback_sets,
                self.fallback_reason.as_deref().unwrap_or("no reason given")
            )
        })
    }
}

/// Runs `sets` through `backend`, filling `out` (set-major: set `i`, window `w` at
/// `i * windows + w`). `progress` is called with the number of sets just finished (from
/// worker threads).
pub fn run(
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    backend: Backend,
    out: &mut [Metrics],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<RunReport, BatchError> {
    let n_windows = input.windows.len();
    let expected = sets.len() * n_windows;
    if out.len() != expected {
        return Err(BatchError::OutputLength {
            expected,
            found: out.len(),
        });
    }
    match backend {
        Backend::Scalar => run_scalar(input, sets, out, progress).map(|()| RunReport::default()),
        Backend::Simd(precision) => simd::run_at_precision(
            SimdLevel::detect(),
            precision,
            input,
            sets,
            out,
            None,
            progress,
        )
        .map(|()| RunReport::default()),
        Backend::Gpu(precision) => crate::gpu::run(input, sets, precision, out, progress)
            .map(|report| RunReport {
                cpu_fallback_sets: report.cpu_fallback_sets,
                fallback_reason: report.fallback_reason,
            })
            .map_err(|e| BatchError::Gpu(e.to_string())),
    }
}

/// The reference engine per set, sets spread over rayon's threads.
fn run_scalar(
    input: &BatchInput<'_>,
    sets: &[ParamSet],
    out: &mut [Metrics],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), BatchError> {
    let ranges = input.windows.ranges();
    out.par_chunks_mut(ranges.len())
        .zip(sets.par_iter())
        .enumerate()
        .try_for_each(|(index, (row, set))| {
            let resolved = input
                .spec
                .resolve(set)
                .map_err(|error| BatchError::Resolve { index, error })?;
            let (_, results) = reference::run_windows(
                input.spec,
                &resolved,
                input.market,
                input.brackets,
                input.initial_capital,
                &ranges,
            )?;
            for (slot, result) in row.iter_mut().zip(results) {
                *slot = result.metrics;
            }
            progress(1);
            Ok(())
        })
}
