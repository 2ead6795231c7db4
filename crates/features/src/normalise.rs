//! Per-voxel z-scoring within groups of trials, and the voxels that cannot be z-scored.

use rayon::prelude::*;

/// Over which trials each voxel is z-scored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalise {
    /// Values as read.
    None,
    /// Over all the subject's trials.
    Subject,
    /// Over the trials of each (session, run) of the subject — the usual per-run z-scoring of
    /// beta maps, which removes run-level offsets and gains.
    #[default]
    Run,
}

/// Why a voxel is dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Voxels with a NaN or infinite value in some trial.
    pub non_finite: usize,
    /// Voxels with zero variance over some normalisation group (over the subject for `none`).
    pub constant: usize,
}

/// Trials-per-voxel statistics: per group, per voxel, the mean and `1/sd`.
pub struct Standardiser {
    width: usize,
    group_of_trial: Vec<usize>,
    /// `groups × width` means.
    means: Vec<f64>,
    /// `groups × width` reciprocal standard deviations (population sd).
    inv_sd: Vec<f64>,
}

impl Standardiser {
    /// Computes the statistics of `values` (`trials × width`, row-major), trials grouped by
    /// `group_of_trial` (ids 0..groups).
    pub fn fit(values: &[f32], width: usize, group_of_trial: &[usize]) -> Self {
        let groups = group_of_trial.iter().max().map_or(0, |m| m + 1);
        let mut counts = vec![0usize; groups];
        for &g in group_of_trial {
            counts[g] += 1;
        }
        let mut means = vec![0.0f64; groups * width];
        let mut sq = vec![0.0f64; groups * width];
        // two passes (mean, then squared deviations) for accuracy, in chunks of voxels
        const CHUNK: usize = 4096;
        for (g, (mean, sq)) in
            means.chunks_mut(width.max(1)).zip(sq.chunks_mut(width.max(1))).enumerate()
        {
            mean.par_chunks_mut(CHUNK).zip(sq.par_chunks_mut(CHUNK)).enumerate().for_each(
                |(chunk, (mean, sq))| {
                    let rows =
                        GroupRows { values, width, group_of_trial, group: g, from: chunk * CHUNK };
                    rows.moments(mean, sq, counts[g]);
                },
            );
        }
        let inv_sd =
            sq.iter().map(|&s| if s > 0.0 { 1.0 / s.sqrt() } else { f64::INFINITY }).collect();
        Standardiser { width, group_of_trial: group_of_trial.to_vec(), means, inv_sd }
    }

    /// Voxels that cannot be z-scored (or, for `none`, carry no signal): NaN/inf anywhere, or
    /// zero variance in some group. Returns the keep mask and the counts.
    pub fn usable(&self, values: &[f32]) -> (Vec<bool>, Dropped) {
        let mut finite = vec![true; self.width];
        for row in values.chunks_exact(self.width.max(1)) {
            for (f, v) in finite.iter_mut().zip(row) {
                *f &= v.is_finite();
            }
        }
        let groups = self.means.len() / self.width.max(1);
        let mut dropped = Dropped::default();
        let keep = (0..self.width)
            .map(|v| {
                if !finite[v] {
                    dropped.non_finite += 1;
                    return false;
                }
                let constant = (0..groups).any(|g| self.inv_sd[g * self.width + v].is_infinite());
                dropped.constant += usize::from(constant);
                !constant
            })
            .collect();
        (keep, dropped)
    }

    /// z-scores `values` in place: `(x - mean) / sd` of the trial's group, in `f64`.
    pub fn apply(&self, values: &mut [f32]) {
        let width = self.width.max(1);
        values.par_chunks_mut(width).zip(self.group_of_trial.par_iter()).for_each(|(row, &g)| {
            let mean = &self.means[g * self.width..(g + 1) * self.width];
            let inv = &self.inv_sd[g * self.width..(g + 1) * self.width];
            for ((x, m), s) in row.iter_mut().zip(mean).zip(inv) {
                *x = ((f64::from(*x) - m) * s) as f32;
            }
        });
    }
}

/// The rows of one group, restricted to the voxels `from..from + len`.
struct GroupRows<'a> {
    values: &'a [f32],
    width: usize,
    group_of_trial: &'a [usize],
    group: usize,
    from: usize,
}

impl GroupRows<'_> {
    /// Mean and population variance of each voxel over the group's `count` trials.
    fn moments(&self, mean: &mut [f64], var: &mut [f64], count: usize) {
        let len = mean.len();
        let rows = || {
            self.group_of_trial
                .iter()
                .enumerate()
                .filter(|&(_, &g)| g == self.group)
                .map(|(t, _)| &self.values[t * self.width + self.from..][..len])
        };
        for row in rows() {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        let n = count.max(1) as f64;
        mean.iter_mut().for_each(|m| *m /= n);
        for row in rows() {
            for ((s, m), &x) in var.iter_mut().zip(mean.iter()).zip(row) {
                let d = f64::from(x) - m;
                *s += d * d;
            }
        }
        var.iter_mut().for_each(|s| *s /= n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zscores_per_group_and_flags_bad_voxels() {
        // 4 trials × 3 voxels; groups [0, 0, 1, 1]; voxel 1 constant in group 1; voxel 2 has NaN
        let values = vec![
            1.0,
            5.0,
            0.0, //
            3.0,
            6.0,
            1.0, //
            10.0,
            7.0,
            2.0, //
            20.0,
            7.0,
            f32::NAN,
        ];
        let s = Standardiser::fit(&values, 3, &[0, 0, 1, 1]);
        let (keep, dropped) = s.usable(&values);
        assert_eq!(keep, vec![true, false, false]);
        assert_eq!(dropped, Dropped { non_finite: 1, constant: 1 });
        let mut z = values.clone();
        s.apply(&mut z);
        assert_eq!([z[0], z[3], z[6], z[9]], [-1.0, 1.0, -1.0, 1.0]);
    }
}
