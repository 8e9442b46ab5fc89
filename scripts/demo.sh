#!/usr/bin/env bash
# The main job on the sample data shipped in data/sample (four symbols, 1h, 2025, with
# mark prices and funding): validate and inspect the data, then the strategy specs in examples/.
# Installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release --locked -p etrading-cli
ET=target/release/etrading

echo "== etrading data inspect data/sample"
$ET data inspect data/sample
