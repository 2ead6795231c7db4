#!/usr/bin/env bash
# Benchmark: what running stages as Slurm jobs costs over running them locally, on the throwaway
# cluster of slurm/start.sh (started here if none answers, stopped again at the end).
#
#   bench/slurm_overhead.sh [BIN]   # BIN: brainpipe (default: the release build if it has --executor, else debug)
#
# Two pipelines of N trivial `run:` stages (`echo`, no work), each run locally and on Slurm into
# fresh caches: a chain (every stage waits for the one before: one scheduling round trip per
# stage) and a fan (all independent: submission throughput), on Slurm with poll_seconds 0.2 and
# the default 2. Reported: wall time, and (Slurm − local) / N = overhead per stage.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/brainpipe/target}
BIN=${1:-$TARGET/release/brainpipe}
# A release build older than the Slurm executor does not know --executor: take the debug one.
"$BIN" run --help 2>/dev/null | grep -q -- --executor || BIN=$TARGET/debug/brainpipe
N=${N:-10}
# $WORK, and the throwaway cluster when no Slurm answers.
source "$HERE/bench/lib/slurm_work.sh" slurm
cd "$WORK"

pipeline() { # pipeline SHAPE POLL > file
  echo "name: bench-$1"
  echo "executor: { poll_seconds: $2 }"
  echo "stages:"
  echo "  s01: { run: \"echo 1 > {outputs.o}\", outputs: [o] }"
  for i in $(seq 2 "$N"); do
    cur=$(printf 's%02d' "$i")
    if [ "$1" = chain ]; then
      echo "  $cur: { run: \"cat {inputs.i} > {outputs.o}; echo $i >> {outputs.o}\", inputs: { i: s$(printf '%02d' $((i - 1))).o }, outputs: [o] }"
    else
      echo "  $cur: { run: \"echo $i > {outputs.o}\", outputs: [o] }"
    fi
  done
}

seconds() { # seconds COMMAND…: wall time of COMMAND
  local t0
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@" >&2; exit 1; }
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'
}

echo "brainpipe: $BIN; $N stages; $(nproc) CPUs; $(sinfo -h -o '%P %D nodes %c CPUs' | head -1)"
printf '%-6s %-5s %9s %9s %14s\n' shape poll local_s slurm_s overhead/stage
for shape in chain fan; do
  for poll in 0.2 2; do
    pipeline $shape $poll >"$shape-$poll.yaml"
    local_s=$(seconds "$BIN" run "$shape-$poll.yaml" --executor local --cache "local-$shape-$poll")
    slurm_s=$(seconds "$BIN" run "$shape-$poll.yaml" --executor slurm --cache "slurm-$shape-$poll")
    cmp -s "local-$shape-$poll/runs/bench-$shape/s$(printf '%02d' "$N")/o" \
      "slurm-$shape-$poll/runs/bench-$shape/s$(printf '%02d' "$N")/o" || { echo "outputs differ" >&2; exit 1; }
    printf '%-6s %-5s %9s %9s %13.2fs\n' $shape $poll "$local_s" "$slurm_s" \
      "$(awk -v l="$local_s" -v s="$slurm_s" -v n="$N" 'BEGIN { print (s - l) / n }')"
  done
done
# The floor under any driver: one sbatch submission, and one `true` job from submission to end.
sb=$(seconds sbatch --wrap true --output=/dev/null)
t0=$(date +%s.%N)
id=$(sbatch --parsable --wrap true --output=/dev/null)
while squeue -h -j "$id" -t PENDING,RUNNING,COMPLETING,CONFIGURING 2>/dev/null | grep -q .; do sleep 0.05; done
echo "one sbatch call: ${sb} s; one \`true\` job, submission to end: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
