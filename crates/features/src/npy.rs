//! Just enough of NumPy's `.npy` / `.npz` formats to read Brain2Word's template files
//! (`sizes.npy`: int64[333]; `last_dim.npz`: `arr_0`…`arr_332`, each int64 2×K).
//!
//! `.npy` headers and data are read by `brainpipe_nifti::npy`; `.npz` is a zip of `.npy` files.

use brainpipe_core::IoContext;
use std::io::Read;
use std::path::Path;

use brainpipe_nifti::npy::parse_npy_header;

use crate::error::{FeaturesError, Result};

/// An integer array read from a `.npy` file, in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<i64>,
}

/// Reads an integer `.npy` file (`i1`…`i8`, `u1`…`u8`, bool; either byte order).
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).at(path)?;
    parse_npy(&bytes).map_err(|m| FeaturesError::format(path, m))
}

/// Reads every member of an `.npz` file, in archive order, as `(name without .npy, array)`.
pub fn read_npz(path: &Path) -> Result<Vec<(String, NpyArray)>> {
    let file = std::fs::File::open(path).at(path)?;
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
    let header = parse_npy_header(bytes)?;
    let values = header.integers(bytes).map_err(|e| {
        if e.contains("not an integer type") {
            format!("dtype `{}` is not an integer type this reader knows", header.descr)
        } else {
            e
        }
    })?;
    let shape = header.shape;
    let values = if header.fortran_order && shape.len() > 1 {
        fortran_to_c(&values, &shape)
    } else {
        values
    };
    Ok(NpyArray { shape, values })
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
    use brainpipe_nifti::npy::npy_bytes;

    #[test]
    fn reads_c_and_fortran_int64() {
        let data: Vec<u8> = [1i64, 2, 3, 4, 5, 6].iter().flat_map(|v| v.to_le_bytes()).collect();
        let c = parse_npy(&npy_bytes("<i8", false, &[2, 3], &data)).expect("c order");
        assert_eq!(
            (c.shape.as_slice(), c.values.as_slice()),
            (&[2, 3][..], &[1, 2, 3, 4, 5, 6][..])
        );
        let f = parse_npy(&npy_bytes("<i8", true, &[2, 3], &data)).expect("fortran order");
        assert_eq!(f.values, vec![1, 3, 5, 2, 4, 6]);
    }

    #[test]
    fn reads_narrow_signed_and_refuses_floats() {
        let data: Vec<u8> = [-2i32, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = parse_npy(&npy_bytes("<i4", false, &[2], &data)).expect("i4");
        assert_eq!(a.values, vec![-2, 7]);
        let err = parse_npy(&npy_bytes("<f8", false, &[1], &[0; 8])).expect_err("float");
        assert!(err.contains("<f8"), "{err}");
        assert!(parse_npy(b"garbage!!!!!").is_err());
    }
}
