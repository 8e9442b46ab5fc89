//! The streaming signal engine against the reference (TA-Lib indicators, column-wise rules)
//! on every example spec over the sample data: bar for bar, after a snapshot and restore in
//! the middle, and after priming from a shorter history; then its refusals.
//!
//! `LIVE_PRIMING_REPORT=FILE` also writes the shortest priming history per spec and param
//! set (the table docs/SEMANTICS.md §6 quotes).

use std::path::{Path, PathBuf};

use etrading_data::{AlignPolicy, Interval, LoadOptions, Panel, load_panel};
use etrading_kernels::batch::simd::code;
use etrading_kernels::engine::MarketSymbol;
use etrading_kernels::reference::signals_for;
use etrading_kernels::spec::{ParamSet, Spec};
use etrading_live::{Bar, LiveError, Position, SignalEngine, Step};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_spec(name: &str) -> (Spec, String) {
    let path = root().join("examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let spec = Spec::parse(name, &text).unwrap();
    (spec, text)
}

/// The spec's symbols at its interval from data/sample (1h files, resampled when coarser),
/// as `etrading backtest` loads them.
fn sample_panel(spec: &Spec) -> Panel {
    let interval: Interval = spec.strategy.interval.parse().unwrap();
    let source: Interval = "1h".parse().unwrap();
    let opts = LoadOptions {
        interval: Some(source),
        resample: (interval != source).then_some(interval),
        symbols: Some(spec.strategy.symbols.clone()),
        ..LoadOptions::default()
    };
    let (panel, _) = load_panel(&[root().join("data/sample")], &opts, AlignPolicy::default())
        .expect("sample data loads");
    // The live feed refuses gaps; the sample has none, so the reference saw every bar too.
    let step = panel.interval.ms();
    assert!(
        panel.open_time.windows(2).all(|w| w[1] - w[0] == step),
        "{}: the sample panel has holes",
        spec.file
    );
    panel
}

fn bars_of(panel: &Panel, s: usize) -> Vec<Bar> {
    let b = panel.bars(s);
    (0..panel.n_bars())
        .map(|t| Bar {
            open_time_ms: panel.open_time[t],
            open: b.open[t],
            high: b.high[t],
            low: b.low[t],
            close: b.close[t],
            volume: b.volume[t],
        })
        .collect()
}

/// The reference's signal codes of one symbol (TA-Lib, column-wise rules).
fn reference_codes(spec: &Spec, params: &ParamSet, panel: &Panel, s: usize) -> Vec<u8> {
    let resolved = spec.resolve(params).unwrap();
    let b = panel.bars(s);
    let sym = MarketSymbol {
        name: &panel.symbols[s],
        open: b.open,
        high: b.high,
        low: b.low,
        close: b.close,
        volume: b.volume,
        mark_open: b.mark_open,
        mark_high: b.mark_high,
        mark_low: b.mark_low,
        funding: &[],
    };
    let sig = signals_for(spec, &resolved, &sym).unwrap();
    (0..panel.n_bars())
        .map(|t| {
            code::of(
                sig.long_entry[t],
                sig.long_exit[t],
                sig.short_entry[t],
                sig.short_exit[t],
            )
        })
        .collect()
}

/// §2.2 written out from docs/SEMANTICS.md on the code bits (not through kernels' function):
/// the position after a decision at `code` from `from`.
fn after(from: Position, c: u8) -> Position {
    let has = |bit| c & bit != 0;
    match from {
        Position::Flat if has(code::ENTER_LONG) => Position::Long,
        Position::Flat if has(code::ENTER_SHORT) => Position::Short,
        Position::Long if has(code::ENTER_SHORT) => Position::Short,
        Position::Long if has(code::EXIT_LONG) => Position::Flat,
        Position::Short if has(code::ENTER_LONG) => Position::Long,
        Position::Short if has(code::EXIT_SHORT) => Position::Flat,
        held => held,
    }
}

/// Up to five param sets spread over the grid (13 evenly spaced points, the corners
/// included) on which the reference enters at least once on some symbol: a set that never
/// trades would compare only "nothing" with "nothing".
fn param_sets(spec: &Spec, panel: &Panel) -> Vec<(u64, ParamSet)> {
    let len = spec.params.grid_len().unwrap();
    let mut idx: Vec<u64> = (0..=12).map(|k| k * (len - 1) / 12).collect();
    idx.dedup();
    let sets: Vec<(u64, ParamSet)> = idx
        .into_iter()
        .map(|i| (i, spec.params.decode(i).unwrap()))
        .filter(|(_, params)| {
            (0..panel.symbols.len()).any(|s| {
                reference_codes(spec, params, panel, s)
                    .iter()
                    .any(|&c| c & (code::ENTER_LONG | code::ENTER_SHORT) != 0)
            })
        })
        .take(5)
        .collect();
    assert!(
        sets.len() >= 3,
        "{}: only {} trading param sets",
        spec.file,
        sets.len()
    );
    sets
}

fn engine(spec: &Spec, text: &str, params: &ParamSet, symbol: &str) -> SignalEngine {
    SignalEngine::new(spec, text, params, Some(&[symbol.to_string()])).unwrap()
}

/// Feeds `bars[range]` and checks each step against the reference codes: warming before the
/// warm-up (counted from the engine's first bar), else the same code, and §2.2's targets.
fn feed_and_check(
    label: &str,
    engine: &mut SignalEngine,
    symbol: &str,
    bars: &[Bar],
    expected: &[u8],
    range: std::ops::Range<usize>,
) -> Result<(), String> {
    for t in range {
        let (seen, _) = engine.progress(symbol).unwrap();
        let before = engine.position(symbol).unwrap();
        match engine.update(symbol, &bars[t]).unwrap() {
            Step::Warming { remaining } => {
                if seen as usize >= engine.warmup_bars()
                    || remaining != engine.warmup_bars() - seen as usize
                {
                    return Err(format!("{label}: bar {t}: warming after the warm-up"));
                }
            }
            Step::Decision(d) => {
                if (seen as usize) < engine.warmup_bars() {
                    return Err(format!("{label}: bar {t}: a signal inside the warm-up"));
                }
                if d.code != expected[t] {
                    return Err(format!(
                        "{label}: bar {t}: code {:#06b}, the reference {:#06b}",
                        d.code, expected[t]
                    ));
                }
                let want = after(before, d.code);
                let now = engine.position(symbol).unwrap();
                let target_ok = d.target == (want != before).then_some(want);
                if d.from != before || now != want || !target_ok {
                    return Err(format!(
                        "{label}: bar {t}: {before:?} -> {d:?}, now {now:?}; §2.2 says {want:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Every example spec, its param sets and symbols: the whole history, bar for bar; then a
/// snapshot in the middle restored into a fresh engine; then priming from shorter histories,
/// with the shortest one that gives the reference's signals from the middle on.
#[test]
fn streaming_engine_equals_the_reference_on_every_example_spec() {
    let mut report = String::from("spec\tparam set\tsymbol\twarmup_bars\tshortest_priming\n");
    let mut specs: Vec<String> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 4, "examples/*.toml: {specs:?}");
    for name in &specs {
        let (spec, text) = read_spec(name);
        let panel = sample_panel(&spec);
        let n = panel.n_bars();
        for (index, params) in param_sets(&spec, &panel) {
            for (s, symbol) in panel.symbols.iter().enumerate() {
                let label = format!("{name} set #{index} {symbol}");
                let bars = bars_of(&panel, s);
                let expected = reference_codes(&spec, &params, &panel, s);

                // (1) the whole history.
                let mut straight = engine(&spec, &text, &params, symbol);
                feed_and_check(&label, &mut straight, symbol, &bars, &expected, 0..n).unwrap();

                // (2) snapshot at the middle, restore into a fresh engine, go on.
                let mid = n / 2;
                let mut first = engine(&spec, &text, &params, symbol);
                feed_and_check(&label, &mut first, symbol, &bars, &expected, 0..mid).unwrap();
                let bytes = first.snapshot();
                let mut resumed = engine(&spec, &text, &params, symbol);
                resumed.restore(&bytes).unwrap();
                feed_and_check(
                    &format!("{label} (restored)"),
                    &mut resumed,
                    symbol,
                    &bars,
                    &expected,
                    mid..n,
                )
                .unwrap();
                assert_eq!(
                    resumed.snapshot(),
                    straight.snapshot(),
                    "{label}: end states"
                );

                // (3) priming from `w` bars before the middle, then live from the middle.
                let primed = |w: usize| -> Result<(), String> {
                    let mut e = engine(&spec, &text, &params, symbol);
                    e.prime(symbol, &bars[mid - w..mid]).unwrap();
                    e.set_position(symbol, straight_position_at(&expected, &straight, mid))
                        .unwrap();
                    feed_and_check(&label, &mut e, symbol, &bars, &expected, mid..n)
                };
                let warmup = straight.warmup_bars();
                // Priming with less than the warm-up refuses to signal at once.
                if warmup > 0 {
                    let mut e = engine(&spec, &text, &params, symbol);
                    e.prime(symbol, &bars[mid - (warmup - 1)..mid]).unwrap();
                    assert_eq!(
                        e.update(symbol, &bars[mid]).unwrap(),
                        Step::Warming { remaining: 1 },
                        "{label}: one bar short of the warm-up"
                    );
                }
                // The whole history before the middle gives the reference's signals.
                primed(mid).unwrap();
                // The shortest priming that does: bisection between the warm-up and `mid`
                // (checked at the bound found and one bar below it).
                let (mut lo, mut hi) = (warmup, mid);
                if primed(lo).is_ok() {
                    hi = lo;
                }
                while hi - lo > 1 {
                    let m = lo + (hi - lo) / 2;
                    if primed(m).is_ok() { hi = m } else { lo = m }
                }
                assert!(primed(hi).is_ok());
                assert!(
                    hi == warmup || primed(hi - 1).is_err(),
                    "{label}: not the shortest"
                );
                report.push_str(&format!("{name}\t#{index}\t{symbol}\t{warmup}\t{hi}\n"));
            }
        }
    }
    eprintln!("{report}");
    if let Ok(path) = std::env::var("LIVE_PRIMING_REPORT") {
        std::fs::write(path, &report).unwrap();
    }
}

/// The position §2.2 alone leads to at bar `t` from the start (the reference's signals).
fn straight_position_at(expected: &[u8], engine: &SignalEngine, t: usize) -> Position {
    let mut held = Position::Flat;
    for &c in &expected[engine.warmup_bars()..t] {
        held = after(held, c);
    }
    held
}

fn rsi_ema() -> (Spec, String, ParamSet, Vec<Bar>) {
    let (spec, text) = read_spec("rsi_ema.toml");
    let panel = sample_panel(&spec);
    let bars = bars_of(&panel, 0);
    let params = spec.params.decode(0).unwrap();
    (spec, text, params, bars)
}

/// A refused bar is an error naming the problem, and leaves the state as it was: the next
/// right bar gives the same decision as an engine that never saw the bad one.
#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let (spec, text, params, bars) = rsi_ema();
    let mut e = engine(&spec, &text, &params, "BTCUSDT");
    let mut clean = engine(&spec, &text, &params, "BTCUSDT");
    e.prime("BTCUSDT", &bars[..500]).unwrap();
    clean.prime("BTCUSDT", &bars[..500]).unwrap();
    let before = e.snapshot();

    let err = e.update("BTCUSDT", &bars[499]).unwrap_err();
    assert!(matches!(err, LiveError::OutOfOrder { .. }), "{err}");
    assert!(err.to_string().contains("out of order"), "{err}");
    let err = e.update("BTCUSDT", &bars[10]).unwrap_err();
    assert!(matches!(err, LiveError::OutOfOrder { .. }), "{err}");
    let err = e.update("BTCUSDT", &bars[503]).unwrap_err();
    assert!(
        matches!(err, LiveError::Gap { missing: 3, .. }),
        "{err} (bars 500, 501, 502 missing)"
    );
    let err = e.update("DOGEUSDT", &bars[500]).unwrap_err();
    assert!(matches!(err, LiveError::UnknownSymbol { .. }), "{err}");
    let mut nan = bars[500];
    nan.close = f64::NAN;
    let err = e.update("BTCUSDT", &nan).unwrap_err();
    assert!(
        matches!(err, LiveError::NotFinite { field: "close", .. }),
        "{err}"
    );
    assert_eq!(e.snapshot(), before, "a refused bar changed the state");
    for bar in &bars[500..600] {
        assert_eq!(
            e.update("BTCUSDT", bar).unwrap(),
            clean.update("BTCUSDT", bar).unwrap()
        );
    }
}

/// A snapshot only restores into an engine of the same spec, params and symbols.
#[test]
fn snapshots_of_other_engines_are_refused() {
    let (spec, text, params, bars) = rsi_ema();
    let mut e = engine(&spec, &text, &params, "BTCUSDT");
    e.prime("BTCUSDT", &bars[..300]).unwrap();
    let bytes = e.snapshot();

    let other_params = spec.params.decode(1).unwrap();
    let mut other = engine(&spec, &text, &other_params, "BTCUSDT");
    let err = other.restore(&bytes).unwrap_err();
    assert!(err.to_string().contains("another spec, param set"), "{err}");
    let mut other_symbol = engine(&spec, &text, &params, "ETHUSDT");
    assert!(other_symbol.restore(&bytes).is_err());
    let mut same = engine(&spec, &text, &params, "BTCUSDT");
    let err = same.restore(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(err, LiveError::Snapshot(_)), "{err}");
    assert_eq!(same.progress("BTCUSDT").unwrap(), (0, None));
    same.restore(&bytes).unwrap();
    assert_eq!(
        same.progress("BTCUSDT").unwrap(),
        (300, Some(bars[299].open_time_ms))
    );
}

/// A spec whose indicator has no exact streaming twin is refused, naming it.
#[test]
fn an_indicator_that_cannot_stream_refuses_the_spec() {
    let text = std::fs::read_to_string(root().join("examples/rsi_ema.toml"))
        .unwrap()
        .replace(
            r#"ema = { fn = "EMA", input = "close", timeperiod = "ema_long" }"#,
            r#"ema = { fn = "KAMA", input = "close", timeperiod = "ema_long" }"#,
        );
    assert!(text.contains("KAMA"));
    let spec = Spec::parse("kama.toml", &text).unwrap();
    let err = SignalEngine::new(&spec, &text, &spec.params.decode(0).unwrap(), None).unwrap_err();
    assert!(matches!(err, LiveError::Unstreamable { .. }), "{err}");
    assert!(err.to_string().contains("ema (KAMA)"), "{err}");
}

/// Params come as `{name: value}` JSON; wrong names and types are refused.
#[test]
fn params_from_json() {
    let (_, text, _, _) = rsi_ema();
    let ok =
        r#"{"rsi_window": 14, "rsi_lower": 30, "rsi_upper": 70, "ema_long": 200, "leverage": 1}"#;
    let e = SignalEngine::from_json("rsi_ema.toml", &text, ok, None).unwrap();
    assert_eq!(
        e.warmup_bars(),
        199,
        "EMA(200)'s look-back 199 > RSI(14)'s 14, no prev"
    );
    assert_eq!(e.symbols(), ["BTCUSDT", "ETHUSDT", "XRPUSDT", "LTCUSDT"]);
    let cases = [
        (r#"{"rsi_window": 14}"#, "has no value"),
        (
            r#"{"rsi_window": 14.5, "rsi_lower": 30, "rsi_upper": 70, "ema_long": 200, "leverage": 1}"#,
            "is not an integer",
        ),
        (
            r#"{"rsi_windows": 14, "rsi_lower": 30, "rsi_upper": 70, "ema_long": 200, "leverage": 1}"#,
            "not a param of the spec",
        ),
        ("[1, 2]", "must be a JSON object"),
    ];
    for (json, message) in cases {
        let err = SignalEngine::from_json("rsi_ema.toml", &text, json, None).unwrap_err();
        assert!(err.to_string().contains(message), "{json}: {err}");
    }
    let err = SignalEngine::from_json(
        "rsi_ema.toml",
        &text,
        ok,
        Some(&["BTCUSDT".to_string(), "SOLUSDT".to_string()]),
    )
    .unwrap_err();
    assert!(matches!(err, LiveError::UnknownSymbol { .. }), "{err}");
}
