#!/usr/bin/env bash
# Installs what building and testing e-trading needs on Debian (bookworm or later),
# idempotently: apt packages only when missing, the pinned Rust toolchain, Rust targets and
# pinned cargo tools. Sourced by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail

# System packages:
#   build-essential, libclang-dev: TA-Lib C (built by ta-lib-sys with configure/make) and its
#   bindgen bindings.
APT_PACKAGES=(build-essential libclang-dev pkg-config ca-certificates curl)

# apt_ensure PKG...: installs the Debian packages that are missing (one apt-get run), else
# does nothing. Used by the scripts under scripts/ci/ for what their tests need.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# target_ensure TRIPLE: `rustup target add` for the pinned toolchain, only when missing.
target_ensure() {
  rustup target list --installed | grep -qx "$1" || rustup target add "$1"
}

# cargo_tool_ensure CRATE VERSION BINARY: `cargo install --locked` of a pinned tool version into
# target/tools (not ~/.cargo), only when that exact version is not there yet.
cargo_tool_ensure() {
  local crate=$1 version=$2 bin=$3 root
  root="$(pwd)/target/tools/$crate-$version"
  if [ ! -x "$root/bin/$bin" ]; then
    echo "setup: cargo install $crate@$version" >&2
    cargo install --locked --quiet --root "$root" "$crate@$version"
  fi
  export PATH="$root/bin:$PATH"
}

apt_ensure "${APT_PACKAGES[@]}"

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
