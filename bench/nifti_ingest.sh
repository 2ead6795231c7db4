#!/usr/bin/env bash
# Benchmark: NIfTI → scans Parquet, brainpipe `ingest.nifti` vs nibabel + pyarrow, on the same 4-D
# .nii.gz (default 64×64×40×300 int16, like a scanner's EPI run). Reports wall time and peak RSS.
# Usage: bench/nifti_ingest.sh [BIN] [X Y Z T]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/brainpipe/target}/release/brainpipe}
X=${2:-64} Y=${3:-64} Z=${4:-40} T=${5:-300}
PY=${BRAINPIPE_REF_PYTHON:-$HOME/.cache/brainpipe/refenv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/brainpipe-nifti.XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
"$PY" - "$WORK/sub-01_bold.nii.gz" "$X" "$Y" "$Z" "$T" <<'PY'
import sys
import nibabel as nib
import numpy as np
path, x, y, z, t = sys.argv[1], *map(int, sys.argv[2:])
rng = np.random.default_rng(0)
# Smooth baseline + noise, as EPI data: compresses like the real thing, not like random bytes.
base = 800 + 200 * np.sin(np.linspace(0, 6, x * y * z)).reshape(x, y, z)
data = (base[..., None] + rng.normal(0, 20, (x, y, z, t))).astype(np.int16)
img = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]), dtype=np.int16)
nib.save(img, path)
PY
size=$(du -b "$WORK/sub-01_bold.nii.gz" | cut -f1)
measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M %U %S" -o "$WORK/time" "$@" > /dev/null 2>&1
  read -r secs kb user sys < "$WORK/time"
  echo "$label wall_s=$secs cpu_s=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') peak_rss_mb=$((kb / 1024))"
}
# CPU time beside wall time: on a shared machine the load (printed before and after) moves wall time.
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "input: ${X}x${Y}x${Z}x${T} int16, $((size / 1000000)) MB gzip"
for i in 1 2 3; do
  rm -rf "$WORK/ours"
  measure "brainpipe run$i" "$BIN" stage ingest.nifti --in bold="$WORK/sub-01_bold.nii.gz" --out "$WORK/ours"
  measure "nibabel+pyarrow run$i" "$PY" "$ROOT/bench/reference/nifti_to_parquet.py" "$WORK/sub-01_bold.nii.gz" "$WORK/peer.parquet"
done
measure "gzip -dc (inflate alone)" gzip -dc "$WORK/sub-01_bold.nii.gz"
echo "outputs: brainpipe $(du -b "$WORK/ours/scans/sub-01.parquet" | cut -f1) B, peer $(du -b "$WORK/peer.parquet" | cut -f1) B"
echo "volume: $(awk -v n=$((X * Y * Z * 4)) 'BEGIN { printf "%.2f", n / 1e6 }') MB as f32"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
