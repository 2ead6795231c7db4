//! Input selection per fold: which template columns a fold's model reads, chosen from that fold's
//! training scans only.
//!
//! **Stability** (after Pereira et al. 2018, across groups instead of presentations): the
//! training scans are split into groups — their subjects, or their paradigms when the training
//! side holds a single subject (within-subject folds) — and each column's per-word mean response
//! is computed in each group over the words every group saw. A column's stability is the mean
//! Pearson correlation of those word profiles over all pairs of groups: a column that answers the
//! same words the same way in every training subject carries word information a held-out subject
//! is likely to share.
//!
//! - `voxel_stability` keeps the `select_columns` most stable columns.
//! - `roi_stability` scores each ROI by the mean stability of its columns and keeps whole ROIs,
//!   best first, until at least `select_columns` columns are kept. One column's stability over a
//!   few subjects is noisy; an ROI's mean over its columns is not, and the signal of a brain
//!   region is shared by its voxels (on the demo study, ridge's top-5 rises from 18 % with every
//!   column to 39 % with ~200 columns of whole ROIs, against 29 % with the ~200 most stable
//!   single columns; docs/MODELS.md).
//!
//! The test scans of a fold never enter the choice (they are not in `rows`).

pub use brainpipe_params::models::Selection;

use crate::data::Dataset;
use crate::error::{ModelsError, Result};

/// The columns a fold's model reads, and its ROI blocks renumbered over them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selected {
    /// Template columns, ascending.
    pub columns: Vec<usize>,
    /// ROI blocks `(first, size)` over the selected columns (empty when no blocks were given).
    pub blocks: Vec<(usize, usize)>,
}

/// Columns per pass over the scans: bounds the group × word × chunk sums (15 subjects × 180
/// words × 4,096 columns × 8 bytes ≈ 88 MB at most).
const COLUMN_CHUNK: usize = 4096;

/// Stability of every column of `data` over the scans `rows` (see the module docs). Columns whose
/// word profile is constant in some group score 0.
pub fn stability(data: &Dataset, rows: &[usize]) -> Result<Vec<f64>> {
    let group_of = groups(data, rows)?;
    let n_groups = group_of.iter().copied().max().map_or(0, |g| g + 1);
    let words = data.targets.len();
    // Words every group saw: the profiles must be comparable.
    let mut seen = vec![vec![false; words]; n_groups];
    for (&r, &g) in rows.iter().zip(&group_of) {
        seen[g][data.target_row[r]] = true;
    }
    let common: Vec<usize> = (0..words).filter(|&w| seen.iter().all(|s| s[w])).collect();
    if common.len() < 3 {
        return Err(ModelsError::Params(format!(
            "stability selection: the training groups share {} word(s); at least 3 are needed",
            common.len()
        )));
    }
    let mut slot = vec![usize::MAX; words];
    for (i, &w) in common.iter().enumerate() {
        slot[w] = i;
    }
    let n_words = common.len();
    let mut counts = vec![0.0f64; n_groups * n_words];
    for (&r, &g) in rows.iter().zip(&group_of) {
        if slot[data.target_row[r]] != usize::MAX {
            counts[g * n_words + slot[data.target_row[r]]] += 1.0;
        }
    }
    let width = data.width;
    let mut out = Vec::with_capacity(width);
    for start in (0..width).step_by(COLUMN_CHUNK) {
        let len = COLUMN_CHUNK.min(width - start);
        let mut sums = vec![0.0f64; n_groups * n_words * len];
        for (&r, &g) in rows.iter().zip(&group_of) {
            let s = slot[data.target_row[r]];
            if s == usize::MAX {
                continue;
            }
            let x = &data.x[r * width + start..r * width + start + len];
            let acc = &mut sums[(g * n_words + s) * len..(g * n_words + s + 1) * len];
            for (a, &v) in acc.iter_mut().zip(x) {
                *a += f64::from(v);
            }
        }
        let mut profile = vec![0.0f64; n_groups * n_words];
        for c in 0..len {
            for (i, p) in profile.iter_mut().enumerate() {
                *p = sums[i * len + c] / counts[i];
            }
            out.push(mean_pairwise_correlation(&mut profile, n_groups, n_words));
        }
    }
    Ok(out)
}

/// Mean Pearson correlation over all pairs of the `groups` rows of `profile` (`groups × words`),
/// via `Σ_{g<h} ⟨z_g, z_h⟩ = (|Σ z_g|² − Σ |z_g|²) / 2` on unit-norm centred rows. Normalises
/// `profile` in place.
fn mean_pairwise_correlation(profile: &mut [f64], groups: usize, words: usize) -> f64 {
    let mut total = vec![0.0f64; words];
    let mut self_sum = 0.0;
    for g in profile.chunks_exact_mut(words) {
        let mean = g.iter().sum::<f64>() / words as f64;
        g.iter_mut().for_each(|v| *v -= mean);
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm <= 1e-12 * (1.0 + mean.abs()) {
            return 0.0;
        }
        g.iter_mut().for_each(|v| *v /= norm);
        self_sum += 1.0;
        total.iter_mut().zip(g.iter()).for_each(|(t, v)| *t += v);
    }
    let pairs = (groups * (groups - 1) / 2) as f64;
    (total.iter().map(|t| t * t).sum::<f64>() - self_sum) / 2.0 / pairs
}

/// Group index of each of `rows`: its subject, or its paradigm when `rows` hold one subject.
fn groups(data: &Dataset, rows: &[usize]) -> Result<Vec<usize>> {
    for key in [&data.subject, &data.paradigm] {
        let mut names: Vec<&str> = rows.iter().map(|&r| key[r].as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() >= 2 {
            return Ok(rows
                .iter()
                .map(|&r| names.binary_search(&key[r].as_str()).unwrap_or_default())
                .collect());
        }
    }
    Err(ModelsError::Params(
        "stability selection needs training scans from at least 2 subjects or 2 paradigms".into(),
    ))
}

/// The columns `selection` keeps for a fold trained on `rows` (`None`: every column).
/// `blocks` are the template's ROI blocks (needed by `roi_stability`; renumbered either way).
pub fn select(
    data: &Dataset,
    rows: &[usize],
    blocks: &[(usize, usize)],
    selection: Selection,
    keep: usize,
) -> Result<Option<Selected>> {
    if selection == Selection::None {
        return Ok(None);
    }
    if keep == 0 {
        return Err(ModelsError::Params(
            "select_columns must be at least 1 when select is not `none`".into(),
        ));
    }
    let score = stability(data, rows)?;
    let mut columns = match selection {
        Selection::None => unreachable!("handled above"),
        Selection::VoxelStability => {
            let mut order: Vec<usize> = (0..data.width).collect();
            order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
            order.truncate(keep);
            order
        }
        Selection::RoiStability => {
            if blocks.is_empty() {
                return Err(ModelsError::Params(
                    "select: roi_stability needs the `rois` input (rois.parquet of features.template_pad)"
                        .into(),
                ));
            }
            let mean = |&(first, size): &(usize, usize)| {
                score[first..first + size].iter().sum::<f64>() / size.max(1) as f64
            };
            let mut order: Vec<usize> = (0..blocks.len()).collect();
            order.sort_by(|&a, &b| mean(&blocks[b]).total_cmp(&mean(&blocks[a])).then(a.cmp(&b)));
            let mut kept = Vec::new();
            for b in order {
                if kept.len() >= keep {
                    break;
                }
                let (first, size) = blocks[b];
                kept.extend(first..first + size);
            }
            kept
        }
    };
    columns.sort_unstable();
    columns.dedup();
    let blocks = renumber_blocks(blocks, &columns);
    Ok(Some(Selected { columns, blocks }))
}

/// `blocks` restricted to the ascending `columns` and renumbered over them; empty blocks dropped.
pub fn renumber_blocks(blocks: &[(usize, usize)], columns: &[usize]) -> Vec<(usize, usize)> {
    blocks
        .iter()
        .filter_map(|&(first, size)| {
            let lo = columns.partition_point(|&c| c < first);
            let hi = columns.partition_point(|&c| c < first + size);
            (hi > lo).then_some((lo, hi - lo))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use brainpipe_artifacts::Targets;

    /// 3 subjects × 2 repetitions × 6 words; 8 columns in 4 ROIs of 2. Columns 2–3 (ROI 1) and
    /// 6 (ROI 3) carry the word, the same in every subject; the rest is subject-specific noise.
    fn dataset() -> Dataset {
        let words = 6;
        let width = 8;
        let mut d = Dataset { width, ..Default::default() };
        d.targets = Targets {
            stimulus: (0..words).map(|w| format!("w{w}")).collect(),
            class: (0..words as i32).collect(),
            vectors: vec![0.0; words],
            dim: 1,
            ..Targets::default()
        };
        let mut state = 12345u64;
        let mut noise = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
        };
        for s in 0..3 {
            for rep in 0..2 {
                for w in 0..words {
                    let signal = [0.0, 3.0, -1.0, 2.0, -2.0, 1.0][w];
                    for c in 0..width {
                        let v = if [2, 3, 6].contains(&c) { signal } else { 0.0 };
                        d.x.push(v + 0.5 * noise());
                    }
                    d.subject.push(format!("s{s}"));
                    d.paradigm.push(format!("p{rep}"));
                    d.stimulus.push(format!("w{w}"));
                    d.trial.push(0);
                    d.target_row.push(w);
                }
            }
        }
        d
    }

    #[test]
    fn stable_columns_and_rois_are_chosen_from_the_given_rows_only() {
        let d = dataset();
        let rows: Vec<usize> = (0..d.len()).collect();
        let score = stability(&d, &rows).expect("stability");
        for c in [2, 3, 6] {
            assert!(score[c] > 0.9, "column {c}: {}", score[c]);
        }
        for c in [0, 1, 4, 5, 7] {
            assert!(score[c] < 0.9, "column {c}: {}", score[c]);
        }
        let blocks = [(0, 2), (2, 2), (4, 2), (6, 2)];
        let v = select(&d, &rows, &blocks, Selection::VoxelStability, 3)
            .expect("selection")
            .expect("some columns");
        assert_eq!(v.columns, vec![2, 3, 6]);
        assert_eq!(v.blocks, vec![(0, 2), (2, 1)]);
        let r = select(&d, &rows, &blocks, Selection::RoiStability, 2)
            .expect("selection")
            .expect("some columns");
        assert_eq!(r.columns, vec![2, 3]);
        assert_eq!(r.blocks, vec![(0, 2)]);
        let r = select(&d, &rows, &blocks, Selection::RoiStability, 3)
            .expect("selection")
            .expect("some columns");
        assert_eq!(r.columns, vec![2, 3, 6, 7]);
        // One subject: groups are its paradigms.
        let one: Vec<usize> = (0..d.len()).filter(|&i| d.subject[i] == "s1").collect();
        let score = stability(&d, &one).expect("stability");
        assert!(score[2] > 0.9 && score[0] < 0.9);
        // Rows of one subject and one paradigm cannot be grouped.
        let single: Vec<usize> = one.iter().copied().filter(|&i| d.paradigm[i] == "p0").collect();
        assert!(stability(&d, &single).is_err());
        assert!(select(&d, &rows, &[], Selection::RoiStability, 2).is_err());
        assert!(select(&d, &rows, &blocks, Selection::VoxelStability, 0).is_err());
        assert_eq!(select(&d, &rows, &blocks, Selection::None, 0).expect("none"), None);
    }

    #[test]
    fn pairwise_correlation_matches_its_definition() {
        let mut p = vec![1.0, 2.0, 3.0, 4.0, 2.0, 1.0, 4.0, 3.0, 0.0, 5.0, 1.0, 1.0];
        let rows: Vec<Vec<f64>> = p.chunks(4).map(<[f64]>::to_vec).collect();
        let corr = |a: &[f64], b: &[f64]| {
            let (ma, mb) = (a.iter().sum::<f64>() / 4.0, b.iter().sum::<f64>() / 4.0);
            let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
            let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
            let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
            cov / (va * vb).sqrt()
        };
        let expected =
            (corr(&rows[0], &rows[1]) + corr(&rows[0], &rows[2]) + corr(&rows[1], &rows[2])) / 3.0;
        assert!((mean_pairwise_correlation(&mut p, 3, 4) - expected).abs() < 1e-12);
    }
}
