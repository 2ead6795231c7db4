#!/usr/bin/env bash
# Benchmark: `brainpipe plan` on large generated pipelines (issue 15.4: planning was quadratic).
# Each pipeline is a chain of `run:` stages (no LibTorch) where every tenth stage also fans in the
# ten stages before it; every stage writes a checksum of what it reads, so outputs stay a few bytes
# (a plain `cat` would grow tenfold at every fan-in). Cases: valid pipelines of 1k, 10k and 100k stages on a fresh cache; 1k
# stages after a run (every key known, every entry checked); 10k stages whose last stage reads a
# stage that does not exist; 100k stages followed by a YAML syntax error. Each is timed with
# /usr/bin/time -v (elapsed seconds, max RSS). Targets: 10k < 1 s, 100k < 15 s, memory linear.
# Usage: bench/plan.sh [BIN]   (BIN: a release build, `cargo build --release --bin brainpipe`)
# SIZES="1000 10000 100000" overrides the valid sizes. RUN_SIZES="1000 3000" also *runs* valid
# pipelines of those sizes on a fresh cache (every stage a `sh -c` with its watchdog: the
# scheduler's and the cache's cost per stage; issue 15.4's linear scheduler), timed alike.
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/brainpipe/target}/release/brainpipe}
SIZES=${SIZES:-1000 10000 100000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/brainpipe-plan.XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
cd "$WORK"
WORK=$(pwd -P)   # the driver prints absolute paths without symlinks

# gen N MODE > file: MODE valid | dangling (the last stage reads `missing.o`) | parse_error
# (an unclosed flow mapping after the last stage).
gen() {
  awk -v n="$1" -v mode="$2" 'BEGIN {
    print "name: plan-bench-" mode "-" n
    print "stages:"
    for (i = 0; i < n; i++) {
      printf "  s%d:\n", i
      if (i == 0) {
        print "    run: \"echo 0 > {outputs.o}\""
      } else if (i % 10 == 0) {
        print "    run: \"cat {inputs.parts} | cksum > {outputs.o}\""
        printf "    inputs:\n      parts: ["
        for (j = i - 10; j < i; j++) printf "%ss%d.o", (j > i - 10 ? ", " : ""), j
        print "]"
      } else {
        print "    run: \"cksum < {inputs.x} > {outputs.o}\""
        ref = "s" (i - 1) ".o"
        if (mode == "dangling" && i == n - 1) ref = "missing.o"
        printf "    inputs: { x: %s }\n", ref
      }
      print "    outputs: [o]"
    }
    if (mode == "parse_error") print "  broken: { run: \"true\", outputs: [o]"
  }'
}

# measure NAME FILE EXPECT_RC: runs `plan` under /usr/bin/time -v, checks the exit status, and
# appends "name stages seconds max_rss_kb" to results.
measure() {
  local name=$1 file=$2 expect=$3 stages rc
  stages=$(grep -c '^  s[0-9]*:$' "$file")
  set +e
  /usr/bin/time -v -o "$name.time" "$BIN" plan "$file" --cache "$WORK/cache-$name" \
    > "$name.out" 2> "$name.err"
  rc=$?
  set -e
  if [ "$rc" != "$expect" ]; then
    echo "FAIL: $name exited $rc, expected $expect"; cat "$name.err"; exit 1
  fi
  local secs kb
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.2f", s }' "$name.time")
  kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$name.time")
  echo "$name $stages $secs $kb" >> results
}

# The driver reads the LibTorch worker's stage catalogue once per worker build and caches it;
# a first tiny plan keeps that one-off out of the timings.
gen 2 valid > warm.yaml
"$BIN" plan warm.yaml --cache "$WORK/cache-warm" > /dev/null

: > results
for n in $SIZES; do
  gen "$n" valid > "valid-$n.yaml"
  measure "valid-$n" "valid-$n.yaml" 0
  head -1 "valid-$n.out" | grep -q "$n stages, 0 cached, $n to run" \
    || { echo "FAIL: valid-$n: $(head -1 "valid-$n.out")"; exit 1; }
done

# Runs: every stage executes (sh, cksum, an entry and its manifest), -j 2.
for n in ${RUN_SIZES:-}; do
  gen "$n" valid > "run-$n.yaml"
  set +e
  /usr/bin/time -v -o "run-$n.time" "$BIN" run "run-$n.yaml" --cache "$WORK/cache-run-$n" -j 2 \
    > "run-$n.out" 2> "run-$n.err"
  rc=$?
  set -e
  [ "$rc" = 0 ] || { echo "FAIL: run-$n exited $rc"; tail -3 "run-$n.err"; exit 1; }
  ran=$(grep -c ' ran ' "run-$n.out" || true)
  [ "$ran" = "$n" ] || { echo "FAIL: run-$n: $ran of $n stages ran"; exit 1; }
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.2f", s }' "run-$n.time")
  kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "run-$n.time")
  echo "run-$n $n $secs $kb" >> results
done

# Every key known: run 1k stages once, then plan (each entry's manifest and outputs checked).
gen 1000 valid > cached-1000.yaml
"$BIN" run cached-1000.yaml --cache "$WORK/cache-cached-1000" > /dev/null 2>&1
measure "cached-1000" cached-1000.yaml 0
head -1 cached-1000.out | grep -q "1000 stages, 1000 cached, 0 to run" \
  || { echo "FAIL: cached-1000: $(head -1 cached-1000.out)"; exit 1; }

gen 10000 dangling > dangling-10000.yaml
measure "dangling-10000" dangling-10000.yaml 1
# The last stage is 4 lines from the end; its reference is on its third line, column 18.
line=$(($(wc -l < dangling-10000.yaml) - 1))
expected="error: $WORK/dangling-10000.yaml:$line:18: stage \`s9999\` input \`x\`: \`missing.o\`: no stage \`missing\` and no such file"
[ "$(cat dangling-10000.err)" = "$expected" ] \
  || { echo "FAIL: dangling-10000 said: $(cat dangling-10000.err)"; echo "expected: $expected"; exit 1; }

gen 100000 parse_error > parse-error-100000.yaml
measure "parse-error-100000" parse-error-100000.yaml 1
line=$(($(wc -l < parse-error-100000.yaml) + 1))
grep -q "^error: parse-error-100000.yaml:$line:1: did not find expected ',' or '}'" parse-error-100000.err \
  || { echo "FAIL: parse-error-100000 said: $(cat parse-error-100000.err)"; exit 1; }
for case in dangling-10000 parse-error-100000; do
  [ "$(wc -l < "$case.err")" = 1 ] || { echo "FAIL: $case: not one line"; exit 1; }
done

printf '%-20s %8s %9s %12s %14s\n' case stages seconds max_rss_MB KB_per_stage
awk '{ printf "%-20s %8d %9.2f %12.1f %14.2f\n", $1, $2, $3, $4 / 1024, $4 / $2 }' results
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
fail=0
while read -r name stages secs _; do
  case "$name" in
    valid-10000) limit=1 ;;
    valid-100000) limit=15 ;;
    *) continue ;;
  esac
  if awk -v s="$secs" -v l="$limit" 'BEGIN { exit !(s >= l) }'; then
    echo "FAIL: $name took ${secs}s (target < ${limit}s)"; fail=1
  fi
done < results
exit $fail
