# slurm/lib.sh — process checks shared by slurm/start.sh and slurm/stop.sh (sourced).

# start_time PID: the process's start time in clock ticks since boot (field 22 of /proc/PID/stat),
# which tells the process we started from a later one that reuses its PID.
start_time() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # the command name may contain spaces: cut after its closing parenthesis
  # shellcheck disable=SC2086
  set -- $stat
  echo "${20}"
}

# alive PID STARTTIME: PID runs, is not a zombie (which still passes `kill -0`), and is the
# process that started at STARTTIME.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- "$2" $stat
  [ "$2" != Z ] && [ "$2" != X ] && [ "${21}" = "$1" ]
}

# all_alive PIDFILE: every "NAME PID STARTTIME" line of PIDFILE is alive.
all_alive() {
  local name pid started
  while read -r name pid started; do
    alive "$pid" "$started" || return 1
  done <"$1"
}
