#!/usr/bin/env bash
# Fuzzing in CI: builds the fuzz crate (fuzz/, stable Rust: cargo-fuzz needs nightly) in
# release, then runs each target (klines, funding, zip, spec, expr) for FUZZ_SECONDS (15 by
# default; 75 s in all) from its committed corpus fuzz/corpus/<target>/, with a fresh seed
# printed in the log. Fails when any target panics, aborts or hangs; the input is saved in
# target/fuzz/ as crash-*.bin or hang-*.bin and reproduced with
# `target/release/etrading-fuzz replay <target> <file>`. (The committed corpus itself is
# replayed by `cargo test`, fuzz/tests/corpus.rs.)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh

seconds=${FUZZ_SECONDS:-15}
seed=${FUZZ_SEED:-$(date +%s)}
echo "test-50-fuzz: cargo build --release -p etrading-fuzz" >&2
cargo build --locked --release --quiet -p etrading-fuzz
target_dir=${CARGO_TARGET_DIR:-target}
out="$target_dir/fuzz"
rm -rf "$out"
mkdir -p "$out"
echo "test-50-fuzz: every target for ${seconds}s, seed $seed (FUZZ_SEED=$seed reruns it)" >&2
"$target_dir/release/etrading-fuzz" run all --seconds "$seconds" --seed "$seed" --out "$out"
