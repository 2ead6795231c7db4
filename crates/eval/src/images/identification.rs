//! 2-way identification (MindEye, Brain-Diffuser, Takagi & Nishimoto): with
//! `r = np.corrcoef(reals, preds)[:N, N:]`, reconstruction `j` scores the fraction of the other
//! seen images `i` whose features correlate with its features less than its own image's do,
//! `r[i, j] < r[j, j]`; the metric is the mean over reconstructions.

use rayon::prelude::*;

/// Per reconstruction `j`, `#{i : r[i, j] < r[j, j]} / (N − 1)`, where `r[i, j]` is the Pearson
/// correlation of seen image `i`'s features with reconstruction `j`'s. `reals` and `preds` are
/// `N × dim`, row-major; `N ≥ 2`. Rows with constant features correlate as NaN and never win.
pub fn two_way(reals: &[f64], preds: &[f64], dim: usize) -> Vec<f64> {
    assert!(dim > 0 && reals.len() == preds.len() && reals.len().is_multiple_of(dim));
    let n = reals.len() / dim;
    assert!(n >= 2, "2-way identification needs two images or more");
    let standardise = |rows: &[f64]| -> Vec<f64> {
        rows.par_chunks(dim)
            .flat_map_iter(|row| {
                let mean = row.iter().sum::<f64>() / dim as f64;
                let norm = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>().sqrt();
                row.iter().map(move |v| (v - mean) / norm)
            })
            .collect()
    };
    let (zr, zp) = (standardise(reals), standardise(preds));
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    (0..n)
        .into_par_iter()
        .map(|j| {
            let pj = &zp[j * dim..(j + 1) * dim];
            let own = dot(&zr[j * dim..(j + 1) * dim], pj);
            let wins =
                (0..n).filter(|&i| i != j && dot(&zr[i * dim..(i + 1) * dim], pj) < own).count();
            wins as f64 / (n - 1) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_swapped() {
        let reals = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(two_way(&reals, &reals, 3), vec![1.0; 3]);
        let swapped = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(two_way(&reals, &swapped, 3), vec![0.0, 0.0, 1.0]);
    }
}
