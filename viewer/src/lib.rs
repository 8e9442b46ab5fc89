//! The e-trading report viewer: a study browser (virtualised trials table, parameter heatmap,
//! leverage and IS/OOS scatters) and trial pages (price with trades, equity and drawdown,
//! margin usage, funding, trade table, monthly returns, walk-forward windows), drawn on
//! `<canvas>` by Rust compiled to wasm32.
//!
//! It reads only the reports JSON schema (`etrading.study/1`, `etrading.run/1`; see
//! [`model`]). The logic (decimation, sorting, filtering, binning, zoom) is plain Rust tested
//! on the host; only [`app`] touches the browser and is compiled for wasm32 alone.

pub mod axis;
pub mod decimate;
pub mod heatmap;
pub mod model;
pub mod pages;
pub mod table;

#[cfg(target_arch = "wasm32")]
mod app;

/// The built viewer, embedded at build time (see `viewer/build.rs`).
pub mod dist {
    /// The wasm module and its wasm-bindgen glue (`--target no-modules`, which defines the
    /// global `wasm_bindgen` with `initSync`, `show_study` and `show_run`).
    #[derive(Debug, Clone, Copy)]
    pub struct Viewer {
        pub wasm: &'static [u8],
        pub js: &'static str,
    }

    include!(concat!(env!("OUT_DIR"), "/dist.rs"));
}
