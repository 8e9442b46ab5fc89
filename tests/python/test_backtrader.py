"""Cross-check of the reference engine (`etrading backtest`, fill = "next_open") against
Backtrader 1.9.78.123 on the real 2025 sample data: every trade's side, entry and exit time and
entry and exit price must match, and so must the fees and the net PnL per unit traded.

Mapping of settings (ours, specs/bt_rsi_ema_next_open.toml -> Backtrader `Cerebro`):

* Signals: computed here from the same CSV with TA-Lib's Python package and numpy
  (conftest.rsi_ema_signals), independently of the engine's Rust evaluation. The strategy's
  `next()` reads them at each bar's close and turns them into orders by SEMANTICS.md §2.2, as
  the live Backtrader bot does: flat -> long_entry alone buys, short_entry alone sells short;
  long -> short_entry (without long_entry) closes and sells short, else long_exit or
  short_entry closes; short mirrors it. Backtrader itself decides when and at what price the
  orders fill, and what they cost.
* `fill = "next_open"` -> Backtrader market orders (`buy`/`sell`/`close`), which execute at the
  next bar's open; a reversal is `close()` then `sell()`/`buy()`, both filled at that open in
  that order (§2.1: every close before any open).
* `slippage = s` -> `set_slippage_perc(s, slip_open=True, slip_match=True, slip_out=True)`:
  open fills are slipped (Backtrader's default is not to), by price x (1 +/- s), and never
  capped at the bar's high or low (ours does not cap either).
* `taker_fee = f` on the notional of every fill -> `setcommission(commission=f,
  commtype=COMM_PERC, percabs=True, stocklike=True)`: |size| x price x f per execution.
* Sizing: ours is margin = equity x position_size at leverage 1; Backtrader orders a fixed
  size of 1 unit from a 1e12 cash account so no order is ever refused. Sizes differ, so the
  test compares per-unit quantities: fees / qty and PnL / qty.
* `leverage` 1, `funding = "none"`, no stops, one symbol, `max_concurrent_positions = 1`.
* §2.2 / §2.8: no order is placed at the last bar's close (it would have no next open); ours
  closes what is open at the last bar's close (reason `end`), which Backtrader cannot do on a
  next-open broker: for that trade the entry is compared with Backtrader and the exit with
  last close x (1 -/+ s).
"""

from __future__ import annotations

import backtrader as bt
import pandas as pd
import pytest

from conftest import SPECS, assert_close, iso, klines_of_report, rsi_ema_signals, spec_for_symbol

SPEC = SPECS / "bt_rsi_ema_next_open.toml"
TAKER_FEE = 0.0005  # the spec's [execution] taker_fee
SLIPPAGE = 0.0005  # the spec's [execution] slippage
UNITS = 1.0  # Backtrader's order size
BT_CASH = 1e12

CASES = [
    ("BTCUSDT", dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200), ()),
    ("ETHUSDT", dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200), ()),
    ("XRPUSDT", dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200), ()),
    ("LTCUSDT", dict(rsi_window=14, rsi_lower=30, rsi_upper=70, ema_long=200), ()),
    # Ends with a long open (entered 2025-06-30 15:00): the §2.8 end close.
    ("BTCUSDT", dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200),
     ("--from", "2025-01-15", "--to", "2025-07-01")),
]


class SignalReplay(bt.Strategy):
    """Places market orders from precomputed signals (§2.2) and records Backtrader's fills."""

    params = dict(signals=None)

    def __init__(self):
        sig = self.p.signals
        self.le = sig["long_entry"].to_numpy()
        self.lx = sig["long_exit"].to_numpy()
        self.se = sig["short_entry"].to_numpy()
        self.sx = sig["short_exit"].to_numpy()
        self.fills: list[dict] = []  # every executed order, in execution order
        self.closed_pnl: list[float] = []  # Backtrader's net PnL of each closed trade

    def next(self):
        i = len(self) - 1
        if i == len(self.le) - 1:
            return  # the last bar: an order would have no next open
        le, lx, se, sx = self.le[i], self.lx[i], self.se[i], self.sx[i]
        pos = self.position.size
        if pos > 0:
            if se and not le:
                self.close()
                self.sell(size=UNITS)
            elif lx or se:
                self.close()
        elif pos < 0:
            if le and not se:
                self.close()
                self.buy(size=UNITS)
            elif sx or le:
                self.close()
        elif le and not se:
            self.buy(size=UNITS)
        elif se and not le:
            self.sell(size=UNITS)

    def notify_order(self, order):
        if order.status in (order.Submitted, order.Accepted):
            return
        assert order.status == order.Completed, f"order {order.ref}: {order.getstatusname()}"
        self.fills.append(
            dict(
                time=iso(pd.Timestamp(bt.num2date(order.executed.dt), tz="UTC")),
                size=order.executed.size,
                price=order.executed.price,
                comm=order.executed.comm,
            )
        )

    def notify_trade(self, trade):
        if trade.isclosed:
            self.closed_pnl.append(trade.pnlcomm)


def backtrader_trades(df: pd.DataFrame, sig: pd.DataFrame) -> list[dict]:
    """Runs Backtrader with the mapping of the module doc; returns its trades (the last one
    without an exit when a position is open at the end)."""
    cerebro = bt.Cerebro(stdstats=False)
    feed = df.copy()
    feed.index = feed.index.tz_convert("UTC").tz_localize(None)
    cerebro.adddata(bt.feeds.PandasData(dataname=feed, timeframe=bt.TimeFrame.Minutes,
                                        compression=60, openinterest=None))
    cerebro.broker.setcash(BT_CASH)
    cerebro.broker.setcommission(commission=TAKER_FEE, commtype=bt.CommInfoBase.COMM_PERC,
                                 percabs=True, stocklike=True)
    cerebro.broker.set_slippage_perc(SLIPPAGE, slip_open=True, slip_limit=True,
                                     slip_match=True, slip_out=True)
    cerebro.addstrategy(SignalReplay, signals=sig)
    strat = cerebro.run()[0]

    # Pair the fills into trades: each fill that leaves the position flat closes the trade the
    # previous fill opened.
    trades, position, current = [], 0.0, None
    for f in strat.fills:
        assert abs(f["size"]) == UNITS, f"a fill of {f['size']} units"
        if position == 0:
            current = dict(side="long" if f["size"] > 0 else "short", entry_time=f["time"],
                           entry_price=f["price"], fees_per_unit=f["comm"] / UNITS)
            trades.append(current)
        else:
            current.update(exit_time=f["time"], exit_price=f["price"])
            current["fees_per_unit"] += f["comm"] / UNITS
        position += f["size"]
    closed = [t for t in trades if "exit_time" in t]
    assert len(closed) == len(strat.closed_pnl)
    for t, pnl in zip(closed, strat.closed_pnl):
        t["pnl_per_unit"] = pnl / UNITS
    return trades


def check(backtest, tmp_path, symbol: str, params: dict, args: tuple[str, ...]) -> None:
    spec = spec_for_symbol(SPEC, symbol, tmp_path)
    ours = backtest(spec, args=args, **params)
    df = klines_of_report(symbol, ours)
    theirs = backtrader_trades(df, rsi_ema_signals(df, **params))

    trades = ours["trades"]
    assert len(trades) == len(theirs), (
        f"{symbol} {params}: {len(trades)} trades ours vs {len(theirs)} Backtrader: "
        f"ours {[(t['side'], t['entry_time']) for t in trades]} vs Backtrader "
        f"{[(t['side'], t['entry_time']) for t in theirs]}"
    )
    # The case must exercise what it claims: several trades, both sides, reversals.
    assert len(trades) >= 10, f"{symbol} {params}: only {len(trades)} trades"
    assert {t["side"] for t in trades} == {"long", "short"}
    reversals = sum(a["exit_time"] == b["entry_time"] for a, b in zip(trades, trades[1:]))
    assert reversals >= 1, f"{symbol} {params}: no reversal to check"

    last_time, last_close = iso(df.index[-1]), float(df["close"].iloc[-1])
    for i, (o, b) in enumerate(zip(trades, theirs)):
        label = f"{symbol} {params} trade {i} ({o['side']} {o['entry_time']})"
        for key in ("side", "entry_time"):
            assert o[key] == b[key], f"{label}: {key} ours {o[key]} vs Backtrader {b[key]}"
        assert_close(f"{label}: entry_price", o["entry_price"], b["entry_price"])
        if "exit_time" not in b:
            # Open at the end in Backtrader: ours closes it at the last close (§2.8).
            assert i == len(trades) - 1, f"{label}: Backtrader left a trade open mid-run"
            assert (o["exit_reason"], o["exit_time"]) == ("end", last_time), label
            sign = 1.0 if o["side"] == "long" else -1.0
            assert_close(f"{label}: end exit_price", o["exit_price"],
                         last_close * (1.0 - sign * SLIPPAGE))
            continue
        assert o["exit_reason"] == "signal", f"{label}: exit reason {o['exit_reason']}"
        assert o["exit_time"] == b["exit_time"], (
            f"{label}: exit_time ours {o['exit_time']} vs Backtrader {b['exit_time']}"
        )
        assert_close(f"{label}: exit_price", o["exit_price"], b["exit_price"])
        assert_close(f"{label}: fees per unit", o["fees"] / o["qty"], b["fees_per_unit"])
        assert_close(f"{label}: net PnL per unit", o["pnl"] / o["qty"], b["pnl_per_unit"])
    if "--to" in args:
        assert trades[-1]["exit_reason"] == "end", f"{symbol} {params} {args}: no end close"


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=["-".join([s, *map(str, p.values()), *(a for a in args if a[0] != "-")])
         for s, p, args in CASES],
)
def test_trade_times_and_prices_match_backtrader(backtest, tmp_path, case):
    check(backtest, tmp_path, *case)
