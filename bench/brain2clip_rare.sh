#!/usr/bin/env bash
# The seed's common-vs-rare observation on the synthetic images world, and the seed's plain
# CosineProximity loss against Brain2Word's batch-negatives loss (docs/BRAIN2CLIP.md, "Rare
# attributes"; figures in docs/BENCHMARKS.md, "Brain2CLIP: rare attributes and the loss form").
#
#   bench/brain2clip_rare.sh [WEIGHT ...]     default: 1 (uniform) and 0.2 (five times rarer)
#
# Runs bench/brain2clip-rare.yaml (the demo's experiment without the decoder) once per
# `rare_weight` with the release binaries, then prints per model the rare values' category
# accuracy against the common values' (same group), and each model's top-1/top-5.
# Needs BRAINPIPE_REF_PYTHON (pyarrow) for the summary; `make test` creates it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bins
bin="${CARGO_TARGET_DIR:-target}/release/brainpipe"
out="${OUT:-bench/out/brain2clip-rare}"
mkdir -p "$out"
weights=("$@")
[[ ${#weights[@]} -gt 0 ]] || weights=(1 0.2)
echo "host: $(nproc) cores, $(uname -m)"
for w in "${weights[@]}"; do
    start=$(date +%s)
    "$bin" run bench/brain2clip-rare.yaml --set "study.rare_weight=$w" 2>&1 | tail -3
    cp bench/.brainpipe/runs/brain2clip-rare/metrics/metrics.parquet "$out/metrics-$w.parquet"
    echo "rare_weight $w: $(( $(date +%s) - start )) s"
done
"${BRAINPIPE_REF_PYTHON:-python3}" bench/brain2clip_rare.py "$out" "${weights[@]}"
