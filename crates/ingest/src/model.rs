//! The generative model of a study's responses, and the oracle that knows it.
//!
//! For subject s, trial t showing stimulus w in condition (paradigm) p, brain voxel v of ROI r:
//!
//! ```text
//! y = o[p,v] + g[p] · a[r] · (W_s[v] · x̃[w]) + √(1−ρ)·white + √ρ·smooth
//! W_s = √(1−σ)·W + √σ·E_s
//! ```
//!
//! `x̃` is the stimulus vector z-scored per dimension; `W` (informative voxels × dims, entries
//! N(0, 1/dims)) is the shared encoding, `E_s` the subject's deviation with the same law, `σ` =
//! `subject_variability`; `a[r]` is zero outside informative ROIs and log-normal inside, scaled so
//! the mean signal variance over informative voxels is `snr` (noise variance is 1); `g[p]`, `o[p]`
//! are the paradigm's gain and smooth offset map; `ρ` = `smooth_fraction`.
//!
//! In the nonlinear world (`encoding: nonlinear`) `x̃[w]` is replaced, for the voxels of
//! informative ROI r, by that ROI's hidden units `h_r[w] = zscore_w(φ(A_r · x̃[w] + b_r))`: a fixed
//! random layer per ROI, shared by all subjects, whose units are z-scored over the stimuli; `W`
//! and `E_s` then weight those units instead of the stimulus dimensions.

use rand::Rng;
use rayon::prelude::*;

use crate::noise::Smoother;
use crate::params::EncodingKind;
use crate::rng::{fill_normal, normal, stream};

/// Log-normal spread of informative ROI strengths: the strongest ROIs carry several times the
/// signal of the weakest, so weighting ROIs (an ROI-aware model) pays.
pub(crate) const ROI_STRENGTH_LOG_SD: f64 = 0.8;
/// Log-normal spread of paradigm gains.
pub(crate) const PARADIGM_GAIN_LOG_SD: f64 = 0.25;
/// Standard deviation of paradigm offset maps, in noise units.
pub(crate) const PARADIGM_OFFSET_SD: f64 = 1.0;
/// Nonlinear world: hidden units of each informative ROI's random layer.
pub(crate) const NONLINEAR_HIDDEN_UNITS: usize = 16;
/// Nonlinear world: standard deviation of a hidden unit's input `A_r · x̃` (its weights are
/// N(0, gain²/dims)), in units of the unit-variance stimulus dimensions.
pub(crate) const NONLINEAR_INPUT_GAIN: f64 = 1.5;

/// Everything shared by all subjects: the "true encoding" the oracle knows.
pub(crate) struct Encoding {
    /// Brain-voxel positions (indices into the brain voxel list) of informative voxels.
    pub informative: Vec<usize>,
    /// Amplitude `a[r]` per informative voxel.
    pub amplitude: Vec<f32>,
    /// Shared weights, informative voxels × dims.
    pub weights: Vec<f32>,
    /// What voxel weights multiply, each stimuli × dims: linear, one table (the z-scored stimulus
    /// vectors); nonlinear, one per informative ROI (its hidden units).
    pub tables: Vec<Vec<f32>>,
    /// Table of each informative voxel.
    pub table_of_voxel: Vec<usize>,
    /// Width of a table row (linear: the stimulus vector's; nonlinear: the hidden units).
    pub dims: usize,
    /// Nonlinear world: the random layers the tables come from.
    pub hidden: Option<HiddenLayers>,
    /// Gain per condition.
    pub gains: Vec<f64>,
    /// Offset per condition × brain voxel.
    pub offsets: Vec<Vec<f32>>,
}

/// The nonlinear world's random layers, one per informative ROI (in `informative_rois` order):
/// `h_r = (φ(A_r · x̃ + b_r) − mean_r) / sd_r`, statistics over the stimuli.
pub(crate) struct HiddenLayers {
    /// `A_r`, ROIs × units × stimulus dims.
    pub weights: Vec<f32>,
    /// `b_r`, ROIs × units.
    pub bias: Vec<f32>,
    /// Mean and standard deviation of `φ(…)` over the stimuli, ROIs × units each.
    pub mean: Vec<f32>,
    pub sd: Vec<f32>,
}

/// The nonlinearity φ of the nonlinear world's hidden units (named in study.json).
fn phi(z: f32) -> f32 {
    z.cos()
}
/// φ's name, for study.json and encoding.safetensors.
pub(crate) const NONLINEARITY_NAME: &str = "cos";

impl HiddenLayers {
    /// Draws one layer per ROI and returns it with each ROI's table of z-scored hidden units
    /// (stimuli × units).
    fn draw(seed: u64, rois: usize, features: &[f32], dims: usize) -> (Self, Vec<Vec<f32>>) {
        let units = NONLINEAR_HIDDEN_UNITS;
        let stimuli = features.len() / dims.max(1);
        let scale = (NONLINEAR_INPUT_GAIN / (dims as f64).sqrt()) as f32;
        let mut layers = HiddenLayers {
            weights: Vec::with_capacity(rois * units * dims),
            bias: Vec::with_capacity(rois * units),
            mean: Vec::with_capacity(rois * units),
            sd: Vec::with_capacity(rois * units),
        };
        let mut tables = Vec::with_capacity(rois);
        for roi in 0..rois {
            let mut rng = stream(seed, "nonlinear-encoding", roi as u64, 0);
            let mut a = vec![0.0f32; units * dims];
            fill_normal(&mut rng, &mut a);
            a.iter_mut().for_each(|w| *w *= scale);
            let b: Vec<f32> =
                (0..units).map(|_| rng.r#gen::<f32>() * std::f32::consts::TAU).collect();
            let mut raw = vec![0.0f32; stimuli * units];
            for (s, x) in features.chunks_exact(dims).enumerate() {
                for (u, row) in a.chunks_exact(dims).enumerate() {
                    let z: f32 = row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>() + b[u];
                    raw[s * units + u] = phi(z);
                }
            }
            let (mean, sd) = column_moments(&raw, units);
            layers.weights.extend(a);
            layers.bias.extend(b);
            layers.mean.extend(mean.iter().map(|&m| m as f32));
            layers.sd.extend(sd.iter().map(|&d| d as f32));
            tables.push(zscore_columns(&raw, units));
        }
        (layers, tables)
    }
}

/// Mean and (population) standard deviation of each column of `values` (rows × dim).
fn column_moments(values: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let rows = values.len() / dim.max(1);
    (0..dim)
        .map(|j| {
            let mean = (0..rows).map(|i| f64::from(values[i * dim + j])).sum::<f64>() / rows as f64;
            let var =
                (0..rows).map(|i| (f64::from(values[i * dim + j]) - mean).powi(2)).sum::<f64>()
                    / rows as f64;
            (mean, var.sqrt())
        })
        .unzip()
}

/// Z-scores each column of `values` (rows × dim); constant columns become 0.
pub(crate) fn zscore_columns(values: &[f32], dim: usize) -> Vec<f32> {
    let (mean, sd) = column_moments(values, dim);
    let mut out = values.to_vec();
    for (i, v) in out.iter_mut().enumerate() {
        let j = i % dim;
        *v = if sd[j] > 1e-12 { ((f64::from(*v) - mean[j]) / sd[j]) as f32 } else { 0.0 };
    }
    out
}

/// What the encoding is built from.
pub(crate) struct EncodingSpec<'a> {
    pub seed: u64,
    /// ROI label per brain voxel (0: none).
    pub roi_of_voxel: &'a [i16],
    pub informative_rois: &'a [i16],
    /// Strength per informative ROI (mean square 1).
    pub roi_strength: &'a [f64],
    pub snr: f64,
    /// Z-scored stimulus vectors, stimuli × dims.
    pub features: Vec<f32>,
    pub dims: usize,
    pub kind: EncodingKind,
    pub conditions: usize,
    pub grid_smoother: Option<&'a Smoother>,
    pub grid_len: usize,
    pub brain: &'a [usize],
}

impl Encoding {
    pub fn new(spec: EncodingSpec<'_>) -> Self {
        let mut informative = Vec::new();
        let mut amplitude = Vec::new();
        let mut roi_index = Vec::new();
        for (v, &roi) in spec.roi_of_voxel.iter().enumerate() {
            if let Some(i) = spec.informative_rois.iter().position(|&r| r == roi) {
                informative.push(v);
                amplitude.push((spec.snr.sqrt() * spec.roi_strength[i]) as f32);
                roi_index.push(i);
            }
        }
        let (tables, table_of_voxel, dims, hidden) = match spec.kind {
            EncodingKind::Linear => {
                (vec![spec.features], vec![0; informative.len()], spec.dims, None)
            }
            EncodingKind::Nonlinear => {
                let (layers, tables) = HiddenLayers::draw(
                    spec.seed,
                    spec.informative_rois.len(),
                    &spec.features,
                    spec.dims,
                );
                (tables, roi_index, NONLINEAR_HIDDEN_UNITS, Some(layers))
            }
        };
        let mut weights = vec![0.0f32; informative.len() * dims];
        fill_normal(&mut stream(spec.seed, "shared-encoding", 0, 0), &mut weights);
        let scale = 1.0 / (dims as f32).sqrt();
        weights.iter_mut().for_each(|w| *w *= scale);
        let mut rng = stream(spec.seed, "paradigm-gain", 0, 0);
        let gains =
            (0..spec.conditions).map(|_| (PARADIGM_GAIN_LOG_SD * normal(&mut rng)).exp()).collect();
        let offsets = (0..spec.conditions as u64)
            .map(|p| {
                let mut rng = stream(spec.seed, "paradigm-offset", p, 0);
                let field = match spec.grid_smoother {
                    Some(s) => s.field(&mut rng),
                    None => {
                        let mut f = vec![0.0; spec.grid_len];
                        fill_normal(&mut rng, &mut f);
                        f
                    }
                };
                spec.brain.iter().map(|&g| field[g] * PARADIGM_OFFSET_SD as f32).collect()
            })
            .collect();
        Encoding {
            informative,
            amplitude,
            weights,
            tables,
            table_of_voxel,
            dims,
            hidden,
            gains,
            offsets,
        }
    }

    /// The subject's weights `W_s`.
    pub fn subject_weights(&self, seed: u64, subject: u64, variability: f64) -> Vec<f32> {
        let mut deviation = vec![0.0f32; self.weights.len()];
        fill_normal(&mut stream(seed, "subject-encoding", subject, 0), &mut deviation);
        let (keep, add) = (
            (1.0 - variability).sqrt() as f32,
            (variability.sqrt() / (self.dims as f64).sqrt()) as f32,
        );
        self.weights.iter().zip(&deviation).map(|(w, e)| keep * w + add * e).collect()
    }

    /// The signal part `g · a · (W · x̃)` (nonlinear: `g · a · (W · h_r)`) at informative voxels
    /// for `stimulus` in `condition`.
    pub fn signal(&self, weights: &[f32], stimulus: usize, condition: usize) -> Vec<f32> {
        let rows = stimulus * self.dims..(stimulus + 1) * self.dims;
        let gain = self.gains[condition] as f32;
        weights
            .chunks_exact(self.dims)
            .zip(&self.amplitude)
            .zip(&self.table_of_voxel)
            .map(|((w, a), &t)| {
                let x = &self.tables[t][rows.clone()];
                gain * a * w.iter().zip(x).map(|(w, x)| w * x).sum::<f32>()
            })
            .collect()
    }
}

/// One trial's full-grid volume and its offset-free informative pattern (what the oracle sees).
pub(crate) struct TrialVolume {
    pub volume: Vec<f32>,
    pub pattern: Vec<f32>,
}

/// How noise is mixed.
pub(crate) struct NoiseSpec<'a> {
    pub seed: u64,
    pub smooth_fraction: f64,
    pub smoother: Option<&'a Smoother>,
    pub grid_len: usize,
    pub brain: &'a [usize],
}

/// Generates trial `trial` of `subject` (stimulus, condition) as a full grid volume (0 outside
/// the brain).
pub(crate) fn trial_volume(
    encoding: &Encoding,
    subject_weights: &[f32],
    noise: &NoiseSpec<'_>,
    subject: u64,
    trial: u64,
    stimulus: usize,
    condition: usize,
) -> TrialVolume {
    let mut rng = stream(noise.seed, "trial-noise", subject, trial);
    let n = noise.brain.len();
    let mut values = vec![0.0f32; n];
    fill_normal(&mut rng, &mut values);
    let smooth_weight = noise.smooth_fraction.sqrt() as f32;
    match noise.smoother {
        Some(s) if smooth_weight > 0.0 => {
            let white_weight = (1.0 - noise.smooth_fraction).sqrt() as f32;
            let field = s.field(&mut rng);
            for (v, &g) in values.iter_mut().zip(noise.brain) {
                *v = white_weight * *v + smooth_weight * field[g];
            }
        }
        _ => {}
    }
    let signal = encoding.signal(subject_weights, stimulus, condition);
    let mut pattern = Vec::with_capacity(signal.len());
    for (&v, s) in encoding.informative.iter().zip(&signal) {
        values[v] += s;
        pattern.push(values[v]);
    }
    let offsets = &encoding.offsets[condition];
    let mut volume = vec![0.0f32; noise.grid_len];
    for ((&g, v), o) in noise.brain.iter().zip(&values).zip(offsets) {
        volume[g] = v + o;
    }
    TrialVolume { volume, pattern }
}

/// Oracle scores over blocks of trials: top-1, top-5 and pairwise accuracy.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub(crate) struct Scores {
    pub top1: f64,
    pub top5: f64,
    pub pairwise: f64,
}

/// Centres and scales `row` to unit norm, so dot products are Pearson correlations.
fn standardize(row: &[f32]) -> Vec<f32> {
    let n = row.len().max(1) as f64;
    let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let norm = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    row.iter().map(|&v| ((f64::from(v) - mean) * scale) as f32).collect()
}

/// One block: trial `i` shows candidate `i` (a paradigm block of 180 words, or one repetition
/// of the test images). `observed[i]` is that trial's pattern; `predicted[j]` is candidate `j`'s
/// true shared-encoding pattern. Returns (top-1 hits, top-5 hits, pairwise hits, pairs).
pub(crate) fn score_block(
    observed: &[Vec<f32>],
    predicted: &[Vec<f32>],
) -> (usize, usize, usize, usize) {
    let observed: Vec<Vec<f32>> = observed.par_iter().map(|r| standardize(r)).collect();
    let predicted: Vec<Vec<f32>> = predicted.par_iter().map(|r| standardize(r)).collect();
    let n = observed.len();
    let corr: Vec<Vec<f32>> = observed
        .par_iter()
        .map(|o| predicted.iter().map(|p| o.iter().zip(p).map(|(a, b)| a * b).sum()).collect())
        .collect();
    let (mut top1, mut top5, mut pair_hits, mut pairs) = (0, 0, 0, 0);
    for (i, row) in corr.iter().enumerate() {
        let better = row.iter().filter(|&&c| c > row[i]).count();
        top1 += usize::from(better < 1);
        top5 += usize::from(better < 5);
        for j in i + 1..n {
            pairs += 1;
            pair_hits += usize::from(corr[i][i] + corr[j][j] > corr[i][j] + corr[j][i]);
        }
    }
    (top1, top5, pair_hits, pairs)
}

/// Draws log-normal strengths for `count` ROIs, normalised to mean square 1.
pub(crate) fn roi_strengths(seed: u64, count: usize) -> Vec<f64> {
    let mut rng = stream(seed, "roi-strength", 0, 0);
    let raw: Vec<f64> =
        (0..count).map(|_| (ROI_STRENGTH_LOG_SD * normal(&mut rng)).exp()).collect();
    let ms = raw.iter().map(|s| s * s).sum::<f64>() / count.max(1) as f64;
    raw.iter().map(|s| s / ms.sqrt()).collect()
}

/// Picks `count` of `rois` labels (1-based) at random, sorted.
pub(crate) fn pick_informative(seed: u64, rois: usize, count: usize) -> Vec<i16> {
    let mut rng = stream(seed, "informative-rois", 0, 0);
    let mut labels: Vec<i16> = (1..=rois).map(|r| i16::try_from(r).unwrap_or(i16::MAX)).collect();
    for i in 0..count.min(rois) {
        let j = rng.gen_range(i..rois);
        labels.swap(i, j);
    }
    labels.truncate(count.min(rois));
    labels.sort_unstable();
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_patterns_score_perfectly_and_noise_scores_near_chance() {
        let mut rng = stream(1, "t", 0, 0);
        let mut draw = || -> Vec<Vec<f32>> {
            (0..20)
                .map(|_| {
                    let mut v = vec![0.0; 50];
                    fill_normal(&mut rng, &mut v);
                    v
                })
                .collect()
        };
        let predicted = draw();
        let (t1, t5, hits, pairs) = score_block(&predicted, &predicted);
        assert_eq!((t1, t5, hits, pairs), (20, 20, 190, 190));
        let noise = draw();
        let (t1, _, hits, pairs) = score_block(&noise, &predicted);
        assert!(t1 <= 5 && (hits as f64 / pairs as f64) < 0.7, "{t1} {hits}/{pairs}");
    }

    #[test]
    fn nonlinear_units_are_standardised_distinct_per_roi_and_reproducible() {
        let (stimuli, dims) = (60, 8);
        let mut x = vec![0.0f32; stimuli * dims];
        fill_normal(&mut stream(2, "t", 0, 0), &mut x);
        let features = zscore_columns(&x, dims);
        let (layers, tables) = HiddenLayers::draw(5, 3, &features, dims);
        let units = NONLINEAR_HIDDEN_UNITS;
        assert_eq!(tables.len(), 3);
        assert_eq!(layers.weights.len(), 3 * units * dims);
        for table in &tables {
            let (mean, sd) = column_moments(table, units);
            assert!(
                mean.iter().all(|m| m.abs() < 1e-5) && sd.iter().all(|s| (s - 1.0).abs() < 1e-4)
            );
        }
        assert_ne!(tables[0], tables[1], "two ROIs share one random layer");
        // The units are not linear in the stimulus: the best linear fit from the 8 dimensions
        // leaves most of a unit's variance (at the nonlinear world's input gain).
        let unexplained = |t: &[f32], u: usize| {
            let y: Vec<f64> = (0..stimuli).map(|s| f64::from(t[s * units + u])).collect();
            let mut residual = y.clone();
            // Gram–Schmidt over the (z-scored) stimulus columns.
            let mut basis: Vec<Vec<f64>> = Vec::new();
            for j in 0..dims {
                let mut c: Vec<f64> =
                    (0..stimuli).map(|s| f64::from(features[s * dims + j])).collect();
                for b in &basis {
                    let d: f64 = c.iter().zip(b).map(|(a, b)| a * b).sum();
                    c.iter_mut().zip(b).for_each(|(a, b)| *a -= d * b);
                }
                let n = c.iter().map(|a| a * a).sum::<f64>().sqrt();
                c.iter_mut().for_each(|a| *a /= n);
                let d: f64 = residual.iter().zip(&c).map(|(a, b)| a * b).sum();
                residual.iter_mut().zip(&c).for_each(|(a, b)| *a -= d * b);
                basis.push(c);
            }
            residual.iter().map(|r| r * r).sum::<f64>() / y.iter().map(|v| v * v).sum::<f64>()
        };
        let mean_unexplained =
            (0..units).map(|u| unexplained(&tables[0], u)).sum::<f64>() / units as f64;
        assert!(mean_unexplained > 0.5, "units are mostly linear: {mean_unexplained}");
        let (again, tables_again) = HiddenLayers::draw(5, 3, &features, dims);
        assert_eq!((again.bias, tables_again), (layers.bias, tables));
    }

    #[test]
    fn strengths_have_mean_square_one() {
        let s = roi_strengths(4, 100);
        let ms = s.iter().map(|v| v * v).sum::<f64>() / 100.0;
        assert!((ms - 1.0).abs() < 1e-9);
        assert_eq!(pick_informative(4, 10, 3).len(), 3);
    }
}
