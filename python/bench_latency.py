"""Per-bar latency of etrading_live's SignalEngine.update, Python call included, on the
sample BTCUSDT 1h klines with examples/rsi_ema.toml (RSI 14, EMA 200). Run:
.venv/bin/python python/bench_latency.py (after `maturin develop --release -m python/Cargo.toml`)."""

import csv
import json
import time
from pathlib import Path

import etrading_live

root = Path(__file__).resolve().parents[1]
with open(root / "data/sample/BTCUSDT-1h.csv") as f:
    bars = [(int(r["open_time"]), *(float(r[k]) for k in ("open", "high", "low", "close", "volume")))
            for r in csv.DictReader(f)]
params = dict(rsi_window=14, rsi_lower=30, rsi_upper=70, ema_long=200, leverage=1)
best = float("inf")
for _ in range(5):
    e = etrading_live.SignalEngine((root / "examples/rsi_ema.toml").read_text(), json.dumps(params),
                                   ["BTCUSDT"])
    update = e.update
    start = time.perf_counter_ns()
    for bar in bars:
        update("BTCUSDT", *bar)
    best = min(best, (time.perf_counter_ns() - start) / len(bars))
print(f"update: {best / 1000:.2f} us per bar (best of 5 runs over {len(bars)} bars)")
