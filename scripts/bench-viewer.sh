#!/usr/bin/env bash
# Benchmark of the report viewer in Debian's headless chromium, from file:// (a benchmark, not
# part of CI; scripts/ci/test-40-viewer.sh checks the same behaviour on 20,000 trials):
#   1. a real study of 1,000,000 trials: `etrading sweep` of tests/browser/rsi_ema_1m.toml
#      (10^6 grid points of rsi_ema) over data/sample with --study (kept in target/bench-viewer
#      and reused; FRESH=1 sweeps again), then `etrading report --study`; measured: page
#      size, time to first draw, sort, filter, trials-table scroll frames, heatmap redraws;
#   2. a run page over 4 symbols x 52,408 aligned 1h bars (209,632; 2020-2025, the top-level
#      files of ../shared/data/binance): `etrading report --spec examples/rsi_ema.toml`;
#      measured: page size, time to first draw, frames of wheel zoom and drag pan.
# Results: target/bench-viewer/bench.json (and two screenshots beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

apt_ensure chromium
command -v npm >/dev/null 2>&1 || apt_ensure nodejs npm
bash scripts/build-viewer.sh
cargo build --release --locked -p etrading-cli
target_dir=${CARGO_TARGET_DIR:-target}
ET="$target_dir/release/etrading"
out=target/bench-viewer
mkdir -p "$out"

db="$out/study-1m.db"
if [ "${FRESH:-0}" = 1 ] || [ ! -s "$db" ]; then
  rm -f "$db" "$db-wal" "$db-shm"
  echo "== etrading sweep tests/browser/rsi_ema_1m.toml --study bench1m (1,000,000 sets, data/sample)"
  start=$(date +%s)
  "$ET" sweep tests/browser/rsi_ema_1m.toml --study bench1m --storage "sqlite:///$db" \
    --data data/sample --top 3 --quiet
  echo "(sweep into the study: $(($(date +%s) - start)) s)"
fi
echo "== etrading report --study bench1m"
start=$(date +%s)
rm -rf "$out/study-report"
"$ET" report --study bench1m --storage "sqlite:///$db" --top 1 --out "$out/study-report" \
  --data data/sample
echo "(report: $(($(date +%s) - start)) s)"

echo "== etrading report --spec examples/rsi_ema.toml over 4 symbols x 52,408 aligned 1h bars"
shared=../shared/data/binance
data=()
for s in BTCUSDT ETHUSDT XRPUSDT LTCUSDT; do
  data+=(--data "$shared/$s-1h.csv" --data "$shared/$s-1h-markprice.csv" --data "$shared/$s-funding.csv")
done
rm -rf "$out/run-report"
"$ET" report --spec examples/rsi_ema.toml --set rsi_window=14 --set rsi_lower=30 \
  --set rsi_upper=70 --set ema_long=200 --set leverage=5 "${data[@]}" --out "$out/run-report"

(cd tests/browser && npm ci --no-audit --no-fund --silent)
node tests/browser/bench-viewer.mjs "$out/study-report/index.html" \
  "$out/run-report/rsi_ema.html" "$out/bench.json"
echo "bench-viewer: results in $out/bench.json"
