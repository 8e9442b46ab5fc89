#!/usr/bin/env bash
# Creates or updates the virtualenv .venv/ (scripts/venv.sh, cached by a hash of the
# requirements) and builds the live package (python/: pyo3 over live/) into it as an editable
# install; cargo's cache makes a second run cheap. Used by the suites that import
# etrading_live (scripts/ci/test-20-python.sh, scripts/ci/test-promote.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
echo "live-package: maturin develop -m python/Cargo.toml" >&2
VIRTUAL_ENV="$(pwd)/.venv" .venv/bin/maturin develop --quiet --locked -m python/Cargo.toml
