#!/usr/bin/env bash
# The device-machine script (docs/GPU.md, /work/shared/GPU.md): every GPU check in one call.
#
#   bash bench/gpu.sh prepare        on the build machine: builds what the device needs into
#                                    device/ (git-ignored; carry it)
#   run(command="bash bench/gpu.sh", carry=["device/models", "device/clip"], timeout_s=420)
#
# Sections (each writes under $OUT; record the figures, card and date in docs/BENCHMARKS.md):
#   models  Brain2Word training step at full size (65,730 inputs = the 333 Gordon template sizes,
#           batch 180, Adam amsgrad (fused, and tch's per-variable Adam), regression +
#           classification loss; autoencoder + reconstruction)
#           for base, roi, autoencoder: brainpipe (tch) vs PyTorch eager (bench/reference/
#           brain2word_torch.py) fp32 / tf32 / bf16, plus a CPU-vs-CUDA prediction check.
#   clip    bench/gpu_clip.sh (the CLIP engineer's section), when device/clip is there.
# `bash bench/gpu.sh models` or `bash bench/gpu.sh clip` runs one section.
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
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
    # Ours (fp32, fused Adam), theirs (fp32, tf32, bf16), ours with tch's per-variable Adam,
    # ours in bf16 and tf32, ours fp32 again (order check).
    device/models/gpu_step device/models/sizes.npy 50 cuda | tee -a "$results"
    for precision in fp32 tf32 bf16; do
        "$py" bench/reference/brain2word_torch.py device/models/sizes.npy --steps 30 \
            --precision "$precision" --models base,roi,autoencoder | tee -a "$results"
    done
    # The ROI layer as one zero-padded block (1 group) against size groups (default 8).
    MODELS=roi ROI_GROUPS=1 device/models/gpu_step device/models/sizes.npy 50 cuda | tee -a "$results"
    OPTIMIZER=tch device/models/gpu_step device/models/sizes.npy 50 cuda \
        | sed 's/"impl":"brainpipe-tch"/"impl":"brainpipe-tch-tchadam"/' | tee -a "$results"
    PRECISION=bf16 device/models/gpu_step device/models/sizes.npy 50 cuda \
        | sed 's/"impl":"brainpipe-tch"/"impl":"brainpipe-tch-bf16"/' | tee -a "$results"
    PRECISION=tf32 device/models/gpu_step device/models/sizes.npy 50 cuda \
        | sed 's/"impl":"brainpipe-tch"/"impl":"brainpipe-tch-tf32"/' | tee -a "$results"
    device/models/gpu_step device/models/sizes.npy 50 cuda | tee -a "$results"
    # The whole step as one CUDA graph (fp32, tf32; ROI as one padded block).
    GRAPH=1 device/models/gpu_step device/models/sizes.npy 50 cuda \
        | sed 's/"impl":"brainpipe-tch"/"impl":"brainpipe-tch-graph"/' | tee -a "$results"
    GRAPH=1 PRECISION=tf32 device/models/gpu_step device/models/sizes.npy 50 cuda \
        | sed 's/"impl":"brainpipe-tch"/"impl":"brainpipe-tch-graph-tf32"/' | tee -a "$results"
    GRAPH=1 PRECISION=tf32 ROI_GROUPS=1 MODELS=roi device/models/gpu_step device/models/sizes.npy 50 cuda \
        | sed 's/"impl":"brainpipe-tch"/"impl":"brainpipe-tch-graph-tf32"/' | tee -a "$results"
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
    models | clip)
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
    *) echo "usage: bench/gpu.sh [prepare|models|clip|all]" >&2; exit 2 ;;
esac
