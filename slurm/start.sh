#!/usr/bin/env bash
# slurm/start.sh — start a throwaway single-node Slurm cluster (munged, slurmctld, slurmd) for
# brainpipe's Slurm tests, without systemd: config, key, state, logs and sockets all live under
# one directory, the daemons run in the foreground under setsid, and their PIDs (with start
# times) are recorded so that slurm/stop.sh stops those processes and nothing else.
#
#   eval "$(bash slurm/start.sh)"      # then: brainpipe run --executor slurm …; bash slurm/stop.sh
#
# stdout carries only `export …` lines; progress and errors go to stderr. Running it again while
# the cluster is up only prints the exports. Needs root (apt-get; slurmd becomes the job's user).
#
# Environment:
#   BRAINPIPE_SLURM_BASE       directory of everything (default ${TMPDIR:-/tmp}/brainpipe-slurm)
#   BRAINPIPE_SLURM_PORTS      slurmctld and slurmd ports (default "16837 16838": no clash with
#                              a system Slurm on 6817/6818)
#   BRAINPIPE_SLURM_INSTALL=0  fail instead of installing missing Debian packages
#   BRAINPIPE_SLURM_TIMEOUT    seconds to wait for the node to become idle (default 60)
set -euo pipefail

BASE=${1:-${BRAINPIPE_SLURM_BASE:-${TMPDIR:-/tmp}/brainpipe-slurm}}
read -r CTLD_PORT D_PORT <<<"${BRAINPIPE_SLURM_PORTS:-16837 16838}"
TIMEOUT=${BRAINPIPE_SLURM_TIMEOUT:-60}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm/lib.sh
. "$HERE/lib.sh"
CONF=$BASE/etc/slurm.conf
PIDS=$BASE/run/pids
NODE=$(hostname -s)
PARTITION=debug
t0=$(date +%s.%N)

say() { echo "slurm/start.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

print_env() {
  printf 'export SLURM_CONF=%q\n' "$CONF"
  printf 'export BRAINPIPE_SLURM_BASE=%q\n' "$BASE"
  printf 'export BRAINPIPE_SLURM_PARTITION=%q\n' "$PARTITION"
}

[ "$(id -u)" = 0 ] || die "needs root (slurmd runs jobs as their user; packages come from apt-get)"

# Already up (every recorded daemon alive, node idle): nothing to do.
if [ -f "$PIDS" ]; then
  if all_alive "$PIDS" && [ "$(SLURM_CONF=$CONF sinfo -h -n "$NODE" -o %t 2>/dev/null)" = idle ]; then
    say "already running in $BASE"
    print_env
    exit 0
  fi
  say "stale or partial cluster in $BASE: stopping what it recorded first"
  bash "$HERE/stop.sh" "$BASE" >&2 || true
fi

# Debian packages (8 packages, 3.5 MB, ~10 s on Debian 12).
packages=(slurmctld slurmd slurm-client munge)
missing=0
for bin in munged mungekey slurmctld slurmd sinfo sbatch squeue scontrol scancel; do
  command -v "$bin" >/dev/null || missing=1
done
if [ $missing = 1 ]; then
  [ "${BRAINPIPE_SLURM_INSTALL:-1}" = 1 ] || die "Slurm or munge is missing and BRAINPIPE_SLURM_INSTALL=0"
  say "installing ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${packages[@]}" >&2 \
    || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${packages[@]}" >&2; } \
    || die "apt-get install ${packages[*]} failed"
fi

for port in "$CTLD_PORT" "$D_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use (set BRAINPIPE_SLURM_PORTS)"
  fi
done

rm -rf "$BASE/etc" "$BASE/spool" "$BASE/run" "$BASE/log" "$BASE/munge"
mkdir -p "$BASE"/{etc,spool/ctld,spool/d,run,log,munge/key,munge/sock}
chmod 700 "$BASE/munge/key"  # munged refuses a key readable by others
chmod 755 "$BASE/munge/sock" # … and a socket directory others cannot traverse
KEY=$BASE/munge/key/munge.key
SOCK=$BASE/munge/sock/munge.socket
mungekey --create --keyfile="$KEY" --bits=1024 2>/dev/null \
  || dd if=/dev/urandom of="$KEY" bs=128 count=1 status=none
chmod 400 "$KEY"

# The node as slurmd sees the hardware; RealMemory at 95 %, or the node drains ("Low RealMemory").
hardware=$(slurmd -C | head -1)
memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hardware")
node_spec=$(sed 's/^NodeName=[^ ]* //; s/ RealMemory=[0-9]*//' <<<"$hardware")

# linuxproc + task/none need no cgroups (the sandbox's cgroup v2 does not work for slurmd).
# No accounting: brainpipe polls squeue/scontrol, so MinJobAge keeps finished jobs visible an hour.
cat >"$CONF" <<CONF
# Written by brainpipe slurm/start.sh: a single-node throwaway cluster.
ClusterName=brainpipe
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$D_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$BASE/spool/ctld
SlurmdSpoolDir=$BASE/spool/d
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=0,batch_sched_delay=0
DependencyParameters=kill_invalid_depend
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=3600
KillWait=5
ReturnToService=2
NodeName=$NODE NodeAddr=127.0.0.1 $node_spec RealMemory=$((memory * 95 / 100)) State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF

: >"$PIDS"
launch() { # launch NAME COMMAND…: start in its own session, record "NAME PID STARTTIME"
  local name=$1
  shift
  setsid "$@" </dev/null >"$BASE/log/$name.out" 2>&1 &
  local pid=$! started
  sleep 0.2
  started=$(start_time "$pid") && alive "$pid" "$started" \
    || { cat "$BASE/log/$name.out" >&2; die "$name exited at start (log: $BASE/log/$name.out)"; }
  echo "$name $pid $started" >>"$PIDS"
}

launch munged munged -F --socket="$SOCK" --key-file="$KEY" --pid-file="$BASE/run/munged.pid" \
  --log-file="$BASE/log/munged.log" --seed-file="$BASE/munge/munged.seed"
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
munge -S "$SOCK" -n | unmunge -S "$SOCK" >/dev/null || die "munge round trip failed"
launch slurmctld slurmctld -D -f "$CONF"
for _ in $(seq 100); do SLURM_CONF=$CONF scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
launch slurmd slurmd -D -f "$CONF"

deadline=$(($(date +%s) + TIMEOUT))
state=
while [ "$(date +%s)" -lt "$deadline" ]; do
  state=$(SLURM_CONF=$CONF sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
  [ "$state" = idle ] && break
  all_alive "$PIDS" || { tail -n 20 "$BASE"/log/*.out >&2; die "a daemon died (logs in $BASE/log)"; }
  sleep 0.2
done
if [ "$state" != idle ]; then
  tail -n 20 "$BASE/log/slurmctld.log" "$BASE/log/slurmd.log" >&2
  die "node $NODE not idle after ${TIMEOUT}s (state '$state')"
fi
say "cluster up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s: node $NODE, partition $PARTITION, base $BASE"
print_env
