//! The Python module `etrading_live._engine`: a thin binding over [`etrading_live`]'s
//! [`SignalEngine`]; every error is a `LiveError` with the engine's message.

use etrading_live::{Bar, Position, SignalEngine, Step};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

create_exception!(
    _engine,
    LiveError,
    PyException,
    "The live engine refused a spec, bar or snapshot."
);

fn err(e: etrading_live::LiveError) -> PyErr {
    LiveError::new_err(e.to_string())
}

fn position(name: &str) -> PyResult<Position> {
    match name {
        "flat" => Ok(Position::Flat),
        "long" => Ok(Position::Long),
        "short" => Ok(Position::Short),
        other => Err(LiveError::new_err(format!(
            "position {other:?}: expected \"flat\", \"long\" or \"short\""
        ))),
    }
}

/// The streaming signal engine of one spec and one param set.
#[pyclass(name = "SignalEngine", module = "etrading_live._engine")]
struct PySignalEngine {
    inner: SignalEngine,
}

#[pymethods]
impl PySignalEngine {
    #[new]
    #[pyo3(signature = (spec_text, params_json, symbols=None, file="spec.toml"))]
    fn new(
        spec_text: &str,
        params_json: &str,
        symbols: Option<Vec<String>>,
        file: &str,
    ) -> PyResult<Self> {
        SignalEngine::from_json(file, spec_text, params_json, symbols.as_deref())
            .map(|inner| PySignalEngine { inner })
            .map_err(err)
    }

    /// Bars a symbol needs before its first signal.
    #[getter]
    fn warmup_bars(&self) -> usize {
        self.inner.warmup_bars()
    }

    #[getter]
    fn interval_ms(&self) -> i64 {
        self.inner.interval_ms()
    }

    #[getter]
    fn symbols(&self) -> Vec<String> {
        self.inner
            .symbols()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    #[getter]
    fn identity(&self) -> String {
        self.inner.identity().to_string()
    }

    /// Feeds one closed bar: None while warming up, else `(code, from, target)`.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        symbol: &str,
        open_time_ms: i64,
        open: f64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
    ) -> PyResult<Option<(u8, &'static str, Option<&'static str>)>> {
        let bar = Bar {
            open_time_ms,
            open,
            high,
            low,
            close,
            volume,
        };
        match self.inner.update(symbol, &bar).map_err(err)? {
            Step::Warming { .. } => Ok(None),
            Step::Decision(d) => Ok(Some((d.code, d.from.name(), d.target.map(Position::name)))),
        }
    }

    /// The tracked position of `symbol`.
    fn position(&self, symbol: &str) -> PyResult<&'static str> {
        self.inner.position(symbol).map(Position::name).map_err(err)
    }

    /// Tells the engine what `symbol` holds ("flat", "long", "short").
    fn set_position(&mut self, symbol: &str, held: &str) -> PyResult<()> {
        self.inner
            .set_position(symbol, position(held)?)
            .map_err(err)
    }

    /// The whole state as bytes.
    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.snapshot())
    }

    /// Restores a snapshot of an engine of the same spec, params and symbols.
    fn restore(&mut self, data: &[u8]) -> PyResult<()> {
        self.inner.restore(data).map_err(err)
    }
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySignalEngine>()?;
    m.add("LiveError", m.py().get_type::<LiveError>())?;
    m.add("ENGINE_VERSION", etrading_live::ENGINE_VERSION)?;
    m.add("TALIB_VERSION", etrading_live::TALIB_VERSION)?;
    Ok(())
}
