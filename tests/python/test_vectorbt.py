"""Cross-check of the reference engine (`etrading backtest`, fill = "close") against vectorbt
1.2.0 on the real 2025 sample data: every trade and the final equity must match.

Mapping of settings (ours, specs/vbt_rsi_ema_close.toml -> vectorbt `Portfolio.from_signals`):

* Signals: ours evaluates the spec's rules in Rust on TA-Lib C 0.4.0 indicators. For vectorbt
  they are computed here from the same CSV with TA-Lib's Python package (C 0.8.1) and numpy
  (conftest.rsi_ema_signals), so indicators and rules are checked too.
* One symbol, `max_concurrent_positions = 1`, one-way positions with reversals (SEMANTICS.md
  §2.2) -> two vectorbt columns over the same close prices in ONE group with
  `cash_sharing=True`: column "long" (`direction="longonly"`, entries = long_entry, exits =
  long_exit | short_entry) and column "short" (`direction="shortonly"`, entries = short_entry,
  exits = short_exit | long_entry). Our reversal (close, then open the other side in the same
  fill) is the exiting column's order followed by the entering column's order in the same bar:
  `call_seq` is given per bar, short column first on bars with long_entry, long column first
  otherwise. This needs long_entry exclusive with long_exit and short_entry, and short_entry
  exclusive with short_exit (the spec's bands make them so; the test asserts it on the data),
  because vectorbt and ours resolve such conflicts differently.
* `fill = "close"` -> vectorbt's default order price (`price=np.inf`: the bar's close).
* `slippage = s` -> `slippage=s` (both: buys at price x (1 + s), sells at price x (1 - s)).
* `taker_fee = f` on the notional of every fill -> `fees=f` (vectorbt: fee = filled value x f).
* Sizing: ours posts margin = equity x position_size, notional = margin x leverage (1),
  qty = notional / fill price, the fee on top. The symbol is flat when an entry fills, so
  equity is the cash balance. vectorbt's `size_type="percent"` spends `size x cash` INCLUDING
  the fee (qty = size x cash / (fill price x (1 + f)), for shorts of the free cash, which is the
  cash when flat), so `size = position_size x (1 + taker_fee)` gives the same qty.
* `leverage` 1, `funding = "none"`, no stops: vectorbt has none of these.
* SEMANTICS.md §2.2 "no position is opened on a symbol's last bar" and §2.8 "what is open at the
  last bar closes at its close (reason end), with slippage and fee" -> no entries and an exit
  in both columns on the last bar.
* `--capital 10000` (the default) -> `init_cash=10000`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import vectorbt as vbt
from vectorbt.portfolio.enums import Direction, TradeStatus

from conftest import (
    SPECS,
    assert_close,
    iso,
    klines_of_report,
    rsi_ema_signals,
    spec_for_symbol,
)

SPEC = SPECS / "vbt_rsi_ema_close.toml"
TAKER_FEE = 0.0005  # the spec's [execution] taker_fee
SLIPPAGE = 0.0005  # the spec's [execution] slippage
POSITION_SIZE = 0.5  # the spec's [risk] position_size
CAPITAL = 10_000.0  # etrading backtest's default --capital

# Param sets with enough entries on both sides in 2025 to exercise reversals (the RSI bands
# fight the EMA trend filter, so most of the grid trades rarely).
# A case may restrict the data (`--from`/`--to`): the BTCUSDT one ending 2025-07-01 ends with a
# long open since 2025-06-30 14:00, closed by §2.8 at the last close.
CASES = [
    ("BTCUSDT", dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200)),
    ("BTCUSDT", dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200),
     ("--from", "2025-01-15", "--to", "2025-07-01")),
    ("ETHUSDT", dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200)),
    ("ETHUSDT", dict(rsi_window=14, rsi_lower=30, rsi_upper=70, ema_long=200)),
    ("XRPUSDT", dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200)),
    ("LTCUSDT", dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200)),
]


def vectorbt_trades(df: pd.DataFrame, sig: pd.DataFrame) -> tuple[list[dict], float, float]:
    """Runs vectorbt with the mapping of the module doc; returns its trades (sorted by entry),
    the group's final value and the fees it paid."""
    le = sig["long_entry"].to_numpy()
    lx = sig["long_exit"].to_numpy()
    se = sig["short_entry"].to_numpy()
    sx = sig["short_exit"].to_numpy()
    # The mapping's precondition: no conflicts that vectorbt would resolve differently.
    assert not (le & se).any(), "long_entry and short_entry on the same bar"
    assert not (le & lx).any(), "long_entry and long_exit on the same bar"
    assert not (se & sx).any(), "short_entry and short_exit on the same bar"

    n = len(df)
    # Exits the rules ask for on the last bar (the others there are §2.8's end-of-data closes).
    signal_exit_last = {0: bool(lx[-1] | se[-1]), 1: bool(sx[-1] | le[-1])}
    long_entries, long_exits = le.copy(), lx | se
    short_entries, short_exits = se.copy(), sx | le
    long_entries[-1] = short_entries[-1] = False  # §2.2: no entry on the last bar
    long_exits[-1] = short_exits[-1] = True  # §2.8: close at the last close

    cols = ["long", "short"]
    close = pd.DataFrame(np.column_stack([df["close"]] * 2), index=df.index, columns=cols)
    entries = pd.DataFrame(np.column_stack([long_entries, short_entries]), index=df.index,
                           columns=cols)
    exits = pd.DataFrame(np.column_stack([long_exits, short_exits]), index=df.index,
                         columns=cols)
    # call_seq[i] lists the group's columns in the order they act on bar i.
    call_seq = np.where(le[:, None], [1, 0], [0, 1]).astype(np.int64)
    pf = vbt.Portfolio.from_signals(
        close,
        entries=entries,
        exits=exits,
        direction=np.array([[Direction.LongOnly, Direction.ShortOnly]]),
        size=POSITION_SIZE * (1.0 + TAKER_FEE),
        size_type="percent",
        fees=TAKER_FEE,
        slippage=SLIPPAGE,
        init_cash=CAPITAL,
        group_by=True,
        cash_sharing=True,
        call_seq=call_seq,
        freq="1h",
    )
    rec = pf.trades.values  # the structured record array
    assert (rec["status"] == TradeStatus.Closed).all(), "vectorbt left a trade open"
    trades = [
        dict(
            side="long" if r["col"] == 0 else "short",
            entry_time=iso(df.index[r["entry_idx"]]),
            exit_time=iso(df.index[r["exit_idx"]]),
            entry_price=float(r["entry_price"]),
            exit_price=float(r["exit_price"]),
            qty=float(r["size"]),
            fees=float(r["entry_fees"] + r["exit_fees"]),
            pnl=float(r["pnl"]),
            exit_reason="end"
            if r["exit_idx"] == n - 1 and not signal_exit_last[int(r["col"])]
            else "signal",
        )
        for r in rec
    ]
    trades.sort(key=lambda t: (t["entry_time"], t["exit_time"]))
    fees = float(pf.orders.records["fees"].sum())
    return trades, float(pf.final_value()), fees


def check(backtest, tmp_path, symbol: str, params: dict, args: tuple[str, ...]) -> None:
    spec = spec_for_symbol(SPEC, symbol, tmp_path)
    ours = backtest(spec, args=args, **params)
    df = klines_of_report(symbol, ours)
    theirs, final_value, fees_paid = vectorbt_trades(df, rsi_ema_signals(df, **params))

    trades = ours["trades"]
    assert [t["symbol"] for t in trades] == [symbol] * len(trades)
    assert len(trades) == len(theirs), (
        f"{symbol} {params}: {len(trades)} trades ours vs {len(theirs)} vectorbt; first "
        f"difference: {first_difference(trades, theirs)}"
    )
    # The case must exercise what it claims: several trades, both sides, reversals.
    assert len(trades) >= 10, f"{symbol} {params}: only {len(trades)} trades"
    assert {t["side"] for t in trades} == {"long", "short"}
    if "--to" in args:
        assert trades[-1]["exit_reason"] == "end", f"{symbol} {params} {args}: no end close"
    reversals = sum(a["exit_time"] == b["entry_time"] for a, b in zip(trades, trades[1:]))
    assert reversals >= 1, f"{symbol} {params}: no reversal to check"

    for i, (o, v) in enumerate(zip(trades, theirs)):
        label = f"{symbol} {params} trade {i} ({o['side']} {o['entry_time']})"
        for key in ("side", "entry_time", "exit_time"):
            assert o[key] == v[key], f"{label}: {key} ours {o[key]} vs vectorbt {v[key]}"
        assert o["exit_reason"] == v["exit_reason"], f"{label}: exit reason"
        for key in ("entry_price", "exit_price", "qty", "fees", "pnl"):
            assert_close(f"{label}: {key}", o[key], v[key])
        assert o["funding"] == 0.0 and o["liquidation_fee"] == 0.0 and o["leverage"] == 1.0

    m = ours["metrics"]
    assert_close(f"{symbol} {params}: final equity", m["final_equity"], final_value)
    assert_close(f"{symbol} {params}: fees paid", m["fees_paid"], fees_paid)
    assert m["liquidations"] == 0 and m["skipped_entries"] == 0


def first_difference(ours: list[dict], theirs: list[dict]) -> str:
    for i, (o, v) in enumerate(zip(ours, theirs)):
        if (o["side"], o["entry_time"], o["exit_time"]) != (
            v["side"], v["entry_time"], v["exit_time"]
        ):
            return (f"trade {i}: ours {o['side']} {o['entry_time']}..{o['exit_time']}, "
                    f"vectorbt {v['side']} {v['entry_time']}..{v['exit_time']}")
    return f"the first {min(len(ours), len(theirs))} trades agree"


def case_id(case: tuple) -> str:
    symbol, params, *args = case
    return "-".join([symbol, *map(str, params.values()), *(a for a in sum(args, ()) if a[0] != "-")])


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_trades_and_final_equity_match_vectorbt(backtest, tmp_path, case):
    symbol, params, *args = case
    check(backtest, tmp_path, symbol, params, args[0] if args else ())
