#!/usr/bin/env bash
# The device-machine script (docs/GPU.md, /work/shared/GPU.md): every GPU check in one call.
#
#   bash bench/gpu.sh prepare        on the build machine: builds what the device needs into
#                                    device/ (git-ignored; carry it)
#   run(command="bash bench/gpu.sh", carry=["device/models", "device/clip"], timeout_s=420)
#
# Sections (each writes under $OUT; record the figures, card and date in docs/BENCHMARKS.md):
#   models  Brain2Word training step at full size (65,730 inputs = the 333 Gordon template sizes,
#           batch 180, Adam lr 1e-3 eps 1e-7 amsgrad, regression + classification loss;
#           autoencoder + reconstruction) for base, roi, autoencoder: PyTorch eager
#           (bench/reference/brain2word_torch.py; torch's default and fused Adam) against ours
#           (gpu_step) like for like in fp32 / tf32 / bf16, then CUDA graphs, one ROI block,
#           tch's Adam and the PARTS breakdown; $OUT/models/summary.txt (bench/gpu_summary.py)
#           has the ratios. Exits non-zero when the CPU-vs-CUDA prediction check (tolerance
#           1e-6), a graph check or a figure fails.
#   demo    pipelines/demo.yaml on the GPU twice in two caches: wall times and a byte-for-byte
#           comparison of every artifact (carry device/demo; run it alone: the carry limit).
#   clip    bench/gpu_clip.sh (the CLIP engineer's section), when device/clip is there.
# `bash bench/gpu.sh models` (or clip, demo) runs one section; `all` runs models and clip.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=/work/shared/data/brain2word/sizes.npy

prepare() {
    source /tmp/env.sh 2>/dev/null || true
    local dest=device/models
    rm -rf "$dest" && mkdir -p "$dest"
    TORCH_RUNTIME_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib \
        cargo build --release -p brainpipe-models --example gpu_step
    cp "${CARGO_TARGET_DIR:-target}/release/examples/gpu_step" "$dest/"
    strip "$dest/gpu_step"
    cp "$SIZES" "$dest/sizes.npy"
    du -sh "$dest"
    # The demo section: the driver and the LibTorch worker, release builds (carry device/demo).
    rm -rf device/demo && mkdir -p device/demo
    TORCH_RUNTIME_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib \
        cargo build --release --bins
    cp "${CARGO_TARGET_DIR:-target}/release/brainpipe" "${CARGO_TARGET_DIR:-target}/release/brainpipe-torch" device/demo/
    strip device/demo/brainpipe device/demo/brainpipe-torch
    du -sh device/demo
    if [ -x bench/gpu_clip_prepare.sh ] || [ -f bench/gpu_clip_prepare.sh ]; then
        echo "CLIP: run bench/gpu_clip_prepare.sh for device/clip"
    fi
}

models() {
    local out=$OUT/models
    mkdir -p "$out"
    local results=$out/models_step.jsonl
    : > "$results"
    local py=/opt/torch/.venv/bin/python
    local step=device/models/gpu_step sizes=device/models/sizes.npy
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
    # Like for like first, each pair back to back: PyTorch eager and ours in fp32, tf32 and bf16
    # (ours: the fused Adam, 8 ROI size groups; theirs: torch.optim.Adam's default foreach
    # implementation), then torch's fused Adam against ours in fp32 and tf32. Every gpu_step call
    # also runs the CPU-vs-CUDA prediction check and exits non-zero when it fails.
    for precision in fp32 tf32 bf16; do
        "$py" bench/reference/brain2word_torch.py "$sizes" --steps 30 \
            --precision "$precision" --models base,roi,autoencoder | tee -a "$results"
        PRECISION=$precision ROI_GROUPS=8 "$step" "$sizes" 50 cuda | tee -a "$results"
    done
    for precision in fp32 tf32; do
        "$py" bench/reference/brain2word_torch.py "$sizes" --steps 30 --optimizer fused \
            --precision "$precision" --models base,roi,autoencoder | tee -a "$results"
    done
    # Ours beyond like for like: the ROI layer as one zero-padded block, tch's per-variable Adam,
    # ours fp32 again (order check), the whole step as one CUDA graph.
    MODELS=roi ROI_GROUPS=1 "$step" "$sizes" 50 cuda | tee -a "$results"
    OPTIMIZER=tch ROI_GROUPS=8 "$step" "$sizes" 50 cuda | tee -a "$results"
    ROI_GROUPS=8 "$step" "$sizes" 50 cuda | tee -a "$results"
    GRAPH=1 MODELS=base,autoencoder "$step" "$sizes" 50 cuda | tee -a "$results"
    GRAPH=1 PRECISION=tf32 MODELS=base,autoencoder "$step" "$sizes" 50 cuda | tee -a "$results"
    GRAPH=1 PRECISION=tf32 ROI_GROUPS=1 MODELS=roi "$step" "$sizes" 50 cuda | tee -a "$results"
    # Where a step goes (the figures docs/BENCHMARKS.md quotes): forward + backward, then the
    # optimizer, timed apart.
    PARTS=1 MODELS=base,autoencoder "$step" "$sizes" 50 cuda | tee -a "$results"
    PARTS=1 PRECISION=tf32 MODELS=base,autoencoder "$step" "$sizes" 50 cuda | tee -a "$results"
    PARTS=1 ROI_GROUPS=1 MODELS=roi "$step" "$sizes" 50 cuda | tee -a "$results"
    "$py" bench/gpu_summary.py "$results" | tee "$out/summary.txt"
}

# The demo pipeline on the GPU, twice in two caches: wall time of each run, then every artifact
# compared byte for byte (manifests and logs aside); exits non-zero on any difference.
demo() {
    local out=$OUT/demo work
    mkdir -p "$out"
    work=$(mktemp -d)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
    export BRAINPIPE_TORCH=$PWD/device/demo/brainpipe-torch
    for cache in one two; do
        local start end
        start=$(date +%s.%N)
        device/demo/brainpipe run pipelines/demo.yaml --cache "$work/$cache" | tee "$out/run-$cache.txt"
        end=$(date +%s.%N)
        awk -v a="$start" -v b="$end" -v c="$cache" 'BEGIN { printf "demo run %s: %.2f s wall\n", c, b - a }' \
            | tee -a "$out/summary.txt"
    done
    grep -h '"device"' "$work"/one/entries/*/manifest.json | sort | uniq -c | tee -a "$out/summary.txt" || true
    /opt/torch/.venv/bin/python - "$work/one/entries" "$work/two/entries" <<'PY' | tee -a "$out/summary.txt"
import os, sys
def files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            if n in ("manifest.json",) or n.endswith(".log"):
                continue
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out
one, two = files(sys.argv[1]), files(sys.argv[2])
differ = sorted(k for k in one.keys() | two.keys() if one.get(k) != two.get(k))
print(f"artifact files: {len(one)} and {len(two)}; differing: {len(differ)}")
for k in differ:
    print("DIFFERS:", k)
sys.exit(1 if differ or not one else 0)
PY
    rm -rf "$work"
}

clip() {
    if [ -d device/clip ]; then
        bash bench/gpu_clip.sh
    else
        echo "clip: device/clip missing (bench/gpu_clip_prepare.sh), skipped"
    fi
}

case "${1:-all}" in
    prepare) prepare ;;
    models | clip | demo)
        TORCH_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
        export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        OUT=${OUT:-bench/out}
        "$1"
        ;;
    all)
        TORCH_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
        export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        OUT=${OUT:-bench/out}
        models
        clip
        ;;
    *) echo "usage: bench/gpu.sh [prepare|models|clip|demo|all]" >&2; exit 2 ;;
esac
