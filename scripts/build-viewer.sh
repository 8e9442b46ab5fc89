#!/usr/bin/env bash
# Builds the report viewer (viewer/, Rust to wasm32) into target/viewer-dist/: the wasm module
# and wasm-bindgen's JS glue (--target no-modules, so a page opened from file:// can
# instantiate it from inline bytes). `etrading report` embeds that folder at build time
# (viewer/build.rs), so run this before building the CLI. Installs the wasm32 target and the
# wasm-bindgen-cli matching the crate's pinned wasm-bindgen (scripts/setup.sh helpers).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# Must equal the `wasm-bindgen = "=..."` pin in viewer/Cargo.toml.
WASM_BINDGEN_VERSION=0.2.129
pinned=$(sed -n 's/^wasm-bindgen = "=\(.*\)"$/\1/p' viewer/Cargo.toml)
if [ "$pinned" != "$WASM_BINDGEN_VERSION" ]; then
  echo "build-viewer: viewer/Cargo.toml pins wasm-bindgen $pinned, this script $WASM_BINDGEN_VERSION" >&2
  exit 1
fi

target_ensure wasm32-unknown-unknown
cargo_tool_ensure wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen

target_dir=${CARGO_TARGET_DIR:-target}
cargo build --locked --release --target wasm32-unknown-unknown -p etrading-viewer
dist=target/viewer-dist
rm -rf "$dist.part"
wasm-bindgen --target no-modules --no-typescript --out-dir "$dist.part" \
  "$target_dir/wasm32-unknown-unknown/release/etrading_viewer.wasm"
rm -rf "$dist"
mv "$dist.part" "$dist"
echo "build-viewer: $(du -k "$dist/etrading_viewer_bg.wasm" | cut -f1) KiB wasm in $dist" >&2
