"""Pereira et al. 2018 layout fixtures for `ingest.pereira`, written with scipy.io.savemat.

usage: pereira_fixture.py OUT_DIR

Two subjects, three paradigms each. M01 uses the `roiMultimaskGordon`/`roiColumnsGordon` meta layout
(compressed files, `examples_180concepts_*.mat` names); M02 the `atlases`/`roiColumns` layout
(uncompressed, evlab `data_180concepts_*.mat` names). Writes expected.json with, per subject, the
column ROI labels, the (i, j, k) of each column and the first row's values of each paradigm.
"""
import json
import os
import sys

import numpy as np
import scipy.io

out = sys.argv[1]
rng = np.random.default_rng(11)
words = ["ability", "accomplished", "angry", "apartment", "applause", "argument"]
dims = np.array([[6, 5, 4]], dtype=float)
expected = {}
for subject, layout, columns in [("M01", 1, 17), ("M02", 2, 23)]:
    os.makedirs(os.path.join(out, subject), exist_ok=True)
    flat = rng.choice(6 * 5 * 4, size=columns, replace=False)
    i, j, k = np.unravel_index(flat, (6, 5, 4), order="F")
    col_to_coord = np.stack([i + 1, j + 1, k + 1], axis=1).astype(float)
    labels = rng.integers(0, 4, size=columns)  # 0 = outside every Gordon ROI
    meta = {"colToCoord": col_to_coord, "dimensions": dims, "nvoxels": float(columns)}
    if layout == 1:
        meta["roiMultimaskGordon"] = labels.reshape(-1, 1).astype(float)
    else:
        roi_columns = np.empty((3, 1), dtype=object)
        for r in range(3):
            roi_columns[r, 0] = (np.flatnonzero(labels == r + 1) + 1).reshape(-1, 1).astype(float)
        atlases = np.empty((2, 1), dtype=object)
        atlases[0, 0], atlases[1, 0] = "AAL", "Gordon"
        per_atlas = np.empty((2, 1), dtype=object)
        per_atlas[0, 0] = np.empty((0, 1), dtype=object)
        per_atlas[1, 0] = roi_columns
        meta["atlases"] = atlases
        meta["roiColumns"] = per_atlas
    firsts = {}
    for paradigm, name in [("pictures", "picture"), ("sentences", "sentence"), ("wordclouds", "word_cloud")]:
        examples = rng.normal(size=(len(words), columns))
        key = np.empty((len(words), 1), dtype=object)
        for n, w in enumerate(words):
            key[n, 0] = w
        prefix = "examples" if layout == 1 else "data"
        path = os.path.join(out, subject, f"{prefix}_180concepts_{paradigm}.mat")
        scipy.io.savemat(path, {"examples": examples, "keyConcept": key, "meta": meta},
                         do_compression=(layout == 1))
        firsts[name] = examples[0].astype(np.float32).tolist()
    expected[subject] = {
        "roi": labels.tolist(),
        "ijk": np.stack([i, j, k], axis=1).tolist(),
        "first_rows": firsts,
    }
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump({"words": words, "subjects": expected}, f)
