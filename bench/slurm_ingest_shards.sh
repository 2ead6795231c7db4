#!/usr/bin/env bash
# Benchmark: the ingest stages with their subjects as Slurm job arrays (`shards: true`) against
# the same stages as one job each, and locally, on the throwaway cluster of slurm/start.sh
# (started here if none answers, stopped again at the end).
#
#   bench/slurm_ingest_shards.sh [BIN]   # BIN: brainpipe (default: the debug build of CARGO_TARGET_DIR)
#
# The demo's words study (`ingest.synthetic`, 4 subjects, 6 mm; pipelines/demo.yaml) and its
# NIfTI import (`ingest.nifti`), forced three times into one cache: locally, on Slurm as one job
# per stage, on Slurm as an array of 4 tasks and a merge job per stage. Reported: wall time of
# each `brainpipe run`, and a digest of the two entries' files (the three must agree).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/brainpipe/target}
BIN=${1:-$TARGET/debug/brainpipe}
# $WORK, and the throwaway cluster when no Slurm answers.
source "$HERE/bench/lib/slurm_work.sh" ingest-shards
cd "$WORK"
cat >p.yaml <<YAML
name: bench-ingest-shards
executor: { kind: slurm, poll_seconds: 0.2, shards: SHARDS }
stages:
  study: { uses: ingest.synthetic, with: { paradigm: words, subjects: 4, seed: 7, resolution_mm: 6 } }
  scans:
    uses: ingest.nifti
    inputs: { bold: study.bold, mask: study.mask }
    with: { stimulus_column: trial_type, paradigm_column: paradigm }
YAML
shards() { sed -i "s/shards: [a-zA-Z]*/shards: $1/" p.yaml; }
seconds() { # seconds COMMAND…: wall time of COMMAND
  local t0
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@" >&2; exit 1; }
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}
digest() { (cd cache/runs/bench-ingest-shards && find -L study scans -type f ! -name manifest.json ! -name '*.log' | sort | xargs sha256sum | sha256sum | cut -c1-16); }
force=(--force study --force scans)
shards false
"$BIN" run p.yaml --executor local --cache cache >/dev/null 2>&1
echo "brainpipe: $BIN; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $(sinfo -h -o '%P %D node(s) %c CPUs' | head -1)"
printf '%-40s %8s  %s\n' "ingest.synthetic + ingest.nifti" wall_s outputs
local_s=$(seconds "$BIN" run p.yaml --executor local --cache cache "${force[@]}")
printf '%-40s %8s  %s\n' "local" "$local_s" "$(digest)"
job_s=$(seconds "$BIN" run p.yaml --cache cache "${force[@]}")
printf '%-40s %8s  %s\n' "Slurm, one job per stage" "$job_s" "$(digest)"
shards true
array_s=$(seconds "$BIN" run p.yaml --cache cache "${force[@]}")
printf '%-40s %8s  %s\n' "Slurm, arrays of 4 tasks + merges" "$array_s" "$(digest)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
