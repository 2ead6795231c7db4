//! Brain2Word's scores on plain slices: similarity of predictions to candidate targets, ranks,
//! top-k and pairwise accuracy. Everything is computed in `f64` from `f32` inputs.

use serde::{Deserialize, Serialize};

/// How a predicted vector is compared with each candidate target when ranking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Similarity {
    /// Cosine similarity (Brain2Word ranks the 180 GloVe vectors by cosine).
    #[default]
    Cosine,
    /// Pearson correlation (the synthetic study's oracle; Pereira et al. 2018).
    Pearson,
}

/// Row-major `rows × dim` vectors.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    /// The values.
    pub values: &'a [f32],
    /// The width of a row.
    pub dim: usize,
}

impl<'a> Rows<'a> {
    /// Wraps `values` as rows of `dim`.
    ///
    /// # Panics
    /// When `values` do not form whole rows: a programming error of the caller.
    pub fn new(values: &'a [f32], dim: usize) -> Self {
        assert!(dim > 0 && values.len().is_multiple_of(dim), "values must be rows × dim");
        Rows { values, dim }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len() / self.dim
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
}

/// A vector prepared for dot products: centred (Pearson) or not (cosine), divided by its norm.
/// A zero vector stays zero, so its similarity to anything is 0.
fn unit(row: &[f32], centre: bool) -> Vec<f64> {
    let n = row.len() as f64;
    let mean = if centre { row.iter().map(|&v| f64::from(v)).sum::<f64>() / n } else { 0.0 };
    let mut out: Vec<f64> = row.iter().map(|&v| f64::from(v) - mean).collect();
    let norm = out.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `similarity[i * candidates.len() + j]` between prediction i and candidate j.
pub fn similarity_matrix(
    predictions: Rows<'_>,
    candidates: Rows<'_>,
    kind: Similarity,
) -> Vec<f64> {
    let centre = kind == Similarity::Pearson;
    let cands: Vec<Vec<f64>> =
        (0..candidates.len()).map(|j| unit(candidates.row(j), centre)).collect();
    let mut out = Vec::with_capacity(predictions.len() * cands.len());
    for i in 0..predictions.len() {
        let p = unit(predictions.row(i), centre);
        out.extend(cands.iter().map(|c| dot(&p, c)));
    }
    out
}

/// 1-based rank of the true candidate of each prediction: the number of candidates at least as
/// similar as the true one (ties count against it, as in the synthetic study's oracle).
pub fn ranks(similarity: &[f64], candidates: usize, truth: &[usize]) -> Vec<usize> {
    truth
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let row = &similarity[i * candidates..(i + 1) * candidates];
            let own = row[t];
            row.iter().filter(|&&s| s >= own).count()
        })
        .collect()
}

/// Fraction of ranks ≤ k.
pub fn top_k(ranks: &[usize], k: usize) -> f64 {
    if ranks.is_empty() {
        return f64::NAN;
    }
    ranks.iter().filter(|&&r| r <= k).count() as f64 / ranks.len() as f64
}

/// Mean of the ranks.
pub fn mean_rank(ranks: &[usize]) -> f64 {
    if ranks.is_empty() {
        return f64::NAN;
    }
    ranks.iter().map(|&r| r as f64).sum::<f64>() / ranks.len() as f64
}

/// How many predictions have each rank: `histogram[r - 1]` for r in 1..=candidates.
pub fn rank_histogram(ranks: &[usize], candidates: usize) -> Vec<u64> {
    let mut counts = vec![0; candidates];
    for &r in ranks {
        if (1..=candidates).contains(&r) {
            counts[r - 1] += 1;
        }
    }
    counts
}

/// Brain2Word's pairwise accuracy over one block in which prediction i belongs to target i:
/// for every pair i < j, a hit when r(p_i,t_i) + r(p_j,t_j) > r(p_i,t_j) + r(p_j,t_i), r = Pearson.
/// Returns the fraction of hits (NaN for fewer than two rows); 180 words give 16,110 pairs.
pub fn pairwise_accuracy(predictions: Rows<'_>, targets: Rows<'_>) -> f64 {
    let n = predictions.len().min(targets.len());
    if n < 2 {
        return f64::NAN;
    }
    let r = similarity_matrix(predictions, targets, Similarity::Pearson);
    let at = |i: usize, j: usize| r[i * targets.len() + j];
    let mut hits = 0u64;
    let mut pairs = 0u64;
    for i in 0..n {
        for j in i + 1..n {
            pairs += 1;
            if at(i, i) + at(j, j) > at(i, j) + at(j, i) {
                hits += 1;
            }
        }
    }
    hits as f64 / pairs as f64
}

/// Chance levels for `candidates` candidates: top-k = k / candidates, pairwise 0.5.
pub fn chance_top_k(k: usize, candidates: usize) -> f64 {
    (k.min(candidates)) as f64 / candidates as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_predictions_rank_first() {
        let t = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let targets = Rows::new(&t, 2);
        let sim = similarity_matrix(targets, targets, Similarity::Cosine);
        let r = ranks(&sim, 3, &[0, 1, 2]);
        assert_eq!(r, vec![1, 1, 1]);
        assert_eq!(top_k(&r, 1), 1.0);
        assert_eq!(rank_histogram(&r, 3), vec![3, 0, 0]);
    }

    #[test]
    fn ties_count_against_the_truth() {
        let sim = [0.5, 0.5, 0.1];
        assert_eq!(ranks(&sim, 3, &[0]), vec![2]);
    }

    #[test]
    fn pairwise_is_one_for_perfect_and_counts_all_pairs() {
        let mut values = Vec::new();
        for i in 0..5 {
            for d in 0..4 {
                values.push(((i * 7 + d * 3) % 5) as f32 + if d == i % 4 { 2.0 } else { 0.0 });
            }
        }
        let rows = Rows::new(&values, 4);
        assert_eq!(pairwise_accuracy(rows, rows), 1.0);
    }
}
