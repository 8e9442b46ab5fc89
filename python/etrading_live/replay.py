"""The live-parity check a trader runs before going live: history replayed through the
Backtrader adapter (EtradingStrategy on Backtrader's own feed and broker, filling at the next
open) and compared trade by trade with `etrading backtest --json` of the same config on the
same data.

    python -m etrading_live.replay --config SOURCE --strategy ID --data PATH [PATH ...]
        [--etrading BIN] [--at-leverage-1] [--json]

SOURCE is a postgresql:// URL (PostgreSQL's active_configs) or an `etrading configs --json`
export; PATH are Binance klines files or folders, loaded by the same strict loader as
`etrading backtest --data`. Every trade must agree in symbol, side, entry and exit time, and
entry and exit price (relative 1e-9: both sides compute in f64 from the same prices). What
Backtrader cannot express is named in the output, not hidden: the reference's close of a
position still open at the last bar (§2.8, compared with the last close instead),
liquidations (§2.5), funding paid (§2.6) and margin (leverage above 1 is refused unless
`--at-leverage-1` replays the config's signals at leverage 1). Exit status: 0 when every
trade agrees, 1 on a disagreement, 2 when the replay cannot run (bad config, data or binary).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import backtrader as bt

from ._engine import LiveError, load_bars
from .backtrader import ConfigRefused, EtradingStrategy, check_config, engine_of, unsupported

# Relative tolerance for fill prices: both engines multiply the same f64 prices by the same
# slippage factor, so only rounding separates them.
PRICE_REL_TOL = 1e-9


class ReplayError(Exception):
    """The replay cannot run: a config, data file or binary problem (exit status 2)."""


@dataclasses.dataclass
class Comparison:
    """The outcome of a replay: trades on both sides, what disagrees, what differs by design."""

    reference_trades: int
    backtrader_trades: int
    # Per symbol, the reference's trades compared (in entry order) before the comparison of
    # that symbol stopped at a disagreement or a difference that changes what follows.
    compared: dict[str, int]
    disagreements: list[str]
    differences: list[str]

    @property
    def ok(self) -> bool:
        return not self.disagreements


class BarsFeed(bt.feed.DataBase):
    """A Backtrader feed over `load_bars` columns (open times in ms, UTC)."""

    params = (("bars", None),)

    def start(self):
        super().start()
        self._i = 0

    def _load(self):
        b = self.p.bars
        if self._i >= len(b["open_time"]):
            return False
        i = self._i
        t = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=b["open_time"][i])
        self.lines.datetime[0] = bt.date2num(t)
        self.lines.open[0] = b["open"][i]
        self.lines.high[0] = b["high"][i]
        self.lines.low[0] = b["low"][i]
        self.lines.close[0] = b["close"][i]
        self.lines.volume[0] = b["volume"][i]
        self.lines.openinterest[0] = 0.0
        self._i += 1
        return True


def iso_ms(t_ms: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=t_ms)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def replay_params(config: dict, settings: dict, at_leverage_1: bool) -> dict:
    """The params to replay: the config's, with leverage 1 when asked (and needed)."""
    params = dict(config["params"])
    above = {s: lev for s, lev in settings["symbol_leverage"].items() if lev != 1}
    if not above:
        return params
    if not at_leverage_1:
        raise ReplayError(
            f"leverage {above}: Backtrader models no margin, brackets or liquidation, so the "
            "replay compares at leverage 1; pass --at-leverage-1 to replay this config's "
            "signals at leverage 1")
    if "leverage" not in params:
        raise ReplayError(f"leverage {above} is not a param of the spec, so it cannot be "
                          "replayed at leverage 1")
    params["leverage"] = 1
    return params


def reference_backtest(etrading: str, config: dict, params: dict, data: list[str]) -> dict:
    """`etrading backtest --json` of the config's spec text under `params` on `data`."""
    with tempfile.TemporaryDirectory(prefix="etrading-replay-") as tmp:
        spec = Path(tmp) / f"{config['strategy_id']}.toml"
        spec.write_text(config["spec_text"])
        cmd = [etrading, "backtest", str(spec), "--json"]
        for path in data:
            cmd += ["--data", str(path)]
        for name, value in params.items():
            cmd += ["--set", f"{name}={value if isinstance(value, str) else json.dumps(value)}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as e:
            raise ReplayError(f"running {etrading}: {e}") from None
    if proc.returncode != 0:
        raise ReplayError(f"etrading backtest exited {proc.returncode}: {proc.stderr.strip()}")
    report = json.loads(proc.stdout)
    if report.get("schema") != "etrading.backtest/1":
        raise ReplayError(f"etrading backtest wrote schema {report.get('schema')!r}, "
                          "expected 'etrading.backtest/1'")
    return report


def replay_bars(report: dict, data: list[str]) -> dict[str, dict]:
    """Per symbol, the bars the reference ran on: each symbol's klines from `data`, on the
    bar times every symbol has (the backtest's default alignment), inside its first..last."""
    prov = report["provenance"]
    try:
        loaded = {s: load_bars([str(p) for p in data], s, prov["interval"])
                  for s in prov["symbols"]}
    except LiveError as e:
        raise ReplayError(str(e)) from None
    common = set.intersection(*(set(b["open_time"]) for b in loaded.values()))
    first = dt.datetime.strptime(prov["first_bar"], "%Y-%m-%dT%H:%M:%SZ")
    last = dt.datetime.strptime(prov["last_bar"], "%Y-%m-%dT%H:%M:%SZ")
    lo = round((first - dt.datetime(1970, 1, 1)).total_seconds() * 1000)
    hi = round((last - dt.datetime(1970, 1, 1)).total_seconds() * 1000)
    out = {}
    for symbol, b in loaded.items():
        keep = [i for i, t in enumerate(b["open_time"]) if t in common and lo <= t <= hi]
        out[symbol] = {k: [b[k][i] for i in keep]
                       for k in ("open_time", "open", "high", "low", "close", "volume")}
        if len(keep) != prov["bars"]:
            raise ReplayError(f"{symbol}: {len(keep)} bars here, the backtest ran on "
                              f"{prov['bars']} (data or alignment differs)")
    return out


def run_backtrader(config: dict, bars: dict[str, dict], settings: dict,
                   initial_capital: float) -> tuple[dict[str, list[dict]], EtradingStrategy]:
    """Runs EtradingStrategy on Backtrader's broker; the trades per symbol from its fills."""
    execution = settings["execution"]
    cerebro = bt.Cerebro(stdstats=False)
    for symbol, b in bars.items():
        cerebro.adddata(BarsFeed(bars=b), name=symbol)
    cerebro.broker.setcash(initial_capital)
    cerebro.broker.setcommission(commission=execution["taker_fee_rate"],
                                 commtype=bt.CommInfoBase.COMM_PERC, percabs=True,
                                 stocklike=True)
    cerebro.broker.set_slippage_perc(execution["slippage_rate"], slip_open=True,
                                     slip_limit=True, slip_match=True, slip_out=True)
    cerebro.addstrategy(EtradingStrategy, config=config)
    strat = cerebro.run()[0]
    trades: dict[str, list[dict]] = {s: [] for s in bars}
    held: dict[str, float] = {s: 0.0 for s in bars}
    for f in strat.fills:
        symbol = f["symbol"]
        time = f["time"].strftime("%Y-%m-%dT%H:%M:%SZ")
        if abs(held[symbol]) < 1e-12:
            trades[symbol].append(dict(side="long" if f["size"] > 0 else "short",
                                       entry_time=time, entry_price=f["price"]))
        else:
            trades[symbol][-1].update(exit_time=time, exit_price=f["price"])
        held[symbol] += f["size"]
    return trades, strat


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= PRICE_REL_TOL * max(abs(a), abs(b), 1e-12)


def compare(report: dict, theirs: dict[str, list[dict]], bars: dict[str, dict]) -> Comparison:
    """Trade-by-trade comparison of the reference report with Backtrader's trades."""
    disagreements: list[str] = []
    differences: list[str] = []
    compared: dict[str, int] = {}
    n_ref = len(report["trades"])
    for symbol in report["provenance"]["symbols"]:
        ours = sorted((t for t in report["trades"] if t["symbol"] == symbol),
                      key=lambda t: t["entry_time"])
        bt_trades = theirs.get(symbol, [])
        last_time = iso_ms(bars[symbol]["open_time"][-1])
        last_close = bars[symbol]["close"][-1]
        compared[symbol] = 0
        i = j = 0
        resynced = False
        while i < len(ours) and j < len(bt_trades):
            o, b = ours[i], bt_trades[j]
            label = f"{symbol} trade {i} ({o['side']} {o['entry_time']})"
            if (o["side"], o["entry_time"]) != (b["side"], b["entry_time"]):
                disagreements.append(f"{label}: Backtrader {b['side']} {b['entry_time']}")
                break  # everything after the first disagreement follows from it
            if not _close(o["entry_price"], b["entry_price"]):
                disagreements.append(f"{label}: entry price {o['entry_price']!r} vs "
                                     f"{b['entry_price']!r}")
            if o["exit_reason"] == "liquidation":
                differences.append(f"{label}: liquidated at {o['exit_time']} (§2.5); "
                                   "Backtrader has no liquidation; the rest of this symbol is "
                                   "not compared")
                break
            if o["exit_reason"] in ("stop", "take_profit") and o["exit_time"] == o["entry_time"]:
                # The positions differ from here until both sides enter at the same bar again.
                again = next(((i2, j2) for i2 in range(i + 1, len(ours))
                              for j2 in range(j + 1, len(bt_trades))
                              if (ours[i2]["side"], ours[i2]["entry_time"])
                              == (bt_trades[j2]["side"], bt_trades[j2]["entry_time"])), None)
                skipped = f"{(again[0] if again else len(ours)) - i} reference trade(s)"
                differences.append(
                    f"{label}: {o['exit_reason']} on its entry bar in the reference (§2.7); "
                    "the adapter places stops once the entry has filled, so Backtrader checks "
                    f"them from the next bar; {skipped} not compared"
                    + (f", both sides enter together again at {ours[again[0]]['entry_time']}"
                       if again else ""))
                if again is None:
                    break
                i, j = again
                resynced = True
                continue
            if "exit_time" not in b:
                if o["exit_reason"] == "end" and o["exit_time"] == last_time:
                    differences.append(
                        f"{label}: closed by the reference at the last bar's close "
                        f"{o['exit_price']!r} (§2.8, end); Backtrader has no next open to "
                        f"fill at, so it stays open (last close {last_close!r})")
                else:
                    disagreements.append(f"{label}: open in Backtrader, closed by the "
                                         f"reference at {o['exit_time']} ({o['exit_reason']})")
            elif o["exit_time"] != b["exit_time"]:
                disagreements.append(f"{label}: exit {o['exit_time']} ({o['exit_reason']}) vs "
                                     f"{b['exit_time']}")
                break
            elif not _close(o["exit_price"], b["exit_price"]):
                if o["exit_reason"] == "take_profit":
                    differences.append(
                        f"{label}: take-profit at {o['exit_price']!r} in the reference (trigger "
                        f"less slippage, §2.7), {b['exit_price']!r} in Backtrader (its limit "
                        "order fills at the limit price or a better open)")
                else:
                    disagreements.append(f"{label}: exit price {o['exit_price']!r} vs "
                                         f"{b['exit_price']!r}")
            compared[symbol] += 1
            i, j = i + 1, j + 1
        else:
            # Ran through: what is left on either side is a disagreement.
            if i < len(ours) or j < len(bt_trades):
                disagreements.append(
                    f"{symbol}: {len(ours)} trades in the reference, {len(bt_trades)} in "
                    f"Backtrader ({len(ours) - i} and {len(bt_trades) - j} left unmatched"
                    + (" after a resynchronisation)" if resynced else ")"))
    funding = sum(t["funding"] for t in report["trades"])
    if funding != 0.0:
        differences.append(f"funding: the reference's trades paid {funding:.6g} in funding "
                           "(§2.6); Backtrader pays none (PnL differs, fills do not)")
    skipped = report["metrics"].get("skipped_entries", 0)
    if skipped:
        differences.append(f"{skipped} entries refused by the reference (§2.3)")
    return Comparison(n_ref, sum(len(v) for v in theirs.values()), compared, disagreements,
                      differences)


def run(source: str, strategy_id: str, data: list[str], etrading: str,
        at_leverage_1: bool = False, data_hash: str | None = None
        ) -> tuple[Comparison, dict, dict[str, list[dict]]]:
    """The whole check; ReplayError (or ConfigRefused) when it cannot run."""
    from .backtrader import load_config

    config = load_config(source, strategy_id, data_hash)
    settings = check_config(config)
    missing = unsupported(settings)
    if missing:
        raise ReplayError(f"the adapter cannot trade: {', '.join(missing)}")
    params = replay_params(config, settings, at_leverage_1)
    report = reference_backtest(etrading, config, params, data)
    prov = report["provenance"]
    if prov["data_hash"] != config["data_hash"]:
        print(f"note: the data replayed (hash {prov['data_hash'][:12]}) is not the data the "
              f"config was selected on ({config['data_hash'][:12]})", file=sys.stderr)
    bars = replay_bars(report, data)
    # At leverage 1 the row's resolved columns describe other params: the replayed config is
    # the spec and the replayed params alone, checked again by the adapter.
    replayed = config if params == config["params"] else {
        k: v for k, v in dict(config, params=params).items()
        if k not in ("resolved", "symbol_leverage")}
    settings = json.loads(engine_of(replayed).settings)
    theirs, _ = run_backtrader(replayed, bars, settings, prov["initial_capital"])
    return compare(report, theirs, bars), report, theirs


def _default_etrading() -> str:
    return os.environ.get("ETRADING_BIN") or shutil.which("etrading") or "etrading"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m etrading_live.replay",
        description="Replays history through the Backtrader adapter and compares every trade "
                    "with `etrading backtest` of the same config on the same data.")
    ap.add_argument("--config",
                    help="postgresql:// URL of active_configs, or an `etrading configs --json` "
                         "export (default: $DATABASE_URL)", default=os.environ.get("DATABASE_URL"))
    ap.add_argument("--strategy", required=True, help="strategy id of the active config")
    ap.add_argument("--data", required=True, nargs="+", help="Binance klines files or folders")
    ap.add_argument("--etrading", default=_default_etrading(),
                    help="the etrading binary (default: $ETRADING_BIN, else etrading on PATH)")
    ap.add_argument("--at-leverage-1", action="store_true",
                    help="replay a config whose leverage is above 1 at leverage 1")
    ap.add_argument("--data-hash", help="refuse a config selected on other data than this hash")
    ap.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = ap.parse_args(argv)
    if not args.config:
        ap.error("--config is required (or set DATABASE_URL)")
    try:
        result, report, _ = run(args.config, args.strategy, args.data, args.etrading,
                                args.at_leverage_1, args.data_hash)
    except (ReplayError, ConfigRefused) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(dict(schema="etrading.replay/1", ok=result.ok,
                              **dataclasses.asdict(result))))
    else:
        prov = report["provenance"]
        print(f"replay of {args.strategy} on {', '.join(prov['symbols'])} {prov['interval']}, "
              f"{prov['bars']} bars {prov['first_bar']} .. {prov['last_bar']}")
        print(f"trades: reference {result.reference_trades}, "
              f"backtrader {result.backtrader_trades}")
        for line in result.disagreements:
            print(f"DISAGREE {line}")
        for line in result.differences:
            print(f"differs by design: {line}")
        print("OK: every trade agrees" if result.ok
              else f"FAIL: {len(result.disagreements)} disagreement(s)")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
