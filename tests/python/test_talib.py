"""Every indicator value the rules read equals TA-Lib's, and the rules' signals equal the same
expressions evaluated with numpy: `etrading backtest --signals FILE` writes the engine's
indicator outputs (TA-Lib C 0.4.0 through ta-lib-sys) and its four signals per symbol and bar;
this test recomputes them with TA-Lib's Python package (its wheel carries TA-Lib C 0.8.1) on the
sample klines, for the example specs on all four symbols.

The NaN warm-up (TA-Lib's lookback) must coincide exactly; values must agree to a relative
1e-9 (both run the same algorithms in f64; the two C versions differ in code, not in these
functions' formulas, so any larger difference is a real disagreement).
"""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import talib

from conftest import REPO_ROOT, load_klines

SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "LTCUSDT"]
REL = 1e-9


def engine_signals(backtest, tmp_path, spec: str, params: dict) -> dict[str, pd.DataFrame]:
    """The engine's `--signals` CSV for `spec` with `params`, one frame per symbol."""
    out = tmp_path / "signals.csv"
    backtest(REPO_ROOT / spec, args=("--signals", str(out)), **params)
    with out.open() as f:
        header = next(csv.reader(f))
    df = pd.read_csv(out, dtype={name: float for name in header[2:]})
    frames = {}
    for symbol, g in df.groupby("symbol"):
        g = g.set_index(pd.to_datetime(g["open_time"], utc=True)).drop(columns=["symbol"])
        frames[symbol] = g
    assert sorted(frames) == sorted(SYMBOLS), sorted(frames)
    return frames


def check_values(label: str, ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape, f"{label}: {ours.shape} vs {theirs.shape}"
    nan_ours, nan_theirs = np.isnan(ours), np.isnan(theirs)
    assert (nan_ours == nan_theirs).all(), (
        f"{label}: warm-up differs: ours {nan_ours.sum()} NaN bars, TA-Lib {nan_theirs.sum()}"
    )
    assert (~nan_ours).sum() > 1000, f"{label}: too few values to compare"
    a, b = ours[~nan_ours], theirs[~nan_theirs]
    rel = np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)
    worst = int(np.argmax(rel))
    assert rel[worst] <= REL, (
        f"{label}: value {worst} of the non-NaN ones: ours {a[worst]!r} vs TA-Lib {b[worst]!r} "
        f"(rel {rel[worst]:.3e})"
    )


def check_flags(label: str, ours: pd.Series, theirs: np.ndarray) -> None:
    o = ours.to_numpy().astype(bool)
    assert o.sum() > 0, f"{label}: the rule never fires, nothing to compare"
    diff = np.flatnonzero(o != theirs)
    assert diff.size == 0, (
        f"{label}: {diff.size} bars differ, first {ours.index[diff[0]]}: ours {o[diff[0]]}"
    )


def prev(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[n:] = x[:-n]
    return out


RSI_EMA = dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200, leverage=1)


def test_rsi_ema_indicators_and_signals_match_talib(backtest, tmp_path):
    frames = engine_signals(backtest, tmp_path, "examples/rsi_ema.toml", RSI_EMA)
    for symbol in SYMBOLS:
        ours, close = frames[symbol], load_klines(symbol)["close"].to_numpy()
        assert (ours.index == load_klines(symbol).index).all()
        rsi = talib.RSI(close, timeperiod=RSI_EMA["rsi_window"])
        ema = talib.EMA(close, timeperiod=RSI_EMA["ema_long"])
        check_values(f"{symbol} RSI", ours["rsi"].to_numpy(), rsi)
        check_values(f"{symbol} EMA", ours["ema"].to_numpy(), ema)
        lo, up = RSI_EMA["rsi_lower"], RSI_EMA["rsi_upper"]
        with np.errstate(invalid="ignore"):
            check_flags(f"{symbol} long_entry", ours["long_entry"], (rsi < lo) & (close > ema))
            check_flags(f"{symbol} long_exit", ours["long_exit"], rsi > up)
            check_flags(f"{symbol} short_entry", ours["short_entry"], (rsi > up) & (close < ema))
            check_flags(f"{symbol} short_exit", ours["short_exit"], rsi < lo)


BB_ATR = dict(bb_period=20, bb_width=2.5, min_atr_frac=0.005, stop_loss_frac=0.04, leverage=2)


def test_bbands_atr_indicators_and_signals_match_talib(backtest, tmp_path):
    frames = engine_signals(backtest, tmp_path, "examples/bb_atr_breakout.toml", BB_ATR)
    for symbol in SYMBOLS:
        ours, k = frames[symbol], load_klines(symbol)
        high, low, close = (k[c].to_numpy() for c in ("high", "low", "close"))
        width = BB_ATR["bb_width"]
        upper, middle, lower = talib.BBANDS(close, timeperiod=BB_ATR["bb_period"],
                                            nbdevup=width, nbdevdn=width, matype=0)
        atr = talib.ATR(high, low, close, timeperiod=14)
        check_values(f"{symbol} BBANDS upper", ours["bb.upper"].to_numpy(), upper)
        check_values(f"{symbol} BBANDS middle", ours["bb.middle"].to_numpy(), middle)
        check_values(f"{symbol} BBANDS lower", ours["bb.lower"].to_numpy(), lower)
        check_values(f"{symbol} ATR", ours["atr"].to_numpy(), atr)
        frac = BB_ATR["min_atr_frac"]
        with np.errstate(invalid="ignore"):
            vol = atr / close >= frac
            check_flags(f"{symbol} long_entry", ours["long_entry"],
                        (close > upper) & (prev(close, 1) <= prev(upper, 1)) & vol)
            check_flags(f"{symbol} long_exit", ours["long_exit"], close < middle)
            check_flags(f"{symbol} short_entry", ours["short_entry"],
                        (close < lower) & (prev(close, 1) >= prev(lower, 1)) & vol)
            check_flags(f"{symbol} short_exit", ours["short_exit"], close > middle)


def test_signals_file_has_one_row_per_symbol_and_bar(backtest, tmp_path):
    frames = engine_signals(backtest, tmp_path, "examples/rsi_ema.toml", RSI_EMA)
    for symbol, g in frames.items():
        assert list(g.columns) == ["open_time", "rsi", "ema", "long_entry", "long_exit",
                                   "short_entry", "short_exit"], symbol
        assert len(g) == len(load_klines(symbol)), symbol
