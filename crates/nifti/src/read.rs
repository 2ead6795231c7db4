//! Streaming reads: one 3-D volume at a time, converted to `f32` with nibabel's scaling rule.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::error::NiftiError;
use crate::header::{
    Datatype, Header, NIFTI1_HEADER_BYTES, NIFTI2_HEADER_BYTES, parse, read_up_to,
};

/// Reads a NIfTI file's volumes in order, holding one volume in memory.
///
/// Accepts `.nii`, `.nii.gz`, and `.hdr`/`.img` pairs (either name, either gzipped); gzip is
/// recognised by its magic bytes, not the file name.
pub struct VolumeReader {
    path: PathBuf,
    header: Header,
    data: Box<dyn Read + Send>,
    next: usize,
    raw: Vec<u8>,
    scaling: Option<(f64, f64)>,
    /// The first volume, when [`VolumeReader::check_data`] read it ahead.
    ahead: Option<Vec<f32>>,
}

/// Bytes a volume buffer starts with before it has seen data: the buffer then doubles as data
/// arrive, so memory follows what the file holds, never what its header claims.
const FIRST_CHUNK_BYTES: usize = 1 << 20;

fn open_maybe_gz(path: &Path) -> Result<(Box<dyn Read + Send>, bool, u64), NiftiError> {
    let io = |source| NiftiError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut magic = [0u8; 2];
    let gz = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    drop(file);
    let file = File::open(path).map_err(io)?;
    let reader: Box<dyn Read + Send> = if gz {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file)))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    Ok((reader, gz, len))
}

/// For a pair member, the `.hdr` and `.img` paths (keeping a `.gz` suffix where the file has one).
fn pair_paths(path: &Path) -> Option<(PathBuf, PathBuf)> {
    let name = path.file_name()?.to_str()?;
    let (stem, gz) = name.strip_suffix(".gz").map_or((name, ""), |s| (s, ".gz"));
    let (base, _) = stem.rsplit_once('.')?;
    let with = |ext: &str| {
        let plain = path.with_file_name(format!("{base}.{ext}"));
        let zipped = path.with_file_name(format!("{base}.{ext}{gz}"));
        if zipped.exists() { zipped } else { plain }
    };
    Some((with("hdr"), with("img")))
}

/// nibabel's scaling rule, plus the one case it leaves undefined: a NaN slope on integer data.
fn check_scaling(path: &Path, header: &Header) -> Result<(), NiftiError> {
    let bad = |message: String| NiftiError::Malformed { path: path.to_path_buf(), message };
    if !header.datatype.is_float() && header.scl_slope.is_nan() {
        return Err(bad("scl_slope is NaN with integer data: the scaling is undefined".to_owned()));
    }
    if let Some((_, inter)) = header.scaling()
        && !inter.is_finite()
    {
        return Err(bad(format!("valid scl_slope but invalid scl_inter {inter}")));
    }
    Ok(())
}

/// A parsed header and the stream positioned right after it.
struct OpenHeader {
    header: Header,
    header_path: PathBuf,
    stream: Box<dyn Read + Send>,
    gz: bool,
    len: u64,
    consumed: u64,
}

fn open_header(path: &Path) -> Result<OpenHeader, NiftiError> {
    let lower = path.to_string_lossy().to_lowercase();
    let is_pair_name = [".hdr", ".img", ".hdr.gz", ".img.gz"].iter().any(|e| lower.ends_with(e));
    let header_path = if is_pair_name {
        pair_paths(path).map(|(h, _)| h).unwrap_or_else(|| path.to_path_buf())
    } else {
        path.to_path_buf()
    };
    let (mut stream, gz, len) = open_maybe_gz(&header_path)?;
    // Read NIfTI-1's 348 bytes, then NIfTI-2's remaining 192 if `sizeof_hdr` says 540: never past
    // the header, since a single file's data may start right after it.
    let mut bytes = read_up_to(stream.as_mut(), NIFTI1_HEADER_BYTES)
        .map_err(|e| corrupt(&header_path, gz, e))?;
    let is_540 = |b: &[u8]| {
        b.len() >= 4 && (b[0..4] == 540i32.to_le_bytes() || b[0..4] == 540i32.to_be_bytes())
    };
    if is_540(&bytes) {
        let rest = read_up_to(stream.as_mut(), NIFTI2_HEADER_BYTES - NIFTI1_HEADER_BYTES)
            .map_err(|e| corrupt(&header_path, gz, e))?;
        bytes.extend_from_slice(&rest);
    }
    let header = parse(&header_path, &bytes)?;
    Ok(OpenHeader { header, header_path, stream, gz, len, consumed: bytes.len() as u64 })
}

impl VolumeReader {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, NiftiError> {
        let OpenHeader { header, header_path, stream, gz: header_gz, len: header_len, consumed } =
            open_header(path)?;
        let bad = |message: String| NiftiError::Malformed { path: path.to_path_buf(), message };
        check_scaling(path, &header)?;
        let total = (header.volume_len() as u128)
            * (header.volumes() as u128)
            * header.datatype.size() as u128;
        let (data, data_path, data_gz, data_len, consumed) = if header.pair {
            let img = pair_paths(&header_path).map(|(_, i)| i).filter(|i| i.exists()).ok_or_else(
                || {
                    bad("header says `ni1`/`ni2` (separate .img) but no .img file was found"
                        .to_owned())
                },
            )?;
            let (data, gz, len) = open_maybe_gz(&img)?;
            (data, img, gz, len, 0u64)
        } else {
            (stream, header_path.clone(), header_gz, header_len, consumed)
        };
        if !data_gz {
            if header.vox_offset > data_len {
                return Err(NiftiError::Malformed {
                    path: data_path,
                    message: format!(
                        "vox_offset {} is past the end of the file ({data_len} bytes)",
                        header.vox_offset
                    ),
                });
            }
            if u128::from(header.vox_offset) + total > u128::from(data_len) {
                return Err(NiftiError::Malformed {
                    path: data_path,
                    message: format!(
                        "dims {:?} of {:?} need {} data bytes after offset {}, the file has {}",
                        header.dims,
                        header.datatype,
                        total,
                        header.vox_offset,
                        data_len.saturating_sub(header.vox_offset)
                    ),
                });
            }
        }
        let mut data = data;
        // Skip to the data (extensions, padding) in the stream we already started.
        let skip = header.vox_offset.checked_sub(consumed).ok_or_else(|| {
            bad(format!("vox_offset {} lies inside the header", header.vox_offset))
        })?;
        let skipped = std::io::copy(&mut data.as_mut().take(skip), &mut std::io::sink())
            .map_err(|e| corrupt(&data_path, data_gz, e))?;
        if skipped < skip {
            return Err(NiftiError::Malformed {
                path: data_path,
                message: format!("vox_offset {} is past the end of the data", header.vox_offset),
            });
        }
        let scaling = header.scaling();
        Ok(VolumeReader {
            path: data_path,
            header,
            data,
            next: 0,
            raw: Vec::new(),
            scaling,
            ahead: None,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file the data come from.
    pub fn data_path(&self) -> &Path {
        &self.path
    }

    /// Reads the first volume now and keeps it for the next [`VolumeReader::read_volume`]. A
    /// compressed file's size says nothing of its data, so a 1 KB `.nii.gz` can claim 1024⁴
    /// voxels: call this before sizing anything by the header (per-voxel tables, masks), and
    /// a file without that much data is refused having allocated only what it held.
    pub fn check_data(&mut self) -> Result<(), NiftiError> {
        if self.next == 0 && self.ahead.is_none() {
            let mut volume = Vec::new();
            if self.read_volume(&mut volume)? {
                self.next = 0;
                self.ahead = Some(volume);
            }
        }
        Ok(())
    }

    /// Reads the next 3-D volume into `out` (resized to [`Header::volume_len`]), in file order
    /// (x fastest). Returns `false` after the last volume.
    pub fn read_volume(&mut self, out: &mut Vec<f32>) -> Result<bool, NiftiError> {
        if self.next >= self.header.volumes() {
            return Ok(false);
        }
        if let Some(volume) = self.ahead.take() {
            *out = volume;
            self.next += 1;
            return Ok(true);
        }
        let n = self.header.volume_len();
        let bytes =
            n.checked_mul(self.header.datatype.size()).ok_or_else(|| NiftiError::Malformed {
                path: self.path.clone(),
                message: format!("dims {:?}: a volume's size overflows", self.header.dims),
            })?;
        if self.raw.capacity() < bytes {
            // Not yet seen this much data: grow with what arrives (see FIRST_CHUNK_BYTES).
            self.raw.clear();
        }
        let mut filled = 0;
        while filled < bytes {
            if filled == self.raw.len() {
                let grow = (bytes - filled).min(filled.max(FIRST_CHUNK_BYTES));
                self.raw.resize(filled + grow, 0);
            }
            match self.data.read(&mut self.raw[filled..]) {
                Ok(0) => {
                    return Err(NiftiError::Malformed {
                        path: self.path.clone(),
                        message: format!(
                            "data end in volume {} after {} of {bytes} bytes (truncated file, or dims larger than the data)",
                            self.next, filled
                        ),
                    });
                }
                Ok(k) => filled += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(corrupt(&self.path, true, e)),
            }
        }
        self.raw.truncate(bytes);
        out.resize(n, 0.0);
        convert(&self.raw, self.header.datatype, self.header.little_endian, self.scaling, out);
        self.next += 1;
        Ok(true)
    }
}

fn corrupt(path: &Path, gz: bool, e: std::io::Error) -> NiftiError {
    if gz
        && matches!(
            e.kind(),
            std::io::ErrorKind::InvalidInput
                | std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::UnexpectedEof
        )
    {
        NiftiError::Malformed {
            path: path.to_path_buf(),
            message: format!("corrupt or truncated gzip stream: {e}"),
        }
    } else {
        NiftiError::Io { path: path.to_path_buf(), source: e }
    }
}

/// Converts raw elements to `f32`, applying `value * slope + inter` in `f64` when scaled.
fn convert(raw: &[u8], dtype: Datatype, le: bool, scaling: Option<(f64, f64)>, out: &mut [f32]) {
    macro_rules! each {
        ($t:ty, $n:literal) => {{
            let chunks = raw.chunks_exact($n).zip(out.iter_mut());
            match (le, scaling) {
                (true, None) => chunks.for_each(|(b, o)| {
                    *o = <$t>::from_le_bytes(b.try_into().expect("chunk size")) as f32
                }),
                (false, None) => chunks.for_each(|(b, o)| {
                    *o = <$t>::from_be_bytes(b.try_into().expect("chunk size")) as f32
                }),
                (true, Some((s, i))) => chunks.for_each(|(b, o)| {
                    *o = (<$t>::from_le_bytes(b.try_into().expect("chunk size")) as f64 * s + i)
                        as f32
                }),
                (false, Some((s, i))) => chunks.for_each(|(b, o)| {
                    *o = (<$t>::from_be_bytes(b.try_into().expect("chunk size")) as f64 * s + i)
                        as f32
                }),
            }
        }};
    }
    match dtype {
        Datatype::U8 => each!(u8, 1),
        Datatype::I8 => each!(i8, 1),
        Datatype::I16 => each!(i16, 2),
        Datatype::U16 => each!(u16, 2),
        Datatype::I32 => each!(i32, 4),
        Datatype::U32 => each!(u32, 4),
        Datatype::I64 => each!(i64, 8),
        Datatype::U64 => each!(u64, 8),
        Datatype::F32 => each!(f32, 4),
        Datatype::F64 => each!(f64, 8),
    }
}

/// Reads every volume of `path` into one `f32` array (volume after volume, x fastest).
pub fn read_f32(path: &Path) -> Result<(Header, Vec<f32>), NiftiError> {
    let mut reader = VolumeReader::open(path)?;
    reader.check_data()?;
    let mut all = Vec::new();
    let mut volume = Vec::new();
    while reader.read_volume(&mut volume)? {
        all.extend_from_slice(&volume);
    }
    Ok((reader.header, all))
}

/// Reads only the header of `path` (for a pair, the `.hdr`; the data are not checked).
pub fn read_header(path: &Path) -> Result<Header, NiftiError> {
    Ok(open_header(path)?.header)
}

/// Reads every volume of a single-file NIfTI (`.nii` or `.nii.gz` bytes) held in memory, e.g. a
/// mask embedded in a binary; `name` only names it in errors.
pub fn read_f32_bytes(bytes: &[u8], name: &Path) -> Result<(Header, Vec<f32>), NiftiError> {
    let bad = |message: String| NiftiError::Malformed { path: name.to_path_buf(), message };
    let inflated;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| corrupt(name, true, e))?;
        inflated = out;
        &inflated[..]
    } else {
        bytes
    };
    let header = parse(name, &bytes[..bytes.len().min(NIFTI2_HEADER_BYTES)])?;
    if header.pair {
        return Err(bad("a header-only (.hdr) file: its data are in a separate .img".to_owned()));
    }
    check_scaling(name, &header)?;
    let count = header.volume_len() * header.volumes();
    let total = count * header.datatype.size(); // fits: the header's dims were checked
    let start = usize::try_from(header.vox_offset).unwrap_or(usize::MAX);
    let raw = start.checked_add(total).and_then(|end| bytes.get(start..end)).ok_or_else(|| {
        bad(format!(
            "dims {:?} need {total} data bytes after offset {start}, the data have {}",
            header.dims,
            bytes.len().saturating_sub(start)
        ))
    })?;
    let mut values = vec![0f32; count];
    convert(raw, header.datatype, header.little_endian, header.scaling(), &mut values);
    Ok((header, values))
}
