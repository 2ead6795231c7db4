//! NIfTI-1 and NIfTI-2 headers, as one [`Header`].

use std::io::Read;
use std::path::Path;

use crate::error::NiftiError;

/// Bytes of a NIfTI-1 header.
pub const NIFTI1_HEADER_BYTES: usize = 348;
/// Bytes of a NIfTI-2 header.
pub const NIFTI2_HEADER_BYTES: usize = 540;

/// Element type of the data, with its NIfTI code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datatype {
    /// 2
    U8,
    /// 256
    I8,
    /// 4
    I16,
    /// 512
    U16,
    /// 8
    I32,
    /// 768
    U32,
    /// 1024
    I64,
    /// 1280
    U64,
    /// 16
    F32,
    /// 64
    F64,
}

impl Datatype {
    /// The type of NIfTI `code`, or an error naming what is unsupported.
    pub fn from_code(code: i16) -> Result<Self, String> {
        Ok(match code {
            2 => Datatype::U8,
            256 => Datatype::I8,
            4 => Datatype::I16,
            512 => Datatype::U16,
            8 => Datatype::I32,
            768 => Datatype::U32,
            1024 => Datatype::I64,
            1280 => Datatype::U64,
            16 => Datatype::F32,
            64 => Datatype::F64,
            32 | 1792 | 2048 => {
                return Err(format!("complex data (datatype {code}) is not supported"));
            }
            128 | 2304 => return Err(format!("RGB data (datatype {code}) is not supported")),
            1 => return Err("1-bit data (datatype 1) is not supported".to_owned()),
            1536 => return Err("128-bit float data (datatype 1536) is not supported".to_owned()),
            other => return Err(format!("unknown datatype code {other}")),
        })
    }

    /// The NIfTI code.
    pub fn code(self) -> i16 {
        match self {
            Datatype::U8 => 2,
            Datatype::I8 => 256,
            Datatype::I16 => 4,
            Datatype::U16 => 512,
            Datatype::I32 => 8,
            Datatype::U32 => 768,
            Datatype::I64 => 1024,
            Datatype::U64 => 1280,
            Datatype::F32 => 16,
            Datatype::F64 => 64,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Datatype::U8 | Datatype::I8 => 1,
            Datatype::I16 | Datatype::U16 => 2,
            Datatype::I32 | Datatype::U32 | Datatype::F32 => 4,
            Datatype::I64 | Datatype::U64 | Datatype::F64 => 8,
        }
    }

    /// Whether values are floating point.
    pub fn is_float(self) -> bool {
        matches!(self, Datatype::F32 | Datatype::F64)
    }
}

/// A NIfTI header, whichever version it came from, with what a reader needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// 1 or 2.
    pub version: u8,
    /// Whether multi-byte values are little-endian.
    pub little_endian: bool,
    /// Sizes of the used dimensions (`dim[1..=dim[0]]`).
    pub dims: Vec<usize>,
    /// Element type.
    pub datatype: Datatype,
    /// `pixdim[0..8]` (pixdim[0] is the qform's qfac).
    pub pixdim: [f64; 8],
    /// Byte offset of the data in the data file.
    pub vox_offset: u64,
    /// Scaling slope (`0` or non-finite: none).
    pub scl_slope: f64,
    /// Scaling intercept.
    pub scl_inter: f64,
    /// qform code.
    pub qform_code: i32,
    /// sform code.
    pub sform_code: i32,
    /// Quaternion b, c, d.
    pub quatern: [f64; 3],
    /// qform offsets x, y, z.
    pub qoffset: [f64; 3],
    /// sform rows.
    pub srow: [[f64; 4]; 3],
    /// `xyzt_units`.
    pub xyzt_units: i32,
    /// Whether the data are in a separate `.img` file (magic `ni1`/`ni2`).
    pub pair: bool,
}

impl Header {
    /// Number of elements in one 3-D volume (product of the first three dims, missing dims = 1).
    pub fn volume_len(&self) -> usize {
        (0..3).map(|i| self.dims.get(i).copied().unwrap_or(1)).product()
    }

    /// Number of 3-D volumes (product of dims 4..7, at least 1).
    pub fn volumes(&self) -> usize {
        self.dims.iter().skip(3).product::<usize>().max(1)
    }

    /// The spatial shape `[X, Y, Z]` (missing dims = 1).
    pub fn shape3(&self) -> [usize; 3] {
        [0, 1, 2].map(|i| self.dims.get(i).copied().unwrap_or(1))
    }

    /// Scaling to apply as nibabel does: `None` when `scl_slope` is 0 or not finite.
    pub fn scaling(&self) -> Option<(f64, f64)> {
        (self.scl_slope != 0.0 && self.scl_slope.is_finite())
            .then_some((self.scl_slope, self.scl_inter))
    }

    /// The voxel → world affine with nibabel's precedence: sform if `sform_code > 0`, else qform
    /// if `qform_code > 0`, else the Analyze-style base affine from the voxel sizes.
    pub fn affine(&self) -> [[f64; 4]; 4] {
        if self.sform_code > 0 {
            let s = self.srow;
            return [s[0], s[1], s[2], [0.0, 0.0, 0.0, 1.0]];
        }
        if self.qform_code > 0 {
            return self.qform_affine();
        }
        self.base_affine()
    }

    /// The affine from the quaternion fields (NIfTI method 2).
    pub fn qform_affine(&self) -> [[f64; 4]; 4] {
        let [b, c, d] = self.quatern;
        // As nibabel's quaternions.fillpositive: a = sqrt(1 - |bcd|^2), treating tiny negatives as 0.
        let w2 = 1.0 - (b * b + c * c + d * d);
        let a = if w2 < 0.0 { 0.0 } else { w2.sqrt() };
        let r = [
            [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
            [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
            [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ];
        let qfac = if self.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let zooms = [self.pixdim[1], self.pixdim[2], self.pixdim[3] * qfac];
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = r[i][j] * zooms[j];
            }
            m[i][3] = self.qoffset[i];
        }
        m[3][3] = 1.0;
        m
    }

    /// nibabel's `get_base_affine`: voxel sizes, x flipped, origin at the volume centre.
    pub fn base_affine(&self) -> [[f64; 4]; 4] {
        let shape = self.shape3();
        let z = [self.pixdim[1], self.pixdim[2], self.pixdim[3]]
            .map(|v| if v == 0.0 { 1.0 } else { v });
        let origin = |i: usize| (shape[i] as f64 - 1.0) / 2.0;
        [
            [-z[0], 0.0, 0.0, origin(0) * z[0]],
            [0.0, z[1], 0.0, -origin(1) * z[1]],
            [0.0, 0.0, z[2], -origin(2) * z[2]],
            [0.0, 0.0, 0.0, 1.0],
        ]
    }
}

/// Parses a header from its first bytes (up to [`NIFTI2_HEADER_BYTES`]), detecting the version and
/// byte order from `sizeof_hdr`. `path` is only used in messages.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Header, NiftiError> {
    let bad = |message: String| NiftiError::Malformed { path: path.to_path_buf(), message };
    if bytes.len() < 4 {
        return Err(bad("shorter than a NIfTI header".to_owned()));
    }
    let le = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let be = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let (version, little_endian) = match (le, be) {
        (348, _) => (1, true),
        (_, 348) => (1, false),
        (540, _) => (2, true),
        (_, 540) => (2, false),
        _ => return Err(bad(format!("not a NIfTI file: sizeof_hdr is {le}, expected 348 or 540"))),
    };
    let needed = if version == 1 { NIFTI1_HEADER_BYTES } else { NIFTI2_HEADER_BYTES };
    if bytes.len() < needed {
        return Err(bad(format!("truncated header: {} of {needed} bytes", bytes.len())));
    }
    let fields = Fields { bytes, le: little_endian };
    if version == 1 { parse1(path, &fields) } else { parse2(path, &fields) }
}

/// Reads little- or big-endian fields at byte offsets.
struct Fields<'a> {
    bytes: &'a [u8],
    le: bool,
}

impl Fields<'_> {
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[at..at + N]);
        if !self.le {
            out.reverse();
        }
        out
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.array(at))
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.array(at))
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.array(at))
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.array(at))
    }
}

fn check_dims(path: &Path, raw: &[i64; 8]) -> Result<Vec<usize>, NiftiError> {
    let bad = |message: String| NiftiError::Malformed { path: path.to_path_buf(), message };
    let n = raw[0];
    if !(1..=7).contains(&n) {
        return Err(bad(format!("dim[0] is {n}, must be 1..7")));
    }
    let mut dims = Vec::with_capacity(n as usize);
    for (i, &d) in raw.iter().enumerate().skip(1).take(n as usize) {
        if d < 0 {
            return Err(bad(format!("dim[{i}] is negative ({d})")));
        }
        // As the writer and the `nifti` crate: a 0 leaves no voxel, and a file of empty volumes
        // would stream as many of them as its other dims claim (trillions, from 400 bytes).
        if d == 0 {
            return Err(bad(format!("dim[{i}] is 0: every used dimension needs at least 1 voxel")));
        }
        dims.push(usize::try_from(d).map_err(|_| bad(format!("dim[{i}] too large")))?);
    }
    // Every size computed from the dims (values, bytes of the widest datatype) must fit a usize:
    // NIfTI-2's 64-bit dims can claim more than any machine addresses.
    let fits = dims.iter().try_fold(16usize, |acc, &d| acc.checked_mul(d.max(1)));
    if fits.is_none() {
        return Err(bad(format!("dims {dims:?} claim more data than can be addressed")));
    }
    Ok(dims)
}

/// NIfTI-1: the field layout is read by the `nifti` crate; we add the checks it does not make.
fn parse1(path: &Path, f: &Fields<'_>) -> Result<Header, NiftiError> {
    let bad = |message: String| NiftiError::Malformed { path: path.to_path_buf(), message };
    let mut raw = [0i64; 8];
    for (i, slot) in raw.iter_mut().enumerate() {
        *slot = i64::from(f.i16(40 + 2 * i));
    }
    let dims = check_dims(path, &raw)?;
    let magic = &f.bytes[344..348];
    let pair = match &magic[..3] {
        b"n+1" => false,
        b"ni1" => true,
        _ => return Err(bad(format!("bad NIfTI-1 magic {:?}", String::from_utf8_lossy(magic)))),
    };
    let h = nifti::NiftiHeader::from_reader(&f.bytes[..NIFTI1_HEADER_BYTES])
        .map_err(|e| bad(format!("invalid NIfTI-1 header: {e}")))?;
    let datatype = Datatype::from_code(h.datatype).map_err(bad)?;
    let vox_offset = f64::from(h.vox_offset);
    if !(vox_offset.is_finite() && vox_offset >= 0.0) {
        return Err(bad(format!("vox_offset is {vox_offset}")));
    }
    let row = |r: [f32; 4]| r.map(f64::from);
    Ok(Header {
        version: 1,
        little_endian: f.le,
        dims,
        datatype,
        pixdim: h.pixdim.map(f64::from),
        // NIfTI-1 stores vox_offset as a float; single files put the data at >= 352.
        vox_offset: if pair { vox_offset as u64 } else { (vox_offset as u64).max(352) },
        scl_slope: f64::from(h.scl_slope),
        scl_inter: f64::from(h.scl_inter),
        qform_code: i32::from(h.qform_code),
        sform_code: i32::from(h.sform_code),
        quatern: [h.quatern_b, h.quatern_c, h.quatern_d].map(f64::from),
        qoffset: [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from),
        srow: [row(h.srow_x), row(h.srow_y), row(h.srow_z)],
        xyzt_units: i32::from(h.xyzt_units),
        pair,
    })
}

/// NIfTI-2: 540 bytes, 64-bit dims and doubles (the `nifti` crate reads NIfTI-1 only).
fn parse2(path: &Path, f: &Fields<'_>) -> Result<Header, NiftiError> {
    let bad = |message: String| NiftiError::Malformed { path: path.to_path_buf(), message };
    let magic = &f.bytes[4..7];
    let pair = match magic {
        b"n+2" => false,
        b"ni2" => true,
        _ => return Err(bad(format!("bad NIfTI-2 magic {:?}", String::from_utf8_lossy(magic)))),
    };
    let datatype = Datatype::from_code(f.i16(12)).map_err(bad)?;
    let mut raw = [0i64; 8];
    for (i, slot) in raw.iter_mut().enumerate() {
        *slot = f.i64(16 + 8 * i);
    }
    let dims = check_dims(path, &raw)?;
    let mut pixdim = [0.0; 8];
    for (i, slot) in pixdim.iter_mut().enumerate() {
        *slot = f.f64(104 + 8 * i);
    }
    let vox_offset = f.i64(168);
    if vox_offset < 0 {
        return Err(bad(format!("vox_offset is {vox_offset}")));
    }
    let srow = |at: usize| [f.f64(at), f.f64(at + 8), f.f64(at + 16), f.f64(at + 24)];
    Ok(Header {
        version: 2,
        little_endian: f.le,
        dims,
        datatype,
        pixdim,
        vox_offset: vox_offset as u64,
        scl_slope: f.f64(176),
        scl_inter: f.f64(184),
        qform_code: f.i32(344),
        sform_code: f.i32(348),
        quatern: [f.f64(352), f.f64(360), f.f64(368)],
        qoffset: [f.f64(376), f.f64(384), f.f64(392)],
        srow: [srow(400), srow(432), srow(464)],
        xyzt_units: f.i32(500),
        pair,
    })
}

/// Reads up to `n` bytes (fewer only at end of stream).
pub(crate) fn read_up_to(reader: &mut dyn Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    reader.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}
