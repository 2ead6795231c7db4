#!/usr/bin/env bash
# The Brain2Word ranking on both synthetic worlds (issue 17; docs/BENCHMARKS.md, "Synthetic
# worlds"): pipelines/brain2word-worlds.yaml run with `study.encoding` linear and nonlinear —
# ridge, base (regression loss), combined (base with the paper's combined loss), roi,
# autoencoder and meanreg, leave-one-subject-out, the same folds and per-fold column selection
# for every model — then one table (top-1 / top-5 / top-10 / pairwise, the classification head's
# top-k where there is one, top-5 as a fraction of the world's oracle).
#
#   bench/worlds.sh [CACHE_DIR]          (default: a fresh temporary cache, removed afterwards)
#   WORLDS_TWELVE=1 bench/worlds.sh ...  also the 12-subject worlds (pipelines/brain2word-worlds-12.yaml's
#                                        data, scored by bench/reference/worlds_sweep.py on 4 of the
#                                        12 folds: ridge, base, template, the softmax network; ~8 min
#                                        per world more)
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
    for world in linear nonlinear; do
        "$bin" run pipelines/brain2word-worlds-12.yaml --cache "$cache/twelve-$world" --jobs 1 \
            --set study.encoding="$world" >&2
        echo
        echo "12 subjects, $world world (4 of 12 folds; top-1 / top-5):"
        OMP_NUM_THREADS=1 "$python" bench/reference/worlds_sweep.py \
            "$cache/twelve-$world/runs/brain2word-worlds-12" --folds 4 --quick
    done
fi
