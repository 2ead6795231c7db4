//! Just enough of NumPy's `.npy` / `.npz` formats to read Brain2Word's template files
//! (`sizes.npy`: int64[333]; `last_dim.npz`: `arr_0`…`arr_332`, each int64 2×K).
//!
//! `.npy` (format versions 1–3): magic `\x93NUMPY`, version, header length, a Python dict literal
//! with `descr`, `fortran_order` and `shape`, then the raw data. `.npz` is a zip of `.npy` files.

use std::io::Read;
use std::path::Path;

use crate::error::{FeaturesError, Result};

/// An integer array read from a `.npy` file, in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<i64>,
}

/// Reads an integer `.npy` file (`<i8`, `<i4`, `<i2`, `|i1`, `<u4`, `<u2`, `|u1`).
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| FeaturesError::io(path, e))?;
    parse_npy(&bytes).map_err(|m| FeaturesError::format(path, m))
}

/// Reads every member of an `.npz` file, in archive order, as `(name without .npy, array)`.
pub fn read_npz(path: &Path) -> Result<Vec<(String, NpyArray)>> {
    let file = std::fs::File::open(path).map_err(|e| FeaturesError::io(path, e))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| FeaturesError::format(path, format!("zip: {e}")))?;
    let mut out = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let mut member = archive
            .by_index(index)
            .map_err(|e| FeaturesError::format(path, format!("zip member {index}: {e}")))?;
        let name = member.name().trim_end_matches(".npy").to_owned();
        let mut bytes = Vec::with_capacity(usize::try_from(member.size()).unwrap_or(0));
        member
            .read_to_end(&mut bytes)
            .map_err(|e| FeaturesError::format(path, format!("member `{name}`: {e}")))?;
        let array =
            parse_npy(&bytes).map_err(|m| FeaturesError::format(path, format!("`{name}`: {m}")))?;
        out.push((name, array));
    }
    Ok(out)
}

fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => {
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (usize::try_from(len).map_err(|_| "header too long")?, 12)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or non-text header")?;
    let descr = dict_value(header, "descr").ok_or("header has no `descr`")?;
    let quote = descr.chars().next().ok_or("empty `descr`")?;
    let descr = descr[1..].split(quote).next().unwrap_or("");
    let fortran = dict_value(header, "fortran_order").ok_or("header has no `fortran_order`")?;
    let fortran = fortran.starts_with("True");
    let shape_text = dict_value(header, "shape").ok_or("header has no `shape`")?;
    let shape: Vec<usize> = shape_text
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape {shape_text}")))
        .collect::<std::result::Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let data = &bytes[start + header_len..];
    let (width, little, signed) = match descr {
        "<i8" => (8, true, true),
        ">i8" => (8, false, true),
        "<i4" => (4, true, true),
        ">i4" => (4, false, true),
        "<i2" => (2, true, true),
        "|i1" => (1, true, true),
        "<u4" => (4, true, false),
        "<u2" => (2, true, false),
        "|u1" => (1, true, false),
        other => return Err(format!("dtype `{other}` is not an integer type this reader knows")),
    };
    if data.len() < count * width {
        return Err(format!("{} data bytes for {count} values of {width} bytes", data.len()));
    }
    let values: Vec<i64> = data[..count * width]
        .chunks_exact(width)
        .map(|chunk| {
            let mut raw = [0u8; 8];
            if little {
                raw[..width].copy_from_slice(chunk);
            } else {
                for (slot, byte) in raw[..width].iter_mut().zip(chunk.iter().rev()) {
                    *slot = *byte;
                }
            }
            let unsigned = u64::from_le_bytes(raw);
            if signed && width < 8 {
                let shift = 64 - 8 * width as u32;
                ((unsigned << shift) as i64) >> shift
            } else {
                unsigned as i64
            }
        })
        .collect();
    let values = if fortran && shape.len() > 1 { fortran_to_c(&values, &shape) } else { values };
    Ok(NpyArray { shape, values })
}

/// The text after `'key':` in a Python dict literal, up to the end of the header.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

fn fortran_to_c(values: &[i64], shape: &[usize]) -> Vec<i64> {
    let n = values.len();
    let mut out = vec![0; n];
    let mut index = vec![0usize; shape.len()];
    for (c_pos, slot) in out.iter_mut().enumerate() {
        let mut rem = c_pos;
        for axis in (0..shape.len()).rev() {
            index[axis] = rem % shape[axis];
            rem /= shape[axis];
        }
        let mut f_pos = 0;
        for axis in (0..shape.len()).rev() {
            f_pos = f_pos * shape[axis] + index[axis];
        }
        *slot = values[f_pos];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_c_and_fortran_int64() {
        let data: Vec<u8> = [1i64, 2, 3, 4, 5, 6].iter().flat_map(|v| v.to_le_bytes()).collect();
        let c = parse_npy(&npy("<i8", false, "(2, 3)", &data)).expect("c order");
        assert_eq!(
            (c.shape.as_slice(), c.values.as_slice()),
            (&[2, 3][..], &[1, 2, 3, 4, 5, 6][..])
        );
        let f = parse_npy(&npy("<i8", true, "(2, 3)", &data)).expect("fortran order");
        assert_eq!(f.values, vec![1, 3, 5, 2, 4, 6]);
    }

    #[test]
    fn reads_narrow_signed_and_refuses_floats() {
        let data: Vec<u8> = [-2i32, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = parse_npy(&npy("<i4", false, "(2,)", &data)).expect("i4");
        assert_eq!(a.values, vec![-2, 7]);
        let err = parse_npy(&npy("<f8", false, "(1,)", &[0; 8])).expect_err("float");
        assert!(err.contains("<f8"), "{err}");
        assert!(parse_npy(b"garbage!!!!!").is_err());
    }
}
