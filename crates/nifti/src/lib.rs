//! NIfTI-1 and NIfTI-2 volumes: headers, affines exactly as nibabel computes them, streaming reads
//! to `f32`, and deterministic streaming writes.
//!
//! One [`Header`] serves both versions: NIfTI-1 fields are read by the `nifti` crate, NIfTI-2
//! (64-bit dims, double fields, 540 bytes) by this crate, which the `nifti` crate cannot read. Data
//! stream through [`VolumeReader`] one 3-D volume at a time, so a 4-D file of any length needs one
//! volume of memory. Values follow nibabel's `get_fdata(dtype=float32)`: `raw * scl_slope +
//! scl_inter` computed in `f64` when the slope is non-zero and finite, cast to `f32`.
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
mod read;
mod write;

pub use error::NiftiError;
pub use header::{Datatype, Header, NIFTI1_HEADER_BYTES, NIFTI2_HEADER_BYTES};
pub use read::{VolumeReader, read_f32, read_header};
pub use write::{Element, NiftiWriter, WriteOptions, XFORM_MNI152, XFORM_SCANNER, write_volume};

/// Applies `affine` to voxel indices `(i, j, k)`, giving world coordinates in mm.
pub fn voxel_to_world(affine: &[[f64; 4]; 4], ijk: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|r| {
        affine[r][0] * ijk[0] + affine[r][1] * ijk[1] + affine[r][2] * ijk[2] + affine[r][3]
    })
}
