#!/usr/bin/env bash
# Benchmark: `models.train` with its cross-validation folds as a Slurm job array (`shards: true`)
# against the same stage as one job, and locally, on the throwaway cluster of slurm/start.sh
# (started here if none answers, stopped again at the end).
#
#   bench/slurm_shards.sh [BIN]   # BIN: brainpipe (default: the debug build of CARGO_TARGET_DIR)
#
# The words study at test size (2 subjects, within-subject CV with 2 folds each: 4 folds), the
# network trained EPOCHS epochs per fold (default 150, no early stop) on one LibTorch thread per
# fold (`threads: 1`, `cpus: 1`). The upstream stages are computed once; then `models.train` is
# forced three times into the same cache: locally, on Slurm as one job, on Slurm as an array of
# 4 tasks and a merge job. Reported: wall time of each `brainpipe run`, and whether the three
# entries hold the same bytes (they must).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/brainpipe/target}
BIN=${1:-$TARGET/debug/brainpipe}
EPOCHS=${EPOCHS:-150}
# $WORK, and the throwaway cluster when no Slurm answers.
source "$HERE/bench/lib/slurm_work.sh" shards
cd "$WORK"
cat >p.yaml <<YAML
name: bench-shards
executor: { kind: slurm, poll_seconds: 0.2, shards: SHARDS }
stages:
  study: { uses: ingest.synthetic, with: { subjects: 2, seed: 3, resolution_mm: 6 } }
  scans:
    uses: ingest.nifti
    inputs: { bold: study.bold, mask: study.mask }
    with: { stimulus_column: trial_type, paradigm_column: paradigm }
  features: { uses: features.roi, inputs: { scans: scans.scans, atlas: study.atlas } }
  padded: { uses: features.template_pad, inputs: { features: features.features } }
  targets: { uses: clip.words, inputs: { vectors: study.stimuli, stimuli: study.stimuli } }
  base:
    uses: models.train
    inputs: { features: padded.features, targets: targets.targets }
    with: { hidden: [256, 128], epochs: $EPOCHS, patience: $EPOCHS, threads: 1, cv: within_subject, folds: 2 }
    resources: { cpus: 1 }
YAML
shards() { sed -i "s/shards: [a-zA-Z]*/shards: $1/" p.yaml; }
seconds() { # seconds COMMAND…: wall time of COMMAND
  local t0
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@" >&2; exit 1; }
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}
digest() { (cd cache/runs/bench-shards/base && find -L . -type f ! -name manifest.json ! -name '*.log' | sort | xargs sha256sum | sha256sum | cut -c1-16); }
shards false
"$BIN" run p.yaml --executor local --cache cache >/dev/null 2>&1
echo "brainpipe: $BIN; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $(sinfo -h -o '%P %D node(s) %c CPUs' | head -1); $EPOCHS epochs x 4 folds"
printf '%-34s %8s  %s\n' "models.train" wall_s outputs
local_s=$(seconds "$BIN" run p.yaml --executor local --cache cache --force base)
printf '%-34s %8s  %s\n' "local" "$local_s" "$(digest)"
job_s=$(seconds "$BIN" run p.yaml --cache cache --force base)
printf '%-34s %8s  %s\n' "Slurm, one job" "$job_s" "$(digest)"
shards true
array_s=$(seconds "$BIN" run p.yaml --cache cache --force base)
printf '%-34s %8s  %s\n' "Slurm, array of 4 tasks + merge" "$array_s" "$(digest)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
