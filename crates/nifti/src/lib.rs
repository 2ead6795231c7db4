//! NIfTI-1 and NIfTI-2 volumes: headers, affines exactly as nibabel computes them, streaming reads
//! to `f32`, and deterministic streaming writes.
//!
//! One [`Header`] serves both versions: NIfTI-1 fields are read by the `nifti` crate, NIfTI-2
//! (64-bit dims, double fields, 540 bytes) by this crate, which the `nifti` crate cannot read. Data
//! stream through [`VolumeReader`] one 3-D volume at a time, so a 4-D file of any length needs one
//! volume of memory. Values follow nibabel's `get_fdata(dtype=float32)`: `raw * scl_slope +
//! scl_inter` computed in `f64` when the slope is non-zero and finite, cast to `f32`.
//!
//! Also NumPy's `.npy` arrays ([`npy`]), the other array format brain data ships in (BOLD5000's
//! ROI masks, Brain2Word's template sizes).
//!
//! ```
//! use brainpipe_nifti::{NiftiWriter, VolumeReader, WriteOptions, XFORM_MNI152};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("bold.nii.gz");
//! let affine = [[-2.0, 0.0, 0.0, 90.0], [0.0, 2.0, 0.0, -126.0], [0.0, 0.0, 2.0, -72.0], [0.0, 0.0, 0.0, 1.0]];
//! let options = WriteOptions { affine, xform_code: XFORM_MNI152, tr_s: None, gzip_level: Some(1) };
//! let mut writer = NiftiWriter::<f32>::create(&path, &[2, 3, 4, 5], &options)?;
//! for t in 0..5 {
//!     writer.write_volume(&vec![t as f32; 24])?;
//! }
//! writer.finish()?;
//!
//! let mut reader = VolumeReader::open(&path)?;
//! assert_eq!(reader.header().dims, vec![2, 3, 4, 5]);
//! assert_eq!(reader.header().affine(), affine);
//! let mut volume = Vec::new();
//! let mut sums = Vec::new();
//! while reader.read_volume(&mut volume)? {
//!     sums.push(volume.iter().sum::<f32>());
//! }
//! assert_eq!(sums, vec![0.0, 24.0, 48.0, 72.0, 96.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod header;
pub mod npy;
mod read;
mod write;

pub use error::NiftiError;
pub use header::{Datatype, Header, NIFTI1_HEADER_BYTES, NIFTI2_HEADER_BYTES};
pub use read::{VolumeReader, read_f32, read_f32_bytes, read_header};
pub use write::{Element, NiftiWriter, WriteOptions, XFORM_MNI152, XFORM_SCANNER, write_volume};

/// Applies `affine` to voxel indices `(i, j, k)`, giving world coordinates in mm.
pub fn voxel_to_world(affine: &[[f64; 4]; 4], ijk: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|r| {
        affine[r][0] * ijk[0] + affine[r][1] * ijk[1] + affine[r][2] * ijk[2] + affine[r][3]
    })
}

/// The inverse of an affine (`None` when its 3×3 part is singular).
pub fn invert_affine(m: &[[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let a = [[m[0][0], m[0][1], m[0][2]], [m[1][0], m[1][1], m[1][2]], [m[2][0], m[2][1], m[2][2]]];
    let det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let cof =
        |r0: usize, r1: usize, c0: usize, c1: usize| a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0];
    let inv3 = [
        [cof(1, 2, 1, 2) / det, -cof(0, 2, 1, 2) / det, cof(0, 1, 1, 2) / det],
        [-cof(1, 2, 0, 2) / det, cof(0, 2, 0, 2) / det, -cof(0, 1, 0, 2) / det],
        [cof(1, 2, 0, 1) / det, -cof(0, 2, 0, 1) / det, cof(0, 1, 0, 1) / det],
    ];
    let t = [m[0][3], m[1][3], m[2][3]];
    let mut out = [[0.0; 4]; 4];
    for r in 0..3 {
        out[r][..3].copy_from_slice(&inv3[r]);
        out[r][3] = -(inv3[r][0] * t[0] + inv3[r][1] * t[1] + inv3[r][2] * t[2]);
    }
    out[3][3] = 1.0;
    Some(out)
}

/// The voxel of a grid (`dims`, `inverse` = its inverted affine) nearest to world point `xyz`, as
/// nilearn's and nibabel's nearest-neighbour resampling pick it (scipy's `affine_transform` with
/// `order=0, mode="constant"`): the continuous index must lie within `0 ..= n - 1` on every axis
/// (within 1e-6, so a point of the same grid maps exactly), and is then rounded half up.
pub fn nearest_voxel(
    inverse: &[[f64; 4]; 4],
    dims: [usize; 3],
    xyz: [f64; 3],
) -> Option<[usize; 3]> {
    const SNAP: f64 = 1e-6;
    let ijk = voxel_to_world(inverse, xyz);
    let mut out = [0usize; 3];
    for axis in 0..3 {
        let mut c = ijk[axis];
        if (c - c.round()).abs() < SNAP {
            c = c.round();
        }
        if !(c >= 0.0 && c <= dims[axis] as f64 - 1.0) {
            return None;
        }
        out[axis] = (c + 0.5).floor() as usize;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_round_trips() {
        let m = [
            [0.5, 0.2, 0.0, -10.0],
            [0.1, 2.0, 0.3, 20.0],
            [0.0, -0.4, 3.0, 5.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let inv = invert_affine(&m).expect("invertible");
        let p = voxel_to_world(&m, [3.0, 4.0, 5.0]);
        let back = voxel_to_world(&inv, p);
        for (a, b) in back.iter().zip([3.0, 4.0, 5.0]) {
            assert!((a - b).abs() < 1e-9);
        }
        assert_eq!(nearest_voxel(&inv, [10, 10, 10], p), Some([3, 4, 5]));
        assert_eq!(nearest_voxel(&inv, [3, 10, 10], p), None);
    }
}
