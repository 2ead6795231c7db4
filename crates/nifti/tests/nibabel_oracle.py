"""Reference values for brainpipe-nifti's tests, from nibabel.

usage: nibabel_oracle.py OUT_DIR

Writes fixtures (every datatype, both byte orders, scaling, qform/sform/no xform, NIfTI-2, .hdr/.img
pairs, gzip) into OUT_DIR, and for each fixture and each NIfTI file shipped in nibabel's tests/data a
reference: nibabel's get_fdata(dtype=float32) flattened in file order (x fastest) as raw float32,
and cases.json with shape, affine and whether values are integers.
"""
import json
import os
import sys

import nibabel as nib
import numpy as np


out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
cases = []


def reference(name, path, img, exact, data=True):
    case = {
        "name": name,
        "path": path,
        "shape": [int(d) for d in img.shape],
        "affine": img.affine.tolist(),
        "exact": exact,
        "data": data,
    }
    if data:
        values = np.asarray(img.get_fdata(dtype=np.float32)).ravel(order="F")
        ref = os.path.join(out, name + ".f32")
        values.astype("<f4").tofile(ref)
        case["reference"] = ref
    cases.append(case)


# 1. Every NIfTI file nibabel ships.
shipped = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
for fname, loader, has_data in [
    ("anatomical.nii", nib.Nifti1Image, True),
    ("example4d.nii.gz", nib.Nifti1Image, True),
    ("example_nifti2.nii.gz", nib.Nifti2Image, True),
    ("functional.nii", nib.Nifti1Image, True),
    ("reoriented_anat_moved.nii", nib.Nifti1Image, True),
    ("resampled_anat_moved.nii", nib.Nifti1Image, True),
    ("standard.nii.gz", nib.Nifti1Image, True),
    ("row_major.dconn.nii", nib.Nifti2Image, True),
    ("nifti1.hdr", nib.Nifti1Pair, False),
    ("nifti2.hdr", nib.Nifti2Pair, False),
]:
    path = os.path.join(shipped, fname)
    img = loader.from_filename(path)
    exact = not np.issubdtype(img.get_data_dtype(), np.floating)
    reference("nibabel-" + fname, path, img, exact, data=has_data)

# 2. Fixtures: datatypes × byte order, with and without scaling.
shape = (5, 4, 3, 2)
affine = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])
for dtype in ["u1", "i1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"]:
    for order in ["<", ">"]:
        dt = np.dtype(order + dtype)
        if dt.kind == "f":
            arr = rng.normal(0, 1000, shape).astype(dt)
        else:
            info = np.iinfo(dt)
            lo, hi = max(info.min, -30000), min(info.max, 30000)
            arr = rng.integers(lo, hi, shape).astype(dt)
        for scaled in [False, True]:
            img = nib.Nifti1Image(arr, affine, dtype=dt.newbyteorder("="))
            if scaled:
                img.header.set_slope_inter(0.37, -12.5)
            name = f"dtype-{dtype}-{'be' if order == '>' else 'le'}{'-scaled' if scaled else ''}.nii"
            path = os.path.join(out, name)
            hdr = img.header
            if order == ">":
                hdr = hdr.as_byteswapped(">")
                img = nib.Nifti1Image(arr, affine, header=hdr, dtype=dt.newbyteorder("="))
                if scaled:
                    img.header.set_slope_inter(0.37, -12.5)
            nib.save(img, path)
            img = nib.load(path)
            reference(name, path, img, exact=(dt.kind != "f" and not scaled))

# 3. Orientation: qform only (several rotations and a reflection), sform only, sform over qform,
#    neither (the base affine).
def rotation(axis, degrees):
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    m = np.eye(3)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


arr = rng.normal(size=(6, 5, 4)).astype("f4")
orientations = []
for axis in range(3):
    for degrees in [0, 30, 90, 180, 270]:
        rot = rotation(axis, degrees) @ np.diag([1.5, 2.0, 2.5])
        for flip in [1, -1]:
            a = np.eye(4)
            a[:3, :3] = rot @ np.diag([1, 1, flip])
            a[:3, 3] = [10.0, -20.0, 30.0]
            orientations.append((f"q-axis{axis}-{degrees}-{'flip' if flip < 0 else 'proper'}", a))
for name, a in orientations:
    for code in [1, 2, 3, 4]:
        img = nib.Nifti1Image(arr, None)
        img.header.set_qform(a, code)
        img.header.set_sform(None, 0)
        path = os.path.join(out, f"{name}-code{code}.nii")
        nib.save(img, path)
        reference(os.path.basename(path), path, nib.load(path), exact=False)
sform = np.array([[0.5, 0.2, 0, -10], [0.1, 2.0, 0.3, 20], [0, -0.4, 3.0, 5], [0, 0, 0, 1]])
img = nib.Nifti1Image(arr, None)
img.header.set_qform(orientations[3][1], 1)
img.header.set_sform(sform, 2)
path = os.path.join(out, "sform-over-qform.nii")
nib.save(img, path)
reference("sform-over-qform.nii", path, nib.load(path), exact=False)
img = nib.Nifti1Image(arr, None)
img.header.set_qform(None, 0)
img.header.set_sform(None, 0)
img.header.set_zooms((1.5, 2.0, 2.5))
path = os.path.join(out, "no-xform.nii")
nib.save(img, path)
reference("no-xform.nii", path, nib.load(path), exact=False)

# 4. NIfTI-2, pairs and gzip.
arr4 = rng.integers(-500, 500, (7, 6, 5, 3)).astype("i2")
for cls, ext, name in [
    (nib.Nifti2Image, ".nii.gz", "nifti2-single"),
    (nib.Nifti2Image, ".nii", "nifti2-single-plain"),
    (nib.Nifti1Pair, ".img", "nifti1-pair"),
    (nib.Nifti2Pair, ".img", "nifti2-pair"),
    (nib.Nifti1Pair, ".img.gz", "nifti1-pair-gz"),
]:
    img = cls(arr4, affine)
    path = os.path.join(out, name + ext)
    nib.save(img, path)
    reference(name + ext, path, nib.load(path), exact=True)

with open(os.path.join(out, "cases.json"), "w") as f:
    json.dump(cases, f, indent=1)
print(len(cases), "cases")
