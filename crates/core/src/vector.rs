//! Cosine similarity on plain `f32` rows, shared by the stages that compare stored embeddings.

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}

/// The index and cosine of the row of `candidates` (row-major, width `a.len()`) closest to `a`;
/// the first on ties. `None` when there are no candidates.
pub fn closest(a: &[f32], candidates: &[f32]) -> Option<(usize, f32)> {
    candidates.chunks(a.len().max(1)).map(|c| cosine(a, c)).enumerate().fold(
        None,
        |best, (i, s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((i, s)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_takes_the_first_of_ties_and_zero_vectors_score_zero() {
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(closest(&[1.0, 0.0], &[]), None);
        let (i, c) = closest(&[1.0, 0.0], &[0.0, 1.0, 2.0, 0.0, 3.0, 0.0]).expect("closest");
        assert_eq!((i, c), (1, 1.0));
    }
}
