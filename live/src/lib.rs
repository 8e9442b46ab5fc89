//! The live side's signal engine: a strategy spec and one param set, fed one closed bar at a
//! time per symbol, returning the signal code and the target position of docs/SEMANTICS.md
//! §2.2, bit-identical to the reference engine's signals on the same history (§6).
//!
//! It is built from kernels' own pieces, none copied: the spec and its resolution
//! (`kernels::spec`), the streaming TA-Lib-equal indicators
//! (`kernels::batch::indicators::Stream`), the bound rules evaluated by the reference's
//! per-bar code (`kernels::expr::BoundRule::eval_at`), the signal code
//! (`kernels::batch::simd::code`) and §2.2's target (`kernels::batch::simd::target`).
//!
//! Invariants: this crate does no IO (callers pass spec text, params and bars) and knows
//! neither Python nor any exchange. It never returns a signal it cannot stand behind: before
//! the warm-up, on a bar out of order, after a gap, for an unknown symbol or a non-finite
//! price it returns a state or an error, never a code.

mod engine;
mod params;

pub use engine::{
    Bar, Decision, LiveError, Position, SNAPSHOT_FORMAT, SignalEngine, Step, interval_ms,
};
pub use params::{ParamsError, params_from_json};

/// The engine semantics this crate follows: the kernels' version, recorded with every result.
pub const ENGINE_VERSION: &str = etrading_kernels::reference::ENGINE_VERSION;

/// The TA-Lib release whose output the streaming indicators reproduce bit for bit
/// (`kernels/src/batch/indicators/mod.rs`); a config computed with another TA-Lib is refused.
pub const TALIB_VERSION: &str = "0.4.0";
