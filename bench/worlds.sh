#!/usr/bin/env bash
# The Brain2Word ranking on both synthetic worlds (issue 17; docs/BENCHMARKS.md, "Synthetic
# worlds"): pipelines/brain2word-worlds.yaml run with `study.encoding` linear and nonlinear —
# ridge, base (regression loss), combined (base with the paper's combined loss), roi,
# autoencoder and meanreg, leave-one-subject-out, the same folds and per-fold column selection
# for every model — then one table (top-1 / top-5 / top-10 / pairwise, the classification head's
# top-k where there is one, top-5 as a fraction of the world's oracle).
#
#   bench/worlds.sh [CACHE_DIR]          (default: a fresh temporary cache, removed afterwards)
#   WORLDS_TWELVE=1 bench/worlds.sh ...  also the 12-subject worlds (pipelines/brain2word-worlds-12.yaml:
#                                        ridge, base, classifier and combined with the classification
#                                        head on the last hidden layer, all 12 folds; the
#                                        nonlinear world first, then the linear one; about 30–40 min
#                                        per world on 2 quiet cores)
#
# Every network trains on one LibTorch thread (bitwise reproducible on the CPU); stages run one at
# a time (--jobs 1). About 6 minutes per world on a 2-core VM once built. Needs the release build
# (cargo build --release --bins) and pyarrow for the table ($BRAINPIPE_REF_PYTHON, `make refenv`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release/brainpipe"
python="${BRAINPIPE_REF_PYTHON:-python3}"
if [[ $# -ge 1 ]]; then
    cache="$1"
else
    cache="$(mktemp -d "${TMPDIR:-/tmp}/worlds-bench.XXXXXX")"
    trap 'rm -rf "$cache"' EXIT
fi
runs=()
for world in linear nonlinear; do
    start=$(date +%s)
    "$bin" run pipelines/brain2word-worlds.yaml --cache "$cache/$world" --jobs 1 \
        --set study.encoding="$world" >&2
    echo "$world: $(( $(date +%s) - start )) s wall" >&2
    runs+=("$world=$cache/$world/runs/brain2word-worlds")
done
"$python" bench/worlds_table.py "${runs[@]}"
if [[ "${WORLDS_TWELVE:-0}" == 1 ]]; then
    twelve=()
    for world in nonlinear linear; do
        start=$(date +%s)
        "$bin" run pipelines/brain2word-worlds-12.yaml --cache "$cache/twelve-$world" --jobs 2 \
            --set study.encoding="$world" >&2
        echo "12 subjects, $world: $(( $(date +%s) - start )) s wall" >&2
        twelve+=("$world-12=$cache/twelve-$world/runs/brain2word-worlds-12")
    done
    echo
    "$python" bench/worlds_table.py "${twelve[@]}"
fi
