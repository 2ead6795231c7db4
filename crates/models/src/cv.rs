//! Cross-validation folds and the validation split for early stopping.
//!
//! Brain2Word validated early stopping on the test subject; we never do: the validation scans of
//! a fold are drawn from its training scans only.

pub use brainpipe_params::models::{CrossValidation, Validation};

/// One fold: disjoint train, validation and test scan indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fold {
    /// 0-based fold number.
    pub index: usize,
    /// Subjects whose scans are tested (LOSO: one).
    pub test_subjects: Vec<String>,
    /// Scans the weights are fitted on.
    pub train: Vec<usize>,
    /// Scans early stopping watches (drawn from the training side).
    pub validation: Vec<usize>,
    /// Scans predicted.
    pub test: Vec<usize>,
}

/// A tiny deterministic generator (SplitMix64) for shuffles that do not depend on LibTorch.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Splits the training side `pool` into (train, validation).
fn split_validation(
    pool: Vec<usize>,
    subject: &[String],
    test_subjects: &[String],
    validation: Validation,
    fraction: f64,
    rng: &mut SplitMix,
) -> (Vec<usize>, Vec<usize>) {
    let mut subjects: Vec<&String> = pool.iter().map(|&i| &subject[i]).collect();
    subjects.sort();
    subjects.dedup();
    if validation == Validation::Subject && subjects.len() >= 2 {
        // The first training subject after the (first) test subject, cyclically.
        let after = test_subjects.first();
        let chosen = subjects
            .iter()
            .find(|s| after.is_some_and(|t| s.as_str() > t.as_str()))
            .unwrap_or(&subjects[0])
            .to_string();
        return pool.into_iter().partition(|&i| subject[i] != chosen);
    }
    let mut shuffled = pool;
    rng.shuffle(&mut shuffled);
    let n_val =
        ((shuffled.len() as f64 * fraction).round() as usize).min(shuffled.len().saturating_sub(2));
    let mut val = shuffled.split_off(shuffled.len() - n_val);
    shuffled.sort_unstable();
    val.sort_unstable();
    (shuffled, val)
}

/// The folds of `subject` (one entry per scan) under `cv`.
pub fn folds(
    subject: &[String],
    cv: CrossValidation,
    k: usize,
    validation: Validation,
    validation_fraction: f64,
    seed: u64,
) -> Vec<Fold> {
    let mut subjects: Vec<String> = subject.to_vec();
    subjects.sort();
    subjects.dedup();
    let mut rng = SplitMix::new(seed);
    let mut out = Vec::new();
    match cv {
        CrossValidation::LeaveOneSubjectOut => {
            for (index, test_subject) in subjects.iter().enumerate() {
                let (test, pool): (Vec<usize>, Vec<usize>) =
                    (0..subject.len()).partition(|&i| &subject[i] == test_subject);
                let tests = vec![test_subject.clone()];
                let (train, val) = split_validation(
                    pool,
                    subject,
                    &tests,
                    validation,
                    validation_fraction,
                    &mut rng,
                );
                out.push(Fold { index, test_subjects: tests, train, validation: val, test });
            }
        }
        CrossValidation::WithinSubject => {
            let k = k.max(2);
            for s in &subjects {
                let mut scans: Vec<usize> =
                    (0..subject.len()).filter(|&i| &subject[i] == s).collect();
                rng.shuffle(&mut scans);
                for f in 0..k {
                    let mut test: Vec<usize> = scans.iter().skip(f).step_by(k).copied().collect();
                    let pool: Vec<usize> =
                        scans.iter().copied().filter(|i| !test.contains(i)).collect();
                    test.sort_unstable();
                    let (train, val) = split_validation(
                        pool,
                        subject,
                        std::slice::from_ref(s),
                        Validation::Fraction,
                        validation_fraction,
                        &mut rng,
                    );
                    let index = out.len();
                    out.push(Fold {
                        index,
                        test_subjects: vec![s.clone()],
                        train,
                        validation: val,
                        test,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects() -> Vec<String> {
        (0..4).flat_map(|s| std::iter::repeat_n(format!("sub-0{s}"), 30)).collect()
    }

    #[test]
    fn loso_train_and_validation_never_hold_the_test_subject() {
        let subject = subjects();
        for validation in [Validation::Fraction, Validation::Subject] {
            let folds = folds(&subject, CrossValidation::LeaveOneSubjectOut, 0, validation, 0.1, 7);
            assert_eq!(folds.len(), 4);
            for f in &folds {
                let t = &f.test_subjects[0];
                assert!(f.test.iter().all(|&i| &subject[i] == t));
                assert_eq!(f.test.len(), 30);
                assert!(f.train.iter().all(|&i| &subject[i] != t), "train holds the test subject");
                assert!(
                    f.validation.iter().all(|&i| &subject[i] != t),
                    "validation holds the test subject"
                );
                assert!(!f.validation.is_empty());
                let mut all: Vec<usize> =
                    f.train.iter().chain(&f.validation).chain(&f.test).copied().collect();
                all.sort_unstable();
                assert_eq!(all, (0..120).collect::<Vec<_>>(), "a partition of every scan");
            }
        }
    }

    #[test]
    fn within_subject_folds_stay_inside_their_subject() {
        let subject = subjects();
        let folds =
            folds(&subject, CrossValidation::WithinSubject, 3, Validation::Fraction, 0.2, 1);
        assert_eq!(folds.len(), 12);
        for f in &folds {
            let s = &f.test_subjects[0];
            for &i in f.train.iter().chain(&f.validation).chain(&f.test) {
                assert_eq!(&subject[i], s);
            }
            assert!(f.test.iter().all(|i| !f.train.contains(i) && !f.validation.contains(i)));
        }
    }
}
