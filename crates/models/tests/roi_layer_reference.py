"""Oracle for the packed ROI layer: 333 independent per-ROI matmuls in numpy.

Usage: roi_layer_reference.py DIR. DIR holds spec.json (blocks [first, size], inputs, scale,
batch, width, groups), x.f32 (random rows), h.f32 (random ROI outputs) and, per group count g,
forward-g.f32 (the layer on the identity rows, a zero row, then x) and backward-g.f32 (the tied
backward of h, zero bias). Each ROI's weight block is read from the layer's responses to unit
vectors; everything else comes from the definition: ROI r reads input columns
first..first+size and writes the next max(ceil(size / scale), 1) output columns, in ROI order.
Exits non-zero on any disagreement.
"""
import json, sys
import numpy as np

d = sys.argv[1]
spec = json.load(open(f"{d}/spec.json"))
n, batch, width = spec["inputs"], spec["batch"], spec["width"]
blocks = spec["blocks"]
outs = [max(-(-size // spec["scale"]), 1) for _, size in blocks]
starts = np.concatenate([[0], np.cumsum(outs)])
assert starts[-1] == width, (starts[-1], width)
x = np.fromfile(f"{d}/x.f32", "<f4").reshape(batch, n).astype(np.float64)
h = np.fromfile(f"{d}/h.f32", "<f4").reshape(batch, width).astype(np.float64)
for g in spec["groups"]:
    f = np.fromfile(f"{d}/forward-{g}.f32", "<f4").reshape(n + 1 + batch, width).astype(np.float64)
    back = np.fromfile(f"{d}/backward-{g}.f32", "<f4").reshape(batch, n).astype(np.float64)
    bias = f[n]
    W = f[:n] - bias  # row i: the response to unit vector i, less the bias
    inside = np.zeros_like(W, dtype=bool)
    y = np.empty((batch, width))
    b = np.zeros((batch, n))
    for r, (first, size) in enumerate(blocks):
        cols = slice(starts[r], starts[r + 1])
        Wr = W[first : first + size, cols]
        assert np.all(Wr != 0.0), f"groups {g}: ROI {r} has dead weights"
        inside[first : first + size, cols] = True
        y[:, cols] = x[:, first : first + size] @ Wr + bias[cols]
        b[:, first : first + size] = h[:, cols] @ Wr.T
    leak = np.abs(W[~inside]).max()
    assert leak == 0.0, f"groups {g}: a ROI reads another's inputs or writes another's outputs ({leak})"
    fwd = np.abs(f[n + 1 :] - y).max()
    bwd = np.abs(back - b).max()
    assert fwd < 1e-5 and bwd < 1e-5, f"groups {g}: forward differs by {fwd}, backward by {bwd}"
    outside = [c for c in range(n) if not any(first <= c < first + size for first, size in blocks)]
    assert outside and np.all(back[:, outside] == 0.0), f"groups {g}: columns outside every ROI"
    print(f"groups {g}: {len(blocks)} ROIs, {n} inputs, {width} outputs: forward {fwd:.1e}, backward {bwd:.1e}, no leak")
