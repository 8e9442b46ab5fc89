"""A Backtrader strategy driven by the live signal engine, configured by a promoted config.

`load_config(path, strategy_id)` reads the active config of a strategy from the JSON export of
`etrading configs --json` (schema `etrading.configs/1`, one row per strategy, the columns of
PostgreSQL's `active_configs`: docs/PROMOTION.md) and checks what this package can honour:
`engine_version` must equal ENGINE_VERSION and `talib_version` must be the TA-Lib release the
streaming indicators reproduce (TALIB_VERSION); `data_hash` must be present, and equal the
caller's when one is given. Anything else raises ConfigRefused.

`EtradingStrategy` (params `config`, optional `engine`) feeds each closed bar of each data feed
(named by its symbol, `cerebro.adddata(feed, name="BTCUSDT")`) to the engine in `next()` and
turns §2.2 targets into market orders (a reversal is `close()` then the opposite order, both
filled at the next open by Backtrader's default broker). Orders size the position as the
engine's reference does at leverage 1: `value x position_size / close`; with leverage L set on
the broker (`setcommission(leverage=L)`) the notional is L times that. No order is placed on
a feed's last bar (it would have no next open; SEMANTICS.md §2.2); ours closes there (§2.8).
What Backtrader's broker cannot express is listed in UNSUPPORTED and refused at start: stops
and take-profits of the reference (§2.7), liquidation (§2.5) and funding (§2.6).
"""

from __future__ import annotations

import json
from pathlib import Path

import datetime as _dt

import backtrader as bt

from ._engine import ENGINE_VERSION, TALIB_VERSION, SignalEngine

# Features of a config that this adapter cannot reproduce on Backtrader's broker.
UNSUPPORTED = ("stop_loss", "take_profit", "funding", "liquidation", "fill = close")
# Liquidation cannot occur at leverage 1 on a long; a short can in principle, never on the
# sample data at position_size <= 0.5.


_EPOCH = _dt.datetime(1970, 1, 1)


class ConfigRefused(Exception):
    """A config this package cannot honour (versions, data hash, features)."""


def load_config(path: str | Path, strategy_id: str, data_hash: str | None = None) -> dict:
    """The active config of `strategy_id` from an `etrading configs --json` export."""
    doc = json.loads(Path(path).read_text())
    if doc.get("schema") != "etrading.configs/1":
        raise ConfigRefused(f"{path}: schema {doc.get('schema')!r}, expected 'etrading.configs/1'")
    rows = [r for r in doc.get("configs", []) if r.get("strategy_id") == strategy_id]
    if not rows:
        raise ConfigRefused(f"{path}: no active config for strategy {strategy_id!r}")
    config = max(rows, key=lambda r: r.get("version", 0))
    check_config(config, data_hash)
    return config


def check_config(config: dict, data_hash: str | None = None) -> None:
    """Raises ConfigRefused unless this package can honour `config`."""
    if config.get("engine_version") != ENGINE_VERSION:
        raise ConfigRefused(f"engine_version {config.get('engine_version')!r}: this package "
                            f"runs engine {ENGINE_VERSION}")
    talib = str(config.get("talib_version", ""))
    if talib.split(" ")[0] != TALIB_VERSION:
        raise ConfigRefused(f"talib_version {talib!r}: the streaming indicators reproduce "
                            f"TA-Lib {TALIB_VERSION}")
    if not config.get("data_hash"):
        raise ConfigRefused("the config has no data_hash")
    if data_hash is not None and config["data_hash"] != data_hash:
        raise ConfigRefused(f"data_hash {config['data_hash']} is not the expected {data_hash}")
    for key in ("spec_text", "params", "max_position_size"):
        if key not in config:
            raise ConfigRefused(f"the config has no {key}")


def unsupported(config: dict) -> list[str]:
    """The features of `config` that Backtrader's broker cannot express here."""
    risk = config.get("resolved", {}).get("risk", {})
    execution = config.get("resolved", {}).get("execution", {})
    found = [k for k in ("stop_loss", "take_profit") if risk.get(k) is not None]
    if execution.get("funding") not in (None, "none", "None"):
        found.append(f"funding {execution.get('funding')!r}")
    if execution.get("fill") not in (None, "next_open", "NextOpen"):
        found.append(f"fill {execution.get('fill')!r}")
    return found


class EtradingStrategy(bt.Strategy):
    params = dict(config=None, engine=None)

    def __init__(self):
        config = self.p.config
        check_config(config)
        missing = unsupported(config)
        if missing:
            raise ConfigRefused(f"Backtrader cannot express: {', '.join(missing)}")
        self.symbols = [d._name for d in self.datas]
        self.engine = self.p.engine or SignalEngine(
            config["spec_text"], json.dumps(config["params"]), self.symbols)
        self.position_size = float(config["max_position_size"])
        self.fills: list[dict] = []

    def next(self):
        for data, symbol in zip(self.datas, self.symbols):
            # Backtrader's bar time is the open time, naive UTC.
            open_time_ms = round((bt.num2date(data.datetime[0]) - _EPOCH).total_seconds() * 1000)
            step = self.engine.update(symbol, open_time_ms, data.open[0], data.high[0],
                                      data.low[0], data.close[0], data.volume[0])
            if step is None or len(data) == data.buflen():
                continue  # warming up, or the last bar (no next open)
            _, held, target = step
            if target is None:
                continue
            size = self.broker.getvalue() * self.position_size / data.close[0]
            if held != "flat":
                self.close(data=data)
            if target == "long":
                self.buy(data=data, size=size)
            elif target == "short":
                self.sell(data=data, size=size)

    def notify_order(self, order):
        if order.status == order.Completed:
            self.fills.append(dict(symbol=order.data._name, time=bt.num2date(order.executed.dt),
                                   size=order.executed.size, price=order.executed.price))

