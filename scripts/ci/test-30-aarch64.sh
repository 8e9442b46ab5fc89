#!/usr/bin/env bash
# The Raspberry Pi path: cross-builds the kernels for aarch64-unknown-linux-gnu (without
# TA-Lib, whose C build does not cross-compile; the streaming indicators stand in, proven
# equal to TA-Lib by the x86-64 tests) and runs the batch parity tests under qemu-aarch64:
# the NEON f64x2 kernel against the reference on the same machine, and both against the
# golden rows the x86-64 build produced with TA-Lib (kernels/tests/golden/).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh

apt_ensure qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
target_ensure aarch64-unknown-linux-gnu

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc

echo "== aarch64: kernels batch parity under qemu-aarch64"
cargo test --locked -p etrading-kernels --no-default-features \
  --target aarch64-unknown-linux-gnu --test batch
