//! MATLAB v5 MAT-files: numeric, logical, char, cell and struct arrays, compressed or not.
//!
//! Enough of the format (MathWorks, "MAT-File Format", level 5) to read Pereira et al. 2018's
//! files and Brain2Word's vector files. v7.3 files are HDF5 and are refused with a hint.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use flate2::read::ZlibDecoder;

use brainpipe_core::{Error, IoContext, Result};

/// A MATLAB array.
#[derive(Clone, Debug, PartialEq)]
pub enum MatValue {
    /// Numeric or logical array: dims and values in column-major order, as `f64`.
    Numeric {
        /// Dimensions (at least 2).
        dims: Vec<usize>,
        /// Values, column-major.
        data: Vec<f64>,
    },
    /// Char array: one string per row (trailing spaces kept).
    Char {
        /// Dimensions.
        dims: Vec<usize>,
        /// Rows.
        rows: Vec<String>,
    },
    /// Cell array, column-major.
    Cell {
        /// Dimensions.
        dims: Vec<usize>,
        /// Elements.
        items: Vec<MatValue>,
    },
    /// Struct array, column-major; each element maps field names to values.
    Struct {
        /// Dimensions.
        dims: Vec<usize>,
        /// Field names in file order.
        fields: Vec<String>,
        /// Elements.
        items: Vec<BTreeMap<String, MatValue>>,
    },
}

impl MatValue {
    /// The dims.
    pub fn dims(&self) -> &[usize] {
        match self {
            MatValue::Numeric { dims, .. }
            | MatValue::Char { dims, .. }
            | MatValue::Cell { dims, .. }
            | MatValue::Struct { dims, .. } => dims,
        }
    }

    /// Field `name` of a 1×1 struct.
    pub fn field(&self, name: &str) -> Option<&MatValue> {
        match self {
            MatValue::Struct { items, .. } if items.len() == 1 => items[0].get(name),
            _ => None,
        }
    }

    /// The text of a char array (rows joined by newlines, each trimmed of trailing spaces).
    pub fn text(&self) -> Option<String> {
        match self {
            MatValue::Char { rows, .. } => {
                Some(rows.iter().map(|r| r.trim_end()).collect::<Vec<_>>().join("\n"))
            }
            _ => None,
        }
    }
}

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;

const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_CHAR: u8 = 4;

/// Reads every named variable of a MAT-file.
pub fn read_mat(path: &Path) -> Result<BTreeMap<String, MatValue>> {
    let bytes = std::fs::read(path).at(path)?;
    parse_mat(&bytes).map_err(|message| Error::schema(path, message))
}

/// Parses MAT-file bytes.
pub fn parse_mat(bytes: &[u8]) -> std::result::Result<BTreeMap<String, MatValue>, String> {
    if bytes.len() >= 8 && bytes[..8] == [0x89, b'H', b'D', b'F', 0x0d, 0x0a, 0x1a, 0x0a] {
        return Err("a v7.3 (HDF5) MAT-file: re-save it with `save(..., '-v7')`".to_owned());
    }
    if bytes.len() < 128 || !bytes.starts_with(b"MATLAB 5.0") {
        return Err("not a MATLAB 5.0 MAT-file".to_owned());
    }
    if &bytes[126..128] != b"IM" {
        return Err("big-endian MAT-files are not supported".to_owned());
    }
    let mut variables = BTreeMap::new();
    let mut rest = &bytes[128..];
    while rest.len() >= 8 {
        let (kind, data, next) = element(rest)?;
        rest = next;
        let (name, value) = match kind {
            MI_MATRIX => matrix(data)?,
            MI_COMPRESSED => {
                let mut inflated = Vec::new();
                ZlibDecoder::new(data)
                    .read_to_end(&mut inflated)
                    .map_err(|e| format!("corrupt compressed element: {e}"))?;
                let (inner, inner_data, _) = element(&inflated)?;
                if inner != MI_MATRIX {
                    continue;
                }
                matrix(inner_data)?
            }
            _ => continue,
        };
        variables.insert(name, value);
    }
    Ok(variables)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One data element: (type, data, rest after padding). Handles the small-element format.
fn element(b: &[u8]) -> std::result::Result<(u32, &[u8], &[u8]), String> {
    if b.len() < 8 {
        return Err("truncated data element tag".to_owned());
    }
    let first = u32_at(b, 0);
    if first >> 16 != 0 {
        let size = (first >> 16) as usize;
        if size > 4 {
            return Err("malformed small data element".to_owned());
        }
        return Ok((first & 0xffff, &b[4..4 + size], &b[8..]));
    }
    let size = u32_at(b, 4) as usize;
    let end = 8usize.checked_add(size).filter(|&e| e <= b.len()).ok_or_else(|| {
        format!("data element of {size} bytes runs past the end of the file (truncated?)")
    })?;
    let padded = if first == MI_COMPRESSED { end } else { end.div_ceil(8) * 8 };
    Ok((first, &b[8..end], &b[padded.min(b.len())..]))
}

/// Numeric values of an element, whatever its storage type.
fn numbers(kind: u32, d: &[u8]) -> std::result::Result<Vec<f64>, String> {
    macro_rules! read {
        ($t:ty, $n:literal) => {
            d.chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk")) as f64)
                .collect()
        };
    }
    Ok(match kind {
        MI_INT8 => d.iter().map(|&v| f64::from(v as i8)).collect(),
        MI_UINT8 | MI_UTF8 => d.iter().map(|&v| f64::from(v)).collect(),
        MI_INT16 => read!(i16, 2),
        MI_UINT16 | MI_UTF16 => read!(u16, 2),
        MI_INT32 => read!(i32, 4),
        MI_UINT32 => read!(u32, 4),
        MI_SINGLE => read!(f32, 4),
        MI_DOUBLE => read!(f64, 8),
        MI_INT64 => read!(i64, 8),
        MI_UINT64 => read!(u64, 8),
        other => return Err(format!("unsupported numeric storage type {other}")),
    })
}

/// A miMATRIX element's name and value.
fn matrix(d: &[u8]) -> std::result::Result<(String, MatValue), String> {
    if d.is_empty() {
        return Ok((String::new(), MatValue::Numeric { dims: vec![0, 0], data: Vec::new() }));
    }
    let (_, flags, rest) = element(d)?;
    if flags.len() < 8 {
        return Err("malformed array flags".to_owned());
    }
    let class = flags[0];
    let complex = flags[1] & 0x08 != 0;
    let (_, dims_bytes, rest) = element(rest)?;
    let dims: Vec<usize> =
        numbers(MI_INT32, dims_bytes)?.into_iter().map(|v| v.max(0.0) as usize).collect();
    let count: usize = dims.iter().product();
    let (_, name_bytes, mut rest) = element(rest)?;
    let name = String::from_utf8_lossy(name_bytes).into_owned();
    let value = match class {
        MX_CELL => {
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let (kind, data, next) = element(rest)?;
                if kind != MI_MATRIX {
                    return Err(format!("cell `{name}` holds a non-matrix element"));
                }
                items.push(matrix(data)?.1);
                rest = next;
            }
            MatValue::Cell { dims, items }
        }
        MX_STRUCT => {
            let (_, len_bytes, next) = element(rest)?;
            let field_len = numbers(MI_INT32, len_bytes)?.first().copied().unwrap_or(0.0) as usize;
            let (_, names, next) = element(next)?;
            rest = next;
            let fields: Vec<String> = if field_len == 0 {
                Vec::new()
            } else {
                names
                    .chunks(field_len)
                    .map(|c| String::from_utf8_lossy(c).trim_end_matches('\0').to_owned())
                    .collect()
            };
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let mut item = BTreeMap::new();
                for field in &fields {
                    let (kind, data, next) = element(rest)?;
                    if kind != MI_MATRIX {
                        return Err(format!("struct `{name}` field `{field}` is not a matrix"));
                    }
                    item.insert(field.clone(), matrix(data)?.1);
                    rest = next;
                }
                items.push(item);
            }
            MatValue::Struct { dims, fields, items }
        }
        MX_CHAR => {
            let (kind, data, _) = element(rest)?;
            let units = numbers(kind, data)?;
            let (rows_n, cols) =
                (dims.first().copied().unwrap_or(0), dims.get(1).copied().unwrap_or(0));
            let text: Vec<String> = if kind == MI_UTF8 {
                // UTF-8 data are bytes; decode per row from the column-major byte matrix.
                (0..rows_n)
                    .map(|r| {
                        let row: Vec<u8> = (0..cols)
                            .map(|c| units.get(r + c * rows_n).copied().unwrap_or(32.0) as u8)
                            .collect();
                        String::from_utf8_lossy(&row).into_owned()
                    })
                    .collect()
            } else {
                (0..rows_n)
                    .map(|r| {
                        let row: Vec<u16> = (0..cols)
                            .map(|c| units.get(r + c * rows_n).copied().unwrap_or(32.0) as u16)
                            .collect();
                        String::from_utf16_lossy(&row)
                    })
                    .collect()
            };
            MatValue::Char { dims, rows: text }
        }
        3 => return Err(format!("`{name}` is a MATLAB object, which cannot be read")),
        6..=15 => {
            if complex {
                return Err(format!("`{name}` is complex, which is not supported"));
            }
            let (kind, data, _) = element(rest)?;
            let data = numbers(kind, data)?;
            if data.len() != count {
                return Err(format!("`{name}` has {} values for dims {dims:?}", data.len()));
            }
            MatValue::Numeric { dims, data }
        }
        5 => return Err(format!("`{name}` is a sparse array, which is not supported")),
        other => return Err(format!("`{name}` has unsupported array class {other}")),
    };
    Ok((name, value))
}
