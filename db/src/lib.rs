//! Persistence of e-trading: studies in SQLite in Optuna's own schema ([`study`]), and
//! promotion of golden configs to PostgreSQL for the live bot ([`pg`]).
//!
//! Invariant: db stores and loads; it runs no backtest and knows no strategy semantics beyond
//! the types it persists.

pub mod lock;
pub mod pg;
pub mod study;
