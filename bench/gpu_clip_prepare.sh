#!/usr/bin/env bash
# Prepares device/clip/ (git-ignored) for bench/gpu_clip.sh: our throughput binary built against
# the device machine's LibTorch, and transformers 5.24 + its Python dependencies as CPython 3.12
# wheels (the device venv has torch 2.11 but no transformers, and no network), within the 64 MiB a
# run may carry.
#   bash bench/gpu_clip_prepare.sh && du -sh device/clip
set -euo pipefail
cd "$(dirname "$0")/.."
source /tmp/env.sh 2>/dev/null || true
DEST=device/clip
TORCH_RUNTIME_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
rm -rf "$DEST" && mkdir -p "$DEST"
TORCH_RUNTIME_LIB=$TORCH_RUNTIME_LIB cargo build --release -p brainpipe-clip --example clip_throughput
cp "${CARGO_TARGET_DIR:-target}/release/examples/clip_throughput" "$DEST/"
strip "$DEST/clip_throughput"
PIP=${PIP:-$HOME/.cache/brainpipe/torch-2.11.0/bin/pip}
# Wheels, not installed trees: transformers unpacks to 130 MB and numpy to 58 MB, the wheels are a
# quarter of that; gpu_clip.sh unpacks them on the device. `tokenizers` is not needed for the
# vision model and is left out.
"$PIP" download --quiet --dest "$DEST/wheels" --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --only-binary=:all: --no-deps \
  transformers==5.24.0 huggingface_hub==2.4.0 safetensors==0.8.0 regex pyyaml packaging tqdm \
  httpx2 httpcore2 h11 anyio idna truststore numpy
du -sh "$DEST"
