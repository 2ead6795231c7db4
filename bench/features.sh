#!/usr/bin/env bash
# features.roi and features.template_pad on a Pereira-size study: 15 subjects × 540 trials ×
# ~65k voxels (≈ 2.1 GB of f32). Prints wall time and peak RSS of each stage (GNU time -v).
# Usage: bench/features.sh [SUBJECTS TRIALS VOXELS]   (defaults 15 540 65730)
set -euo pipefail
cd "$(dirname "$0")/.."
subjects=${1:-15} trials=${2:-540} voxels=${3:-65730}
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-features.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo build --release -p brainpipe-features --example bench_features
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_features"

"$bin" gen "$work/scans" "$subjects" "$trials" "$voxels"
du -sh "$work/scans"
measure() {
  /usr/bin/time -v "$bin" "$@" 2> "$work/time.txt" || { cat "$work/time.txt"; exit 1; }
  grep -E "took|features\.|Elapsed|Maximum resident" "$work/time.txt"
}
echo "== features.roi"; measure roi "$work/scans" "$work/roi"
du -sh "$work/roi/features"
echo "== features.template_pad"; measure pad "$work/roi/features" "$work/pad"
du -sh "$work/pad/features.parquet"
