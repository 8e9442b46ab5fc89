//! Fuzzing e-trading's parsers on the pinned stable toolchain, where cargo-fuzz (nightly,
//! sanitizer coverage) is not available: a seeded mutation engine ([`mutate`]) over a
//! committed seed corpus (`fuzz/corpus/<target>/`), one target per parser ([`targets`]: kline
//! and funding CSV, zip archives, strategy specs, rule expressions), and a loop ([`engine`])
//! that runs every input under `catch_unwind` and keeps the input of the first panic.
//!
//! Without coverage instrumentation the engine steers by outcomes instead: a generated input
//! joins the pool when its result (accepted, or the error message with its numbers and quoted
//! values left out) is one not seen before. The binary (`src/main.rs`) supervises a worker
//! process, so an abort that cannot unwind (a stack overflow) is caught too; `tests/corpus.rs`
//! replays the whole corpus under `cargo test`.

pub mod engine;
pub mod mutate;
pub mod targets;

pub use engine::{Config, Crash, Report, fuzz, input_file_name, load_corpus, run_one};
pub use mutate::Mutator;
pub use targets::{Outcome, Target};

/// The committed seed corpus: one folder per target.
pub const CORPUS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus");
