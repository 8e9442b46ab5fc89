#!/usr/bin/env bash
# Installs what building and testing e-trading needs on Debian (bookworm or later),
# idempotently: apt packages only when missing, the pinned Rust toolchain, Rust targets and
# pinned cargo tools. Sourced by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail

# System packages:
#   build-essential, libclang-dev: TA-Lib C (built by ta-lib-sys with configure/make) and its
#   bindgen bindings.
APT_PACKAGES=(build-essential libclang-dev pkg-config ca-certificates curl)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: rustup installs the toolchain pinned in rust-toolchain.toml on first use.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
