#!/usr/bin/env bash
# Times `ingest.synthetic` and measures its peak memory (docs/BENCHMARKS.md, "Synthetic study").
#
#   bench/synthetic.sh            demo study (4 subjects, words, 6 mm), 3 runs, + images world
#   bench/synthetic.sh pereira    also a Pereira-size study (15 subjects, 2 mm): minutes, ~8 GB disk
#
# Uses the crate's `synthetic` example (the stage via run_standalone), built in release.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p brainpipe-ingest --example synthetic
bin="${CARGO_TARGET_DIR:-target}/release/examples/synthetic"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/synthetic-bench.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
echo "host: $(nproc) cores, $(uname -m)"

run() { # name, params…
    local name="$1"; shift
    rm -rf "$scratch/$name"
    /usr/bin/time -f "$name: wall %e s, user %U s, peak RSS %M KB" "$bin" "$scratch/$name" "$@"
    echo "$name: output $(du -sh "$scratch/$name" | cut -f1)"
}

for i in 1 2 3; do run "demo-words-$i"; done
run demo-images paradigm=images
run demo-words-time-series time_series=true
if [[ "${1:-}" == pereira ]]; then
    run pereira-15x2mm subjects=15 resolution_mm=2
fi
