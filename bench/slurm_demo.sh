#!/usr/bin/env bash
# Benchmark: `make demo`'s two pipelines (pipelines/demo.yaml, pipelines/brain2clip.yaml) at full
# size, locally and on the throwaway cluster of slurm/start.sh (started here if none answers,
# stopped again at the end), each into a fresh cache; then checks that both caches hold the same
# entries with the same bytes (every file but the manifests, which name jobs and times).
#
#   bench/slurm_demo.sh [BIN]   # BIN: brainpipe (default: the release build)
#   PIPELINES=demo bench/slurm_demo.sh   # only the words half (default: demo brain2clip)
#
# Run it on a quiet machine: both runs compete for the same cores (the cluster's one node is this
# machine), so a load beside them moves the figures.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/brainpipe/target}
BIN=${1:-$TARGET/release/brainpipe}
source "$HERE/bench/lib/slurm_work.sh" demo
cd "$WORK"

seconds() { # seconds COMMAND…: wall time of COMMAND (its output to $WORK/last.log)
  local t0
  t0=$(date +%s.%N)
  "$@" >"$WORK/last.log" 2>&1 || { echo "failed: $*" >&2; tail -20 "$WORK/last.log" >&2; exit 1; }
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

digest() { # digest CACHE: one line per entry file but manifests, sorted
  (cd "$1/entries" && find . -type f ! -name manifest.json -print0 | sort -z | xargs -0 sha256sum)
}

echo "brainpipe: $BIN; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg); $(sinfo -h -o '%P %D nodes %c CPUs' | head -1)"
printf '%-8s %-12s %10s\n' executor pipeline wall_s
for executor in local slurm; do
  total=0
  for p in ${PIPELINES:-demo brain2clip}; do
    s=$(seconds "$BIN" run "$HERE/pipelines/$p.yaml" --executor "$executor" --cache "$WORK/$executor")
    printf '%-8s %-12s %10s\n' "$executor" "$p" "$s"
    total=$(awk -v a="$total" -v b="$s" 'BEGIN { print a + b }')
  done
  printf '%-8s %-12s %10s\n' "$executor" both "$total"
done
digest "$WORK/local" >local.sha
digest "$WORK/slurm" >slurm.sha
if cmp -s local.sha slurm.sha; then
  echo "same bytes: $(wc -l <local.sha) files in $(ls "$WORK/local/entries" | wc -l) entries"
else
  echo "the caches differ:" >&2
  diff local.sha slurm.sha | head -20 >&2
  exit 1
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
