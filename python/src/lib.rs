//! The Python module `etrading_live._engine`: a thin binding over [`etrading_live`]'s
//! [`SignalEngine`], over the db crate's reader of PostgreSQL's `active_configs`
//! ([`load_active_config`]) and over the data crate's strict klines loader ([`load_bars`], for
//! replays). Every error is a `LiveError` with the underlying crate's message.

use std::path::PathBuf;

use etrading_data::{AlignPolicy, Interval, LoadOptions};
use etrading_db::pg;
use etrading_live::{Bar, Position, SignalEngine, Step};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

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

    /// The order side's numbers as the reference resolves them for these params, as JSON:
    /// `{"risk": {...}, "execution": {...}, "symbol_leverage": {symbol: leverage}}` (the
    /// `resolved` and `symbol_leverage` columns of `active_configs` have the same form).
    #[getter]
    fn settings(&self) -> PyResult<String> {
        let r = self.inner.resolved();
        let leverage: serde_json::Map<String, serde_json::Value> = self
            .inner
            .symbols()
            .into_iter()
            .map(|s| (s.to_string(), r.risk.leverage_for(s).into()))
            .collect();
        serde_json::to_string(&serde_json::json!({
            "risk": &r.risk,
            "execution": &r.execution,
            "symbol_leverage": leverage,
        }))
        .map_err(|e| LiveError::new_err(format!("encoding the settings: {e}")))
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

/// The active config of `strategy_id` in PostgreSQL's `active_configs` at `url`, as the JSON
/// text of one row of `etrading configs --json` (schema `etrading.configs/1`). The database
/// must be at exactly the migrations this build carries (a newer or older schema is refused,
/// as `etrading configs` refuses it); an unknown strategy is an error. The password never
/// appears in a message.
#[pyfunction]
fn load_active_config(py: Python<'_>, url: &str, strategy_id: &str) -> PyResult<String> {
    py.detach(|| -> Result<String, String> {
        let target = pg::Target::parse(url).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the async runtime: {e}"))?;
        let row = runtime.block_on(async {
            let client = pg::connect(&target).await.map_err(|e| e.to_string())?;
            pg::check_schema(&client).await.map_err(|e| e.to_string())?;
            pg::active_config(&client, strategy_id)
                .await
                .map_err(|e| e.to_string())
        })?;
        let row = row.ok_or_else(|| {
            let missing = pg::PgError::NoActiveConfig {
                strategy_id: strategy_id.to_string(),
            };
            format!("{target}: {missing}")
        })?;
        serde_json::to_string(&row).map_err(|e| format!("encoding the config row: {e}"))
    })
    .map_err(LiveError::new_err)
}

/// The klines of `symbol` in `paths` (Binance CSV or zip files, or folders of them), loaded
/// and checked as `etrading backtest --data` loads them: a dict of lists `open_time` (ms, bar
/// open), `open`, `high`, `low`, `close`, `volume`. `interval` (such as "1h") picks the files
/// of that interval when several are present.
#[pyfunction]
#[pyo3(signature = (paths, symbol, interval=None))]
fn load_bars<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    symbol: &str,
    interval: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let interval = interval
        .map(str::parse::<Interval>)
        .transpose()
        .map_err(|e| LiveError::new_err(e.to_string()))?;
    let opts = LoadOptions {
        interval,
        symbols: Some(vec![symbol.to_string()]),
        ..LoadOptions::default()
    };
    let (panel, _) = py
        .detach(|| etrading_data::load_panel(&paths, &opts, AlignPolicy::Intersection))
        .map_err(|e| LiveError::new_err(e.to_string()))?;
    let s = panel
        .symbol_index(symbol)
        .ok_or_else(|| LiveError::new_err(format!("no klines of {symbol} in the files given")))?;
    let bars = panel.bars(s);
    let out = PyDict::new(py);
    out.set_item("interval", panel.interval.to_string())?;
    out.set_item("open_time", &panel.open_time)?;
    out.set_item("open", bars.open)?;
    out.set_item("high", bars.high)?;
    out.set_item("low", bars.low)?;
    out.set_item("close", bars.close)?;
    out.set_item("volume", bars.volume)?;
    Ok(out)
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySignalEngine>()?;
    m.add_function(wrap_pyfunction!(load_active_config, m)?)?;
    m.add_function(wrap_pyfunction!(load_bars, m)?)?;
    m.add("LiveError", m.py().get_type::<LiveError>())?;
    m.add("ENGINE_VERSION", etrading_live::ENGINE_VERSION)?;
    m.add("TALIB_VERSION", etrading_live::TALIB_VERSION)?;
    Ok(())
}
