//! Params of the `models.*` stages (Brain2Word training, ridge, prediction) and the choices they
//! name.

use brainpipe_core::{DeviceChoice, Precision};
use serde::{Deserialize, Serialize};

use crate::{at_least, in_range};

/// LeakyReLU slope of every hidden layer (Brain2Word: 0.3).
pub const LEAKY_SLOPE: f64 = 0.3;

/// Dropout rate after every hidden layer (Brain2Word: 0.4).
pub const DROPOUT: f64 = 0.4;

/// Outputs per ROI block = max(ceil(size / ROI_SCALE), 1) (Brain2Word: 20).
pub const ROI_SCALE: usize = 20;

/// Brain2Word's batch size: one block of the 180 words.
pub const BATCH_SIZE: usize = 180;
/// Adam's learning rate (Keras default, Brain2Word).
pub const LEARNING_RATE: f64 = 1e-3;
/// The learning rate is multiplied by this every [`LR_STEP_EPOCHS`] (Brain2Word's schedule).
pub const LR_DECAY: f64 = 0.3;
/// Epochs between learning-rate decays.
pub const LR_STEP_EPOCHS: u32 = 10;
/// Early-stopping patience in epochs (Brain2Word).
pub const PATIENCE: u32 = 10;
/// Default most epochs of the reconstruction pretraining phase.
pub const PRETRAIN_EPOCHS: u32 = 20;

fn is_zero(n: &i32) -> bool {
    *n == 0
}

fn is_default_pretrain_epochs(epochs: &u32) -> bool {
    *epochs == PRETRAIN_EPOCHS
}

/// Which training schedule (`models.train`'s `schedule`): Brain2CLIP's three variations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Every loss from the start (Brain2CLIP variation 3; Brain2Word).
    #[default]
    Joint,
    /// Reconstruction pretraining, then the regression layers alone (variation 1).
    PretrainThenRegression,
    /// Reconstruction pretraining, then every loss together (variation 2).
    PretrainThenJoint,
}

impl Schedule {
    /// Whether this is the default single joint phase (params equal to the default are not
    /// written into model files, so files trained without schedules keep their bytes).
    pub fn is_joint(&self) -> bool {
        *self == Schedule::Joint
    }

    /// The YAML spelling.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Joint => "joint",
            Schedule::PretrainThenRegression => "pretrain_then_regression",
            Schedule::PretrainThenJoint => "pretrain_then_joint",
        }
    }
}

/// The form of the regression loss (`models.train`'s `regression_form`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegressionForm {
    /// Brain2Word's `−cos(t_i, p_i) + mean_k cos(t_i, p_{i−k})`: every other sample of the batch
    /// is a negative, which keeps predictions from collapsing onto the mean target.
    #[default]
    BatchNegatives,
    /// The plain CosineProximity `−cos(t_i, p_i)` (Keras' loss, which the Brain2CLIP seed names).
    Cosine,
}

impl RegressionForm {
    /// Whether this is the default (defaults are not written into model files or cache keys, so
    /// models trained before the param existed keep their bytes).
    pub fn is_batch_negatives(&self) -> bool {
        *self == RegressionForm::BatchNegatives
    }
}

/// What the classification head reads (`models.train`'s `classifier_input`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierInput {
    /// The regression head's output through LeakyReLU, batch normalisation and dropout
    /// (Brain2Word: the classifier sits on top of the predicted word vector).
    #[default]
    Embedding,
    /// The last hidden layer (after its dropout), parallel to the regression head: the class
    /// logits are not squeezed through the word vector's few dimensions.
    Hidden,
}

impl ClassifierInput {
    /// Whether this is the default (defaults are not written into model files or cache keys, so
    /// models trained before the param existed keep their bytes).
    pub fn is_embedding(&self) -> bool {
        *self == ClassifierInput::Embedding
    }
}

/// Which Brain2Word network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Dense layers: input → 2000 → 200 → embedding → classes.
    #[default]
    Base,
    /// The first layer is one dense block per ROI (block-diagonal), then as Base.
    Roi,
    /// Base plus a decoder from the embedding back to the input (reconstruction loss).
    Autoencoder,
}

impl ModelKind {
    /// The name used in tables (`base`, `roi`, `autoencoder`).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Base => "base",
            ModelKind::Roi => "roi",
            ModelKind::Autoencoder => "autoencoder",
        }
    }
}

/// Which task losses train the heads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Only the regression head (Brain2Word's batch-negatives cosine loss).
    Regression,
    /// Only the classification head (cross-entropy over the classes).
    Classification,
    /// A weighted sum of both (the seed's improvement on top-1).
    #[default]
    Combined,
}

/// How scans are split into folds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossValidation {
    /// One fold per subject: train on the others, test on it (Brain2Word).
    #[default]
    LeaveOneSubjectOut,
    /// Within each subject, k folds over its scans: train on k−1, test on one.
    WithinSubject,
}

/// Where the early-stopping validation scans come from (always inside the training scans).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// A random `validation_fraction` of the training scans.
    #[default]
    Fraction,
    /// Every scan of one training subject (the next one after the test subject, in order).
    Subject,
}

/// How a fold's input columns are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every column (Brain2Word: the whole 65,730-column template).
    #[default]
    None,
    /// Whole ROIs, ranked by the mean stability of their columns (needs the `rois` input).
    RoiStability,
    /// Single columns, ranked by stability.
    VoxelStability,
}

brainpipe_core::params! {
    /// Params of `models.train`.
    pub struct TrainParams {
        /// Network: `base` (dense 2000 → 200 → embedding → classes), `roi` (first layer one dense
        /// block per ROI; needs the `rois` input) or `autoencoder` (base + decoder back to the input).
        pub model: ModelKind = ModelKind::Base,
        /// Name written into the tables (`model` column); empty: the network's name.
        pub name: String = String::new(),
        /// Task loss: `regression` (Brain2Word's batch-negatives cosine), `classification`
        /// (cross-entropy) or `combined` (weighted sum; the seed's improvement on top-1).
        pub loss: LossKind = LossKind::Combined,
        /// Form of the regression loss: `batch_negatives` (Brain2Word's, the default) or `cosine`
        /// (the plain −cos(t, p), CosineProximity as the Brain2CLIP seed names it).
        #[serde(skip_serializing_if = "RegressionForm::is_batch_negatives")]
        pub regression_form: RegressionForm = RegressionForm::BatchNegatives,
        /// What the classification head reads: `embedding` (Brain2Word: the predicted word vector,
        /// through LeakyReLU, batch normalisation and dropout) or `hidden` (the last hidden layer,
        /// parallel to the regression head; docs/MODELS.md "The classification head").
        #[serde(skip_serializing_if = "ClassifierInput::is_embedding")]
        pub classifier_input: ClassifierInput = ClassifierInput::Embedding,
        /// Weight of the regression loss in `combined` (not stated in the paper; 1).
        pub regression_weight: f64 = 1.0,
        /// Weight of the classification loss in `combined` (not stated in the paper; 1).
        pub classification_weight: f64 = 1.0,
        /// Weight of the autoencoder's reconstruction loss −cos(x, x̂) (1, as a plain sum).
        pub reconstruction_weight: f64 = 1.0,
        /// Autoencoder: the decoder reuses the encoder's first-layer weights, transposed.
        pub tied: bool = false,
        /// Hidden widths (Brain2Word: 2000, 200). The ROI model replaces the first by its ROI layer.
        pub hidden: Vec<usize> = vec![2000, 200],
        /// ROI model: outputs per block = max(ceil(size / roi_scale), 1) (Brain2Word: 20).
        pub roi_scale: usize = ROI_SCALE,
        /// ROI model: ROIs are sorted by size and packed into this many groups, one batched
        /// matmul each (1: a single zero-padded block; more groups, less padding). 0: by device —
        /// 1 on CUDA (fastest on an H200: 2.5 ms/step against 3.5–4.0 with 8), 8 on the CPU
        /// (113 ms against 381 with 1); docs/BENCHMARKS.md.
        pub roi_groups: usize = 0,
        /// Dropout after every hidden layer (Brain2Word: 0.4).
        pub dropout: f64 = DROPOUT,
        /// Weight of mean regularisation (0: off). After `warmup_epochs`, each hidden layer is
        /// pulled towards the per-word mean over the training scans (regression-loss form).
        pub mean_reg_weight: f64 = 0.0,
        /// Epochs before mean regularisation starts (the model must have stabilised).
        pub warmup_epochs: u32 = 10,
        /// Epochs per mean-regularisation round; each round's target is (new mean + old) / 2.
        pub mean_reg_round_epochs: u32 = 5,
        /// Maximum epochs per fold (with a pretraining `schedule`: of the phase after it).
        pub epochs: u32 = 100,
        /// Brain2CLIP's training schedule: `joint` (every loss from the start; variation 3 and
        /// Brain2Word), `pretrain_then_regression` (variation 1: reconstruction pretraining, then
        /// the regression layers alone, the encoder frozen) or `pretrain_then_joint` (variation 2:
        /// pretraining, then every loss). Pretraining needs `model: autoencoder`.
        #[serde(skip_serializing_if = "Schedule::is_joint")]
        pub schedule: Schedule = Schedule::Joint,
        /// Most epochs of the reconstruction pretraining phase (early-stopped on the validation
        /// reconstruction loss); `epochs` bounds the phase after it.
        #[serde(skip_serializing_if = "is_default_pretrain_epochs")]
        pub pretrain_epochs: u32 = PRETRAIN_EPOCHS,
        /// Brain2CLIP augmentation: every embedding of the `augmented` input (clip.augment) of a
        /// training scan's stimulus becomes an extra (scan, target) training pair; needs that input.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        pub augment: bool = false,
        /// Batch size (Brain2Word: 180).
        pub batch_size: usize = BATCH_SIZE,
        /// Adam (amsgrad) learning rate (Brain2Word: 1e-3).
        pub lr: f64 = LEARNING_RATE,
        /// Learning-rate factor every `lr_step_epochs` (Brain2Word: 0.3).
        pub lr_decay: f64 = LR_DECAY,
        /// Epochs between learning-rate decays (Brain2Word: 10).
        pub lr_step_epochs: u32 = LR_STEP_EPOCHS,
        /// Early-stopping patience on the validation task loss (Brain2Word: 10); the best epoch's
        /// weights are kept.
        pub patience: u32 = PATIENCE,
        /// `leave_one_subject_out` (Brain2Word) or `within_subject` (k-fold in each subject).
        pub cv: CrossValidation = CrossValidation::LeaveOneSubjectOut,
        /// k of `within_subject`.
        pub folds: usize = 5,
        /// Validation scans for early stopping, always from the training side: `fraction` of the
        /// training scans, or one training `subject` (Brain2Word used the test subject; we do not).
        pub validation: Validation = Validation::Fraction,
        /// Share of the training scans held out for validation (`validation: fraction`).
        pub validation_fraction: f64 = 0.1,
        /// After early stopping has chosen the epoch count on the validation scans, train again
        /// from the same initialisation on training + validation scans for that many epochs (the
        /// validation scans are no longer wasted; twice the training time). Not in the paper.
        pub refit: bool = false,
        /// Train on targets minus their mean over the target words (GloVe vectors share a large
        /// common direction the cosine losses otherwise chase); predictions get the mean back.
        /// Not in the paper: a deviation, documented in docs/MODELS.md.
        pub centre_targets: bool = true,
        /// Input selection per fold from its training scans (not its validation or test scans):
        /// `none` (every column, Brain2Word), `roi_stability` (whole ROIs by mean cross-subject
        /// stability; needs `rois`) or `voxel_stability`. A deviation when on; docs/MODELS.md.
        pub select: Selection = Selection::None,
        /// Columns `select` keeps (whole ROIs: at least this many).
        pub select_columns: usize = 0,
        /// Column of the features table matched against the targets' `stimulus`.
        pub stimulus_column: String = "stimulus".to_owned(),
        /// Seed of initialisation, shuffles, dropout and the validation split.
        pub seed: u64 = 7,
        /// `auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`.
        pub device: DeviceChoice = DeviceChoice::Auto,
        /// Number format of the large matmuls: `fp32`; `tf32` (f32 tensors, CUDA matmuls on TF32
        /// tensor cores); or `bf16` (bfloat16 inputs and weights for the first layer and the
        /// autoencoder's output layer, f32 master weights). On the CPU `tf32` is `fp32`.
        pub precision: Precision = Precision::Fp32,
        /// CPU threads for LibTorch (0: its default). 1 makes CPU runs bitwise reproducible.
        pub threads: i32 = 0,
    }
    validate = check_train;
}

brainpipe_core::params! {
    /// Params of `models.ridge`.
    pub struct RidgeParams {
        /// Candidate regularisation strengths; the one with the lowest inner-CV squared error wins.
        pub alphas: Vec<f64> = vec![1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6],
        /// Inner folds when the training side has a single subject (otherwise one inner fold per
        /// training subject).
        pub inner_folds: usize = 5,
        /// Use at most this many inner folds (0: all). Each costs one eigendecomposition.
        pub max_inner_folds: usize = 0,
        /// Name written into the tables.
        pub name: String = "ridge".to_owned(),
        /// `leave_one_subject_out` or `within_subject`.
        pub cv: CrossValidation = CrossValidation::LeaveOneSubjectOut,
        /// k of `within_subject`.
        pub folds: usize = 5,
        /// Column of the features table matched against the targets' `stimulus`.
        pub stimulus_column: String = "stimulus".to_owned(),
        /// Input selection per fold from its training scans: `none` (every column),
        /// `roi_stability` (whole ROIs by mean cross-subject stability; needs `rois`) or
        /// `voxel_stability`. See docs/MODELS.md ("Input selection").
        pub select: Selection = Selection::None,
        /// Columns `select` keeps (whole ROIs: at least this many).
        pub select_columns: usize = 0,
        /// Seed of the inner folds.
        pub seed: u64 = 7,
        /// `auto`, `cpu`, `cuda`, `cuda:N`.
        pub device: DeviceChoice = DeviceChoice::Auto,
        /// CPU threads for LibTorch (0: its default).
        #[serde(skip_serializing_if = "is_zero")]
        pub threads: i32 = 0,
    }
    validate = check_ridge;
}

brainpipe_core::params! {
    /// Params of `models.predict`.
    pub struct PredictParams {
        /// Predict only each fold's test subjects (reproduces models.train's predictions); false:
        /// every fold model predicts every scan (new subjects).
        pub test_only: bool = true,
        /// Column of the features table matched against the targets' `stimulus`.
        pub stimulus_column: String = "stimulus".to_owned(),
        /// `auto`, `cpu`, `cuda`, `cuda:N`.
        pub device: DeviceChoice = DeviceChoice::Auto,
    }
}

fn check_train(p: &TrainParams) -> Result<(), String> {
    if p.hidden.is_empty() || p.hidden.contains(&0) {
        return Err("`hidden` must list at least one non-zero width".into());
    }
    at_least("batch_size", p.batch_size, 2)?; // batch normalisation
    at_least("epochs", p.epochs as usize, 1)?;
    if !p.schedule.is_joint() {
        if p.model != ModelKind::Autoencoder {
            return Err(format!(
                "`schedule: {}` pretrains on reconstruction: it needs `model: autoencoder`, not {}",
                p.schedule.name(),
                p.model.name()
            ));
        }
        at_least("pretrain_epochs", p.pretrain_epochs as usize, 1)?;
    }
    at_least("roi_scale", p.roi_scale, 1)?;
    in_range("dropout", p.dropout, 0.0, 0.99)?;
    for (name, weight) in [
        ("regression_weight", p.regression_weight),
        ("classification_weight", p.classification_weight),
        ("reconstruction_weight", p.reconstruction_weight),
        ("mean_reg_weight", p.mean_reg_weight),
    ] {
        in_range(name, weight, 0.0, f64::MAX)?;
    }
    if !(p.lr > 0.0 && p.lr.is_finite()) {
        return Err(format!("`lr` must be positive, got {}", p.lr));
    }
    if !(p.lr_decay > 0.0 && p.lr_decay <= 1.0) {
        return Err(format!("`lr_decay` must be in (0, 1], got {}", p.lr_decay));
    }
    at_least("lr_step_epochs", p.lr_step_epochs as usize, 1)?;
    at_least("mean_reg_round_epochs", p.mean_reg_round_epochs as usize, 1)?;
    if p.validation == Validation::Fraction
        && !(p.validation_fraction > 0.0 && p.validation_fraction < 1.0)
    {
        return Err(format!(
            "`validation_fraction` must be in (0, 1) with `validation: fraction`, got {}",
            p.validation_fraction
        ));
    }
    check_cv(p.cv, p.folds)?;
    check_selection(p.select, p.select_columns)?;
    if p.stimulus_column.is_empty() {
        return Err("`stimulus_column` must name a column".into());
    }
    Ok(())
}

fn check_ridge(p: &RidgeParams) -> Result<(), String> {
    if p.alphas.is_empty() || p.alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        return Err("`alphas` must be one or more positive, finite numbers".into());
    }
    at_least("inner_folds", p.inner_folds, 2)?;
    check_cv(p.cv, p.folds)?;
    check_selection(p.select, p.select_columns)
}

fn check_cv(cv: CrossValidation, folds: usize) -> Result<(), String> {
    if cv == CrossValidation::WithinSubject && folds < 2 {
        return Err(format!("`folds` must be at least 2 with `cv: within_subject`, got {folds}"));
    }
    Ok(())
}

fn check_selection(select: Selection, columns: usize) -> Result<(), String> {
    if select != Selection::None && columns == 0 {
        return Err("`select_columns` must be at least 1 when `select` is not `none`".into());
    }
    Ok(())
}
