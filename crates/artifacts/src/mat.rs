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
    // Messages quote variable and field names from the file: one line whatever they hold.
    parse_variables(bytes).map_err(|message| brainpipe_core::one_line(&message))
}

fn parse_variables(bytes: &[u8]) -> std::result::Result<BTreeMap<String, MatValue>, String> {
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
    let mut budget = bytes.len().saturating_mul(ELEMENTS_PER_BYTE).saturating_add(1 << 16);
    while rest.len() >= 8 {
        let (kind, data, next) = element(rest)?;
        rest = next;
        let (name, value) = match kind {
            MI_MATRIX => matrix(data, 0, &mut budget)?,
            MI_COMPRESSED => {
                let mut inflated = Vec::new();
                ZlibDecoder::new(data)
                    .read_to_end(&mut inflated)
                    .map_err(|e| format!("corrupt compressed element: {e}"))?;
                let (inner, inner_data, _) = element(&inflated)?;
                if inner != MI_MATRIX {
                    continue;
                }
                matrix(inner_data, 0, &mut budget)?
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

/// Cells and structs nested deeper than this are refused (each level recurses).
const MAX_DEPTH: usize = 64;

/// Elements of cells and structs a file may create, per byte of the file, plus a constant:
/// zero-field structs hold no data that bounds their count, and nesting multiplies counts, so
/// the whole parse shares one budget.
const ELEMENTS_PER_BYTE: usize = 4;

/// Takes `count` elements of array `name` from the parse's element budget.
fn charge(budget: &mut usize, count: usize, name: &str) -> std::result::Result<(), String> {
    *budget = budget.checked_sub(count).ok_or_else(|| {
        format!(
            "`{name}`: more cell and struct elements (or char rows) than a file of this size can describe"
        )
    })?;
    Ok(())
}

/// A miMATRIX element's name and value, `depth` levels inside cells and structs, taking its
/// elements from `budget`.
fn matrix(
    d: &[u8],
    depth: usize,
    budget: &mut usize,
) -> std::result::Result<(String, MatValue), String> {
    if depth > MAX_DEPTH {
        return Err(format!("cells or structs nested more than {MAX_DEPTH} deep"));
    }
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
    let (_, name_bytes, mut rest) = element(rest)?;
    let name = String::from_utf8_lossy(name_bytes).into_owned();
    // Sizes are claims: each is checked against the bytes that must hold it before anything is
    // allocated or looped over.
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("`{name}` has dims {dims:?}, whose product overflows"))?;
    let value = match class {
        MX_CELL => {
            // Every element has at least an 8-byte tag.
            if count > rest.len() / 8 {
                return Err(format!(
                    "cell `{name}` claims {count} elements in {} bytes (truncated?)",
                    rest.len()
                ));
            }
            charge(budget, count, &name)?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let (kind, data, next) = element(rest)?;
                if kind != MI_MATRIX {
                    return Err(format!("cell `{name}` holds a non-matrix element"));
                }
                items.push(matrix(data, depth + 1, budget)?.1);
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
            let fits = fields.is_empty()
                || count.checked_mul(fields.len()).is_some_and(|n| n <= rest.len() / 8);
            if !fits {
                return Err(format!(
                    "struct `{name}` claims {count} elements of {} fields in {} bytes (truncated?)",
                    fields.len(),
                    rest.len()
                ));
            }
            charge(budget, count, &name)?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let mut item = BTreeMap::new();
                for field in &fields {
                    let (kind, data, next) = element(rest)?;
                    if kind != MI_MATRIX {
                        return Err(format!("struct `{name}` field `{field}` is not a matrix"));
                    }
                    item.insert(field.clone(), matrix(data, depth + 1, budget)?.1);
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
            // The rows are read as rows × columns units (a third dim of 0 must not hide them).
            if rows_n.checked_mul(cols).is_none_or(|n| n > units.len()) || units.len() < count {
                return Err(format!(
                    "char `{name}` has {} characters for dims {dims:?}",
                    units.len()
                ));
            }
            // Rows of zero columns hold no data that bounds their number.
            charge(budget, rows_n, &name)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A MAT-file of one matrix element holding `body` (flags, dims, name, then the class's data).
    fn file(body: &[u8]) -> Vec<u8> {
        let mut out = b"MATLAB 5.0 MAT-file".to_vec();
        out.resize(124, b' ');
        out.extend_from_slice(&[0x00, 0x01, b'I', b'M']);
        out.extend_from_slice(&MI_MATRIX.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    fn tagged(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_le_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(8) * 8, 0);
        out
    }

    fn header(class: u8, dims: &[i32], name: &str) -> Vec<u8> {
        let mut out = tagged(MI_UINT32, &[class, 0, 0, 0, 0, 0, 0, 0]);
        let dims: Vec<u8> = dims.iter().flat_map(|d| d.to_le_bytes()).collect();
        out.extend(tagged(MI_INT32, &dims));
        out.extend(tagged(MI_INT8, name.as_bytes()));
        out
    }

    #[test]
    fn claims_larger_than_the_file_are_refused_before_allocating() {
        // Found by fuzz/fuzz_targets/mat.rs: a cell array claiming ~1.5e12 elements made the
        // reader ask for 12 TB and abort.
        let cell = file(&header(MX_CELL, &[1_200_000, 1_300_000], "c"));
        let err = parse_mat(&cell).expect_err("refused");
        assert!(err.contains("cell `c` claims 1560000000000 elements"), "{err}");
        // Zero-field structs hold nothing that bounds their count: the element budget does.
        let mut body = header(MX_STRUCT, &[100_000, 100], "e");
        body.extend(tagged(MI_INT32, &4i32.to_le_bytes()));
        body.extend(tagged(MI_INT8, b""));
        let err = parse_mat(&file(&body)).expect_err("budget");
        assert!(err.contains("`e`: more cell and struct elements"), "{err}");
        let mut body = header(MX_STRUCT, &[2_000_000, 1], "s");
        body.extend(tagged(MI_INT32, &4i32.to_le_bytes()));
        body.extend(tagged(MI_INT8, b"abc\0"));
        let err = parse_mat(&file(&body)).expect_err("refused");
        assert!(err.contains("struct `s` claims 2000000 elements of 1 fields"), "{err}");
        let mut body = header(MX_CHAR, &[100_000, 100_000], "t");
        body.extend(tagged(MI_UINT16, &[b'a', 0]));
        let err = parse_mat(&file(&body)).expect_err("refused");
        assert!(err.contains("char `t` has 1 characters"), "{err}");
        // Found by the fuzzer (a 10 s timeout): rows × columns of 10¹² with a third dim of 0.
        let mut body = header(MX_CHAR, &[1_000_000, 1_000_000, 0], "z");
        body.extend(tagged(MI_UINT16, &[]));
        let err = parse_mat(&file(&body)).expect_err("refused");
        assert!(err.contains("char `z` has 0 characters"), "{err}");
        // And again (a timeout): 2³¹ rows of zero columns.
        let mut body = header(MX_CHAR, &[i32::MAX, 0], "r");
        body.extend(tagged(MI_UINT16, &[]));
        let err = parse_mat(&file(&body)).expect_err("refused");
        assert!(err.contains("`r`: more cell and struct elements"), "{err}");
        let overflow = file(&header(MX_CELL, &[i32::MAX, i32::MAX, i32::MAX, i32::MAX], "o"));
        let err = parse_mat(&overflow).expect_err("refused");
        assert!(err.contains("product overflows"), "{err}");
        // Found by the fuzzer next: a name holding a newline made the error two lines.
        let named = file(&header(MX_CELL, &[i32::MAX, i32::MAX, i32::MAX, i32::MAX], "a\nb"));
        let err = parse_mat(&named).expect_err("refused");
        assert!(err.contains("`a\\nb`") && !err.contains('\n'), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed_without_bound() {
        let mut inner = header(6, &[0, 0], "x");
        for _ in 0..(MAX_DEPTH + 2) {
            let mut cell = header(MX_CELL, &[1, 1], "");
            cell.extend(tagged(MI_MATRIX, &inner));
            inner = cell;
        }
        let err = parse_mat(&file(&inner)).expect_err("refused");
        assert!(err.contains("nested more than 64 deep"), "{err}");
    }
}
