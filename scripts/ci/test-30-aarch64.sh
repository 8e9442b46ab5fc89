#!/usr/bin/env bash
# The Raspberry Pi path (aarch64-unknown-linux-gnu), under qemu-user; idempotent, as root or
# through sudo, on Debian bookworm.
#
# 1. The kernels: cross-built without TA-Lib (whose C build does not cross-compile; the
#    streaming indicators stand in, proven equal to TA-Lib by the x86-64 tests); the batch
#    parity tests run under qemu-aarch64: the NEON f64x2 kernel against the reference on the
#    same machine, and both against the golden rows the x86-64 build produced with TA-Lib
#    (kernels/tests/golden/).
# 2. The live package etrading_live (python/): cross-built by maturin as an abi3 wheel for
#    aarch64 (a debug build, which shares the dependencies the kernels' aarch64 tests built:
#    about 3 min where a release build takes 13; ETRADING_AARCH64_RELEASE=1 builds release,
#    for a latency figure; pyo3 needs no aarch64 interpreter for abi3), unpacked under
#    target/aarch64-live/site. An aarch64 CPython 3.11 is taken from Debian's arm64 packages
#    without installing them (`dpkg --add-architecture arm64`, `apt-get download`, `dpkg -x`
#    into target/aarch64-live/python3.11, glibc and its loader from the same arm64 libc6;
#    cached), and run as `qemu-aarch64 -L <that folder>`. tests/python/live_stream_dump.py
#    (standard library only) drives the engine over every example spec x 2 param sets x the
#    sample symbols, with a snapshot/restore at the middle bar, and prints every decision: the
#    x86-64 package in .venv (proven equal to TA-Lib by tests/python/test_live_engine.py) and
#    the aarch64 one must print byte-identical output. Last, the per-bar latency of `update`
#    under qemu (emulated: not a Pi's speed).
# Works alone: creates .venv and the x86-64 package (maturin develop) when test-20 has not.
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

# ---------------------------------------------------------------------------------------------
echo "== aarch64: the live package etrading_live under qemu-aarch64"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
step_start=$SECONDS
step() { echo "test-30: $* (at ${SECONDS}s)" >&2; }

# The x86-64 side: .venv and the package in it (cheap when test-20 made them).
bash scripts/live-package.sh

target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
  | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
ARM="$target_dir/aarch64-live"
mkdir -p "$ARM"

# The aarch64 package: an abi3 wheel (a zip), unpacked afresh.
profile=() build="debug"
if [ "${ETRADING_AARCH64_RELEASE:-0}" = 1 ]; then profile=(--release) build="release"; fi
step "maturin build ${profile[*]} --target aarch64-unknown-linux-gnu -m python/Cargo.toml"
rm -rf "$ARM/wheels" "$ARM/site"
.venv/bin/maturin build --quiet --locked "${profile[@]}" --target aarch64-unknown-linux-gnu \
  -m python/Cargo.toml --out "$ARM/wheels"
wheels=("$ARM"/wheels/etrading_live-*-abi3-*aarch64*.whl)
if [ ${#wheels[@]} -ne 1 ] || [ ! -f "${wheels[0]}" ]; then
  echo "test-30: expected one aarch64 abi3 wheel in $ARM/wheels, found: $(ls "$ARM/wheels")" >&2
  exit 1
fi
.venv/bin/python -m zipfile -e "${wheels[0]}" "$ARM/site"
so=("$ARM"/site/etrading_live/_engine*.so)
# e_machine (ELF offset 18, little-endian) 0xb7 is EM_AARCH64.
if [ ! -f "${so[0]}" ] || [ "$(od -An -tx1 -j18 -N2 "${so[0]}" | tr -d ' ')" != "b700" ]; then
  echo "test-30: ${so[0]} is not an aarch64 ELF" >&2
  exit 1
fi
echo "test-30: aarch64 package $(basename "${wheels[0]}")" >&2

# The aarch64 interpreter: Debian's arm64 CPython 3.11 and the shared libraries it and the
# package load, unpacked (never installed) into $PYROOT; libc6 brings the loader with its glibc.
PYROOT="$ARM/python3.11"
ARM_DEBS=(libc6 libgcc-s1 zlib1g libexpat1 libssl3 libffi8
  python3.11-minimal libpython3.11-minimal libpython3.11-stdlib)
stamp="${ARM_DEBS[*]}"
if [ ! -x "$PYROOT/usr/bin/python3.11" ] || [ "$(cat "$PYROOT/.debs" 2>/dev/null)" != "$stamp" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    step "dpkg --add-architecture arm64"
    $sudo dpkg --add-architecture arm64
    $sudo apt-get update -qq
  elif ! apt-cache show python3.11-minimal:arm64 >/dev/null 2>&1; then
    $sudo apt-get update -qq
  fi
  step "apt-get download + dpkg -x of ${ARM_DEBS[*]} (arm64) into $PYROOT"
  rm -rf "$PYROOT" "$PYROOT.tmp" "$ARM/debs"
  mkdir -p "$ARM/debs" "$PYROOT.tmp"
  (cd "$ARM/debs" && apt-get download -qq -o APT::Sandbox::User=root "${ARM_DEBS[@]/%/:arm64}")
  for deb in "$ARM"/debs/*.deb; do dpkg -x "$deb" "$PYROOT.tmp"; done
  echo "$stamp" > "$PYROOT.tmp/.debs"
  mv "$PYROOT.tmp" "$PYROOT"
fi
py_arm() {
  PYTHONHOME="$PYROOT/usr" PYTHONPATH="$ARM/site" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 \
    qemu-aarch64 -L "$PYROOT" "$PYROOT/usr/bin/python3.11" "$@"
}
step "aarch64 interpreter: $(py_arm -c 'import platform, sys; print(platform.machine(), sys.version.split()[0])')"

# The same stream through both packages, compared byte for byte.
step "live_stream_dump.py --full with the x86-64 package (.venv)"
PYTHONDONTWRITEBYTECODE=1 .venv/bin/python tests/python/live_stream_dump.py --full > "$ARM/dump-x86_64.txt"
step "live_stream_dump.py --full with the aarch64 package under qemu-aarch64"
py_arm tests/python/live_stream_dump.py --full > "$ARM/dump-aarch64.txt"
if ! cmp -s "$ARM/dump-x86_64.txt" "$ARM/dump-aarch64.txt"; then
  echo "test-30: FAILED: the aarch64 package decided otherwise than the x86-64 one" >&2
  echo "  ($ARM/dump-x86_64.txt vs $ARM/dump-aarch64.txt; first differences:)" >&2
  diff "$ARM/dump-x86_64.txt" "$ARM/dump-aarch64.txt" | head -n 20 >&2 || true
  exit 1
fi
echo "test-30: aarch64 and x86-64 packages identical, $(tail -n 1 "$ARM/dump-aarch64.txt")" \
  "($(grep -c '^case ' "$ARM/dump-aarch64.txt") cases, each with a snapshot/restore at the middle)"

step "live_stream_dump.py --bench under qemu-aarch64"
bench=$(py_arm tests/python/live_stream_dump.py --bench)
echo "test-30: aarch64 $build build UNDER QEMU-USER EMULATION (not a Raspberry Pi's speed): $bench"
echo "test-30: the live package step took $((SECONDS - step_start))s" >&2
