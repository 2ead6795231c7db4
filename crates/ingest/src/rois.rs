//! ROI masks on a subject's beta grid, as BOLD5000 ships them (`.npy` arrays and `.mat` files),
//! turned into one label per voxel: the voxel table's `roi` column.
//!
//! A directory holds each subject's masks as `SUBJECT/NAME.npy` or `SUBJECT_NAME.npy`, a leading
//! `roi_` dropped from the name (`CSI1_roi_LHPPA.npy` → `LHPPA`), and `.mat` files placed the
//! same way, in which every 3-D numeric or logical variable — or field of a 1×1 struct — is a
//! mask named after it. A voxel is in a mask where the value is non-zero (and not NaN). Labels
//! number the ROI names of all subjects together in sorted order, from 1, so a label means the
//! same ROI in every subject; a voxel in several masks takes the first name's label.

use brainpipe_core::IoContext;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{IngestError, Result};
use brainpipe_artifacts::mat::{MatValue, read_mat};
use brainpipe_nifti::npy::parse_npy_header;

/// Every subject's ROI labels, and the names they stand for.
#[derive(Debug)]
pub(crate) struct RoiLabels {
    /// ROI names; label `l` is `names[l - 1]`.
    pub names: Vec<String>,
    /// Per subject, a label per voxel of its grid in NIfTI order (x fastest), 0 outside every ROI.
    pub labels: BTreeMap<String, Vec<i32>>,
}

/// A subject's masks, by name, as in/out flags in NIfTI order.
type SubjectMasks = BTreeMap<String, (PathBuf, Vec<bool>)>;

/// Reads the masks in `dir` of each subject in `grids` (subject → grid dims `[X, Y, Z]`). Every
/// subject must have at least one mask, every mask must lie on its subject's grid.
pub(crate) fn load_roi_labels(
    dir: &Path,
    grids: &BTreeMap<String, [usize; 3]>,
) -> Result<RoiLabels> {
    let files = mask_files(dir)?;
    let mut masks: BTreeMap<&str, SubjectMasks> = BTreeMap::new();
    for (subject, dims) in grids {
        let mut mine = SubjectMasks::new();
        for (path, name) in files.iter().filter_map(|f| Some((f, mask_name(dir, f, subject)?))) {
            for (name, flags) in read_masks(path, &name, *dims)? {
                if let Some((first, _)) = mine.get(&name) {
                    return Err(IngestError::roi(
                        path,
                        format!("ROI `{name}` of {subject} is also in {}", first.display()),
                    ));
                }
                mine.insert(name, (path.clone(), flags));
            }
        }
        if mine.is_empty() {
            return Err(IngestError::roi(
                dir,
                format!(
                    "no ROI masks for subject {subject} ({subject}/NAME.npy|.mat or {subject}_NAME.npy|.mat)"
                ),
            ));
        }
        masks.insert(subject, mine);
    }
    let names: Vec<String> = masks
        .values()
        .flat_map(|m| m.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let labels = masks
        .into_iter()
        .map(|(subject, mine)| {
            let voxels = grids[subject].iter().product();
            let mut labels = vec![0i32; voxels];
            // Later names first, so that the first name's label is the one left on overlaps.
            for (name, (_, flags)) in mine.iter().rev() {
                let label = names.binary_search(name).map_or(0, |i| i as i32 + 1);
                for (slot, _) in labels.iter_mut().zip(flags).filter(|(_, inside)| **inside) {
                    *slot = label;
                }
            }
            (subject.to_owned(), labels)
        })
        .collect();
    Ok(RoiLabels { names, labels })
}

/// The `.npy` and `.mat` files of `dir` and of its subdirectories (one level), sorted.
fn mask_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let list = |d: &Path| -> Result<Vec<PathBuf>> {
        Ok(std::fs::read_dir(d).at(d)?.filter_map(|e| e.ok().map(|e| e.path())).collect())
    };
    let mut files = Vec::new();
    for path in list(dir)? {
        if path.is_dir() {
            files.extend(list(&path)?.into_iter().filter(|p| is_mask_file(p)));
        } else if is_mask_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn is_mask_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("npy" | "mat"))
}

/// The ROI name `path` gives for `subject`, when it is one of the subject's files:
/// `dir/SUBJECT/[roi_]NAME.ext` or `dir/SUBJECT_[roi_]NAME.ext`.
fn mask_name(dir: &Path, path: &Path, subject: &str) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let parent = path.parent()?;
    let name = if parent == dir {
        stem.strip_prefix(subject)?.strip_prefix('_')?
    } else if parent.file_name()? == subject {
        stem
    } else {
        return None;
    };
    let name = name.strip_prefix("roi_").unwrap_or(name);
    (!name.is_empty()).then(|| name.to_owned())
}

/// The masks in one file, each as (name, in/out flags in NIfTI order on `dims`).
fn read_masks(path: &Path, name: &str, dims: [usize; 3]) -> Result<Vec<(String, Vec<bool>)>> {
    if path.extension().is_some_and(|e| e == "npy") {
        let bytes = std::fs::read(path).at(path)?;
        let flags = npy_mask(&bytes, dims).map_err(|m| IngestError::roi(path, m))?;
        return Ok(vec![(name.to_owned(), flags)]);
    }
    let mut masks = Vec::new();
    for (variable, value) in read_mat(path)? {
        match &value {
            MatValue::Struct { items, fields, .. } if items.len() == 1 => {
                for field in fields {
                    if let Some(MatValue::Numeric { dims: d, data }) = items[0].get(field)
                        && d.len() == 3
                    {
                        masks.push((field.clone(), mat_mask(path, field, d, data, dims)?));
                    }
                }
            }
            MatValue::Numeric { dims: d, data } if d.len() == 3 => {
                masks.push((variable.clone(), mat_mask(path, &variable, d, data, dims)?));
            }
            _ => {}
        }
    }
    if masks.is_empty() {
        return Err(IngestError::roi(
            path,
            "no 3-D numeric or logical array (nor a struct of them) to use as a mask",
        ));
    }
    Ok(masks)
}

/// A MAT array (column-major, so already in NIfTI order) as in/out flags.
fn mat_mask(
    path: &Path,
    variable: &str,
    dims: &[usize],
    data: &[f64],
    grid: [usize; 3],
) -> Result<Vec<bool>> {
    if dims != grid {
        return Err(IngestError::roi(
            path,
            format!("`{variable}` has dims {dims:?}, the betas' grid is {grid:?}"),
        ));
    }
    Ok(data.iter().map(|v| *v != 0.0 && !v.is_nan()).collect())
}

/// A `.npy` mask (format 1–3; bool, integer or float; either byte order; C or Fortran order)
/// of shape `dims`, as in/out flags in NIfTI order: in where the value is non-zero and not NaN.
fn npy_mask(bytes: &[u8], dims: [usize; 3]) -> std::result::Result<Vec<bool>, String> {
    let header = parse_npy_header(bytes)?;
    let mask_type = match header.kind {
        'b' | 'i' | 'u' => matches!(header.width, 1 | 2 | 4 | 8),
        'f' => matches!(header.width, 4 | 8),
        _ => false,
    };
    if !mask_type {
        return Err(format!(
            "dtype `{}` is not a mask type (bool, integer, float32 or float64)",
            header.descr
        ));
    }
    if header.shape != dims {
        return Err(format!("shape {:?} does not match the betas' grid {dims:?}", header.shape));
    }
    let flags: Vec<bool> =
        header.floats(bytes)?.into_iter().map(|v| v != 0.0 && !v.is_nan()).collect();
    if header.fortran_order {
        return Ok(flags);
    }
    // C order: the last axis is fastest; NIfTI's first.
    let [x, y, z] = dims;
    let mut nifti = vec![false; flags.len()];
    for (c, flag) in flags.into_iter().enumerate() {
        let (i, j, k) = (c / (y * z), (c / z) % y, c % z);
        nifti[i + x * (j + y * k)] = flag;
    }
    Ok(nifti)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
        brainpipe_nifti::npy::npy_bytes(descr, fortran, shape, data)
    }

    #[test]
    fn c_and_fortran_order_land_on_the_same_voxels() {
        // Shape (2, 3, 1): C order index (i*3 + j); mark voxel (1, 2, 0) = NIfTI index 5.
        let c = npy("|b1", false, &[2, 3, 1], &[0, 0, 0, 0, 0, 1]);
        let f = npy("|b1", true, &[2, 3, 1], &[0, 0, 0, 0, 0, 1]);
        let expect = vec![false, false, false, false, false, true];
        assert_eq!(npy_mask(&c, [2, 3, 1]).expect("c"), expect);
        assert_eq!(npy_mask(&f, [2, 3, 1]).expect("f"), expect);
        // (0, 1, 0) in C order is index 1; in NIfTI order index 2.
        let c = npy("|u1", false, &[2, 3, 1], &[0, 7, 0, 0, 0, 0]);
        assert!(npy_mask(&c, [2, 3, 1]).expect("c")[2]);
    }

    #[test]
    fn floats_of_either_byte_order_are_set_when_non_zero_and_not_nan() {
        let values = [0.0f32, -0.0, 1.5, f32::NAN];
        let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let be: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        let expect = vec![false, false, true, false];
        assert_eq!(npy_mask(&npy("<f4", true, &[4, 1, 1], &le), [4, 1, 1]).expect("le"), expect);
        assert_eq!(npy_mask(&npy(">f4", true, &[4, 1, 1], &be), [4, 1, 1]).expect("be"), expect);
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        let cases: [(Vec<u8>, &str); 4] = [
            (b"PK\x03\x04 not numpy".to_vec(), "magic"),
            (npy("|u1", false, &[2, 2, 1], &[1; 4]), "does not match the betas' grid [2, 3, 1]"),
            (npy("<c8", false, &[2, 3, 1], &[0; 48]), "not a mask type"),
            (npy("<i4", false, &[2, 3, 1], &[0; 10]), "truncated: 10 data bytes"),
        ];
        for (bytes, expect) in cases {
            let err = npy_mask(&bytes, [2, 3, 1]).expect_err(expect);
            assert!(err.contains(expect), "{err}");
        }
    }
}
