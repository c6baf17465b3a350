#!/usr/bin/env bash
# Runs every fuzz target for the given number of seconds each (default 60).
# Needs a nightly toolchain and cargo-fuzz (installed here when missing).
# Usage: fuzz/run.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in $(cargo +nightly fuzz list); do
  echo "=== fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  # Inputs up to 20 kB: the head scanner's length counter (14 bits) must be reachable.
  cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -max_len=20000 -print_final_stats=1
done
