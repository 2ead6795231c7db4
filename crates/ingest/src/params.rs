//! The parameters of `ingest.synthetic`, their defaults and their checks.

use serde::{Deserialize, Serialize};

use crate::error::{IngestError, Result};

/// Which world a study shows its subjects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum World {
    /// Brain2Word: the 180 Pereira concepts in three paradigms (word cloud, sentence, picture).
    #[default]
    Words,
    /// Brain2CLIP: procedural scenes with captions; train images once, test images repeated.
    Images,
}

/// How informative ROIs respond to the stimulus vector (docs/SYNTHETIC.md, "Responses").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodingKind {
    /// Every informative voxel is a weighted sum of the stimulus dimensions: a linear decoder is
    /// near the best possible one.
    #[default]
    Linear,
    /// Each informative ROI passes the stimulus through its own fixed random two-layer network
    /// (shared by all subjects); its voxels are weighted sums of that network's hidden units.
    Nonlinear,
}

brainpipe_core::params! {
    /// Parameters of `ingest.synthetic` (see docs/SYNTHETIC.md for the generative model).
    pub struct SyntheticParams {
        /// `words` (Brain2Word: 180 Pereira concepts × 3 paradigms) or `images` (Brain2CLIP scenes).
        pub paradigm: World = World::Words,
        /// `linear` (default: responses linear in the stimulus vector) or `nonlinear` (each
        /// informative ROI responds through a fixed random two-layer network shared by all
        /// subjects; a world where nonlinear decoders have something to find).
        #[serde(skip_serializing_if = "is_linear")]
        pub encoding: EncodingKind = EncodingKind::Linear,
        /// Number of subjects (Pereira et al. 2018 scanned 15; BOLD5000 4).
        pub subjects: u32 = 4,
        /// Seed of every random stream; the same seed gives byte-identical files.
        pub seed: u64 = 7,
        /// Voxel size in mm: a multiple of 2 or 3 (the MNI152 mask ships at 2 and 3 mm). 6 mm: about 8,500 brain voxels; 2 mm: Pereira-like sizes.
        pub resolution_mm: f64 = 6.0,
        /// Number of parcels, sized like the Gordon et al. 2016 atlas (333 ROIs).
        pub rois: u32 = 333,
        /// Fraction of ROIs that encode the stimulus.
        pub informative_fraction: f64 = 0.3,
        /// Mean signal variance over informative voxels, relative to the noise variance (1).
        pub snr: f64 = 0.02,
        /// Fraction of the encoding's variance that is subject-specific (0: all subjects share one encoding).
        pub subject_variability: f64 = 0.3,
        /// FWHM in mm of the spatially smooth noise (0: white noise only).
        pub smoothness_mm: f64 = 8.0,
        /// Fraction of the noise variance that is spatially smooth; the rest is white.
        pub smooth_fraction: f64 = 0.5,
        /// Also write BOLD time series (trials convolved with the canonical HRF, drift, noise) with BIDS events.
        pub time_series: bool = false,
        /// Repetition time in seconds of the time series.
        pub tr_s: f64 = 2.0,
        /// Images world: side of the square images in pixels.
        pub image_size: u32 = 64,
        /// Images world: images shown once (training set).
        pub train_images: u32 = 240,
        /// Images world: images shown `test_repeats` times (test set, as BOLD5000's repeated images).
        pub test_images: u32 = 60,
        /// Images world: presentations of each test image.
        pub test_repeats: u32 = 4,
        /// Images world: probability that a caption gets one attribute wrong.
        pub caption_error_rate: f64 = 0.25,
        /// Images world, training images only: weight of the rare values (background beige,
        /// shape cross, colour orange) against 1 for every other value; 1 (default): uniform,
        /// 0.1: ten times rarer (the seed's common-vs-rare scenes).
        #[serde(skip_serializing_if = "is_one")]
        pub rare_weight: f64 = 1.0,
    }
    validate = check_params;
}

/// The ranges of [`SyntheticParams::check`], for `brainpipe plan` (one line, naming the param).
fn check_params(p: &SyntheticParams) -> std::result::Result<(), String> {
    match p.check() {
        Err(IngestError::Params(message)) => Err(message),
        Err(other) => Err(other.to_string()),
        Ok(()) => Ok(()),
    }
}

/// The linear world is left out of the serialised params, so its studies keep their bytes (and
/// their cache keys) from before the parameter existed.
fn is_linear(kind: &EncodingKind) -> bool {
    *kind == EncodingKind::Linear
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

impl SyntheticParams {
    /// Checks ranges that serde cannot (the mask resolution is checked where the mask is made);
    /// `brainpipe plan` runs it through the params' `validate`.
    pub fn check(&self) -> Result<()> {
        let fail = |m: String| Err(IngestError::Params(m));
        let unit = |name: &str, v: f64| {
            (0.0..=1.0)
                .contains(&v)
                .then_some(())
                .ok_or_else(|| IngestError::Params(format!("{name} {v} must lie in [0, 1]")))
        };
        if self.subjects == 0 || self.subjects > 99 {
            return fail(format!("subjects {} must be between 1 and 99", self.subjects));
        }
        if !(self.resolution_mm.is_finite() && self.resolution_mm > 0.0) {
            return fail(format!("resolution_mm {} must be positive", self.resolution_mm));
        }
        if self.rois == 0 || self.rois > i16::MAX as u32 {
            return fail(format!("rois {} must be between 1 and {}", self.rois, i16::MAX));
        }
        unit("informative_fraction", self.informative_fraction)?;
        unit("subject_variability", self.subject_variability)?;
        unit("smooth_fraction", self.smooth_fraction)?;
        unit("caption_error_rate", self.caption_error_rate)?;
        if !(self.rare_weight.is_finite() && self.rare_weight > 0.0 && self.rare_weight <= 1.0) {
            return fail(format!("rare_weight {} must lie in (0, 1]", self.rare_weight));
        }
        if !(self.snr.is_finite() && self.snr > 0.0) {
            return fail(format!("snr {} must be positive", self.snr));
        }
        if !(self.smoothness_mm.is_finite() && self.smoothness_mm >= 0.0) {
            return fail(format!("smoothness_mm {} must be 0 or more", self.smoothness_mm));
        }
        if !(self.tr_s.is_finite() && self.tr_s > 0.0 && self.tr_s <= 10.0) {
            return fail(format!("tr_s {} must lie in (0, 10]", self.tr_s));
        }
        if self.paradigm == World::Images {
            if !(8..=1024).contains(&self.image_size) {
                return fail(format!("image_size {} must be between 8 and 1024", self.image_size));
            }
            if self.test_images < 2 || self.test_repeats == 0 {
                return fail(format!(
                    "test_images {} and test_repeats {} must be at least 2 and 1 (pairwise accuracy needs pairs)",
                    self.test_images, self.test_repeats
                ));
            }
            if self.train_images + self.test_images > 100_000 {
                return fail("train_images + test_images must stay below 100,000".to_owned());
            }
        }
        Ok(())
    }
}
