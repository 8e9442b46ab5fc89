#!/usr/bin/env bash
# The Python suite (tests/python): cross-checks of the reference engine against vectorbt and
# Backtrader, TA-Lib's values, the live package, and whatever else lives there. Creates or updates the virtualenv
# .venv/ (scripts/venv.sh, cached by a hash of the requirements), builds the `etrading` binary
# (debug), exports ETRADING_BIN and runs pytest over every test under tests/python.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh

# The virtualenv and the live package (python/) built into it.
bash scripts/live-package.sh

echo "test-20-python: cargo build -p etrading-cli" >&2
cargo build --locked --quiet -p etrading-cli
target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
  | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
export ETRADING_BIN="$target_dir/debug/etrading"

# numba (under vectorbt) caches what it compiles: keep that cache inside the virtualenv, so a
# new virtualenv starts with a fresh one.
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$(pwd)/.venv/numba-cache}"
# No __pycache__ or .pytest_cache in the work tree.
export PYTHONDONTWRITEBYTECODE=1

.venv/bin/python -m pytest -q -p no:cacheprovider tests/python
