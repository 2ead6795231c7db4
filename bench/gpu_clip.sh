#!/usr/bin/env bash
# CLIP image-embedding throughput on the device machine, ViT-B/32 shape, random weights, batch 256,
# fp32 and bf16: brainpipe-clip (LibTorch through tch) against transformers on the same GPU in the
# same call. Prepare on the build machine with bench/gpu_clip_prepare.sh, then run there with
#   run(command="bash bench/gpu_clip.sh", carry=["device/clip"], timeout_s=300)
# Results: $OUT/clip_gpu.txt, $OUT/clip_throughput.jsonl (record them in docs/BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
PY=/opt/torch/.venv/bin/python
export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
RESULTS=$OUT/clip_throughput.jsonl
: > "$RESULTS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/clip_gpu.txt"
ARGS=(--device cuda --preset vit-b-32 --batch 256 --iters 50 --precision fp32,tf32,bf16)
PYDEPS=/tmp/clip-pydeps
rm -rf "$PYDEPS" && mkdir -p "$PYDEPS"
for wheel in device/clip/wheels/*.whl; do "$PY" -m zipfile -e "$wheel" "$PYDEPS"; done
# Ours, theirs, ours again: the repeat shows whether order (clocks, caches) moved the numbers.
device/clip/clip_throughput "${ARGS[@]}" | tee -a "$RESULTS"
PYTHONPATH=$PYDEPS "$PY" bench/reference/clip_throughput.py "${ARGS[@]}" | tee -a "$RESULTS"
device/clip/clip_throughput "${ARGS[@]}" | tee -a "$RESULTS"
