#!/usr/bin/env bash
# SSIM at 425 × 425 (MindEye's evaluation size): scikit-image 0.26 and brainpipe in one run, on
# the same two fixture photographs resized and converted to gray the same way. Both sides are
# summarised the same way (per pair: the fastest sample and the median sample), and the machine's
# load is printed before and after, since the build machine is shared.
# Usage: bench/ssim.sh            (needs $BRAINPIPE_REF_PYTHON, the peers venv)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${BRAINPIPE_REF_PYTHON:?set BRAINPIPE_REF_PYTHON (make refenv)}
target=${CARGO_TARGET_DIR:-target}
skimage_out=$(mktemp)
trap 'rm -f "$skimage_out"' EXIT
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== scikit-image $("$py" -c 'import skimage; print(skimage.__version__)') (one pair at a time, 15 samples × 20 pairs)"
"$py" - "$skimage_out" <<'PY'
import json, statistics, sys, timeit
import numpy as np, torch, torch.nn.functional as F
from PIL import Image
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity
def gray(name):
    a = np.asarray(Image.open(f"crates/eval/tests/fixtures/images/{name}").convert("RGB")) / 255.0
    x = torch.from_numpy(a.transpose(2, 0, 1).copy())[None]
    r = F.interpolate(x, size=(425, 425), mode="bilinear", align_corners=False, antialias=True)
    return rgb2gray(r[0].permute(1, 2, 0).numpy())
a, b = gray("astronaut.png"), gray("coffee.png")
out = {}
for name, kw in [("ssim_gaussian", dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)),
                 ("ssim_uniform7", dict(data_range=1.0))]:
    t = [s / 20 for s in timeit.repeat(lambda: structural_similarity(b, a, **kw), number=20, repeat=15)]
    out[name] = {"min": min(t), "median": statistics.median(t)}
    print(f"skimage {name}: {1e3 * min(t):.2f} ms/pair fastest, {1e3 * statistics.median(t):.2f} median"
          f"  (value {structural_similarity(b, a, **kw):.9f})")
json.dump(out, open(sys.argv[1], "w"))
PY
echo "== brainpipe (criterion; 'thrpt' is pairs/s)"
cargo bench -p brainpipe-eval --bench ssim -- --warm-up-time 1 --measurement-time 4 2>&1 \
  | grep -E "^(ssim_425|pair_metrics)|time:|thrpt:"
echo "== per pair, from criterion's samples (fastest sample, median sample) and the ratio to scikit-image"
"$py" - "$skimage_out" "$target/criterion/ssim_425" <<'PY'
import json, statistics, sys
sk = json.load(open(sys.argv[1]))
for variant in ["ssim_gaussian", "ssim_uniform7"]:
    for bench, pairs, threads in [("one_pair_serial", 1, "1 thread"), ("one_pair_parallel", 1, "rayon, all cores"),
                                  ("batch32_parallel", 32, "rayon over 32 pairs, all cores")]:
        try:
            s = json.load(open(f"{sys.argv[2]}/{variant}_{bench}/new/sample.json"))
        except FileNotFoundError:
            continue
        per = [t / n / pairs / 1e6 for t, n in zip(s["times"], s["iters"])]
        lo, med = min(per), statistics.median(per)
        print(f"brainpipe {variant}/{bench} ({threads}): {lo:.3f} ms/pair fastest, {med:.3f} median;"
              f" scikit-image / brainpipe = {1e3 * sk[variant]['min'] / lo:.1f}x fastest,"
              f" {1e3 * sk[variant]['median'] / med:.1f}x median")
PY
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
