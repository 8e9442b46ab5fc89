//! Strategy spec, rule expressions, indicators by name, Binance leverage brackets and the
//! scalar reference engine: see docs/ARCHITECTURE.md and docs/SEMANTICS.md.
//!
//! Invariant: kernels does no IO and depends on neither data, db nor tokio. The caller reads
//! spec files and passes their text to [`spec::Spec::parse`]; engines pass bar columns as
//! slices and receive results in preallocated outputs.

pub mod batch;
pub mod brackets;
pub mod engine;
pub mod expr;
pub mod gpu;
pub mod indicator;
pub mod parity;
pub mod reference;
pub mod search;
pub mod series;
pub mod spec;
#[cfg(feature = "talib")]
pub mod talib;
