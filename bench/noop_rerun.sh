#!/usr/bin/env bash
# Benchmark: a no-op rerun of a 20-stage pipeline whose artifacts total >= 1 GB.
# The rerun must not re-read artifacts: upstream hashes come from manifests, external inputs from
# the (path, size, mtime, inode) index. Target: < 0.5 s. Usage: bench/noop_rerun.sh [BIN]
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/brainpipe/target}/release/brainpipe}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/brainpipe-noop.XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
cd "$WORK"
head -c 52000000 /dev/urandom > raw.bin      # an external input of 52 MB
{
  echo "name: noop-bench"
  echo "stages:"
  echo "  s01: { run: \"cp {inputs.raw} {outputs.data}\", inputs: { raw: raw.bin }, outputs: [data] }"
  for i in $(seq 2 20); do
    prev=$(printf 's%02d' $((i - 1))); cur=$(printf 's%02d' "$i")
    # Each stage derives 52 MB from its upstream (a new byte prefix, so every artifact differs).
    echo "  $cur: { run: \"(echo $cur; cat {inputs.prev}) | head -c 52000000 > {outputs.data}\", inputs: { prev: $prev.data }, outputs: [data] }"
  done
} > pipeline.yaml
start=$(date +%s.%N)
"$BIN" run pipeline.yaml --jobs 2 > /dev/null 2>&1
first=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
total=$(du -sb .brainpipe/entries | cut -f1)
runs=10
times=()
for i in $(seq $runs); do
  s=$(date +%s.%N)
  "$BIN" run pipeline.yaml > "rerun-$i.out" 2>&1
  times+=("$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.4f", b - a }')")
  # A rerun is a no-op only if every one of the 20 stages reports `cached` and none `ran`.
  cached=$(grep -cE '^s[0-9]{2} +[^ ]+ +cached ' "rerun-$i.out" || true)
  if [ "$cached" != 20 ] || grep -qE '^s[0-9]{2} +[^ ]+ +ran ' "rerun-$i.out"; then
    echo "FAIL: rerun $i was not a no-op ($cached of 20 stages cached):"; cat "rerun-$i.out"; exit 1
  fi
done
plan=$("$BIN" plan pipeline.yaml 2>&1 | head -1)
case "$plan" in
  *"20 stages, 20 cached, 0 to run"*) ;;
  *) echo "FAIL: after the reruns the plan is not \"20 cached, 0 to run\": $plan"; exit 1 ;;
esac
read -r mean best < <(printf '%s\n' "${times[@]}" | awk '{ s += $1; if (NR == 1 || $1 < m) m = $1 } END { printf "%.4f %.4f\n", s / NR, m }')
echo "$plan"
echo "stages=20 artifacts_bytes=$total first_run_s=$first noop_rerun_mean_s=$mean noop_rerun_best_s=$best runs=$runs"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
awk -v m="$mean" 'BEGIN { exit !(m >= 0.5) }' && { echo "FAIL: no-op rerun mean ${mean}s >= 0.5s"; exit 1; }
exit 0
