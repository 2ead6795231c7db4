//! NIfTI for the synthetic study: write options for `brainpipe-nifti`'s streaming writer, and the
//! MNI152 masks embedded in the binary, read from memory by `brainpipe-nifti`.

use std::path::Path;

use brainpipe_nifti::{WriteOptions, XFORM_MNI152};

use crate::error::Result;

/// A 3×4 voxel-to-world (mm) affine.
pub(crate) type Affine = [[f64; 4]; 3];

/// Options for a study volume in MNI152 space: `tr_s` for a time series, `fast` gzip (level 1)
/// for the float series, which are mostly noise and barely compress anyway.
pub(crate) fn mni_options(affine: &Affine, tr_s: Option<f64>, fast: bool) -> WriteOptions {
    WriteOptions {
        affine: [affine[0], affine[1], affine[2], [0.0, 0.0, 0.0, 1.0]],
        xform_code: XFORM_MNI152,
        tr_s,
        gzip_level: Some(if fast { 1 } else { 6 }),
    }
}

/// A 3D volume read from a NIfTI-1 file, as f32.
#[derive(Clone, Debug)]
pub(crate) struct Volume {
    pub dims: [usize; 3],
    pub affine: Affine,
    pub data: Vec<f32>,
}

/// Reads the first 3D volume of a NIfTI file (`.nii` or `.nii.gz`) held in `bytes`; `path` only
/// names it in errors.
pub(crate) fn read_volume(bytes: &[u8], path: &Path) -> Result<Volume> {
    let (header, mut data) = brainpipe_nifti::read_f32_bytes(bytes, path)?;
    data.truncate(header.volume_len());
    let [r0, r1, r2, _] = header.affine();
    Ok(Volume { dims: header.shape3(), affine: [r0, r1, r2], data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_reader_reads_what_the_writer_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.nii.gz");
        let affine = [[-6.0, 0.0, 0.0, 88.0], [0.0, 6.0, 0.0, -124.0], [0.0, 0.0, 6.0, -70.0]];
        let vol: Vec<f32> = (0..24).map(|i| i as f32).collect();
        brainpipe_nifti::write_volume(&path, [2, 3, 4], &vol, &mni_options(&affine, None, false))
            .expect("write");
        let bytes = std::fs::read(&path).expect("read");
        let back = read_volume(&bytes, &path).expect("parse");
        assert_eq!(back.dims, [2, 3, 4]);
        assert_eq!(back.affine, affine);
        assert_eq!(back.data, vol);
    }

    #[test]
    fn garbage_is_a_one_line_error() {
        let err = read_volume(b"not a nifti at all", Path::new("x.nii")).expect_err("garbage");
        assert!(err.to_string().starts_with("x.nii: nifti:"), "{err}");
    }
}
