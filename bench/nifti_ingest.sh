#!/usr/bin/env bash
# Benchmark: NIfTI → scans Parquet, brainpipe `ingest.nifti` vs nibabel + pyarrow, on the same 4-D
# .nii.gz (default 64×64×40×300 int16, like a scanner's EPI run). Reports wall time, CPU and peak
# RSS of RUNS (default 5) interleaved triples — brainpipe, the peer with pyarrow's defaults, the peer
# with our encoding options (--tuned) — the per-pair ratios and their medians, and Python's start-up
# and import time apart. The headline is the tuned peer's own work (imports excluded) against our
# whole run. Peers: the pinned peers venv ($BRAINPIPE_REF_PYTHON, `make refenv`).
# Usage: [RUNS=N] bench/nifti_ingest.sh [BIN] [X Y Z T]
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
RUNS=${RUNS:-5}
measure() { # label, command... → prints the label's line (with the peer's own import/work split); leaves wall seconds in $wall, stdout in $WORK/out
  local label=$1; shift
  /usr/bin/time -f "%e %M %U %S" -o "$WORK/time" "$@" > "$WORK/out" 2> /dev/null
  read -r wall kb user sys < "$WORK/time"
  echo "$label wall_s=$wall cpu_s=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') peak_rss_mb=$((kb / 1024)) $(grep -ao 'import_s=[0-9.]* work_s=[0-9.]*' "$WORK/out" || true)"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# CPU time beside wall time: on a shared machine the load (printed before and after) moves wall time.
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "input: ${X}x${Y}x${Z}x${T} int16, $((size / 1000000)) MB gzip"
# The peers pay Python's start-up and imports on every run; timed apart here, and by the peer itself.
for i in 1 2 3; do
  measure "python start-up run$i" "$PY" -c pass
  measure "python start-up + imports (nibabel numpy pyarrow) run$i" "$PY" -c 'import nibabel, numpy, pyarrow, pyarrow.parquet'
done
: > "$WORK/ratios"
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/ours"
  measure "brainpipe run$i" "$BIN" stage ingest.nifti --in bold="$WORK/sub-01_bold.nii.gz" --out "$WORK/ours"
  ours=$wall
  measure "nibabel+pyarrow (defaults) run$i" "$PY" "$ROOT/bench/reference/nifti_to_parquet.py" "$WORK/sub-01_bold.nii.gz" "$WORK/peer.parquet"
  peer=$wall
  measure "nibabel+pyarrow (tuned: our encoding options) run$i" "$PY" "$ROOT/bench/reference/nifti_to_parquet.py" "$WORK/sub-01_bold.nii.gz" "$WORK/tuned.parquet" --tuned
  tuned=$wall
  tuned_work=$(sed -n 's/.*work_s=\([0-9.]*\).*/\1/p' "$WORK/out")
  awk -v o="$ours" -v p="$peer" -v t="$tuned" -v w="$tuned_work" -v i="$i" 'BEGIN {
    printf "pair %d: defaults/ours %.2f  tuned/ours %.2f  tuned-work/ours %.2f\n", i, p / o, t / o, w / o
    printf "%f %f %f\n", p / o, t / o, w / o > "/dev/stderr" }' 2>> "$WORK/ratios"
done
echo "median of $RUNS pairs: defaults/ours $(cut -d' ' -f1 "$WORK/ratios" | median)x  tuned/ours $(cut -d' ' -f2 "$WORK/ratios" | median)x  tuned-work/ours $(cut -d' ' -f3 "$WORK/ratios" | median)x"
echo "headline (tuned peer's work, start-up and imports excluded, against brainpipe's whole run): $(cut -d' ' -f3 "$WORK/ratios" | median)x median, per pair $(cut -d' ' -f3 "$WORK/ratios" | awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 }')"
measure "gzip -dc (inflate alone)" gzip -dc "$WORK/sub-01_bold.nii.gz"
rm -f "$WORK/out"
echo "outputs: brainpipe $(du -b "$WORK/ours/scans/sub-01.parquet" | cut -f1) B, peer $(du -b "$WORK/peer.parquet" | cut -f1) B, tuned peer $(du -b "$WORK/tuned.parquet" | cut -f1) B"
echo "volume: $(awk -v n=$((X * Y * Z * 4)) 'BEGIN { printf "%.2f", n / 1e6 }') MB as f32"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
