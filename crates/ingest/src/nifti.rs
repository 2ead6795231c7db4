//! Minimal NIfTI-1 (`.nii.gz`) writing and reading.
//!
//! Written by hand rather than through the `nifti` crate because a Pereira-size subject
//! (91×109×91 voxels × 540 trials of float32, about 2 GB) must stream to disk volume by volume:
//! [`NiftiWriter`] writes the 352-byte header and then each volume straight into a gzip stream,
//! so memory holds one volume at a time. Gzip output is deterministic (no name, mtime 0).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::error::{IngestError, Result};

/// NIfTI code for "aligned to MNI152 space", used for both qform and sform.
const XFORM_MNI152: i16 = 4;
const HEADER_BYTES: usize = 348;
const VOX_OFFSET: usize = 352;

/// Voxel types this module writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dtype {
    U8,
    I16,
    F32,
}

impl Dtype {
    fn code(self) -> i16 {
        match self {
            Dtype::U8 => 2,
            Dtype::I16 => 4,
            Dtype::F32 => 16,
        }
    }
    fn bits(self) -> i16 {
        match self {
            Dtype::U8 => 8,
            Dtype::I16 => 16,
            Dtype::F32 => 32,
        }
    }
}

/// A 3×4 voxel-to-world (mm) affine.
pub(crate) type Affine = [[f64; 4]; 3];

/// What a header says: grid, affine, dtype and, for 4D series, the step of the 4th axis.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub dims: Vec<usize>,
    pub affine: Affine,
    pub dtype: Dtype,
    /// Seconds per volume for a time series (`None`: the 4th axis counts trials, not time).
    pub tr_s: Option<f64>,
    pub descrip: String,
}

impl Header {
    fn to_bytes(&self) -> Vec<u8> {
        let mut h = vec![0u8; VOX_OFFSET];
        let put_i16 =
            |h: &mut [u8], at: usize, v: i16| h[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put_f32 =
            |h: &mut [u8], at: usize, v: f32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
        h[0..4].copy_from_slice(&(HEADER_BYTES as i32).to_le_bytes());
        h[38] = b'r';
        put_i16(&mut h, 40, self.dims.len() as i16);
        for (i, &d) in self.dims.iter().enumerate() {
            put_i16(&mut h, 42 + 2 * i, i16::try_from(d).unwrap_or(i16::MAX));
        }
        for i in self.dims.len()..7 {
            put_i16(&mut h, 42 + 2 * i, 1);
        }
        put_i16(&mut h, 70, self.dtype.code());
        put_i16(&mut h, 72, self.dtype.bits());
        let (quat, offset, zooms, qfac) = affine_to_quaternion(&self.affine);
        put_f32(&mut h, 76, qfac as f32);
        for (i, z) in zooms.iter().enumerate() {
            put_f32(&mut h, 80 + 4 * i, *z as f32);
        }
        put_f32(&mut h, 92, self.tr_s.unwrap_or(1.0) as f32);
        for i in 5..8 {
            put_f32(&mut h, 76 + 4 * i, 1.0);
        }
        put_f32(&mut h, 108, VOX_OFFSET as f32);
        put_f32(&mut h, 112, 1.0);
        // xyzt_units: mm (2), plus seconds (8) when the 4th axis is time.
        h[123] = if self.tr_s.is_some() { 2 | 8 } else { 2 };
        let descrip = self.descrip.as_bytes();
        let n = descrip.len().min(79);
        h[148..148 + n].copy_from_slice(&descrip[..n]);
        put_i16(&mut h, 252, XFORM_MNI152);
        put_i16(&mut h, 254, XFORM_MNI152);
        for (i, q) in quat.iter().chain(offset.iter()).enumerate() {
            put_f32(&mut h, 256 + 4 * i, *q as f32);
        }
        for (r, row) in self.affine.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                put_f32(&mut h, 280 + 16 * r + 4 * c, *v as f32);
            }
        }
        h[344..348].copy_from_slice(b"n+1\0");
        h
    }

    fn volume_len(&self) -> usize {
        self.dims.iter().take(3).product()
    }
}

/// The NIfTI quaternion form of `affine` (after nifti1_io's `mat44_to_quatern`): (b, c, d),
/// offset, voxel sizes and qfac.
fn affine_to_quaternion(affine: &Affine) -> ([f64; 3], [f64; 3], [f64; 3], f64) {
    let mut r = [[0.0; 3]; 3];
    let mut zooms = [0.0; 3];
    for c in 0..3 {
        zooms[c] =
            (0..3).map(|i| affine[i][c] * affine[i][c]).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        for i in 0..3 {
            r[i][c] = affine[i][c] / zooms[c];
        }
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 { -1.0 } else { 1.0 };
    if det < 0.0 {
        for row in &mut r {
            row[2] = -row[2];
        }
    }
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (mut a, mut b, mut c, mut d);
    if trace > 0.5 {
        a = 0.5 * trace.sqrt();
        b = 0.25 * (r[2][1] - r[1][2]) / a;
        c = 0.25 * (r[0][2] - r[2][0]) / a;
        d = 0.25 * (r[1][0] - r[0][1]) / a;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r[0][1] + r[1][0]) / b;
            d = 0.25 * (r[0][2] + r[2][0]) / b;
            a = 0.25 * (r[2][1] - r[1][2]) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r[0][1] + r[1][0]) / c;
            d = 0.25 * (r[1][2] + r[2][1]) / c;
            a = 0.25 * (r[0][2] - r[2][0]) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r[0][2] + r[2][0]) / d;
            c = 0.25 * (r[1][2] + r[2][1]) / d;
            a = 0.25 * (r[1][0] - r[0][1]) / d;
        }
        if a < 0.0 {
            (a, b, c, d) = (-a, -b, -c, -d);
        }
    }
    let _ = a;
    ([b, c, d], [affine[0][3], affine[1][3], affine[2][3]], zooms, qfac)
}

/// Streams a NIfTI-1 volume series into a `.nii.gz`, one 3D volume at a time.
pub(crate) struct NiftiWriter {
    path: PathBuf,
    encoder: GzEncoder<BufWriter<File>>,
    header: Header,
    written: usize,
}

impl NiftiWriter {
    /// Creates `path` and writes the header. `fast` trades compression ratio for speed (the
    /// float series are mostly noise and barely compress anyway).
    pub fn create(path: &Path, header: Header, fast: bool) -> Result<Self> {
        let file = File::create(path).map_err(|e| IngestError::io(path, e))?;
        let level = if fast { Compression::fast() } else { Compression::default() };
        let mut encoder = GzEncoder::new(BufWriter::with_capacity(1 << 20, file), level);
        encoder.write_all(&header.to_bytes()).map_err(|e| IngestError::io(path, e))?;
        Ok(NiftiWriter { path: path.to_path_buf(), encoder, header, written: 0 })
    }

    /// Appends one 3D volume of f32 (x fastest, as NIfTI stores it).
    pub fn write_f32(&mut self, volume: &[f32]) -> Result<()> {
        self.check(volume.len(), Dtype::F32)?;
        let mut bytes = Vec::with_capacity(volume.len() * 4);
        for v in volume {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.encoder.write_all(&bytes).map_err(|e| IngestError::io(&self.path, e))
    }

    /// Appends one 3D volume of i16.
    pub fn write_i16(&mut self, volume: &[i16]) -> Result<()> {
        self.check(volume.len(), Dtype::I16)?;
        let bytes: Vec<u8> = volume.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.encoder.write_all(&bytes).map_err(|e| IngestError::io(&self.path, e))
    }

    /// Appends one 3D volume of u8.
    pub fn write_u8(&mut self, volume: &[u8]) -> Result<()> {
        self.check(volume.len(), Dtype::U8)?;
        self.encoder.write_all(volume).map_err(|e| IngestError::io(&self.path, e))
    }

    fn check(&mut self, len: usize, dtype: Dtype) -> Result<()> {
        let volumes = self.header.dims.get(3).copied().unwrap_or(1);
        if len != self.header.volume_len() || dtype != self.header.dtype || self.written >= volumes
        {
            return Err(IngestError::nifti(
                &self.path,
                "volume does not fit the header (internal error)",
            ));
        }
        self.written += 1;
        Ok(())
    }

    /// Closes the gzip stream after checking every declared volume was written.
    pub fn finish(self) -> Result<()> {
        let volumes = self.header.dims.get(3).copied().unwrap_or(1);
        if self.written != volumes {
            return Err(IngestError::nifti(
                &self.path,
                format!("{} of {volumes} volumes written (internal error)", self.written),
            ));
        }
        let writer = self.encoder.finish().map_err(|e| IngestError::io(&self.path, e))?;
        let file = writer.into_inner().map_err(|e| IngestError::io(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| IngestError::io(&self.path, e))
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
    fn written_file_reads_back_with_affine_and_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.nii.gz");
        let affine = [[-6.0, 0.0, 0.0, 88.0], [0.0, 6.0, 0.0, -124.0], [0.0, 0.0, 6.0, -70.0]];
        let header = Header {
            dims: vec![2, 3, 4, 2],
            affine,
            dtype: Dtype::F32,
            tr_s: None,
            descrip: "t".into(),
        };
        let mut w = NiftiWriter::create(&path, header, true).expect("create");
        let vol: Vec<f32> = (0..24).map(|i| i as f32).collect();
        w.write_f32(&vol).expect("write");
        assert!(NiftiWriter::finish(w).is_err(), "a missing volume is refused");
        let header = Header {
            dims: vec![2, 3, 4],
            affine,
            dtype: Dtype::F32,
            tr_s: None,
            descrip: "t".into(),
        };
        let mut w = NiftiWriter::create(&path, header, false).expect("create");
        w.write_f32(&vol).expect("write");
        w.finish().expect("finish");
        let bytes = std::fs::read(&path).expect("read");
        let back = read_volume(&bytes, &path).expect("parse");
        assert_eq!(back.dims, [2, 3, 4]);
        assert_eq!(back.affine, affine);
        assert_eq!(back.data, vol);
    }

    #[test]
    fn quaternion_of_a_flipped_x_axis() {
        let affine = [[-2.0, 0.0, 0.0, 90.0], [0.0, 2.0, 0.0, -126.0], [0.0, 0.0, 2.0, -72.0]];
        let (quat, offset, zooms, qfac) = affine_to_quaternion(&affine);
        assert_eq!((quat, qfac), ([0.0, 1.0, 0.0], -1.0));
        assert_eq!(offset, [90.0, -126.0, -72.0]);
        assert_eq!(zooms, [2.0; 3]);
    }

    #[test]
    fn garbage_is_a_one_line_error() {
        let err = read_volume(b"not a nifti at all", Path::new("x.nii")).expect_err("garbage");
        assert!(err.to_string().starts_with("x.nii: nifti:"), "{err}");
    }
}
