"""Streams the sample data through the live package `etrading_live` and prints what it decided,
deterministically, so that two builds (x86-64 and aarch64 under qemu-user, see
scripts/ci/test-30-aarch64.sh) can be compared byte for byte. Standard library only (no numpy or
pandas: the aarch64 interpreter that runs it has nothing else); not a pytest test (the name does
not start with test_), the comparison is the CI script's.

For every example spec (examples/*.toml) x the 2 param sets below x each of the spec's symbols
that data/sample has (1h klines, bucketed into the spec's interval when coarser, as the data
crate's resample does), one engine per symbol is fed every bar; at the middle bar its snapshot is
restored into a new engine, which goes on. Bars inside the warm-up must give None.

Output (stdout), one line per case:
  case <spec> <params> <symbol> bars=N warmup=W decisions=D codes=<code:count,...>
       entries=E final=<position> mid_snapshot=<sha256/16> end_snapshot=<sha256/16>
       decisions_sha256=<sha256 of the decision lines>
and with --full, before it, one line per decision after the warm-up:
  <spec> <params> <symbol> <open_time_ms> <code> <from> <target or hold>
Then a closing line `cases=N bars=N decisions=N`. Where the package came from and the machine
go to stderr.

--bench instead runs python/bench_latency.py (per-bar latency of `update`, Python call
included) with this interpreter and package.

Usage: python tests/python/live_stream_dump.py [--full | --bench]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import platform
import runpy
import sys
import tomllib
from pathlib import Path

import etrading_live

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
EXAMPLES = ROOT / "examples"

# Two param sets per example spec, from each spec's [params] ranges. A new example spec must be
# added here (the script refuses a spec it has no param sets for).
PARAM_SETS = {
    "bb_atr_breakout.toml": [
        dict(bb_period=20, bb_width=2.0, min_atr_frac=0.005, stop_loss_frac=0.04, leverage=2),
        dict(bb_period=30, bb_width=3.0, min_atr_frac=0.002, stop_loss_frac=0.02, leverage=6),
    ],
    "ema_cross.toml": [
        dict(fast_period=10, slow_period=50, leverage=2),
        dict(fast_period=25, slow_period=200, leverage=5),
    ],
    "rsi_ema.toml": [
        dict(rsi_window=14, rsi_lower=30, rsi_upper=70, ema_long=200, leverage=1),
        dict(rsi_window=21, rsi_lower=40, rsi_upper=60, ema_long=100, leverage=3),
    ],
    "rsi_ema_bench.toml": [
        dict(rsi_window=5, rsi_lower=30, rsi_upper=70, ema_long=50, leverage=20),
        dict(rsi_window=37, rsi_lower=34, rsi_upper=62, ema_long=400, leverage=7),
    ],
}

INTERVAL_MS = {"1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000,
               "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000}
ENTER_LONG, ENTER_SHORT = 1, 2


def load_1h(symbol: str) -> list[tuple]:
    with open(SAMPLE / f"{symbol}-1h.csv", newline="") as f:
        return [(int(r["open_time"]), *(float(r[k]) for k in ("open", "high", "low", "close", "volume")))
                for r in csv.DictReader(f)]


def bucket(bars: list[tuple], interval_ms: int) -> list[tuple]:
    """1h bars into bars of `interval_ms` (open of the first, max high, min low, close of the
    last, volume summed in order), as etrading_data's KlineSeries::resample does."""
    if interval_ms == INTERVAL_MS["1h"]:
        return bars
    out: list[tuple] = []
    i = 0
    while i < len(bars):
        start_t = bars[i][0] - bars[i][0] % interval_ms
        o, h, l, v = bars[i][1], bars[i][2], bars[i][3], 0.0
        j = i
        while j < len(bars) and bars[j][0] - bars[j][0] % interval_ms == start_t:
            h, l, v = max(h, bars[j][2]), min(l, bars[j][3]), v + bars[j][5]
            j += 1
        out.append((start_t, o, h, l, bars[j - 1][4], v))
        i = j
    return out


def short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def run_case(spec_name: str, spec_text: str, params: dict, symbol: str, bars: list[tuple],
             full: bool, out) -> tuple[int, int]:
    params_json = json.dumps(params, sort_keys=True, separators=(",", ":"))
    label = f"{spec_name} {params_json} {symbol}"

    def new_engine():
        return etrading_live.SignalEngine(spec_text, params_json, [symbol], spec_name)

    e = new_engine()
    warmup = e.warmup_bars
    mid = len(bars) // 2
    digest = hashlib.sha256()
    codes: dict[int, int] = {}
    decisions = entries = 0
    mid_snapshot = ""
    for t, bar in enumerate(bars):
        if t == mid:  # a restart: a new engine from the snapshot
            saved = e.snapshot()
            mid_snapshot = short_hash(saved)
            e = new_engine()
            e.restore(saved)
        step = e.update(symbol, *bar)
        if t < warmup:
            if step is not None:
                raise SystemExit(f"{label}: bar {t} is inside the warm-up ({warmup}) but gave {step}")
            continue
        if step is None:
            raise SystemExit(f"{label}: bar {t} is past the warm-up ({warmup}) but gave None")
        code, held, target = step
        line = f"{label} {bar[0]} {code} {held} {target or 'hold'}\n"
        digest.update(line.encode())
        if full:
            out.write(line)
        codes[code] = codes.get(code, 0) + 1
        decisions += 1
        entries += bool(code & (ENTER_LONG | ENTER_SHORT))
    counts = ",".join(f"{c}:{n}" for c, n in sorted(codes.items()))
    out.write(f"case {label} bars={len(bars)} warmup={warmup} decisions={decisions} "
              f"codes={counts} entries={entries} final={e.position(symbol)} "
              f"mid_snapshot={mid_snapshot} end_snapshot={short_hash(e.snapshot())} "
              f"decisions_sha256={digest.hexdigest()}\n")
    return len(bars), decisions


def dump(full: bool) -> None:
    out = sys.stdout
    samples = {p.name.removesuffix("-1h.csv") for p in SAMPLE.glob("*-1h.csv")}
    cache: dict[str, list[tuple]] = {}
    n_cases = n_bars = n_decisions = 0
    for path in sorted(EXAMPLES.glob("*.toml")):
        if path.name not in PARAM_SETS:
            raise SystemExit(f"{path}: no param sets for this spec in {__file__} (PARAM_SETS)")
        text = path.read_text()
        strategy = tomllib.loads(text)["strategy"]
        interval_ms = INTERVAL_MS[strategy["interval"]]
        symbols = [s for s in strategy["symbols"] if s in samples]
        if not symbols:
            raise SystemExit(f"{path}: none of its symbols is in {SAMPLE}")
        for params in PARAM_SETS[path.name]:
            for symbol in symbols:
                if symbol not in cache:
                    cache[symbol] = load_1h(symbol)
                bars = bucket(cache[symbol], interval_ms)
                b, d = run_case(path.name, text, params, symbol, bars, full, out)
                n_cases, n_bars, n_decisions = n_cases + 1, n_bars + b, n_decisions + d
    out.write(f"cases={n_cases} bars={n_bars} decisions={n_decisions}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="also print every decision")
    mode.add_argument("--bench", action="store_true", help="per-bar latency of update instead")
    args = ap.parse_args()
    print(f"live_stream_dump: {platform.machine()}, Python {platform.python_version()}, "
          f"package {etrading_live._engine.__file__}", file=sys.stderr)
    if args.bench:
        # bench_latency.py imports etrading_live, already loaded from this interpreter's path.
        runpy.run_path(str(ROOT / "python" / "bench_latency.py"), run_name="__main__")
    else:
        dump(args.full)


if __name__ == "__main__":
    main()
