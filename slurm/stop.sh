#!/usr/bin/env bash
# slurm/stop.sh — stop the cluster slurm/start.sh started: cancel its jobs, then end the daemons
# recorded in BASE/run/pids (each only if it is still the process that was started, by start
# time), newest first. Nothing else is signalled.
#
#   bash slurm/stop.sh [BASE] [--purge]    # --purge also removes BASE
set -uo pipefail

BASE=${BRAINPIPE_SLURM_BASE:-${TMPDIR:-/tmp}/brainpipe-slurm}
PURGE=0
for arg in "$@"; do
  case $arg in
    --purge) PURGE=1 ;;
    *) BASE=$arg ;;
  esac
done
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm/lib.sh
. "$HERE/lib.sh"
PIDS=$BASE/run/pids
export SLURM_CONF=$BASE/etc/slurm.conf
say() { echo "slurm/stop.sh: $*" >&2; }
t0=$(date +%s.%N)

recorded() { awk -v n="$1" '$1 == n { print $2, $3 }' "$PIDS"; }

if [ ! -f "$PIDS" ]; then
  say "nothing recorded in $PIDS: nothing to stop"
else
  # Jobs first: slurmstepd outlives slurmd while a job runs, and is not ours to kill by name.
  read -r pid started <<<"$(recorded slurmctld)"
  if [ -n "${pid:-}" ] && alive "$pid" "$started"; then
    jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      say "cancelling jobs $jobs"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null
      for _ in $(seq 100); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
    fi
  fi
  for name in $(awk '{ print $1 }' "$PIDS" | tac); do
    read -r pid started <<<"$(recorded "$name")"
    if ! alive "$pid" "$started"; then
      say "$name ($pid) was not running"
      continue
    fi
    kill -TERM "$pid"
    for _ in $(seq 100); do alive "$pid" "$started" || break; sleep 0.1; done
    if alive "$pid" "$started"; then
      say "$name ($pid) still running 10 s after SIGTERM: SIGKILL"
      kill -KILL "$pid"
    fi
    say "stopped $name ($pid)"
  done
  rm -f "$PIDS"
fi
if [ $PURGE = 1 ]; then
  rm -rf "$BASE"
  say "removed $BASE"
fi
say "done in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
