#!/usr/bin/env bash
# Diffusion sampling on the device machine (issue 13): an SD 1.5-shaped UNet + VAE with random
# weights, 512², 50 DDIM steps with classifier-free guidance (7.5), batch 1 and 4, fp16 and
# bf16 — brainpipe (tch, crates/diffusion/examples/gpu_diffusion.rs) against diffusers eager
# (bench/reference/diffusion_gpu.py) in one call. Peak memory: ours by polling nvidia-smi (the
# process's used memory, includes the CUDA context), diffusers by torch.cuda.max_memory_allocated
# and by the same polling.
#
#   bash bench/gpu_diffusion.sh prepare     on the build machine: builds into device/diffusion
#                                           (git-ignored; needs diffusers wheels for the device
#                                           venv in device/diffusion/wheels if it lacks them)
#   run(command="bash bench/gpu_diffusion.sh", carry=["device/diffusion"], timeout_s=540)
#
# Writes $OUT/diffusion/results.jsonl and gpu.txt. Record figures, card and date in
# docs/BENCHMARKS.md ("Diffusion").
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=device/diffusion

prepare() {
    rm -rf "$DEST" && mkdir -p "$DEST/wheels"
    TORCH_RUNTIME_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib \
        cargo build --release -p brainpipe-diffusion --example gpu_diffusion
    cp "${CARGO_TARGET_DIR:-target}/release/examples/gpu_diffusion" "$DEST/"
    strip "$DEST/gpu_diffusion"
    # diffusers is pure Python; the device has no network, so its wheel travels with us.
    pip download --no-deps --only-binary=:all: -d "$DEST/wheels" diffusers==0.42.1 \
        huggingface_hub safetensors 2>/dev/null || echo "no wheels downloaded: the device venv must have diffusers"
    du -sh "$DEST"
}

peak_of() {  # runs "$@", polling nvidia-smi; prints the peak MiB used by the GPU on stderr line
    local log
    log=$(mktemp)
    ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> "$log"; sleep 0.2; done ) &
    local poller=$!
    "$@"
    kill "$poller" 2>/dev/null || true
    echo "{\"peak_gpu_used_mib\": $(sort -n "$log" | tail -1)}"
    rm -f "$log"
}

main() {
    local out=$OUT/diffusion
    mkdir -p "$out"
    local py=/opt/torch/.venv/bin/python
    export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
    if ! "$py" -c 'import diffusers' 2>/dev/null; then
        "$py" -m pip install --no-deps --target "$DEST/site" "$DEST"/wheels/*.whl >/dev/null
        export PYTHONPATH=$PWD/$DEST/site
    fi
    local results=$out/results.jsonl
    : > "$results"
    for kind in fp16 bf16; do
        for batch in 1 4; do
            peak_of "$DEST/gpu_diffusion" cuda "$kind" "$batch" 50 3 | tee -a "$results"
            peak_of "$py" bench/reference/diffusion_gpu.py --kind "$kind" --batch "$batch" --steps 50 --repeats 3 | tee -a "$results"
        done
    done
}

case "${1:-main}" in
    prepare) prepare ;;
    main) main ;;
    *) echo "usage: bash bench/gpu_diffusion.sh [prepare]" >&2; exit 2 ;;
esac
