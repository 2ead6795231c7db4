//! Streaming NIfTI-1 writes (`.nii` or `.nii.gz`), one volume at a time, with deterministic bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::error::NiftiError;
use crate::header::{Datatype, NIFTI1_HEADER_BYTES};

/// An element type the writer stores.
pub trait Element: Copy {
    /// Its NIfTI datatype.
    const DATATYPE: Datatype;
    /// Appends its little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DATATYPE: Datatype = $d;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
element!(u8, Datatype::U8);
element!(i16, Datatype::I16);
element!(i32, Datatype::I32);
element!(f32, Datatype::F32);
element!(f64, Datatype::F64);

/// NIfTI xform code for scanner-anatomical coordinates.
pub const XFORM_SCANNER: i16 = 1;
/// NIfTI xform code for MNI152 space.
pub const XFORM_MNI152: i16 = 4;

/// What to write besides the data.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// Voxel → world affine (rows; the last row is `0 0 0 1`).
    pub affine: [[f64; 4]; 4],
    /// qform and sform code (both set to `affine`).
    pub xform_code: i16,
    /// Seconds per volume for time series (pixdim[4], with the `s` unit); `None` for beta series.
    pub tr_s: Option<f64>,
    /// Gzip level 0–9, or `None` for an uncompressed `.nii`.
    pub gzip_level: Option<u32>,
}

enum Sink {
    Plain(BufWriter<File>),
    Gzip(Box<GzEncoder<BufWriter<File>>>),
}

impl Sink {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w,
        }
    }
}

/// Writes a 3-D or 4-D NIfTI-1 file volume by volume.
pub struct NiftiWriter<T: Element> {
    path: PathBuf,
    sink: Sink,
    volume_len: usize,
    volumes: usize,
    written: usize,
    buf: Vec<u8>,
    marker: std::marker::PhantomData<T>,
}

impl<T: Element> NiftiWriter<T> {
    /// Creates `path` for an array of `shape` (`[X, Y, Z]` or `[X, Y, Z, T]`).
    pub fn create(
        path: &Path,
        shape: &[usize],
        options: &WriteOptions,
    ) -> Result<Self, NiftiError> {
        let bad = |message: String| NiftiError::Malformed { path: path.to_path_buf(), message };
        if !(3..=4).contains(&shape.len()) || shape.iter().any(|&d| d == 0 || d > i16::MAX as usize)
        {
            return Err(bad(format!("cannot write shape {shape:?}: need 3 or 4 dims of 1..32767")));
        }
        let io = |source| NiftiError::Io { path: path.to_path_buf(), source };
        let file = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
        let mut sink = match options.gzip_level {
            Some(level) => {
                Sink::Gzip(Box::new(GzEncoder::new(file, Compression::new(level.min(9)))))
            }
            None => Sink::Plain(file),
        };
        let header = header_bytes(shape, T::DATATYPE, options);
        sink.writer().write_all(&header).map_err(io)?;
        Ok(NiftiWriter {
            path: path.to_path_buf(),
            sink,
            volume_len: shape[..3].iter().product(),
            volumes: shape.get(3).copied().unwrap_or(1),
            written: 0,
            buf: Vec::new(),
            marker: std::marker::PhantomData,
        })
    }

    /// Appends one 3-D volume in file order (x fastest).
    pub fn write_volume(&mut self, values: &[T]) -> Result<(), NiftiError> {
        if values.len() != self.volume_len || self.written >= self.volumes {
            return Err(NiftiError::Malformed {
                path: self.path.clone(),
                message: format!(
                    "volume {} of {} values; the file holds {} volumes of {}",
                    self.written,
                    values.len(),
                    self.volumes,
                    self.volume_len
                ),
            });
        }
        self.buf.clear();
        self.buf.reserve(values.len() * T::DATATYPE.size());
        for &v in values {
            v.put(&mut self.buf);
        }
        let path = &self.path;
        self.sink
            .writer()
            .write_all(&self.buf)
            .map_err(|source| NiftiError::Io { path: path.clone(), source })?;
        self.written += 1;
        Ok(())
    }

    /// Finishes the file; every volume must have been written.
    pub fn finish(self) -> Result<(), NiftiError> {
        let io = |source| NiftiError::Io { path: self.path.clone(), source };
        if self.written != self.volumes {
            return Err(NiftiError::Malformed {
                path: self.path.clone(),
                message: format!("{} of {} volumes written", self.written, self.volumes),
            });
        }
        let file = match self.sink {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w.finish().map_err(io)?,
        };
        file.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)
    }
}

/// Writes a whole 3-D volume.
pub fn write_volume<T: Element>(
    path: &Path,
    shape: [usize; 3],
    values: &[T],
    options: &WriteOptions,
) -> Result<(), NiftiError> {
    let mut writer = NiftiWriter::<T>::create(path, &shape, options)?;
    writer.write_volume(values)?;
    writer.finish()
}

/// The 352 bytes before the data: a NIfTI-1 header and an empty extension flag.
fn header_bytes(shape: &[usize], datatype: Datatype, options: &WriteOptions) -> Vec<u8> {
    let mut h = vec![0u8; NIFTI1_HEADER_BYTES + 4];
    let put_i16 =
        |h: &mut Vec<u8>, at: usize, v: i16| h[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 = |h: &mut Vec<u8>, at: usize, v: f64| {
        h[at..at + 4].copy_from_slice(&(v as f32).to_le_bytes())
    };
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[38] = b'r'; // regular, as nibabel writes
    put_i16(&mut h, 40, shape.len() as i16);
    for (i, &d) in shape.iter().enumerate() {
        put_i16(&mut h, 42 + 2 * i, d as i16);
    }
    for i in shape.len()..7 {
        put_i16(&mut h, 42 + 2 * i, 1);
    }
    put_i16(&mut h, 70, datatype.code());
    put_i16(&mut h, 72, (datatype.size() * 8) as i16);
    let (quatern, qoffset, zooms, qfac) = qform_from_affine(&options.affine);
    put_f32(&mut h, 76, qfac);
    for (i, z) in zooms.iter().enumerate() {
        put_f32(&mut h, 80 + 4 * i, *z);
    }
    put_f32(&mut h, 92, options.tr_s.unwrap_or(1.0));
    put_f32(&mut h, 108, 352.0); // vox_offset
    put_f32(&mut h, 112, 1.0); // scl_slope
    h[123] = if options.tr_s.is_some() { 2 | 8 } else { 2 }; // mm (+ s)
    put_i16(&mut h, 252, options.xform_code);
    put_i16(&mut h, 254, options.xform_code);
    for (i, q) in quatern.iter().chain(qoffset.iter()).enumerate() {
        put_f32(&mut h, 256 + 4 * i, *q);
    }
    for r in 0..3 {
        for c in 0..4 {
            put_f32(&mut h, 280 + 16 * r + 4 * c, options.affine[r][c]);
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

/// Quaternion (b, c, d), offsets, voxel sizes and qfac of an affine whose 3×3 part is a rotation
/// times positive scales (possibly with one reflection, carried by qfac).
fn qform_from_affine(m: &[[f64; 4]; 4]) -> ([f64; 3], [f64; 3], [f64; 3], f64) {
    let column = |j: usize| [m[0][j], m[1][j], m[2][j]];
    let norm = |v: [f64; 3]| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    let zooms = [0, 1, 2].map(|j| norm(column(j)).max(f64::MIN_POSITIVE));
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = m[i][j] / zooms[j];
        }
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 { -1.0 } else { 1.0 };
    if qfac < 0.0 {
        for row in &mut r {
            row[2] = -row[2];
        }
    }
    // Rotation matrix → unit quaternion with a >= 0 (NIfTI stores b, c, d).
    let trace = r[0][0] + r[1][1] + r[2][2];
    let (a, b, c, d) = if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        (0.25 * s, (r[2][1] - r[1][2]) / s, (r[0][2] - r[2][0]) / s, (r[1][0] - r[0][1]) / s)
    } else if r[0][0] > r[1][1] && r[0][0] > r[2][2] {
        let s = (1.0 + r[0][0] - r[1][1] - r[2][2]).sqrt() * 2.0;
        ((r[2][1] - r[1][2]) / s, 0.25 * s, (r[0][1] + r[1][0]) / s, (r[0][2] + r[2][0]) / s)
    } else if r[1][1] > r[2][2] {
        let s = (1.0 + r[1][1] - r[0][0] - r[2][2]).sqrt() * 2.0;
        ((r[0][2] - r[2][0]) / s, (r[0][1] + r[1][0]) / s, 0.25 * s, (r[1][2] + r[2][1]) / s)
    } else {
        let s = (1.0 + r[2][2] - r[0][0] - r[1][1]).sqrt() * 2.0;
        ((r[1][0] - r[0][1]) / s, (r[0][2] + r[2][0]) / s, (r[1][2] + r[2][1]) / s, 0.25 * s)
    };
    let sign = if a < 0.0 { -1.0 } else { 1.0 };
    ([b * sign, c * sign, d * sign], [m[0][3], m[1][3], m[2][3]], zooms, qfac)
}
