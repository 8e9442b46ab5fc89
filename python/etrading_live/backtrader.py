"""A Backtrader strategy driven by the live signal engine, configured by a promoted config.

`load_config(source, strategy_id)` reads the active config of a strategy from PostgreSQL's
`active_configs` (`source` a `postgresql://` URL: the db crate's own reader, which refuses a
database at another migration than this package carries) or from the JSON export of
`etrading configs --json` (schema `etrading.configs/1`, one row per strategy, the same
columns: docs/PROMOTION.md). `check_config` then refuses what this package cannot honour:
`engine_version` must equal ENGINE_VERSION, `talib_version` must be the TA-Lib release the
streaming indicators reproduce (TALIB_VERSION), `data_hash` must be present (and equal the
caller's when one is given), the spec and params must build an engine, and the row's
`resolved` and `symbol_leverage` columns, when present, must be what this engine resolves
the spec and params to. Any refusal raises ConfigRefused.

`EtradingStrategy` (params `config`, optional `engine`, optional `setup`) feeds each closed
bar of each data feed (named by its symbol, `cerebro.adddata(feed, name="BTCUSDT")`) to the
engine in `next()` and turns §2.2 targets into market orders, which Backtrader fills at the
next open: every close before any open (§2.1), then the opens (a reversal's too) in the spec's
symbol order, each refused when `max_concurrent_positions` are open (§2.3; the engine is told
it is flat). An entry's
size is the reference's `equity x position_size x leverage / close` with the symbol's
leverage after the spec's caps; on Backtrader's own broker, set `setcommission(leverage=L)`
for L > 1 (it models no margin, brackets or liquidation). `setup(symbol, leverage,
margin_mode)`, when given, is called once per symbol at start so that a live store can set
the exchange's leverage and margin mode. No order is placed on a feed's last bar (it would
have no next open; SEMANTICS.md §2.2).

Stops (§2.7): when an entry fills, the adapter places a stop order at
`fill x (1 -/+ stop_loss)` and a take-profit limit order at `fill x (1 +/- take_profit)`,
one cancelling the other (the stop first: a bar that reaches both fills the stop, as the
reference does), both cancelled when a signal closes the position; a filled one tells the
engine the position is flat. As on an exchange, they exist only once the entry's fill price
is known, so Backtrader's broker checks them from the bar after the entry; the reference
also checks the entry bar itself. Backtrader fills a take-profit limit at its limit price
(or a better open), the reference at the trigger less slippage, as a market order. The
replay check (etrading_live.replay) names both. Refused at start: fills at the close
(`fill = "close"`). Not modelled by Backtrader, named by the replay: liquidation (§2.5),
funding (§2.6), the reference's close of a position still open at the last bar (§2.8).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import backtrader as bt

from ._engine import ENGINE_VERSION, TALIB_VERSION, LiveError, SignalEngine, load_active_config

_EPOCH = _dt.datetime(1970, 1, 1)


class ConfigRefused(Exception):
    """A config this package cannot honour (source, versions, data hash, features)."""


def _is_url(source) -> bool:
    return isinstance(source, str) and source.split("://", 1)[0] in ("postgresql", "postgres")


def load_config(source: str | Path, strategy_id: str, data_hash: str | None = None) -> dict:
    """The active config of `strategy_id`: from PostgreSQL at `source` (a postgresql:// URL)
    or from an `etrading configs --json` export at path `source`; checked by check_config."""
    if _is_url(source):
        try:
            config = json.loads(load_active_config(source, strategy_id))
        except LiveError as e:
            raise ConfigRefused(str(e)) from None
    else:
        path = Path(source)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigRefused(f"{path}: {e}") from None
        if not isinstance(doc, dict) or doc.get("schema") != "etrading.configs/1":
            schema = doc.get("schema") if isinstance(doc, dict) else None
            raise ConfigRefused(f"{path}: schema {schema!r}, expected 'etrading.configs/1' "
                                "(the export of `etrading configs --json`)")
        if doc.get("kind", "active") != "active":
            raise ConfigRefused(f"{path}: a {doc.get('kind')!r} export; export the active "
                                "configs (`etrading configs --json`, without --history)")
        rows = [r for r in doc.get("configs", []) if r.get("strategy_id") == strategy_id]
        if not rows:
            raise ConfigRefused(f"{path}: no active config for strategy {strategy_id!r}")
        if len(rows) > 1:
            raise ConfigRefused(f"{path}: {len(rows)} active rows for strategy {strategy_id!r}")
        config = rows[0]
    check_config(config, data_hash)
    return config


def engine_of(config: dict, symbols: list[str] | None = None) -> SignalEngine:
    """The signal engine of a config's spec text and params (for `symbols`, default the
    spec's own); ConfigRefused if they do not build one."""
    try:
        return SignalEngine(config["spec_text"], json.dumps(config["params"]), symbols,
                            f"{config.get('strategy_id', 'config')}.toml")
    except LiveError as e:
        raise ConfigRefused(f"config of {config.get('strategy_id')!r}: {e}") from None


def check_config(config: dict, data_hash: str | None = None) -> dict:
    """Raises ConfigRefused unless this package can honour `config`; returns the engine's
    settings (`SignalEngine.settings`) for the config's spec and params."""
    for key in ("strategy_id", "spec_text", "params", "engine_version", "talib_version"):
        if key not in config:
            raise ConfigRefused(f"the config has no {key}")
    if config["engine_version"] != ENGINE_VERSION:
        raise ConfigRefused(f"engine_version {config['engine_version']!r}: this package "
                            f"runs engine {ENGINE_VERSION}")
    talib = str(config["talib_version"])
    if talib.split(" ")[0] != TALIB_VERSION:
        raise ConfigRefused(f"talib_version {talib!r}: the streaming indicators reproduce "
                            f"TA-Lib {TALIB_VERSION}")
    if not config.get("data_hash"):
        raise ConfigRefused("the config has no data_hash")
    if data_hash is not None and config["data_hash"] != data_hash:
        raise ConfigRefused(f"data_hash {config['data_hash']} is not the expected {data_hash}")
    settings = json.loads(engine_of(config).settings)
    for key in ("resolved", "symbol_leverage"):
        if key not in config:
            continue
        ours = settings["symbol_leverage"] if key == "symbol_leverage" else {
            "risk": settings["risk"], "execution": settings["execution"]}
        if config[key] != ours:
            raise ConfigRefused(f"the config's {key} {json.dumps(config[key], sort_keys=True)} "
                                f"is not what its spec and params resolve to here: "
                                f"{json.dumps(ours, sort_keys=True)}")
    return settings


def unsupported(settings: dict) -> list[str]:
    """What this adapter cannot trade, of a config's settings (`check_config`'s result)."""
    execution = settings["execution"]
    if execution.get("fill") != "next_open":
        return [f"fill {execution.get('fill')!r} (orders decided at a bar's close fill at "
                "the next open on a live feed)"]
    return []


def bar_time_ms(data) -> int:
    """The open time (ms) of a feed's current bar (Backtrader's bar time, naive UTC)."""
    return round((bt.num2date(data.datetime[0]) - _EPOCH).total_seconds() * 1000)


class EtradingStrategy(bt.Strategy):
    params = dict(config=None, engine=None, setup=None)

    def __init__(self):
        config = self.p.config
        settings = check_config(config)
        missing = unsupported(settings)
        if missing:
            raise ConfigRefused(f"this adapter cannot trade: {', '.join(missing)}")
        self.symbols = [d._name for d in self.datas]
        self.engine = self.p.engine or engine_of(config, self.symbols)
        # Entries fill in the spec's symbol order (§2.3), whatever order the feeds were added.
        order = {s: i for i, s in enumerate(engine_of(config).symbols)}
        self.by_spec_order = sorted(zip(self.datas, self.symbols), key=lambda d: order[d[1]])
        risk = settings["risk"]
        self.position_size = float(risk["position_size"])
        self.max_positions = int(risk["max_concurrent_positions"])
        self.leverage = {s: int(settings["symbol_leverage"][s]) for s in self.symbols}
        self.margin_mode = risk["margin_mode"]
        self.stop_loss, self.take_profit = risk.get("stop_loss"), risk.get("take_profit")
        self.entries: set[int] = set()  # refs of entry orders not yet filled
        self.protective: dict[str, list] = {s: [] for s in self.symbols}
        self.fills: list[dict] = []
        self.skipped: list[dict] = []
        if self.p.setup is not None:
            for symbol in self.symbols:
                self.p.setup(symbol, self.leverage[symbol], self.margin_mode)

    def next(self):
        decisions = []
        for data, symbol in self.by_spec_order:
            step = self.engine.update(symbol, bar_time_ms(data), data.open[0], data.high[0],
                                      data.low[0], data.close[0], data.volume[0])
            if step is None:
                continue  # warming up
            _, held, target = step
            if target is None:
                continue
            if len(data) == data.buflen():
                # The last bar: no next open to fill at; what is held stays held.
                self.engine.set_position(symbol, held)
                continue
            decisions.append((data, symbol, held, target))
        # Every close before any open (§2.1); then the opens, a reversal's included, in the
        # spec's symbol order while fewer than max_concurrent_positions are open (§2.3).
        open_count = sum(1 for d in self.datas if self.getposition(d).size != 0)
        for data, symbol, held, target in decisions:
            if held != "flat":
                for order in self.protective[symbol]:
                    self.cancel(order)
                self.protective[symbol] = []
                self.close(data=data)
                open_count -= 1
        for data, symbol, held, target in decisions:
            if target == "flat":
                continue
            if open_count >= self.max_positions:
                self.engine.set_position(symbol, "flat")
                self.skipped.append(dict(symbol=symbol, time_ms=bar_time_ms(data),
                                         reason="max_concurrent_positions"))
                continue
            open_count += 1
            size = (self.broker.getvalue() * self.position_size * self.leverage[symbol]
                    / data.close[0])
            order = (self.buy if target == "long" else self.sell)(data=data, size=size)
            self.entries.add(order.ref)

    def protect(self, order):
        """The stop and take-profit of an entry that just filled (§2.7)."""
        symbol, price, size = order.data._name, order.executed.price, abs(order.executed.size)
        long = order.executed.size > 0
        close = self.sell if long else self.buy
        placed = []
        if self.stop_loss is not None:
            trigger = price * (1 - self.stop_loss) if long else price * (1 + self.stop_loss)
            placed.append(close(data=order.data, size=size, exectype=bt.Order.Stop,
                                price=trigger))
        if self.take_profit is not None:
            trigger = price * (1 + self.take_profit) if long else price * (1 - self.take_profit)
            placed.append(close(data=order.data, size=size, exectype=bt.Order.Limit,
                                price=trigger, oco=placed[0] if placed else None))
        self.protective[symbol] = placed

    def notify_order(self, order):
        if order.status != order.Completed:
            return
        symbol = order.data._name
        self.fills.append(dict(symbol=symbol, time=bt.num2date(order.executed.dt),
                               size=order.executed.size, price=order.executed.price,
                               kind=("entry" if order.ref in self.entries else
                                     "protective" if order in self.protective[symbol]
                                     else "exit")))
        if order.ref in self.entries:
            self.entries.discard(order.ref)
            self.protect(order)
        elif order in self.protective[symbol]:
            # A stop or take-profit closed the position: the engine holds nothing now.
            self.protective[symbol] = []
            self.engine.set_position(symbol, "flat")
