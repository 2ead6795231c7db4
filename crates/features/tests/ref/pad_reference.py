"""Reference for features.template_pad, reimplemented from docs/FEATURES.md in numpy.

usage: pad_reference.py FEATURES_DIR PAD_OUT_DIR FILL   (FILL: slice_mean | zero)
Template (derived): per ROI (ascending), the slice counts (np.unique over k) of the subject with the
most voxels in it (first subject on ties). Layout of one subject's ROI: its voxels grouped by z in
column order; template slice t takes its first min(n, c_t) voxels of z_t; overflow voxels
(ascending z, column) take the remaining free positions in block order; positions still free get
the per-trial mean of the subject's voxels at z_t, else of all its voxels of the ROI, else 0 (or 0
everywhere for FILL=zero). Means: float64 sums in column order, rounded to float32 once.
"""
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

features, out, fill = sys.argv[1:4]
subjects = sorted(p.name[: -len(".parquet")] for p in Path(features).glob("*.parquet")
                  if "." not in p.name[: -len(".parquet")])
data = {}
for s in subjects:
    vox = pq.read_table(f"{features}/{s}.voxels.parquet")
    table = pq.read_table(f"{features}/{s}.parquet")
    x = np.stack(table.column("voxels").to_numpy(zero_copy_only=False)).astype(np.float32)
    data[s] = (vox.column("roi").to_numpy(), vox.column("k").to_numpy(), x)

template = {}
for r in sorted(set(np.concatenate([d[0] for d in data.values()]).tolist())):
    best_n, best_s = -1, None
    for s in subjects:
        n = int((data[s][0] == r).sum())
        if n > best_n:
            best_n, best_s = n, s
    roi, k, _ = data[best_s]
    z, c = np.unique(k[roi == r], return_counts=True)
    template[r] = list(zip(z.tolist(), c.tolist()))
width = sum(c for sl in template.values() for _, c in sl)


def mean(x, cols):
    total = np.zeros(x.shape[0], np.float64)
    for c in cols:
        total += x[:, c].astype(np.float64)
    return (total / len(cols)).astype(np.float32)


expected = []
cases = {"overflow": 0, "slice_mean": 0, "roi_mean": 0, "zero": 0}
for s in subjects:
    roi, k, x = data[s]
    rows = np.zeros((x.shape[0], width), np.float32)
    offset = 0
    for r, slices in template.items():
        cols = [c for c in range(len(roi)) if roi[c] == r]
        by_z = {}
        for c in cols:
            by_z.setdefault(int(k[c]), []).append(c)
        free, placed, pos = [], {}, offset
        for t, (z, count) in enumerate(slices):
            own = by_z.get(z, [])[:count]
            for i, c in enumerate(own):
                rows[:, pos + i] = x[:, c]
            free += [(p, t) for p in range(pos + len(own), pos + count)]
            placed[z] = len(own)
            pos += count
        overflow = [c for z in sorted(by_z) for c in by_z[z][placed.get(z, 0):]]
        assert len(overflow) <= len(free)
        for c, (p, _) in zip(overflow, free):
            rows[:, p] = x[:, c]
        cases["overflow"] += len(overflow)
        for p, t in free[len(overflow):]:
            z = slices[t][0]
            case = "zero" if fill == "zero" or not cols else "slice_mean" if z in by_z else "roi_mean"
            cases[case] += 1
            rows[:, p] = 0.0 if case == "zero" else mean(x, by_z[z] if case == "slice_mean" else cols)
        offset = pos
    expected.append(rows)
expected = np.concatenate(expected)
if fill == "slice_mean":
    assert all(n > 0 for n in cases.values()), f"fixture misses a case: {cases}"

table = pq.read_table(f"{out}/features.parquet")
got = np.stack(table.column("voxels").to_numpy(zero_copy_only=False)).astype(np.float32)
assert table.schema.metadata[b"brainpipe.schema"] == b"features/1"
assert got.shape == expected.shape, (got.shape, expected.shape)
diff = np.nonzero(got != expected)
assert diff[0].size == 0, f"{diff[0].size} values differ, first at row {diff[0][0]} col {diff[1][0]}"
assert table.column("subject").to_pylist() == [s for s in subjects for _ in range(data[s][2].shape[0])]

t = pq.read_table(f"{out}/template.parquet").to_pydict()
assert list(zip(t["roi"], t["z"], t["count"])) == [(r, z, c) for r, sl in template.items() for z, c in sl]
rois = pq.read_table(f"{out}/rois.parquet").to_pydict()
sizes = [sum(c for _, c in sl) for sl in template.values()]
assert rois["roi"] == list(template) and rois["count"] == sizes
assert rois["first"] == np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
print(f"pad reference ({fill}): {len(subjects)} subjects, {got.shape[0]} rows x {width}, "
      f"positions per case {cases}: identical")
