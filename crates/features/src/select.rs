//! Pereira et al. (2018)'s stability selection: keep the voxels whose responses to the same
//! stimuli agree across presentations.
//!
//! **The rule.** Only *training* trials count: every trial whose stimulus or run the caller lists
//! as held out is ignored, so no test information reaches the choice. A *presentation* is one pass
//! over the stimuli: trials are keyed by (paradigm, how many earlier training trials of the same
//! stimulus that paradigm has), so three paradigms with one trial per stimulus give three
//! presentations, and a paradigm that repeats each stimulus twice gives two. The stimuli used are
//! those present in every presentation (sorted). A voxel's stability is the mean, over all pairs of
//! presentations, of the Pearson correlation of its responses to those stimuli; a voxel with no
//! variance in some presentation scores −∞. The `top` most stable voxels are kept (ties: lower
//! column first), in their original column order.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;

/// Stability of each voxel; `values` is `trials × width`, `train[t]` marks training trials.
///
/// Errors (as a message) when fewer than two presentations or three common stimuli remain.
pub fn stability(
    values: &[f32],
    width: usize,
    stimulus: &[String],
    paradigm: &[String],
    train: &[bool],
) -> Result<Vec<f64>, String> {
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    // presentation key → stimulus → trial
    let mut presentations: BTreeMap<(&str, usize), BTreeMap<&str, usize>> = BTreeMap::new();
    for t in (0..stimulus.len()).filter(|&t| train[t]) {
        let repeat = seen.entry((&paradigm[t], &stimulus[t])).or_default();
        presentations.entry((&paradigm[t], *repeat)).or_default().insert(&stimulus[t], t);
        *repeat += 1;
    }
    if presentations.len() < 2 {
        return Err(format!(
            "stability selection needs ≥ 2 presentations of the same stimuli among the training \
             trials, found {}",
            presentations.len()
        ));
    }
    let mut common: Option<BTreeSet<&str>> = None;
    for trials in presentations.values() {
        let keys: BTreeSet<&str> = trials.keys().copied().collect();
        common = Some(match common {
            None => keys,
            Some(c) => c.intersection(&keys).copied().collect(),
        });
    }
    let common: Vec<&str> = common.unwrap_or_default().into_iter().collect();
    if common.len() < 3 {
        return Err(format!(
            "stability selection needs ≥ 3 stimuli shown in every presentation, found {}",
            common.len()
        ));
    }
    // rows of each presentation, in common-stimulus order
    let rows: Vec<Vec<usize>> =
        presentations.values().map(|p| common.iter().map(|s| p[s]).collect()).collect();
    let pairs = rows.len() * (rows.len() - 1) / 2;
    let mut scores = vec![0.0f64; width];
    const CHUNK: usize = 1024;
    scores.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, scores)| {
        let from = chunk * CHUNK;
        let len = scores.len();
        // per presentation: centred responses scaled to unit norm, stimulus-major
        let unit: Vec<Vec<f64>> = rows
            .iter()
            .map(|trials| {
                let mut m = vec![0.0f64; trials.len() * len];
                for (s, &t) in trials.iter().enumerate() {
                    for (v, &x) in values[t * width + from..][..len].iter().enumerate() {
                        m[s * len + v] = f64::from(x);
                    }
                }
                for v in 0..len {
                    let n = trials.len() as f64;
                    let mean = (0..trials.len()).map(|s| m[s * len + v]).sum::<f64>() / n;
                    let norm = (0..trials.len())
                        .map(|s| (m[s * len + v] - mean).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    for s in 0..trials.len() {
                        let x = &mut m[s * len + v];
                        *x = if norm > 0.0 { (*x - mean) / norm } else { f64::NAN };
                    }
                }
                m
            })
            .collect();
        for (v, score) in scores.iter_mut().enumerate() {
            let mut total = 0.0;
            for a in 0..unit.len() {
                for b in a + 1..unit.len() {
                    total += (0..common.len())
                        .map(|s| unit[a][s * len + v] * unit[b][s * len + v])
                        .sum::<f64>();
                }
            }
            let mean = total / pairs as f64;
            *score = if mean.is_nan() { f64::NEG_INFINITY } else { mean };
        }
    });
    Ok(scores)
}

/// The columns of the `top` best scores, in ascending column order (ties: lower column first).
pub fn top_columns(scores: &[f64], top: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(top);
    order.sort_unstable();
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_voxels_win_and_test_trials_are_ignored() {
        // 2 paradigms × 3 stimuli (+ one held-out trial); voxel 0 stable, voxel 1 anti-stable,
        // voxel 2 constant in paradigm b
        let stimulus: Vec<String> = ["x", "y", "z", "x", "y", "z", "w"].map(String::from).to_vec();
        let paradigm: Vec<String> = ["a", "a", "a", "b", "b", "b", "b"].map(String::from).to_vec();
        let values = vec![
            1.0, 1.0, 1.0, //
            2.0, 2.0, 2.0, //
            3.0, 3.0, 3.0, //
            1.0, 3.0, 5.0, //
            2.0, 2.0, 5.0, //
            3.0, 1.0, 5.0, //
            99.0, 99.0, 99.0,
        ];
        let train = [true, true, true, true, true, true, false];
        let s = stability(&values, 3, &stimulus, &paradigm, &train).expect("enough trials");
        assert!((s[0] - 1.0).abs() < 1e-12 && (s[1] + 1.0).abs() < 1e-12, "{s:?}");
        assert_eq!(s[2], f64::NEG_INFINITY);
        assert_eq!(top_columns(&s, 2), vec![0, 1]);
        let only_a = [true, true, true, false, false, false, false];
        let err =
            stability(&values, 3, &stimulus, &paradigm, &only_a).expect_err("one presentation");
        assert!(err.contains("≥ 2 presentations"), "{err}");
    }
}
