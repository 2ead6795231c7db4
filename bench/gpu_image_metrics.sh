#!/usr/bin/env bash
# Throughput of eval.images' pixel metrics (PixCorr + SSIM Gaussian + SSIM 7×7, and SSIM Gaussian
# alone) on batches of 425 × 425 pairs: the LibTorch path of clip.pixel_metrics
# (brainpipe_clip::pair_metrics_batch, f64 and f32) on the CPU and, when a GPU is present, on CUDA
# (with and without the upload from the host), against eval's own CPU kernel on all cores.
#
#   bash bench/gpu_image_metrics.sh prepare      build machine: the binary, linked for the device
#                                                machine's LibTorch, into device/image_metrics/
#   run(command="bash bench/gpu_image_metrics.sh", carry=["device/image_metrics"], timeout_s=300)
#   bash bench/gpu_image_metrics.sh local        build machine: build (release) and run here, CPU
#
# Env: PAIRS (default 256 on a GPU, 16 on the CPU), ITERS (5, 3). Results: $OUT/image_metrics.jsonl
# (one JSON line per measurement, `pairs_per_s`, and per device the f64 values checked against
# eval's kernel, the run failing above 1e-6) and $OUT/image_metrics_summary.txt; record them in
# docs/BENCHMARKS.md ("Image metrics") with the card and the date.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
TORCH_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
TARGET=${CARGO_TARGET_DIR:-target}

case "${1:-device}" in
prepare)
    source /tmp/env.sh 2>/dev/null || true
    rm -rf device/image_metrics && mkdir -p device/image_metrics
    TORCH_RUNTIME_LIB=$TORCH_LIB cargo build --release --workspace --example image_metrics_throughput
    cp "$TARGET/release/examples/image_metrics_throughput" device/image_metrics/
    strip device/image_metrics/image_metrics_throughput
    du -sh device/image_metrics
    exit 0
    ;;
local)
    cargo build --release --workspace --example image_metrics_throughput
    BIN=$TARGET/release/examples/image_metrics_throughput
    ;;
device)
    export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    BIN=device/image_metrics/image_metrics_throughput
    ;;
*)
    echo "usage: $0 [prepare|local|device]" >&2
    exit 2
    ;;
esac

RESULTS=$OUT/image_metrics.jsonl
: > "$RESULTS"
{
    echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    fi
} | tee "$OUT/image_metrics_machine.txt"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    "$BIN" --device cuda --pairs "${PAIRS:-256}" --iters "${ITERS:-5}" --kinds f64,f32 --eval-cpu false | tee -a "$RESULTS"
fi
# The CPU side with fewer pairs: LibTorch's CPU convolutions are slow (docs/BENCHMARKS.md).
"$BIN" --device cpu --pairs "${CPU_PAIRS:-16}" --iters "${CPU_ITERS:-3}" --kinds f64,f32 | tee -a "$RESULTS"
PY=python3
[ -x /opt/torch/.venv/bin/python ] && PY=/opt/torch/.venv/bin/python
"$PY" - "$RESULTS" <<'PY' | tee "$OUT/image_metrics_summary.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for r in rows:
    if "check" in r:
        print(f"check: {r['check']}: max |difference| {r['max_abs_diff']:.2e}")
        continue
    print(f"{r['impl']:<11} {r['device']:<7} {r['kind']:<4} {r['metrics']:<36} {r['pairs']:>4} pairs: "
          f"{r['pairs_per_s']:>10,.1f} pairs/s ({1e3 * r['seconds'] / r['pairs']:.3f} ms/pair)")
PY
