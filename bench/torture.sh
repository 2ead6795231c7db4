#!/usr/bin/env bash
# Kill-and-corrupt torture of the cache (issue 15): does any trial propagate a corrupt byte?
#
# A 6-stage pipeline of `run:` stages (no LibTorch): a chain where each stage hashes what it reads
# (with a short sleep, so kills land inside stages), plus a stage writing 1 MiB. A clean run on a
# separate cache gives the reference bytes of every output. Then, each on the trial cache:
#   kill    SIGKILL the driver at a random moment (0–1.5 s), rerun, compare;
#   flip    flip one random byte of a random cached output (or truncate it, or delete it), rerun,
#           compare (the run must say "damaged" and recompute, never use the bytes);
#   enospc  the cache on a 600 KiB tmpfs: the run must fail with one clear line and leave no
#           complete-looking entry; after growing the tmpfs, rerun and compare;
#   race    four drivers at once on one cache: every one exits 0, every stage runs once.
# After every trial `brainpipe verify` must exit 0 and the final output must equal the reference.
# Outcome per trial: ok (recomputed or cached, bytes right), reported (a clear error, nothing
# corrupt kept), or PROPAGATED (a wrong byte reached an output: the failure this hunts).
# Usage: bench/torture.sh [TRIALS] [BIN]   (root for the tmpfs trials; others run without)
set -uo pipefail
TRIALS=${1:-10}
BIN=${2:-${CARGO_TARGET_DIR:-$HOME/.cache/brainpipe/target}/release/brainpipe}
[ -x "$BIN" ] || { echo "no brainpipe binary at $BIN (cargo build --release --bin brainpipe)" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/brainpipe-torture.XXXXXX")
cleanup() { mountpoint -q "$WORK/small" 2>/dev/null && umount "$WORK/small"; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
RANDOM=7

cat > p.yaml <<'YAML'
name: torture
stages:
  a: { run: "sleep 0.2; echo seed-1 > {outputs.o}", outputs: [o] }
  b: { run: "sleep 0.2; sha256sum < {inputs.x} > {outputs.o}", inputs: { x: a.o }, outputs: [o] }
  big: { run: "head -c 1048576 /dev/zero | tr '\\0' 'x' > {outputs.o}; cat {inputs.x} >> {outputs.o}", inputs: { x: b.o }, outputs: [o] }
  c: { run: "sleep 0.2; sha256sum < {inputs.x} > {outputs.o}", inputs: { x: big.o }, outputs: [o] }
  d: { run: "sleep 0.2; cat {inputs.x} {inputs.y} | sha256sum > {outputs.o}", inputs: { x: c.o, y: b.o }, outputs: [o] }
  e: { run: "sleep 0.2; echo counted >> {params.log}; sha256sum < {inputs.x} > {outputs.o}", inputs: { x: d.o }, with: { log: runs.log }, outputs: [o] }
YAML

final() { cat "$1/runs/torture/e/o" 2>/dev/null; }
"$BIN" run p.yaml --cache ref >/dev/null 2>&1 || { echo "the reference run failed" >&2; exit 1; }
REF=$(final ref)

declare -A ok reported propagated
record() { # kind outcome
  case $2 in ok) ok[$1]=$((${ok[$1]:-0} + 1)) ;; reported) reported[$1]=$((${reported[$1]:-0} + 1)) ;;
    *) propagated[$1]=$((${propagated[$1]:-0} + 1)); echo "PROPAGATED in $1: $3" >&2 ;; esac
}
check() { # kind cache — rerun, then final bytes and verify
  local out; out=$("$BIN" run p.yaml --cache "$2" 2>&1)
  if [ $? -ne 0 ]; then record "$1" reported "$out"; return; fi
  if [ "$(final "$2")" != "$REF" ]; then record "$1" propagated "final output differs"; return; fi
  if ! "$BIN" verify p.yaml --cache "$2" >/dev/null 2>&1; then record "$1" propagated "verify failed after a good run"; return; fi
  record "$1" ok
}

for ((t = 0; t < TRIALS; t++)); do
  # kill
  rm -rf k; "$BIN" run p.yaml --cache k >/dev/null 2>&1 &
  pid=$!; sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", r % 150 / 100 }')"; kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
  check kill k

  # flip / truncate / delete one cached output
  rm -rf f; "$BIN" run p.yaml --cache f >/dev/null 2>&1
  mapfile -t files < <(find f/entries -type f ! -name manifest.json ! -name '*.log' | sort)
  victim=${files[$((RANDOM % ${#files[@]}))]}
  case $((t % 3)) in
    0) size=$(stat -c %s "$victim"); off=$((RANDOM % (size > 0 ? size : 1)))
       byte=$(od -An -tu1 -j "$off" -N1 "$victim" | tr -d ' ')
       printf "$(printf '\\%03o' $(((byte ^ 1) & 255)))" | dd of="$victim" bs=1 seek="$off" conv=notrunc status=none ;;
    1) : > "$victim" ;;
    2) rm -f "$victim" ;;
  esac
  out=$("$BIN" run p.yaml --cache f 2>&1)
  if [ "$(final f)" = "$REF" ] && "$BIN" verify p.yaml --cache f >/dev/null 2>&1; then
    grep -qi "damaged\|quarantin" <<<"$out" && record flip ok || record flip propagated "not reported: $victim"
  else
    record flip propagated "after damaging $victim: $out"
  fi

  # race: four drivers, one cache
  rm -rf r runs.log; pids=()
  for _ in 1 2 3 4; do "$BIN" run p.yaml --cache r >/dev/null 2>&1 & pids+=($!); done
  fails=0; for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
  counted=$(wc -l < runs.log 2>/dev/null || echo 0)
  if [ "$fails" -eq 0 ] && [ "$counted" -eq 1 ] && [ "$(final r)" = "$REF" ]; then record race ok
  else record race propagated "fails=$fails, stage e ran $counted times"; fi
done

# ENOSPC on a small tmpfs (root only)
if [ "$(id -u)" -eq 0 ] && mkdir -p small && mount -t tmpfs -o size=600k tmpfs small 2>/dev/null; then
  for ((t = 0; t < TRIALS; t++)); do
    rm -rf small/c
    out=$("$BIN" run p.yaml --cache small/c 2>&1); rc=$?
    if [ $rc -ne 0 ] && grep -q "No space left on device" <<<"$out" && "$BIN" verify p.yaml --cache small/c >/dev/null 2>&1; then
      mount -o remount,size=16m small
      check enospc small/c
      rm -rf small/c; mount -o remount,size=600k small
    elif [ $rc -eq 0 ]; then record enospc propagated "a 1 MiB output fit in 600 KiB?"
    else record enospc propagated "a damaged entry after ENOSPC: $out"; fi
  done
else
  echo "enospc: skipped (needs root and tmpfs)"
fi

printf "%-8s %8s %9s %11s\n" trial ok reported PROPAGATED
total=0
for k in kill flip race enospc; do
  printf "%-8s %8d %9d %11d\n" "$k" "${ok[$k]:-0}" "${reported[$k]:-0}" "${propagated[$k]:-0}"
  total=$((total + ${propagated[$k]:-0}))
done
[ "$total" -eq 0 ]
