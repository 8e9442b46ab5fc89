"""The live package `etrading_live` (python/, pyo3 over the Rust crate etrading-live), driven
from Python one closed bar at a time on the real 2025 sample data, against signals computed
independently with TA-Lib's Python package (conftest.rsi_ema_signals): every bar after the
warm-up has the same signal code (the bits of SEMANTICS.md §2.2), also after a snapshot and
restore in the middle; bad bars raise LiveError. The per-bar latency is measured by
python/bench_latency.py, not here.
"""

from __future__ import annotations

import json
import numpy as np
import pytest

import etrading_live
from pathlib import Path

from conftest import load_klines, rsi_ema_signals

ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT = 1, 2, 4, 8
SPEC_TEXT = (Path(__file__).resolve().parents[2] / "examples" / "rsi_ema.toml").read_text()
PARAMS = [
    dict(rsi_window=14, rsi_lower=30, rsi_upper=70, ema_long=200, leverage=1),
    dict(rsi_window=21, rsi_lower=40, rsi_upper=60, ema_long=100, leverage=3),
]


def codes_of(sig) -> np.ndarray:
    le, lx = sig["long_entry"].to_numpy(), sig["long_exit"].to_numpy()
    se, sx = sig["short_entry"].to_numpy(), sig["short_exit"].to_numpy()
    return ((le & ~se) * ENTER_LONG + (se & ~le) * ENTER_SHORT
            + (lx | se) * EXIT_LONG + (sx | le) * EXIT_SHORT).astype(int)


def rows(df):
    times = (df.index.as_unit("ms").asi8).tolist()
    return list(zip(times, *(df[c].tolist() for c in ["open", "high", "low", "close", "volume"])))


def engine(params, symbol):
    return etrading_live.SignalEngine(SPEC_TEXT, json.dumps(params), [symbol], "rsi_ema.toml")


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "XRPUSDT", "LTCUSDT"])
@pytest.mark.parametrize("params", PARAMS, ids=["rsi14_ema200", "rsi21_ema100"])
def test_codes_equal_talib_python_bar_for_bar(symbol, params):
    df = load_klines(symbol)
    p = {k: params[k] for k in ("rsi_window", "rsi_lower", "rsi_upper", "ema_long")}
    expected = codes_of(rsi_ema_signals(df, **p))
    bars = rows(df)
    e = engine(params, symbol)
    assert e.warmup_bars == max(params["ema_long"] - 1, params["rsi_window"])
    mid = len(bars) // 2
    got = []
    for t, bar in enumerate(bars):
        if t == mid:  # a restart: a new engine from the snapshot
            saved = e.snapshot()
            e = engine(params, symbol)
            e.restore(saved)
        step = e.update(symbol, *bar)
        if t < e.warmup_bars:
            assert step is None, f"bar {t}: a signal inside the warm-up"
            continue
        got.append(step[0])
    want = expected[e.warmup_bars:]
    assert (np.array(got) == want).all(), (
        f"first difference at bar {e.warmup_bars + int(np.argmax(np.array(got) != want))}")
    assert (want & (ENTER_LONG | ENTER_SHORT)).any(), "no entry at all: a weak case"


def test_bad_bars_raise_and_change_nothing():
    bars = rows(load_klines("BTCUSDT"))
    e = engine(PARAMS[0], "BTCUSDT")
    for bar in bars[:300]:
        e.update("BTCUSDT", *bar)
    before = e.snapshot()
    with pytest.raises(etrading_live.LiveError, match="gap in the feed"):
        e.update("BTCUSDT", *bars[301])
    with pytest.raises(etrading_live.LiveError, match="out of order"):
        e.update("BTCUSDT", *bars[299])
    with pytest.raises(etrading_live.LiveError, match="unknown symbol"):
        e.update("SOLUSDT", *bars[300])
    with pytest.raises(etrading_live.LiveError, match="another spec, param set"):
        engine(PARAMS[1], "BTCUSDT").restore(before)
    assert e.snapshot() == before

