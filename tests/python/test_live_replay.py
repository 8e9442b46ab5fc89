"""Replay parity: the live Backtrader adapter (etrading_live.backtrader.EtradingStrategy, the
engine deciding in `next()`, Backtrader's own feed and broker filling at the next open), run by
the replay check `etrading_live.replay` against `etrading backtest --json` on the same sample
data: every trade's side, entry and exit time and price agree, reversals included, for the
RSI+EMA spec (specs/bt_rsi_ema_next_open.toml) and the EMA-cross spec
(specs/bt_ema_cross_next_open.toml, also on two symbols under a cap of one position). The
config comes through `load_config` from an `etrading configs --json` style export built from
the backtest's provenance; what the adapter cannot honour is refused. The command line
`python -m etrading_live.replay` is checked end to end. PostgreSQL's active_configs as the
source is checked by scripts/ci/test-promote.sh (tests/python/check_live_pg.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, SAMPLE_DATA, SPECS, spec_for_symbol
from etrading_live import replay
from etrading_live.backtrader import ConfigRefused, load_config

RSI_EMA = SPECS / "bt_rsi_ema_next_open.toml"
EMA_CROSS = SPECS / "bt_ema_cross_next_open.toml"

# (spec, symbol or None for the spec's two, params, must show both sides and a reversal)
CASES = [
    (RSI_EMA, "BTCUSDT", dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200), True),
    (RSI_EMA, "ETHUSDT", dict(rsi_window=14, rsi_lower=35, rsi_upper=65, ema_long=200), True),
    (RSI_EMA, "LTCUSDT", dict(rsi_window=14, rsi_lower=30, rsi_upper=70, ema_long=200), True),
    (RSI_EMA, "XRPUSDT", dict(rsi_window=14, rsi_lower=30, rsi_upper=70, ema_long=200), False),
    (RSI_EMA, "BTCUSDT", dict(rsi_window=21, rsi_lower=35, rsi_upper=65, ema_long=200), False),
    (EMA_CROSS, "BTCUSDT", dict(fast_period=10, slow_period=50, leverage=1), True),
    (EMA_CROSS, "ETHUSDT", dict(fast_period=20, slow_period=100, leverage=1), True),
    (EMA_CROSS, "XRPUSDT", dict(fast_period=5, slow_period=200, leverage=1), True),
    (EMA_CROSS, None, dict(fast_period=10, slow_period=50, leverage=1), True),  # cap 1 of 2
]


def case_id(case) -> str:
    spec, symbol, params, _ = case
    return f"{spec.stem.split('_next')[0]}-{symbol or 'two'}-" + "-".join(
        str(v) for v in params.values())


def export(tmp_path, spec_path, values, report, **override) -> str:
    """An `etrading configs --json` export of one active config (params `values`) built from
    a backtest; `override` replaces columns."""
    prov = report["provenance"]
    row = dict(strategy_id=prov["strategy_id"], version=1, spec_text=spec_path.read_text(),
               params=dict(values), engine_version=prov["engine_version"],
               talib_version=prov["talib_version"], data_hash=prov["data_hash"])
    row.update(override)
    path = tmp_path / "configs.json"
    path.write_text(json.dumps({"schema": "etrading.configs/1", "kind": "active",
                                "configs": [row]}))
    return str(path)


def check_replay(backtest, etrading_bin, tmp_path, spec, params) -> replay.Comparison:
    """Runs the replay of a config exported from `etrading backtest` of `spec` and returns
    its comparison after checking that it agrees and that it exercised something."""
    ours = backtest(spec, **params)
    source = export(tmp_path, spec, params, ours)
    result, report, theirs = replay.run(source, ours["provenance"]["strategy_id"],
                                        [str(SAMPLE_DATA)], str(etrading_bin))
    assert report["trades"] == ours["trades"], "the replay's reference run is not the backtest's"
    assert result.ok, "\n".join(result.disagreements)
    assert result.reference_trades == len(ours["trades"]) == result.backtrader_trades
    assert sum(result.compared.values()) == result.reference_trades
    assert result.reference_trades >= 3, f"only {result.reference_trades} trades: a weak case"
    return result


@pytest.mark.parametrize("spec,symbol,params,reversal", CASES,
                         ids=[case_id(c) for c in CASES])
def test_replay_trades_equal_the_reference(backtest, etrading_bin, tmp_path, spec, symbol,
                                           params, reversal):
    if symbol is not None:
        spec = spec_for_symbol(spec, symbol, tmp_path)
    result = check_replay(backtest, etrading_bin, tmp_path, spec, params)
    ours = backtest(spec, **params)
    trades = ours["trades"]
    # Both sides and a reversal (a trade exiting when the next one enters), as
    # test_backtrader.py requires of the same RSI+EMA param sets; the EMA cross always
    # reverses.
    if reversal:
        assert {t["side"] for t in trades} == {"long", "short"}
        assert sum(a["exit_time"] == b["entry_time"] for a, b in zip(trades, trades[1:])) >= 1
    if trades[-1]["exit_reason"] == "end":
        assert any("§2.8" in d for d in result.differences), result.differences
    if symbol is None:
        # Two always-in-the-market symbols under a cap of one position: both trade, never at
        # once, so entries were refused on both sides (the same trades prove the same ones).
        assert {t["symbol"] for t in trades} == {"BTCUSDT", "ETHUSDT"}
        spans = sorted((t["entry_time"], t["exit_time"]) for t in trades)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "two positions at once"


def test_replay_command_line(backtest, etrading_bin, tmp_path):
    spec = spec_for_symbol(EMA_CROSS, "BTCUSDT", tmp_path)
    params = dict(fast_period=10, slow_period=50, leverage=3)
    ours = backtest(spec, **params)
    source = export(tmp_path, spec, params, ours)

    def cli(*extra):
        return subprocess.run(
            [sys.executable, "-m", "etrading_live.replay", "--config", source, "--strategy",
             "xcheck_bt_ema_cross", "--data", str(SAMPLE_DATA), "--etrading", str(etrading_bin),
             *extra], capture_output=True, text=True, cwd=REPO_ROOT, check=False)

    refused = cli()
    assert refused.returncode == 2, refused
    assert "--at-leverage-1" in refused.stderr and "leverage" in refused.stderr
    ok = cli("--at-leverage-1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: every trade agrees" in ok.stdout
    assert "DISAGREE" not in ok.stdout
    doc = json.loads(cli("--at-leverage-1", "--json").stdout)
    assert doc["schema"] == "etrading.replay/1" and doc["ok"] and not doc["disagreements"]
    assert doc["reference_trades"] == doc["backtrader_trades"] >= 3
    missing = cli("--at-leverage-1", "--data", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "nowhere" in missing.stderr, missing


def test_configs_it_cannot_honour_are_refused(backtest, tmp_path):
    spec = spec_for_symbol(RSI_EMA, "BTCUSDT", tmp_path)
    params = CASES[0][2]
    ours = backtest(spec, **params)
    sid = "xcheck_bt_rsi_ema"
    for override, message in [
        (dict(engine_version="9.9.9"), "engine_version"),
        (dict(talib_version="0.6.4"), "talib_version"),
        (dict(data_hash=""), "no data_hash"),
        (dict(params=dict(params, rsi_window=0)), "config of 'xcheck_bt_rsi_ema'"),
        (dict(params={"rsi_window": 14}), "config of 'xcheck_bt_rsi_ema'"),
        (dict(resolved={"risk": {}, "execution": {}}), "resolved"),
        (dict(symbol_leverage={"BTCUSDT": 5}), "symbol_leverage"),
    ]:
        with pytest.raises(ConfigRefused, match=message):
            load_config(export(tmp_path, spec, params, ours, **override), sid)
    with pytest.raises(ConfigRefused, match="not the expected"):
        load_config(export(tmp_path, spec, params, ours), sid, data_hash="00")
    with pytest.raises(ConfigRefused, match="no active config"):
        load_config(export(tmp_path, spec, params, ours), "other")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "etrading.configs/2", "configs": []}))
    with pytest.raises(ConfigRefused, match="expected 'etrading.configs/1'"):
        load_config(bad, sid)
    bad.write_text("{not json")
    with pytest.raises(ConfigRefused, match="bad.json"):
        load_config(bad, sid)
    # Fills at the close: a live feed's bar is known only once closed, so the adapter refuses.
    at_close = spec.read_text().replace('fill = "next_open"', 'fill = "close"')
    source = export(tmp_path, spec, params, ours, spec_text=at_close)
    with pytest.raises(replay.ReplayError, match="cannot trade: fill 'close'"):
        replay.run(source, sid, [str(SAMPLE_DATA)], "etrading-not-needed")


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "XRPUSDT"])
def test_replay_with_stops_and_take_profits(backtest, etrading_bin, tmp_path, symbol):
    """The adapter's stops and take-profits (placed once the entry has filled) exit where
    the reference's do; what cannot agree (a stop on the entry bar, the take-profit's limit
    price) is named, and most stop and take-profit exits are compared."""
    spec = tmp_path / f"stops-{symbol}.toml"
    spec.write_text(spec_for_symbol(RSI_EMA, symbol, tmp_path).read_text().replace(
        "[risk]\n", "[risk]\nstop_loss = 0.03\ntake_profit = 0.04\n"))
    params = CASES[0][2]
    ours = backtest(spec, **params)
    result, _, theirs = replay.run(export(tmp_path, spec, params, ours), "xcheck_bt_rsi_ema",
                                   [str(SAMPLE_DATA)], str(etrading_bin))
    assert result.ok, "\n".join(result.disagreements)
    reasons = [t["exit_reason"] for t in ours["trades"]]
    assert reasons.count("stop") >= 2 and reasons.count("take_profit") >= 2, reasons
    # Entry-bar stops are rare at these distances: most trades are compared one by one.
    assert result.compared[symbol] >= 0.8 * len(reasons), (result.compared, result.differences)
    assert result.compared[symbol] < len(reasons) or not any(
        "entry bar" in d for d in result.differences)


def test_entries_follow_the_spec_symbol_order_whatever_the_feed_order(backtest, etrading_bin,
                                                                      tmp_path):
    """Under a cap of one position, which symbol's entry wins a shared bar depends on the
    order of entries (§2.3: the spec's symbol order); feeds added to Cerebro in the other
    order must trade exactly the same."""
    params = dict(fast_period=10, slow_period=50, leverage=1)
    ours = backtest(EMA_CROSS, **params)
    config = load_config(export(tmp_path, EMA_CROSS, params, ours), "xcheck_bt_ema_cross")
    bars = replay.replay_bars(ours, [str(SAMPLE_DATA)])
    settings = json.loads(replay.engine_of(config).settings)
    capital = ours["provenance"]["initial_capital"]
    in_order, _ = replay.run_backtrader(config, bars, settings, capital)
    reversed_bars = dict(reversed(list(bars.items())))
    assert list(reversed_bars) == ["ETHUSDT", "BTCUSDT"]
    other_order, _ = replay.run_backtrader(config, reversed_bars, settings, capital)
    assert in_order == other_order
    assert replay.compare(ours, other_order, bars).ok
