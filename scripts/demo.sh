#!/usr/bin/env bash
# The main job on the sample data shipped in data/sample (four symbols, 1h, 2025, with
# mark prices and funding): validate and inspect the data, then the strategy specs in examples/
# (backtests, a sweep, the sweep as a study and its HTML report, parity).
# Installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# The report viewer first (wasm32, pinned wasm-bindgen-cli): etrading embeds it at build time.
bash scripts/build-viewer.sh
cargo build --release --locked -p etrading-cli
ET=target/release/etrading

echo "== etrading data inspect data/sample"
$ET data inspect data/sample

echo
echo "== etrading backtest examples/rsi_ema.toml (one parameter set, reference engine, sample data)"
$ET backtest examples/rsi_ema.toml --set rsi_window=14 --set rsi_lower=30 --set rsi_upper=70 \
  --set ema_long=200 --set leverage=5 --trades target/demo-trades.csv
echo "(trades written to target/demo-trades.csv)"

echo
echo "== etrading backtest examples/bb_atr_breakout.toml (isolated margin, stops)"
$ET backtest examples/bb_atr_breakout.toml --set bb_period=20 --set bb_width=2.0 \
  --set min_atr_frac=0.005 --set stop_loss_frac=0.04 --set leverage=4

echo
echo "== etrading sweep examples/rsi_ema.toml (all 1,500 grid points, SIMD kernel, top 5 by risk_adjusted)"
rm -f target/demo-sweep.csv
$ET sweep examples/rsi_ema.toml --top 5 --out target/demo-sweep.csv --quiet
echo "(every set's metrics written to target/demo-sweep.csv)"

echo
echo "== etrading sweep examples/rsi_ema.toml --study demo (the same grid as an Optuna study), then etrading report"
rm -f target/demo-study.db target/demo-study.db-wal target/demo-study.db-shm
rm -rf target/demo-report
$ET sweep examples/rsi_ema.toml --study demo --storage sqlite:///target/demo-study.db --top 3 --quiet
$ET report --study demo --storage sqlite:///target/demo-study.db --top 3 --out target/demo-report
echo "(report written: open target/demo-report/index.html in a browser, from file://; the three best"
echo " trials' pages are beside it)"

echo
echo "== etrading parity examples/rsi_ema.toml (sampled sets: SIMD kernel against the reference)"
$ET parity examples/rsi_ema.toml --backend simd --samples 100
