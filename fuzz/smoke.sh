#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ and runs each for FUZZ_SECONDS (default 20: the CI smoke;
# `make fuzz` runs 600), starting from the committed seeds in fuzz/corpus/<target>/. Fails when a
# target crashes, panics, times out (-timeout, s per input) or allocates past -rss_limit_mb; the
# reproducer is then in fuzz/artifacts/<target>/ (rerun it: the built target binary with FILE).
#
# Installs cargo-fuzz when missing. The build goes to FUZZ_TARGET_DIR and what the fuzzer finds to
# FUZZ_CORPUS_DIR/<target>, both outside the clone (the committed seeds are only read). Logs and one
# summary line per target (execs, exec/s, libFuzzer's last cov/ft) in FUZZ_LOG_DIR.
#
#   FUZZ_SECONDS=20 FUZZ_TARGETS="npy nifti_header" bash fuzz/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_HOME="${CACHE_HOME:-$HOME/.cache/brainpipe}"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$CACHE_HOME/fuzz-target}"
FUZZ_CORPUS_DIR="${FUZZ_CORPUS_DIR:-$CACHE_HOME/fuzz-corpus}"
FUZZ_LOG_DIR="${FUZZ_LOG_DIR:-$CACHE_HOME/fuzz-logs}"
# The readers are safe Rust: panics, overflows (debug assertions are on), timeouts and memory
# limits are what libFuzzer catches, and AddressSanitizer would cost most of the speed.
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"
# The file-reading targets write each input to TMPDIR: on /dev/shm they run 5-8x faster than on a
# disk-backed /tmp (docs/BENCHMARKS.md). FUZZ_TMPDIR overrides.
if [[ -n "${FUZZ_TMPDIR:-}" ]]; then
    export TMPDIR="$FUZZ_TMPDIR"
elif [[ -d /dev/shm && -w /dev/shm ]]; then
    export TMPDIR=/dev/shm
fi
CARGO_FUZZ_VERSION=0.13.2
fuzz=(cargo +nightly fuzz)

echo "==> $(date -u +%FT%TZ) fuzz: cargo-fuzz"
# cargo-fuzz needs a nightly toolchain. Where the machine has none (and none can be fetched),
# the smoke is skipped with this one line rather than failing CI on a missing capability;
# FUZZ_REQUIRED=1 makes it a failure.
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: no nightly toolchain on this machine (cargo +nightly fails)"
    [[ "${FUZZ_REQUIRED:-0}" == 1 ]] && exit 1
    exit 0
fi
if ! "${fuzz[@]}" --version >/dev/null 2>&1; then
    # Built in a dir of its own (never the workspace's CARGO_TARGET_DIR): 2m46s cold on 2 cores.
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" \
        --target-dir "$CACHE_HOME/cargo-fuzz-build"
fi
targets="${FUZZ_TARGETS:-$("${fuzz[@]}" list --fuzz-dir fuzz)}"

echo "==> $(date -u +%FT%TZ) fuzz: build" $targets
if [[ -z "${FUZZ_TARGETS:-}" ]]; then
    "${fuzz[@]}" build --fuzz-dir fuzz --target-dir "$FUZZ_TARGET_DIR" -s "$FUZZ_SANITIZER" # all, in one cargo build
else
    for target in $targets; do
        "${fuzz[@]}" build --fuzz-dir fuzz --target-dir "$FUZZ_TARGET_DIR" -s "$FUZZ_SANITIZER" "$target"
    done
fi

mkdir -p "$FUZZ_LOG_DIR"
failed=()
for target in $targets; do
    echo "==> $(date -u +%FT%TZ) fuzz: $target for ${FUZZ_SECONDS}s"
    mkdir -p "$FUZZ_CORPUS_DIR/$target"
    log="$FUZZ_LOG_DIR/$target.log"
    dict=()
    # tokenizer: a vocabulary, merges and a caption of 512 bytes reach every branch; longer ones
    # only repeat the work (BPE and the special-token scan are n log n and linear; docs/CLIP.md).
    case "$target" in nifti_*) dict=(-dict=fuzz/dict/nifti.dict) ;; npy) dict=(-dict=fuzz/dict/npy.dict) ;;
        tokenizer) dict=(-max_len=512) ;; esac
    if ! "${fuzz[@]}" run --fuzz-dir fuzz --target-dir "$FUZZ_TARGET_DIR" -s "$FUZZ_SANITIZER" "$target" \
        "$FUZZ_CORPUS_DIR/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "${dict[@]}" >"$log" 2>&1; then
        failed+=("$target")
        tail -n 40 "$log"
    fi
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "$target: ${execs:-?} execs, ${rate:-?} exec/s, last: ${last:-none}" | tee "$FUZZ_LOG_DIR/$target.summary"
done

if ((${#failed[@]})); then
    echo "==> fuzz: FAILED: ${failed[*]} (reproducers in fuzz/artifacts/, logs in $FUZZ_LOG_DIR)" >&2
    exit 1
fi
echo "==> $(date -u +%FT%TZ) fuzz: no crash in" $targets
