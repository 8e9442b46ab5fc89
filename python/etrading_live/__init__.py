"""e-trading's streaming signal engine (Rust, crate etrading-live) for a live bot.

`SignalEngine(spec_text, params_json, symbols=None)`; `update(symbol, open_time_ms, open, high,
low, close, volume)` returns None during the warm-up, else `(code, from, target)` with
positions as "flat" / "long" / "short" and target None for "hold" (docs/SEMANTICS.md §2.2, §6).

`load_active_config(url, strategy_id)` reads a promoted config from PostgreSQL's
active_configs; `load_bars(paths, symbol, interval=None)` loads Binance klines strictly. The
Backtrader adapter is `etrading_live.backtrader`; the live-parity replay check is
`python -m etrading_live.replay`.
"""

from ._engine import (ENGINE_VERSION, TALIB_VERSION, LiveError, SignalEngine,
                      load_active_config, load_bars)

__all__ = ["ENGINE_VERSION", "TALIB_VERSION", "LiveError", "SignalEngine",
           "load_active_config", "load_bars"]
