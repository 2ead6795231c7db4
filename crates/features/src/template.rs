//! Brain2Word's fixed input layout: per ROI a block of template positions, organised by z-slice
//! (the original's `sizes.npy` + `last_dim.npz`), and the rule that lays one subject's voxels
//! into it.
//!
//! **Template.** Per ROI, in template order, a list of `(z, count)` slices; the ROI's block size is
//! the sum of the counts. Derived from the subjects (no template file): per ROI, the slice counts
//! of the subject with the most voxels in that ROI (first in subject order on ties), slices in
//! ascending z — so the block size is exactly the maximum voxel count of the ROI over subjects, as
//! in Brain2Word (Affolter et al. 2020: the 333 Gordon sizes sum to 65,730), and the slice table is
//! the original's `last_dim`.
//!
//! **Layout of one subject's ROI** (n voxels into a block of S positions; n > S is an error):
//! 1. The subject's voxels are grouped by z; within a slice they keep their column order.
//! 2. Template slice t (z_t, c_t) takes the first min(n(z_t), c_t) voxels of slice z_t at the
//!    start of its part of the block.
//! 3. *Overflow* — a slice's voxels beyond c_t, and voxels at a z the template lacks — take the
//!    still-free positions in block order, overflow voxels in ascending (z, column) order.
//! 4. Every position still free is filled, per trial, with the mean of the subject's voxels of the
//!    ROI at z_t (the original's rule); when the subject has none at z_t, the mean of all its
//!    voxels of the ROI; when it has none of the ROI, 0. `fill: zero` puts 0 everywhere instead.
//!
//! Means are summed in `f64` in column order and rounded to `f32` once.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{FeaturesError, Result};
use crate::npy::{read_npy, read_npz};
use brainpipe_artifacts::{TemplateRow, read_template, write_template};

/// One ROI of a template: its slices in template order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoiTemplate {
    /// ROI label.
    pub roi: i32,
    /// `(z, count)` per slice: the slice's voxel index along the third axis and its positions.
    pub slices: Vec<(i32, usize)>,
}

impl RoiTemplate {
    /// Positions in the block.
    pub fn size(&self) -> usize {
        self.slices.iter().map(|&(_, c)| c).sum()
    }
}

/// Every ROI block of the common input layout, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    /// ROI blocks in layout order.
    pub rois: Vec<RoiTemplate>,
}

/// The `(roi, z)` of every voxel of one subject, in its column order.
pub type SubjectVoxels<'a> = (&'a str, &'a [(i32, i32)]);

impl Template {
    /// Total width: the sum of the block sizes.
    pub fn width(&self) -> usize {
        self.rois.iter().map(RoiTemplate::size).sum()
    }

    /// Derives the template from the subjects: per ROI (ascending label), the slice counts of the
    /// subject with the most voxels in it.
    pub fn derive(subjects: &[SubjectVoxels<'_>]) -> Template {
        // roi → (voxel count, slice counts) of the largest subject so far
        let mut best: BTreeMap<i32, (usize, BTreeMap<i32, usize>)> = BTreeMap::new();
        for (_, voxels) in subjects {
            let mut per_roi: BTreeMap<i32, BTreeMap<i32, usize>> = BTreeMap::new();
            for &(roi, z) in voxels.iter() {
                *per_roi.entry(roi).or_default().entry(z).or_default() += 1;
            }
            for (roi, slices) in per_roi {
                let n: usize = slices.values().sum();
                match best.get(&roi) {
                    Some((m, _)) if *m >= n => {}
                    _ => {
                        best.insert(roi, (n, slices));
                    }
                }
            }
        }
        Template {
            rois: best
                .into_iter()
                .map(|(roi, (_, slices))| RoiTemplate { roi, slices: slices.into_iter().collect() })
                .collect(),
        }
    }

    /// Reads a template file: our `template.parquet`, Brain2Word's `last_dim.npz` (with
    /// `sizes.npy` beside it checked when present), or a directory holding either.
    pub fn read(path: &Path) -> Result<Template> {
        if path.is_dir() {
            for name in ["template.parquet", "last_dim.npz"] {
                if path.join(name).is_file() {
                    return Template::read(&path.join(name));
                }
            }
            return Err(FeaturesError::format(
                path,
                "directory holds neither template.parquet nor last_dim.npz",
            ));
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => read_template_table(path),
            Some("npz") => read_brain2word(path),
            _ => Err(FeaturesError::format(
                path,
                "template must be a .parquet (template/1) or Brain2Word's last_dim.npz",
            )),
        }
    }

    /// Writes `template/1`: one row per (roi, slice) in layout order.
    pub fn write(&self, path: &Path) -> Result<()> {
        let rows: Vec<TemplateRow> = self
            .rois
            .iter()
            .flat_map(|r| {
                r.slices.iter().map(move |&(z, count)| TemplateRow { roi: r.roi, z, count })
            })
            .collect();
        Ok(write_template(path, &rows)?)
    }
}

fn read_template_table(path: &Path) -> Result<Template> {
    let mut template = Template::default();
    for row in read_template(path)? {
        push_slice(&mut template, path, row.roi, row.z, row.count)?;
    }
    Ok(template)
}

/// Appends a slice to the last ROI when it has the same label, else starts a new ROI (a label
/// that comes back later is an error: blocks must be contiguous).
fn push_slice(template: &mut Template, path: &Path, roi: i32, z: i32, count: usize) -> Result<()> {
    match template.rois.last_mut() {
        Some(last) if last.roi == roi => last.slices.push((z, count)),
        _ => {
            if template.rois.iter().any(|r| r.roi == roi) {
                return Err(FeaturesError::format(path, format!("roi {roi} appears in two runs")));
            }
            template.rois.push(RoiTemplate { roi, slices: vec![(z, count)] });
        }
    }
    Ok(())
}

/// Brain2Word's `last_dim.npz`: `arr_i` (2×K: z values; counts) is Gordon ROI `i + 1`. Its z
/// values are Pereira's 1-based MATLAB `colToCoord` slice indices; voxel tables hold 0-based `k`,
/// so 1 is subtracted.
fn read_brain2word(path: &Path) -> Result<Template> {
    let mut arrays = BTreeMap::new();
    for (name, array) in read_npz(path)? {
        let index: usize = name
            .strip_prefix("arr_")
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| FeaturesError::format(path, format!("member `{name}` is not arr_N")))?;
        arrays.insert(index, array);
    }
    let mut template = Template::default();
    for (position, (&index, array)) in arrays.iter().enumerate() {
        if index != position {
            return Err(FeaturesError::format(path, format!("arr_{position} is missing")));
        }
        let [2, k] = array.shape[..] else {
            return Err(FeaturesError::format(
                path,
                format!("arr_{index} has shape {:?}, expected (2, K)", array.shape),
            ));
        };
        let roi = i32::try_from(index + 1).unwrap_or(i32::MAX);
        for s in 0..k {
            let z = i32::try_from(array.values[s] - 1)
                .map_err(|_| FeaturesError::format(path, format!("arr_{index}: bad z")))?;
            let count = usize::try_from(array.values[k + s])
                .map_err(|_| FeaturesError::format(path, format!("arr_{index}: negative count")))?;
            push_slice(&mut template, path, roi, z, count)?;
        }
    }
    let sizes_path = path.with_file_name("sizes.npy");
    if sizes_path.is_file() {
        let sizes = read_npy(&sizes_path)?;
        if sizes.values.len() != template.rois.len() {
            return Err(FeaturesError::format(
                &sizes_path,
                format!(
                    "{} sizes for {} ROIs in {}",
                    sizes.values.len(),
                    template.rois.len(),
                    path.display()
                ),
            ));
        }
        for (r, &size) in template.rois.iter().zip(&sizes.values) {
            if usize::try_from(size).ok() != Some(r.size()) {
                return Err(FeaturesError::format(
                    &sizes_path,
                    format!(
                        "roi {} has size {size}, its slices in {} sum to {}",
                        r.roi,
                        path.display(),
                        r.size()
                    ),
                ));
            }
        }
    }
    Ok(template)
}

/// How one template position gets its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The subject's feature column.
    Voxel(u32),
    /// The mean of a group of the subject's columns (see [`Layout::groups`]).
    Mean(u32),
    /// Zero.
    Zero,
}

/// Where one subject's voxels go in the full template, and what fills the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    /// One slot per template position.
    pub slots: Vec<Slot>,
    /// Column groups whose per-trial means fill positions.
    pub groups: Vec<Vec<u32>>,
    /// Voxels that did not fit their own slice (step 3 of the rule).
    pub overflow: usize,
    /// Positions filled by a mean or zero.
    pub filled: usize,
}

/// Why a subject cannot be laid into a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The subject has an ROI the template lacks.
    UnknownRoi(i32),
    /// The subject has more voxels in an ROI than its block has positions.
    TooSmall {
        /// ROI label.
        roi: i32,
        /// Block size.
        size: usize,
        /// The subject's voxels.
        voxels: usize,
    },
}

/// Whether free positions get the slice mean (Brain2Word) or zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fill {
    /// The mean of the subject's voxels of the ROI in the same z-slice, per trial (Brain2Word).
    #[default]
    SliceMean,
    /// Zero.
    Zero,
}

impl Template {
    /// Lays a subject's voxels (`(roi, z)` per column) into this template.
    pub fn layout(&self, voxels: &[(i32, i32)], fill: Fill) -> Result<Layout, LayoutError> {
        // roi → z → columns, each in column order
        let mut by_roi: BTreeMap<i32, BTreeMap<i32, Vec<u32>>> = BTreeMap::new();
        for (column, &(roi, z)) in voxels.iter().enumerate() {
            let column = u32::try_from(column).expect("feature widths fit in u32");
            by_roi.entry(roi).or_default().entry(z).or_default().push(column);
        }
        if let Some(&roi) = by_roi.keys().find(|roi| !self.rois.iter().any(|r| r.roi == **roi)) {
            return Err(LayoutError::UnknownRoi(roi));
        }
        let mut layout = Layout { slots: Vec::with_capacity(self.width()), ..Layout::default() };
        let empty = BTreeMap::new();
        for block in &self.rois {
            let slices = by_roi.get(&block.roi).unwrap_or(&empty);
            let n: usize = slices.values().map(Vec::len).sum();
            if n > block.size() {
                return Err(LayoutError::TooSmall {
                    roi: block.roi,
                    size: block.size(),
                    voxels: n,
                });
            }
            lay_block(block, slices, fill, &mut layout);
        }
        Ok(layout)
    }
}

fn lay_block(
    block: &RoiTemplate,
    slices: &BTreeMap<i32, Vec<u32>>,
    fill: Fill,
    layout: &mut Layout,
) {
    let start = layout.slots.len();
    let mut free = Vec::new(); // (position, template slice index)
    let mut placed: BTreeMap<i32, usize> = BTreeMap::new();
    let mut position = start;
    for (t, &(z, count)) in block.slices.iter().enumerate() {
        let own = slices.get(&z).map_or(&[][..], Vec::as_slice);
        let take = own.len().min(count);
        layout.slots.extend(own[..take].iter().map(|&c| Slot::Voxel(c)));
        layout.slots.extend(std::iter::repeat_n(Slot::Zero, count - take));
        free.extend((position + take..position + count).map(|p| (p, t)));
        placed.insert(z, take);
        position += count;
    }
    let overflow: Vec<u32> = slices
        .iter()
        .flat_map(|(z, columns)| columns[placed.get(z).copied().unwrap_or(0)..].iter().copied())
        .collect();
    layout.overflow += overflow.len();
    let mut free = free.into_iter();
    for (column, (p, _)) in overflow.into_iter().zip(free.by_ref()) {
        layout.slots[p] = Slot::Voxel(column);
    }
    let remaining: Vec<(usize, usize)> = free.collect();
    layout.filled += remaining.len();
    if fill == Fill::Zero || slices.is_empty() {
        return;
    }
    let mut group_of_slice: BTreeMap<usize, u32> = BTreeMap::new();
    let mut roi_group = None;
    for (p, t) in remaining {
        let z = block.slices[t].0;
        let group = match slices.get(&z) {
            Some(columns) => *group_of_slice.entry(t).or_insert_with(|| {
                layout.groups.push(columns.clone());
                u32::try_from(layout.groups.len() - 1).expect("groups fit in u32")
            }),
            None => *roi_group.get_or_insert_with(|| {
                layout.groups.push(slices.values().flatten().copied().collect());
                u32::try_from(layout.groups.len() - 1).expect("groups fit in u32")
            }),
        };
        layout.slots[p] = Slot::Mean(group);
    }
}

impl Layout {
    /// Fills one template row from one subject row; `means` is scratch space.
    pub fn apply(&self, row: &[f32], out: &mut [f32], means: &mut Vec<f32>) {
        means.clear();
        means.extend(self.groups.iter().map(|columns| {
            let sum: f64 = columns.iter().map(|&c| f64::from(row[c as usize])).sum();
            (sum / columns.len() as f64) as f32
        }));
        for (slot, value) in self.slots.iter().zip(out.iter_mut()) {
            *value = match *slot {
                Slot::Voxel(c) => row[c as usize],
                Slot::Mean(g) => means[g as usize],
                Slot::Zero => 0.0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        Template { rois: vec![RoiTemplate { roi: 1, slices: vec![(3, 2), (4, 3)] }] }
    }

    #[test]
    fn derive_takes_the_largest_subjects_slices() {
        let a = [(1, 3), (1, 3), (2, 0)];
        let b = [(1, 4), (1, 4), (1, 5), (2, 0), (2, 1)];
        let t = Template::derive(&[("a", &a), ("b", &b)]);
        assert_eq!(t.rois[0], RoiTemplate { roi: 1, slices: vec![(4, 2), (5, 1)] });
        assert_eq!(t.rois[1], RoiTemplate { roi: 2, slices: vec![(0, 1), (1, 1)] });
        assert_eq!(t.width(), 5);
    }

    #[test]
    fn slice_mean_fills_missing_positions_and_overflow_spills() {
        // columns: 0 (z 3), 1 (z 4), 2 (z 4), 3 (z 3), 4 (z 7: not in the template)
        let voxels = [(1, 3), (1, 4), (1, 4), (1, 3), (1, 7)];
        let layout = template().layout(&voxels, Fill::SliceMean).expect("fits");
        assert_eq!(
            layout.slots,
            vec![Slot::Voxel(0), Slot::Voxel(3), Slot::Voxel(1), Slot::Voxel(2), Slot::Voxel(4)]
        );
        let voxels = [(1, 4), (1, 4)];
        let layout = template().layout(&voxels, Fill::SliceMean).expect("fits");
        // slice z 3 is missing: ROI mean (group 0); z 4's free position: slice mean (group 1)
        assert_eq!(
            layout.slots,
            vec![Slot::Mean(0), Slot::Mean(0), Slot::Voxel(0), Slot::Voxel(1), Slot::Mean(1)]
        );
        let mut out = vec![0.0; 5];
        layout.apply(&[1.0, 2.0], &mut out, &mut Vec::new());
        assert_eq!(out, vec![1.5, 1.5, 1.0, 2.0, 1.5]);
    }

    #[test]
    fn too_many_voxels_and_unknown_rois_are_refused() {
        let voxels = [(1, 3); 6];
        let err = template().layout(&voxels, Fill::Zero).expect_err("too small");
        assert_eq!(err, LayoutError::TooSmall { roi: 1, size: 5, voxels: 6 });
        let err = template().layout(&[(9, 3)], Fill::Zero).expect_err("unknown");
        assert_eq!(err, LayoutError::UnknownRoi(9));
    }

    #[test]
    fn template_table_round_trips_and_refuses_split_rois() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("template.parquet");
        let t = Template {
            rois: vec![
                RoiTemplate { roi: 7, slices: vec![(3, 2), (1, 4)] },
                RoiTemplate { roi: 2, slices: vec![(0, 1)] },
            ],
        };
        t.write(&path).expect("write");
        assert_eq!(Template::read(&path).expect("read"), t);
        assert_eq!(Template::read(dir.path()).expect("directory"), t);
        let mut split = Template::default();
        push_slice(&mut split, &path, 1, 0, 1).expect("first");
        push_slice(&mut split, &path, 2, 0, 1).expect("second");
        assert!(push_slice(&mut split, &path, 1, 1, 1).is_err());
    }
}
