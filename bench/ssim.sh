#!/usr/bin/env bash
# SSIM at 425 × 425 (MindEye's evaluation size): scikit-image 0.26 and brainpipe in one run, on
# the same two fixture photographs resized and converted to gray the same way.
# Usage: bench/ssim.sh            (needs $BRAINPIPE_REF_PYTHON, the peers venv)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${BRAINPIPE_REF_PYTHON:?set BRAINPIPE_REF_PYTHON (make refenv)}
echo "== scikit-image $("$py" -c 'import skimage; print(skimage.__version__)') (one pair at a time, best of 5 × 20)"
"$py" - <<'PY'
import timeit
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
for name, kw in [("ssim_gaussian", dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)),
                 ("ssim_uniform7", dict(data_range=1.0))]:
    t = min(timeit.repeat(lambda: structural_similarity(b, a, **kw), number=20, repeat=5)) / 20
    print(f"skimage {name}: {1e3 * t:.2f} ms/pair  (value {structural_similarity(b, a, **kw):.9f})")
PY
echo "== brainpipe (criterion; 'thrpt' is pairs/s)"
cargo bench -p brainpipe-eval --bench ssim -- --warm-up-time 1 --measurement-time 4 2>&1 \
  | grep -E "^(ssim_425|pair_metrics)|time:|thrpt:"
