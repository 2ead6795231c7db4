//! NIfTI for the synthetic study: write options for `brainpipe-nifti`'s streaming writer, and a
//! reader for the MNI152 masks embedded in the binary (`brainpipe-nifti` reads from paths; these
//! live in memory).

use std::io::Read;
use std::path::Path;

use brainpipe_nifti::{WriteOptions, XFORM_MNI152};
use flate2::read::MultiGzDecoder;

use crate::error::{IngestError, Result};

const HEADER_BYTES: usize = 348;
const VOX_OFFSET: usize = 352;

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

/// Reads the first 3D volume of a NIfTI-1 file (`.nii` or `.nii.gz`) held in `bytes`; `path`
/// only names it in errors.
pub(crate) fn read_volume(bytes: &[u8], path: &Path) -> Result<Volume> {
    let raw;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| IngestError::nifti(path, format!("gzip: {e}")))?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    if bytes.len() < HEADER_BYTES {
        return Err(IngestError::nifti(path, "shorter than a NIfTI-1 header"));
    }
    let big = match i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) {
        348 => false,
        _ if i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == 348 => true,
        _ => return Err(IngestError::nifti(path, "not a NIfTI-1 file (sizeof_hdr is not 348)")),
    };
    let i16_at = |at: usize| {
        let b = [bytes[at], bytes[at + 1]];
        if big { i16::from_be_bytes(b) } else { i16::from_le_bytes(b) }
    };
    let f32_at = |at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        f64::from(if big { f32::from_be_bytes(b) } else { f32::from_le_bytes(b) })
    };
    let mut dims = [1usize; 3];
    for (i, d) in dims.iter_mut().enumerate() {
        *d = usize::try_from(i16_at(42 + 2 * i)).unwrap_or(0).max(1);
    }
    let offset = (f32_at(108) as usize).max(VOX_OFFSET);
    let n: usize = dims.iter().product();
    let (width, datatype) = match i16_at(70) {
        2 => (1, 2),
        4 => (2, 4),
        8 => (4, 8),
        16 => (4, 16),
        64 => (8, 64),
        other => return Err(IngestError::nifti(path, format!("unsupported datatype {other}"))),
    };
    let body = bytes
        .get(offset..offset + n * width)
        .ok_or_else(|| IngestError::nifti(path, format!("data shorter than {n} voxels")))?;
    let data = body
        .chunks_exact(width)
        .map(|c| match (datatype, big) {
            (2, _) => f32::from(c[0]),
            (4, false) => f32::from(i16::from_le_bytes([c[0], c[1]])),
            (4, true) => f32::from(i16::from_be_bytes([c[0], c[1]])),
            (8, false) => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32,
            (8, true) => i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f32,
            (16, false) => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            (16, true) => f32::from_be_bytes([c[0], c[1], c[2], c[3]]),
            (_, false) => {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }
            (_, true) => {
                f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }
        })
        .collect();
    let mut affine = [[0.0; 4]; 3];
    if i16_at(254) > 0 {
        for (r, row) in affine.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = f32_at(280 + 16 * r + 4 * c);
            }
        }
    } else {
        // No sform: the pixdim scaling is all we trust (our shipped masks always have an sform).
        for (i, row) in affine.iter_mut().enumerate() {
            row[i] = f32_at(80 + 4 * i);
        }
    }
    Ok(Volume { dims, affine, data })
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
