"""The peer of `ingest.nifti`: nibabel + pyarrow, NIfTI → one row per volume as FixedSizeList<float32>.

usage: nifti_to_parquet.py IN.nii.gz OUT.parquet [--tuned]

Default: pyarrow's defaults but zstd and row groups of 64 (dictionary attempted, statistics on,
PLAIN floats). --tuned: the options brainpipe's scans writer uses — zstd level 1,
BYTE_STREAM_SPLIT and no dictionary for the voxel items, no statistics on them (chunk statistics
on the other columns), and the same row groups (8 MiB of values, at most 64 rows).
Prints `import_s=… work_s=…` (interpreter start-up excluded: seconds spent importing nibabel,
numpy and pyarrow, then reading, converting and writing) so the bench can report the
start-up and import cost apart from the work.
"""
import time

t0 = time.perf_counter()
import sys

import nibabel as nib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

t1 = time.perf_counter()
src, dst = sys.argv[1], sys.argv[2]
tuned = sys.argv[3:] == ["--tuned"]
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
if tuned:
    pq.write_table(
        table,
        dst,
        compression="zstd",
        compression_level=1,
        use_dictionary=["subject", "trial"],
        column_encoding={"voxels.list.element": "BYTE_STREAM_SPLIT"},
        write_statistics=["subject", "trial"],
        row_group_size=min(64, max(1, (8 << 20) // (4 * width))),
    )
else:
    pq.write_table(table, dst, compression="zstd", row_group_size=64)
t2 = time.perf_counter()
print(f"import_s={t1 - t0:.3f} work_s={t2 - t1:.3f}")
