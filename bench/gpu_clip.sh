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
# Like for like per precision: ours (first run; the repeat beside it) against transformers. Exits
# non-zero when a precision lacks either side's figure.
"$PY" - "$RESULTS" <<'PY' | tee "$OUT/clip_summary.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ok = True
for precision in ["fp32", "tf32", "bf16"]:
    ours = [r["images_per_s"] for r in rows if r["impl"] == "brainpipe-clip" and r["precision"] == precision]
    theirs = [r["images_per_s"] for r in rows if r["impl"].startswith("transformers") and r["precision"] == precision]
    if not ours or not theirs:
        print(f"{precision}: MISSING (ours {ours}, transformers {theirs})")
        ok = False
        continue
    print(f"{precision}: brainpipe-clip {' / '.join(f'{v:,.1f}' for v in ours)} img/s, transformers {theirs[0]:,.1f} img/s, ratio {ours[0] / theirs[0]:.2f}x")
sys.exit(0 if ok else 1)
PY
