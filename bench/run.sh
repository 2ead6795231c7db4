#!/usr/bin/env bash
# `make bench`: every CPU benchmark of docs/BENCHMARKS.md, one log per benchmark in bench/out/.
# (The GPU ones run on the device machine: bench/gpu.sh.) Takes several minutes on 2 cores; run it
# on a quiet machine, the figures move with the load (each log starts with `uptime`).
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out"
cargo build --release --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/release/brainpipe"

run() { # name, command...
    local name=$1; shift
    echo "==> $name (log: $out/$name.log)"
    { uptime; "$@"; uptime; } > "$out/$name.log" 2>&1 || { tail -20 "$out/$name.log"; exit 1; }
    tail -5 "$out/$name.log"
}

run noop_rerun bash bench/noop_rerun.sh "$bin"
run plan bash bench/plan.sh "$bin"
run synthetic bash bench/synthetic.sh
run nifti_ingest bash bench/nifti_ingest.sh "$bin"
run features bash bench/features.sh
# Criterion benchmarks (the scans writer, the Adam step, CLIP preprocessing and forward passes).
run criterion cargo bench --workspace --benches
echo "==> logs in $out/"
