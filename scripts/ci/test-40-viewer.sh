#!/usr/bin/env bash
# Browser tests of the report viewer: builds the viewer (scripts/build-viewer.sh) and
# etrading, writes the report of a tiny hand-made Optuna study (tests/browser/make_study.py)
# and opens its pages from file:// in Debian's headless chromium, driven by playwright-core
# (tests/browser/viewer.test.mjs; never a downloaded browser). Then the study browser at
# scale: a synthetic study of 20,000 trials (make_study.py --big, which also writes what the
# page must show) checked for behaviour only, never timings (tests/browser/viewer-big.test.mjs;
# the 1,000,000-trial and 210,000-bar timings are scripts/bench-viewer.sh, not CI).
# Screenshots are kept in artifacts/viewer/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh

apt_ensure chromium python3
# Node.js and npm come with the machine; Debian's are the fallback.
command -v npm >/dev/null 2>&1 || apt_ensure nodejs npm
bash scripts/build-viewer.sh
cargo build --locked -p etrading-cli
target_dir=${CARGO_TARGET_DIR:-target}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
artifacts=artifacts/viewer
rm -rf "$artifacts"
mkdir -p "$artifacts"

python3 tests/browser/make_study.py "$work/study.db"
"$target_dir/debug/etrading" report --study hand --storage "sqlite:///$work/study.db" \
  --top 2 --out "$artifacts/report" --data data/sample
for f in index.html rsi_ema-trial-3.html rsi_ema-trial-6.html; do
  [ -s "$artifacts/report/$f" ] || { echo "test-40-viewer: $f was not written" >&2; exit 1; }
done

python3 tests/browser/make_study.py --big 20000 "$work/big.db" "$work/big.json"
"$target_dir/debug/etrading" report --study big --storage "sqlite:///$work/big.db" \
  --top 0 --out "$artifacts/big"

(cd tests/browser && npm ci --no-audit --no-fund --silent)
node tests/browser/viewer.test.mjs "$artifacts/report" "$artifacts"
node tests/browser/viewer-big.test.mjs "$artifacts/big" "$work/big.json" "$artifacts"
