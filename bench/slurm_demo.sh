#!/usr/bin/env bash
# Benchmark: `make demo`'s two pipelines (pipelines/demo.yaml, pipelines/brain2clip.yaml) at full
# size, locally and on the throwaway Slurm cluster of slurm/start.sh (started here if none
# answers, stopped again at the end), each on a fresh cache.
#
#   bench/slurm_demo.sh [BIN]   # BIN: brainpipe (default: the release build of CARGO_TARGET_DIR)
#
# Local: `brainpipe run P --executor local` (the default scheduler, stages in parallel). Slurm:
# `brainpipe run P --executor slurm` with the pipeline as written (no executor block: one job per
# stage, Slurm's default of one CPU per job, the default poll interval of 2 s); SHARDS=1 adds
# `executor: { shards: true }` (job arrays for the subjects and folds). Reported: wall time of
# each run, the load average before and after, and whether the two caches hold the same entries
# with the same bytes (they must).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/brainpipe/target}
BIN=${1:-$TARGET/release/brainpipe}
# $WORK, and the throwaway cluster when no Slurm answers.
source "$HERE/bench/lib/slurm_work.sh" demo
for p in demo brain2clip; do
  cp "$HERE/pipelines/$p.yaml" "$WORK/$p.yaml"
  if [ "${SHARDS:-0}" = 1 ]; then
    printf 'executor: { shards: true }\n' >>"$WORK/$p.yaml"
  fi
done
cd "$WORK"
seconds() { # seconds COMMAND…: wall time of COMMAND (its output in $WORK/last.log)
  local t0
  t0=$(date +%s.%N)
  "$@" >last.log 2>&1 || { echo "failed: $*" >&2; tail -20 last.log >&2; exit 1; }
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}
# Every entry's files (manifests and logs aside), hashed: equal caches give equal digests.
digest() { (cd "$1/entries" && find . -type f ! -name manifest.json ! -name '*.log' | sort | xargs sha256sum | sha256sum | cut -c1-16); }
echo "brainpipe: $BIN; $(nproc) CPUs; $(sinfo -h -o '%P %D node(s) %c CPUs' | head -1); shards: ${SHARDS:-0}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s %-8s %8s\n' pipeline executor wall_s
total_local=0
total_slurm=0
for p in demo brain2clip; do
  local_s=$(seconds "$BIN" run "$p.yaml" --executor local --cache local)
  printf '%-12s %-8s %8s\n' "$p" local "$local_s"
  slurm_s=$(seconds "$BIN" run "$p.yaml" --executor slurm --cache slurm)
  printf '%-12s %-8s %8s\n' "$p" slurm "$slurm_s"
  total_local=$(awk -v a="$total_local" -v b="$local_s" 'BEGIN { print a + b }')
  total_slurm=$(awk -v a="$total_slurm" -v b="$slurm_s" 'BEGIN { print a + b }')
done
printf '%-12s %-8s %8s\n' both local "$total_local" both slurm "$total_slurm"
echo "entries: local $(find local/entries -mindepth 1 -maxdepth 1 | wc -l) $(digest local), slurm $(find slurm/entries -mindepth 1 -maxdepth 1 | wc -l) $(digest slurm)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
