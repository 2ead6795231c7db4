"""Reference for features.roi's atlas lookup: nearest-neighbour resampling as nibabel/nilearn do it.

usage: resample_reference.py SCANS_DIR ATLAS FEATURES_DIR
For every scans voxel: c = inv(A_atlas) @ A_scans @ ijk; label 0 unless 0 <= c <= n - 1 on every
axis, else the label at floor(c + 0.5): scipy.ndimage.affine_transform(order=0, mode="constant"),
which nilearn's resample_to_img(interpolation="nearest") and nibabel's resample_from_to(order=0)
both call. Also checked against nibabel.processing.resample_from_to itself.
Then the expected feature columns are the scans columns sorted by (label, column).
"""
import json
import sys

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
from nibabel.processing import resample_from_to

scans, atlas_path, features = sys.argv[1:4]
vox = pq.read_table(f"{scans}/sub-01.voxels.parquet")
meta = vox.schema.metadata
affine = np.array(json.loads(meta[b"brainpipe.affine"]))
dims = tuple(json.loads(meta[b"brainpipe.dims"]))
ijk = np.stack([vox.column(c).to_numpy() for c in "ijk"], axis=1).astype(np.float64)

atlas = nib.load(atlas_path)
labels = np.asarray(atlas.dataobj).astype(np.int64)
mapped = (np.linalg.inv(atlas.affine) @ affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
inside = np.all((mapped >= 0) & (mapped <= np.array(labels.shape) - 1), axis=1)
idx = np.floor(mapped + 0.5).astype(np.int64)
expected = np.zeros(len(ijk), np.int64)
expected[inside] = labels[tuple(idx[inside].T)]

resampled = resample_from_to(atlas, (dims, affine), order=0, mode="constant", cval=0)
by_nibabel = np.asarray(resampled.dataobj).astype(np.int64)[tuple(ijk.astype(np.int64).T)]
assert np.array_equal(expected, by_nibabel), "numpy rule and nibabel.processing disagree"

order = sorted(range(len(expected)), key=lambda c: (expected[c], c))
got = pq.read_table(f"{features}/sub-01.voxels.parquet")
got_roi = got.column("roi").to_numpy()
got_col = got.column("scan_column").to_numpy()
assert np.array_equal(got_col, np.array(order)), "column order differs"
assert np.array_equal(got_roi, expected[order]), "labels differ"
print(f"resample reference: {len(expected)} voxels, {len(set(expected))} labels, "
      f"{int((~inside).sum())} outside the atlas grid: identical")
