# Sourced by the Slurm benchmarks (bench/slurm_overhead.sh, bench/slurm_shards.sh) after they set
# HERE (the repository root): makes a scratch directory $WORK named after $1, starts the
# throwaway cluster of slurm/start.sh when no Slurm answers, and on exit removes $WORK and stops
# the cluster again if it started it.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/brainpipe-$1-bench.XXXXXX")
started=0
cleanup() {
  chmod -R u+w "$WORK" 2>/dev/null
  rm -rf "$WORK"
  [ $started = 1 ] && bash "$HERE/slurm/stop.sh" >/dev/null 2>&1
  return 0
}
trap cleanup EXIT
if ! sinfo -h >/dev/null 2>&1; then
  eval "$(bash "$HERE/slurm/start.sh")"
  started=1
fi
