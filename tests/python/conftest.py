"""Shared fixtures of the Python cross-checks: the `etrading` binary, the repository root, a
runner for `etrading backtest ... --json`, the sample klines as pandas frames, and the signals of
the cross-check specs computed independently with TA-Lib's Python package and numpy.

Run through scripts/ci/test-20-python.sh, which builds the binary and exports ETRADING_BIN.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATA = REPO_ROOT / "data" / "sample"
SPECS = Path(__file__).resolve().parent / "specs"

# Relative tolerance for prices, PnL and equity compared across engines: both sides compute in
# IEEE f64 from the same inputs, so only rounding in a different order separates them.
REL_TOL = 1e-9


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def etrading_bin() -> Path:
    """The `etrading` binary named by ETRADING_BIN (the CI script builds it and sets it)."""
    value = os.environ.get("ETRADING_BIN")
    if not value:
        pytest.fail(
            "ETRADING_BIN is not set: run scripts/ci/test-20-python.sh, or build with "
            "`cargo build -p etrading-cli` and export ETRADING_BIN=<target>/debug/etrading"
        )
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"ETRADING_BIN={value} is not an executable file")
    return path


@pytest.fixture(scope="session")
def backtest(etrading_bin: Path):
    """`backtest(spec, args=(...), **params)`: runs `etrading backtest SPEC --data data/sample
    --set k=v ... [args] --json` and returns the parsed report (schema etrading.backtest/1)."""

    def run(spec: Path, data: Path = SAMPLE_DATA, args: tuple[str, ...] = (), **params) -> dict:
        cmd = [str(etrading_bin), "backtest", str(spec), "--data", str(data), "--json", *args]
        for name, value in params.items():
            cmd += ["--set", f"{name}={value}"]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
        report = json.loads(proc.stdout)
        assert report["schema"] == "etrading.backtest/1", report["schema"]
        return report

    return run


def spec_for_symbol(spec: Path, symbol: str, tmp_dir: Path) -> Path:
    """A copy of a one-symbol cross-check spec trading `symbol` instead (the spec's
    `symbols = [...]` line is the only change)."""
    text = spec.read_text()
    new, count = re.subn(r'(?m)^symbols\s*=\s*\[[^\]]*\]', f'symbols = ["{symbol}"]', text)
    assert count == 1, f"{spec}: expected exactly one `symbols = [...]` line"
    out = tmp_dir / f"{spec.stem}-{symbol}.toml"
    out.write_text(new)
    return out


def load_klines(symbol: str) -> pd.DataFrame:
    """The sample 1h klines of `symbol`: float columns open..volume on a UTC DatetimeIndex
    (the bar's open time), in file order. The sample files have no gaps or duplicates, so these
    rows are exactly the bars the engine's panel holds for one symbol."""
    df = pd.read_csv(SAMPLE_DATA / f"{symbol}-1h.csv")
    df.index = pd.to_datetime(df["open_time"], unit="ms", utc=True)
    df.index.name = "time"
    assert df.index.is_monotonic_increasing and df.index.is_unique
    step = np.diff(df["open_time"].to_numpy())
    assert (step == 3_600_000).all(), f"{symbol}: the sample 1h klines have a gap"
    return df[["open", "high", "low", "close", "volume"]].astype(float)


def klines_of_report(symbol: str, report: dict) -> pd.DataFrame:
    """The sample klines of `symbol` between the first and last bar the report ran on."""
    df = load_klines(symbol)
    prov = report["provenance"]
    df = df.loc[pd.Timestamp(prov["first_bar"]):pd.Timestamp(prov["last_bar"])]
    assert len(df) == prov["bars"], f"{symbol}: {len(df)} bars here, {prov['bars']} in the report"
    return df


def rsi_ema_signals(df: pd.DataFrame, rsi_window: int, rsi_lower: float, rsi_upper: float,
                    ema_long: int) -> pd.DataFrame:
    """The four signals of specs/*rsi_ema*.toml computed with TA-Lib's Python package (C 0.8.1)
    and numpy, independently of the engine (which uses TA-Lib C 0.4.0 and its own expression
    evaluator). NaN compares false, as in the engine's NaN policy."""
    close = df["close"].to_numpy()
    rsi = talib.RSI(close, timeperiod=rsi_window)
    ema = talib.EMA(close, timeperiod=ema_long)
    with np.errstate(invalid="ignore"):
        sig = pd.DataFrame(
            {
                "long_entry": (rsi < rsi_lower) & (close > ema),
                "long_exit": rsi > rsi_upper,
                "short_entry": (rsi > rsi_upper) & (close < ema),
                "short_exit": rsi < rsi_lower,
            },
            index=df.index,
        )
    return sig


def iso(ts: pd.Timestamp) -> str:
    """A UTC timestamp in the engine's JSON form (`2025-01-01T00:00:00Z`)."""
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def assert_close(what: str, ours: float, theirs: float, rel: float = REL_TOL) -> None:
    """Relative comparison that names the quantity and both values on failure."""
    scale = max(abs(ours), abs(theirs), 1e-12)
    diff = abs(ours - theirs)
    assert diff <= rel * scale, (
        f"{what}: ours {ours!r} vs theirs {theirs!r} (rel diff {diff / scale:.3e} > {rel:.0e})"
    )
