"""The live package against a real PostgreSQL, run by scripts/ci/test-promote.sh on its
throwaway cluster after `etrading promote` and `rollback` (not collected by pytest: it needs
that cluster). Modes:

  check_live_pg.py active URL EXPORT STRATEGY DATA
      load_config(URL, STRATEGY) reads the active config straight from active_configs (as
      the promoter role a bot would use) and it is the row `etrading configs --json` wrote to
      EXPORT, field for field; its `resolved` and `symbol_leverage` columns are what the
      package's engine resolves the spec and params to (check_config compares them); the
      engine built from it runs the sample bars of DATA; an unknown strategy is refused.
  check_live_pg.py newer URL STRATEGY
      the database carries a migration newer than this package knows: refused, one message.
"""

from __future__ import annotations

import json
import sys

from etrading_live import SignalEngine, load_bars
from etrading_live.backtrader import ConfigRefused, check_config, load_config


def refused(url: str, strategy: str, expected: str) -> None:
    try:
        load_config(url, strategy)
    except ConfigRefused as e:
        message = str(e)
        assert expected in message, f"refusal lacks {expected!r}: {message}"
        assert "\n" not in message, f"not one line: {message!r}"
        password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        assert password not in message, f"password printed: {message}"
        print(f"refused as expected: {message}")
        return
    raise AssertionError(f"load_config({strategy!r}) was not refused ({expected})")


def active(url: str, export: str, strategy: str, data: str) -> None:
    config = load_config(url, strategy)
    rows = [r for r in json.load(open(export))["configs"] if r["strategy_id"] == strategy]
    assert len(rows) == 1, rows
    assert config == rows[0], {k: (config.get(k), rows[0].get(k))
                               for k in set(config) | set(rows[0])
                               if config.get(k) != rows[0].get(k)}
    settings = check_config(config)
    assert settings["symbol_leverage"] == {s: int(v) for s, v in
                                           config["symbol_leverage"].items()}
    engine = SignalEngine(config["spec_text"], json.dumps(config["params"]))
    decisions = 0
    for symbol in engine.symbols:
        bars = load_bars([data], symbol, config["bar_interval"])
        for i, t in enumerate(bars["open_time"]):
            step = engine.update(symbol, t, *(bars[k][i] for k in
                                              ("open", "high", "low", "close", "volume")))
            decisions += step is not None
    assert decisions > 0, "no decision at all"
    print(f"active config {strategy} version {config['version']} from PostgreSQL: equal to "
          f"`etrading configs --json`, {decisions} decisions on the sample bars")
    refused(url, "no_such_strategy", 'strategy "no_such_strategy" has no active config')


def main(argv: list[str]) -> None:
    mode, url = argv[0], argv[1]
    if mode == "active":
        active(url, argv[2], argv[3], argv[4])
    elif mode == "newer":
        refused(url, argv[2], "newer than the newest this etrading knows")
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
