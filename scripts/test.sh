#!/usr/bin/env bash
# Runs every test of e-trading: formatting, clippy with warnings as errors, the whole
# workspace's tests, then the suites scripts/ci/test-*.sh. Installs what it needs first
# (scripts/setup.sh). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

export CARGO_TERM_COLOR=never
# Mesa's device-select layer prints an XDG_RUNTIME_DIR warning per Vulkan instance otherwise.
export NODEVICE_SELECT=1
step() { echo; echo "== $*"; }

# What the cargo tests themselves need: PostgreSQL's server binaries (db tests start a
# throwaway cluster on loopback) and Mesa's lavapipe (the GPU tests run on it).
apt_ensure postgresql mesa-vulkan-drivers libvulkan1

# The report viewer (wasm32 + pinned wasm-bindgen-cli) first: etrading embeds it at build time.
step "scripts/build-viewer.sh"
bash scripts/build-viewer.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

# Suites that need more than cargo (a Python virtualenv, PostgreSQL, a browser, qemu): one
# script each, in name order; each installs what it needs through scripts/setup.sh.
for suite in scripts/ci/test-*.sh; do
  [ -e "$suite" ] || continue
  step "$suite"
  bash "$suite"
done
