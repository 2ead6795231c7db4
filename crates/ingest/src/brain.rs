//! The synthetic brain: the real MNI152 mask pooled to the study's resolution, and a contiguous
//! cortical parcellation whose parcel sizes follow the Gordon et al. (2016) atlas.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::path::Path;

use rand::Rng;

use crate::error::{IngestError, Result};
use crate::nifti::{Affine, read_volume};
use crate::rng::{shuffle, stream};

const MASK_2MM: &[u8] = include_bytes!("../../../data/mni/MNI152_T1_2mm_brain_mask.nii.gz");
const MASK_3MM: &[u8] = include_bytes!("../../../data/mni/MNI152_T1_3mm_brain_mask.nii.gz");

/// Quantiles (0 %, 5 %, …, 100 %) of the 333 Gordon ROI sizes in voxels at 2 mm, as the maximum
/// over Pereira's 15 subjects (Brain2Word's `sizes.npy`: min 14, max 1194, mean 197.4, sum
/// 65,730). Parcel sizes are drawn through this inverse CDF, scaled by (2 mm / resolution)³.
const GORDON_SIZE_QUANTILES_2MM: [f64; 21] = [
    14.0, 55.6, 66.2, 79.0, 85.0, 96.0, 106.0, 116.0, 123.0, 133.4, 148.0, 161.2, 187.2, 204.0,
    220.4, 235.0, 273.0, 317.4, 358.8, 508.2, 1194.0,
];

/// A brain mask on a regular grid.
#[derive(Clone, Debug)]
pub(crate) struct Grid {
    pub dims: [usize; 3],
    pub affine: Affine,
    /// Per grid voxel (x fastest): inside the brain.
    pub mask: Vec<bool>,
}

impl Grid {
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Grid indices of the brain voxels, ascending.
    pub fn brain_voxels(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.mask[i]).collect()
    }

    fn neighbours(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        let [nx, ny, nz] = self.dims;
        let (x, y, z) = (index % nx, (index / nx) % ny, index / (nx * ny));
        let steps: [(bool, isize); 6] = [
            (x > 0, -1),
            (x + 1 < nx, 1),
            (y > 0, -(nx as isize)),
            (y + 1 < ny, nx as isize),
            (z > 0, -((nx * ny) as isize)),
            (z + 1 < nz, (nx * ny) as isize),
        ];
        steps.into_iter().filter(|(ok, _)| *ok).map(move |(_, d)| index.wrapping_add_signed(d))
    }
}

/// The MNI152 brain mask at `resolution_mm`: the shipped 2 mm (or 3 mm) mask, majority-pooled
/// over blocks of (resolution / 2)³ (or / 3) voxels.
pub(crate) fn mni_mask(resolution_mm: f64) -> Result<Grid> {
    let (bytes, base, name) = [(MASK_2MM, 2.0, "MNI152_T1_2mm_brain_mask.nii.gz"), (MASK_3MM, 3.0, "MNI152_T1_3mm_brain_mask.nii.gz")]
        .into_iter()
        .find(|(_, base, _)| {
            let factor = resolution_mm / base;
            (factor - factor.round()).abs() < 1e-6 && factor.round() >= 1.0
        })
        .ok_or_else(|| {
            IngestError::Params(format!(
                "resolution_mm {resolution_mm}: the MNI152 mask comes at 2 and 3 mm; choose a multiple of 2 or 3 mm"
            ))
        })?;
    let volume = read_volume(bytes, Path::new(name))?;
    let factor = (resolution_mm / base).round() as usize;
    let dims = volume.dims.map(|d| d.div_ceil(factor));
    let mut counts = vec![0usize; dims.iter().product()];
    let [sx, sy, _] = volume.dims;
    for (i, &v) in volume.data.iter().enumerate() {
        if v > 0.5 {
            let (x, y, z) = (i % sx / factor, (i / sx) % sy / factor, i / (sx * sy) / factor);
            counts[x + dims[0] * (y + dims[1] * z)] += 1;
        }
    }
    let block = factor * factor * factor;
    let mask = counts.iter().map(|&c| 2 * c >= block && c > 0).collect();
    // Pooled voxel centres sit at the centre of their block.
    let mut affine = volume.affine;
    for row in &mut affine {
        let shift: f64 = (0..3).map(|c| row[c] * (factor as f64 - 1.0) / 2.0).sum();
        for v in row.iter_mut().take(3) {
            *v *= factor as f64;
        }
        row[3] += shift;
    }
    Ok(Grid { dims, affine, mask })
}

/// Draws `rois` parcel sizes (voxels) from the Gordon distribution at `resolution_mm`.
pub(crate) fn gordon_sizes(rois: usize, resolution_mm: f64, seed: u64) -> Vec<usize> {
    let scale = (2.0 / resolution_mm).powi(3);
    let mut rng = stream(seed, "roi-sizes", 0, 0);
    let mut sizes: Vec<usize> = (0..rois)
        .map(|i| {
            // Stratified quantiles: the 333-ROI atlas gets the Gordon spread exactly, not by luck.
            let q = (i as f64 + rng.r#gen::<f64>()) / rois as f64 * 20.0;
            let (lo, frac) = (q.floor() as usize, q.fract());
            let hi = (lo + 1).min(20);
            let size = GORDON_SIZE_QUANTILES_2MM[lo.min(20)] * (1.0 - frac)
                + GORDON_SIZE_QUANTILES_2MM[hi] * frac;
            ((size * scale).round() as usize).max(1)
        })
        .collect();
    shuffle(&mut rng, &mut sizes);
    sizes
}

/// City-block depth of each brain voxel below the brain surface (1 = on the surface), 0 outside.
fn depth(grid: &Grid) -> Vec<u32> {
    let mut depth = vec![0u32; grid.len()];
    let mut frontier: Vec<usize> = grid
        .brain_voxels()
        .into_iter()
        .filter(|&i| {
            let inner = grid.neighbours(i).filter(|&n| grid.mask[n]).count();
            inner < 6
        })
        .collect();
    for &i in &frontier {
        depth[i] = 1;
    }
    let mut level = 1;
    while !frontier.is_empty() {
        level += 1;
        let mut next = Vec::new();
        for &i in &frontier {
            for n in grid.neighbours(i) {
                if grid.mask[n] && depth[n] == 0 {
                    depth[n] = level;
                    next.push(n);
                }
            }
        }
        frontier = next;
    }
    depth
}

/// A parcel still growing, ordered so the least-filled parcel grows next.
#[derive(PartialEq)]
struct Growing {
    fill: f64,
    roi: usize,
}

impl Eq for Growing {}
impl Ord for Growing {
    fn cmp(&self, other: &Self) -> Ordering {
        other.fill.total_cmp(&self.fill).then_with(|| other.roi.cmp(&self.roi))
    }
}
impl PartialOrd for Growing {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A contiguous parcellation of the brain's outer shell (the Gordon atlas is cortical): labels
/// 1..=`targets.len()` per grid voxel, 0 for unparcellated voxels.
///
/// The shell is the shallowest Σ`targets` brain voxels. Seeds are spread by a minimum-distance
/// rule; parcels then grow by breadth-first search, the least-filled parcel first, each stopping
/// at its target, so every parcel is 6-connected and most reach their drawn size.
pub(crate) fn parcellate(grid: &Grid, targets: &[usize], seed: u64) -> Vec<i16> {
    let mut rng = stream(seed, "parcellation", 0, 0);
    let depth = depth(grid);
    let total: usize = targets.iter().sum();
    let mut shell: Vec<(f64, usize)> = grid
        .brain_voxels()
        .into_iter()
        .map(|i| (f64::from(depth[i]) + rng.r#gen::<f64>() * 0.999, i))
        .collect();
    shell.sort_by(|a, b| a.0.total_cmp(&b.0));
    shell.truncate(total.min(shell.len()));
    let mut in_shell = vec![false; grid.len()];
    for &(_, i) in &shell {
        in_shell[i] = true;
    }
    let mut candidates: Vec<usize> = shell.iter().map(|&(_, i)| i).collect();
    candidates.sort_unstable();
    shuffle(&mut rng, &mut candidates);
    let seeds = spread_seeds(grid, &candidates, targets.len(), total);

    let mut labels = vec![0i16; grid.len()];
    let mut sizes = vec![0usize; targets.len()];
    let frontiers = seeds.iter().map(|&s| VecDeque::from([s])).collect();
    grow(grid, &mut labels, &mut sizes, targets, frontiers, &in_shell);
    // Parcels boxed in by their neighbours before reaching their size may reach a little deeper
    // (into the brain below the shell), as Gordon parcels follow the cortical ribbon inwards.
    let mut frontiers = vec![VecDeque::new(); targets.len()];
    for (v, &label) in labels.iter().enumerate() {
        if label > 0 {
            let open = grid.neighbours(v).filter(|&n| grid.mask[n] && labels[n] == 0);
            frontiers[label as usize - 1].extend(open);
        }
    }
    grow(grid, &mut labels, &mut sizes, targets, frontiers, &grid.mask);
    labels
}

/// Grows parcels breadth-first from `frontiers` inside `region`, least-filled parcel first, each
/// up to its target size.
fn grow(
    grid: &Grid,
    labels: &mut [i16],
    sizes: &mut [usize],
    targets: &[usize],
    mut frontiers: Vec<VecDeque<usize>>,
    region: &[bool],
) {
    let mut heap: BinaryHeap<Growing> = (0..targets.len())
        .filter(|&roi| sizes[roi] < targets[roi])
        .map(|roi| Growing { fill: sizes[roi] as f64 / targets[roi] as f64, roi })
        .collect();
    while let Some(Growing { roi, .. }) = heap.pop() {
        let label = i16::try_from(roi + 1).unwrap_or(i16::MAX);
        while let Some(v) = frontiers[roi].pop_front() {
            if labels[v] != 0 {
                continue;
            }
            labels[v] = label;
            sizes[roi] += 1;
            frontiers[roi].extend(grid.neighbours(v).filter(|&n| region[n] && labels[n] == 0));
            break;
        }
        if sizes[roi] < targets[roi] && !frontiers[roi].is_empty() {
            heap.push(Growing { fill: sizes[roi] as f64 / targets[roi] as f64, roi });
        }
    }
}

/// Picks `k` seeds from `candidates` (shuffled) keeping them apart: a seed is accepted only if
/// no earlier seed lies within the radius a parcel of mean size would span; if too few pass, the
/// radius shrinks.
fn spread_seeds(grid: &Grid, candidates: &[usize], k: usize, total: usize) -> Vec<usize> {
    let [nx, ny, _] = grid.dims;
    let coord = |i: usize| [(i % nx) as f64, ((i / nx) % ny) as f64, (i / (nx * ny)) as f64];
    // The shell is sheet-like, so a parcel of n voxels spans about √n voxels.
    let mut radius = ((total as f64 / k.max(1) as f64).sqrt()).max(1.0);
    loop {
        let mut seeds: Vec<usize> = Vec::with_capacity(k);
        let mut points: Vec<[f64; 3]> = Vec::with_capacity(k);
        for &c in candidates {
            let p = coord(c);
            if points
                .iter()
                .all(|q| (0..3).map(|d| (p[d] - q[d]).powi(2)).sum::<f64>() >= radius * radius)
            {
                seeds.push(c);
                points.push(p);
                if seeds.len() == k {
                    return seeds;
                }
            }
        }
        if radius < 1.0 {
            // Fewer candidates than parcels is refused by the caller; fill up regardless.
            for &c in candidates {
                if seeds.len() == k {
                    break;
                }
                if !seeds.contains(&c) {
                    seeds.push(c);
                }
            }
            return seeds;
        }
        radius *= 0.8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_mm_mask_has_a_few_thousand_voxels_and_centred_affine() {
        let grid = mni_mask(6.0).expect("6 mm");
        assert_eq!(grid.dims, [31, 37, 31]);
        let n = grid.brain_voxels().len();
        assert!((5_000..12_000).contains(&n), "{n} voxels");
        assert_eq!(grid.affine[0], [-6.0, 0.0, 0.0, 88.0]);
        assert!(mni_mask(3.0).is_ok() && mni_mask(9.0).is_ok());
        let err = mni_mask(5.0).expect_err("5 mm").to_string();
        assert!(err.contains("multiple of 2 or 3"), "{err}");
    }

    #[test]
    fn gordon_sizes_follow_the_real_distribution() {
        let sizes = gordon_sizes(333, 2.0, 1);
        let mean = sizes.iter().sum::<usize>() as f64 / 333.0;
        assert!((mean - 197.4).abs() < 10.0, "mean {mean}");
        assert!(sizes.iter().all(|&s| (14..=1194).contains(&s)));
    }

    #[test]
    fn parcels_are_contiguous_and_near_their_size() {
        let grid = mni_mask(12.0).expect("12 mm");
        let targets = gordon_sizes(40, 6.0, 3);
        let labels = parcellate(&grid, &targets, 3);
        for roi in 1..=40i16 {
            let voxels: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == roi).collect();
            assert!(!voxels.is_empty(), "parcel {roi} is empty");
            let mut seen = vec![voxels[0]];
            let mut stack = vec![voxels[0]];
            while let Some(v) = stack.pop() {
                for n in grid.neighbours(v) {
                    if labels[n] == roi && !seen.contains(&n) {
                        seen.push(n);
                        stack.push(n);
                    }
                }
            }
            assert_eq!(seen.len(), voxels.len(), "parcel {roi} is not contiguous");
        }
        let labelled = labels.iter().filter(|&&l| l > 0).count();
        assert!(
            labelled as f64 > 0.95 * targets.iter().sum::<usize>() as f64,
            "{labelled} of {}",
            targets.iter().sum::<usize>()
        );
    }
}
