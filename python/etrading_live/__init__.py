"""e-trading's streaming signal engine (Rust, crate etrading-live) for a live bot.

`SignalEngine(spec_text, params_json, symbols=None)`; `update(symbol, open_time_ms, open, high,
low, close, volume)` returns None during the warm-up, else `(code, from, target)` with
positions as "flat" / "long" / "short" and target None for "hold" (docs/SEMANTICS.md §2.2, §6).
"""

from ._engine import ENGINE_VERSION, TALIB_VERSION, LiveError, SignalEngine

__all__ = ["ENGINE_VERSION", "TALIB_VERSION", "LiveError", "SignalEngine"]
