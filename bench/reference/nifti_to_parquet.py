"""The peer of `ingest.nifti`: nibabel + pyarrow, NIfTI → one row per volume as FixedSizeList<float32>.

usage: nifti_to_parquet.py IN.nii.gz OUT.parquet
"""
import sys

import nibabel as nib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

src, dst = sys.argv[1], sys.argv[2]
img = nib.load(src)
data = img.get_fdata(dtype=np.float32)  # X, Y, Z, T
volumes = data.shape[3]
rows = np.ascontiguousarray(data.reshape(-1, volumes, order="F").T)  # T × V, x fastest
width = rows.shape[1]
voxels = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel(), type=pa.float32()), width)
table = pa.table({
    "subject": pa.array(["sub-01"] * volumes),
    "trial": pa.array(np.arange(volumes, dtype=np.int32)),
    "voxels": voxels,
})
pq.write_table(table, dst, compression="zstd", row_group_size=64)
