//! `models.train`: Brain2Word training with cross-validation — one network per fold, early
//! stopping on validation scans drawn from the training side, predictions for the test scans.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use brainpipe_artifacts::{EpochRecord, Predictions, write_predictions, write_training};
use brainpipe_core::{ArtifactKind, Context, Port, Stage, StageError};
use brainpipe_tensor::{
    AdamConfig, FusedAdam, ResolveDevice, device_name, f32_rows_to_tensor, save_var_store,
    tensor_to_f32_rows,
};
use serde::Serialize;
use tch::nn;
use tch::{Device, Kind, Tensor};

pub use brainpipe_params::models::{BATCH_SIZE, PRETRAIN_EPOCHS, TrainParams};

use crate::augmented::{Augmented, read_augmented};
use crate::cv::{CrossValidation, Fold, folds};
use crate::data::{Dataset, read_roi_blocks, training_inputs};
use crate::error::{ModelsError, Result};
use crate::losses::{
    LossKind, RegressionForm, classification_loss, mean_regularisation_loss, reconstruction_loss,
    regression_loss_of,
};
use crate::net::{LEAKY_SLOPE, ModelKind, Net, NetConfig, PrecisionExt};
use crate::schedule::{ENCODER_PREFIX, Phase, Plan, phases};
use crate::select::select;

/// Table kind of the model files' metadata (`brainpipe.schema`).
pub const MODEL_SCHEMA: &str = "brain2word-model/1";

/// `models.train`.
pub struct Train;

impl Stage for Train {
    type Params = TrainParams;
    const NAME: &'static str = "models.train";
    const VERSION: u32 = 5;
    const SUMMARY: &'static str = "Brain2Word networks (base, roi, autoencoder; regression/classification/combined loss, mean regularisation) trained per cross-validation fold";

    fn inputs(&self) -> Vec<Port> {
        let mut ports = training_inputs(
            "rois.parquet of features.template_pad: the ROI blocks (ROI model, select: roi_stability)",
        );
        ports.push(
            Port::input(
                "augmented",
                ArtifactKind::table(brainpipe_artifacts::EMBEDDINGS),
                "augmented.parquet of clip.augment: extra targets per stimulus (with `augment: true`)",
            )
            .optional(),
        );
        ports
    }

    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::output(
                "model",
                "model",
                ArtifactKind::Directory,
                "fold-NN.safetensors per fold (architecture config in the metadata)",
            ),
            Port::output(
                "predictions",
                "predictions.parquet",
                ArtifactKind::table(brainpipe_artifacts::PREDICTIONS),
                "per test scan: predicted embedding and class scores",
            ),
            Port::output(
                "training",
                "training.parquet",
                ArtifactKind::table(brainpipe_artifacts::TRAINING),
                "per fold and epoch: losses, learning rate, validation scores",
            ),
        ]
    }

    fn run(&self, ctx: &mut Context, p: &TrainParams) -> Result<(), StageError> {
        let device = p.device.resolve()?;
        ctx.set_device(device_name(device));
        brainpipe_tensor::apply_threads_param(p.threads);
        let (data, rois, augmented) = read_inputs(ctx, p)?;
        let out = TrainOutputs {
            model_dir: ctx.output("model"),
            predictions: ctx.output("predictions"),
            training: ctx.output("training"),
        };
        let summary = train_augmented(&data, &rois, augmented.as_ref(), p, device, &out)?;
        note_summary(ctx, p, &data, &summary);
        Ok(())
    }

    /// One shard per cross-validation fold.
    const SHARDABLE: bool = true;

    fn shards(&self, ctx: &Context, p: &TrainParams) -> Result<usize, StageError> {
        let (data, ..) = read_inputs(ctx, p)?;
        Ok(crate::train_shards::fold_count(&data, p))
    }

    fn run_shard(
        &self,
        ctx: &mut Context,
        p: &TrainParams,
        index: usize,
        count: usize,
    ) -> Result<(), StageError> {
        let device = p.device.resolve()?;
        ctx.set_device(device_name(device));
        brainpipe_tensor::apply_threads_param(p.threads);
        let (data, rois, augmented) = read_inputs(ctx, p)?;
        let dir = ctx.out_dir().to_path_buf();
        let shard = crate::train_shards::train_shard(
            &data,
            &rois,
            augmented.as_ref(),
            p,
            device,
            (index, count),
            &dir,
        )?;
        ctx.note("fold", shard.fold);
        ctx.note("epochs", shard.epochs);
        ctx.note("seconds", shard.seconds);
        Ok(())
    }

    fn merge_shards(
        &self,
        ctx: &mut Context,
        p: &TrainParams,
        shards: &[PathBuf],
    ) -> Result<(), StageError> {
        let out = TrainOutputs {
            model_dir: ctx.output("model"),
            predictions: ctx.output("predictions"),
            training: ctx.output("training"),
        };
        let merged = crate::train_shards::merge(shards, &out)?;
        ctx.set_device(merged.device.clone());
        if p.augment {
            ctx.note("training_pairs", &merged.summary.training_pairs);
        }
        ctx.note("scans", merged.scans);
        ctx.note("skipped_scans", merged.skipped_scans);
        note_counts(ctx, &merged.summary);
        ctx.note("shards", shards.len());
        Ok(())
    }
}

/// The stage's inputs: the dataset, the ROI blocks and the augmented targets.
type TrainInputs = (Dataset, Vec<(usize, usize)>, Option<Augmented>);

/// The stage's inputs, as `p` asks for them.
fn read_inputs(ctx: &Context, p: &TrainParams) -> Result<TrainInputs, StageError> {
    let data = Dataset::read(ctx.input("features")?, ctx.input("targets")?, &p.stimulus_column)?;
    let rois = match (p.model, ctx.optional_input("rois")) {
        (_, Some(path)) => read_roi_blocks(path, data.width)?,
        (ModelKind::Roi, None) => {
            return Err(StageError::msg("model `roi` needs the `rois` input"));
        }
        _ => Vec::new(),
    };
    let augmented = match (p.augment, ctx.optional_input("augmented")) {
        (true, Some(path)) => Some(read_augmented(path, data.targets.dim)?),
        (true, None) => {
            return Err(StageError::msg("augment: true needs the `augmented` input"));
        }
        (false, Some(_)) => {
            return Err(StageError::msg("the `augmented` input is only read with `augment: true`"));
        }
        (false, None) => None,
    };
    Ok((data, rois, augmented))
}

/// The manifest notes of a training run.
fn note_summary(ctx: &mut Context, p: &TrainParams, data: &Dataset, summary: &TrainSummary) {
    if p.augment {
        ctx.note("training_pairs", &summary.training_pairs);
    }
    ctx.note("scans", data.len());
    ctx.note("skipped_scans", data.skipped);
    note_counts(ctx, summary);
}

/// The notes on folds, epochs, time and inputs, in the order a run records them.
fn note_counts(ctx: &mut Context, summary: &TrainSummary) {
    ctx.note("folds", summary.folds);
    ctx.note("epochs", summary.epochs);
    ctx.note("seconds", summary.seconds);
    ctx.note("seconds_per_epoch", summary.seconds / summary.epochs.max(1) as f64);
    ctx.note("selected_columns", &summary.selected);
}

/// Where `train_all` writes.
pub struct TrainOutputs {
    /// Directory of `fold-NN.safetensors`.
    pub model_dir: PathBuf,
    /// `predictions.parquet`.
    pub predictions: PathBuf,
    /// `training.parquet`.
    pub training: PathBuf,
}

/// What a training run did.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    /// Folds trained.
    pub folds: usize,
    /// Epochs over all folds.
    pub epochs: usize,
    /// Wall-clock seconds of training.
    pub seconds: f64,
    /// Input columns per fold.
    pub selected: Vec<usize>,
    /// (scan, target) pairs trained on per fold (the first run, before any refit): training
    /// scans × (1 + augmented copies).
    pub training_pairs: Vec<usize>,
    /// The folds (for tests: which scans went where).
    #[serde(skip)]
    pub fold_sets: Vec<Fold>,
}

/// The network config for `data` under `p`.
pub fn net_config(data: &Dataset, rois: &[(usize, usize)], p: &TrainParams) -> Result<NetConfig> {
    if p.hidden.is_empty() || p.hidden.contains(&0) {
        return Err(ModelsError::Params("hidden must list at least one non-zero width".into()));
    }
    Ok(NetConfig {
        kind: p.model,
        inputs: data.width,
        columns: Vec::new(),
        features_width: 0,
        hidden: p.hidden.clone(),
        embedding: data.targets.dim,
        classes: data.targets.classes(),
        classifier_input: p.classifier_input,
        slope: LEAKY_SLOPE,
        dropout: p.dropout,
        rois: if p.model == ModelKind::Roi { rois.to_vec() } else { Vec::new() },
        roi_scale: p.roi_scale,
        roi_groups: p.roi_groups,
        tied: p.tied,
        precision: p.precision,
        target_mean: if p.centre_targets { mean_target(&data.targets) } else { Vec::new() },
    })
}

/// The mean of the target vectors.
fn mean_target(t: &brainpipe_artifacts::Targets) -> Vec<f32> {
    let n = t.len().max(1) as f64;
    (0..t.dim)
        .map(|d| {
            ((0..t.len()).map(|j| f64::from(t.vectors[j * t.dim + d])).sum::<f64>() / n) as f32
        })
        .collect()
}

/// Trains every fold and writes the three outputs.
pub fn train_all(
    data: &Dataset,
    rois: &[(usize, usize)],
    p: &TrainParams,
    device: Device,
    out: &TrainOutputs,
) -> Result<TrainSummary> {
    train_augmented(data, rois, None, p, device, out)
}

/// [`train_all`] with augmented targets: every copy of a training scan's stimulus in
/// `augmented` is an extra (scan, target) pair (validation and test scans get none).
pub fn train_augmented(
    data: &Dataset,
    rois: &[(usize, usize)],
    augmented: Option<&Augmented>,
    p: &TrainParams,
    device: Device,
    out: &TrainOutputs,
) -> Result<TrainSummary> {
    let prepared = prepare(data, rois, augmented, p, device)?;
    let _tf32 = p.precision.activate();
    let tensors = prepared.tensors(data, augmented)?;
    std::fs::create_dir_all(&out.model_dir)
        .map_err(|e| brainpipe_core::Error::io(&out.model_dir, e))?;
    let started = Instant::now();
    let mut parts = Vec::new();
    for fold in &prepared.fold_sets {
        parts.push(train_one_fold(data, rois, &tensors, &prepared, p, fold, &out.model_dir)?);
    }
    let (selected, training_pairs, epochs) = write_outputs(out, parts)?;
    Ok(TrainSummary {
        folds: prepared.fold_sets.len(),
        epochs,
        seconds: started.elapsed().as_secs_f64(),
        selected,
        training_pairs,
        fold_sets: prepared.fold_sets,
    })
}

/// What every fold of a run shares: the network config, the model name and the folds.
pub(crate) struct Prepared {
    /// The network of every fold (before input selection).
    pub(crate) config: NetConfig,
    /// The model name.
    pub(crate) name: String,
    /// The cross-validation folds.
    pub(crate) fold_sets: Vec<Fold>,
    device: Device,
}

impl Prepared {
    /// Everything on the device once.
    pub(crate) fn tensors(
        &self,
        data: &Dataset,
        augmented: Option<&Augmented>,
    ) -> Result<DataTensors> {
        match augmented {
            None => DataTensors::new(data, &self.config.target_mean, self.device),
            Some(a) => DataTensors::with_augmented(data, a, &self.config.target_mean, self.device),
        }
    }
}

/// Checks `p` against the data and computes what every fold shares.
pub(crate) fn prepare(
    data: &Dataset,
    rois: &[(usize, usize)],
    augmented: Option<&Augmented>,
    p: &TrainParams,
    device: Device,
) -> Result<Prepared> {
    if p.augment != augmented.is_some() {
        return Err(ModelsError::Params(
            "augment: true and the augmented targets go together".into(),
        ));
    }
    if p.batch_size < 2 {
        return Err(ModelsError::Params(
            "batch_size must be at least 2 (batch normalisation)".into(),
        ));
    }
    let mut config = net_config(data, rois, p)?;
    if config.roi_groups == 0 {
        config.roi_groups = if device.is_cuda() { 1 } else { 8 };
    }
    let name = if p.name.is_empty() { p.model.name().to_owned() } else { p.name.clone() };
    let fold_sets =
        folds(&data.subject, p.cv, p.folds, p.validation, p.validation_fraction, p.seed);
    // Checked before any fold trains.
    phases(p.schedule, config.kind, p.pretrain_epochs, p.epochs)?;
    Ok(Prepared { config, name, fold_sets, device })
}

/// What one fold contributes to a run's outputs (its model file is written by then).
pub(crate) struct FoldPart {
    /// Its test scans' predictions.
    pub(crate) predictions: Predictions,
    /// Its epochs.
    pub(crate) records: Vec<EpochRecord>,
    /// Its input columns.
    pub(crate) selected: usize,
    /// Its (scan, target) training pairs.
    pub(crate) training_pairs: usize,
}

/// Trains `fold` (seeded by itself alone, so the same weights whether or not the other folds
/// train in this process) and writes its `fold-NN.safetensors` into `model_dir`.
pub(crate) fn train_one_fold(
    data: &Dataset,
    rois: &[(usize, usize)],
    tensors: &DataTensors,
    prepared: &Prepared,
    p: &TrainParams,
    fold: &Fold,
    model_dir: &Path,
) -> Result<FoldPart> {
    let name = &prepared.name;
    // Leave-one-subject-out must never fit or early-stop on the test subject.
    let leaks = p.cv == CrossValidation::LeaveOneSubjectOut
        && fold
            .train
            .iter()
            .chain(&fold.validation)
            .any(|&i| fold.test_subjects.contains(&data.subject[i]));
    if leaks {
        return Err(ModelsError::Params(format!(
            "fold {}: training scans of the test subject",
            fold.index
        )));
    }
    // Inputs are chosen on the fold's training scans only.
    let chosen = select(data, &fold.train, rois, p.select, p.select_columns)?;
    let (config, tensors) = match &chosen {
        Some(s) => (prepared.config.restricted(s), tensors.with_columns(&s.columns)),
        None => (prepared.config.clone(), tensors.shallow_clone()),
    };
    let training_pairs = tensors.training_pairs(&fold.train).len();
    let mut trained = train_fold(&tensors, &config, p, fold, name)?;
    if p.refit && !fold.validation.is_empty() {
        trained = refit(&tensors, &config, p, fold, name, trained)?;
    }
    let file = model_dir.join(fold_file(fold.index));
    let meta = serde_json::json!({
        "net": config,
        "model": name,
        "fold": fold.index,
        "test_subjects": fold.test_subjects,
        "params": p,
    });
    save_var_store(&trained.vs, &file, MODEL_SCHEMA, &meta)?;
    let predictions = predict_rows(&trained.net, &tensors, data, &fold.test, fold.index, name)?;
    Ok(FoldPart { predictions, records: trained.records, selected: config.inputs, training_pairs })
}

/// The model file of fold `index`.
pub(crate) fn fold_file(index: usize) -> String {
    format!("fold-{index:02}.safetensors")
}

/// Writes the predictions and training tables of `parts` (fold order): the one writer of a
/// whole run and of a merge of shards, so both give the same bytes. Returns the input columns
/// and training pairs per fold, and the epochs in all.
pub(crate) fn write_outputs(
    out: &TrainOutputs,
    parts: Vec<FoldPart>,
) -> Result<(Vec<usize>, Vec<usize>, usize)> {
    let mut predictions = Predictions::default();
    let mut records = Vec::new();
    let mut selected = Vec::new();
    let mut training_pairs = Vec::new();
    for part in parts {
        predictions.extend(part.predictions);
        records.extend(part.records);
        selected.push(part.selected);
        training_pairs.push(part.training_pairs);
    }
    write_predictions(&out.predictions, &predictions)?;
    write_training(&out.training, &records)?;
    Ok((selected, training_pairs, records.len()))
}

/// Everything on the device once: inputs, per-pair targets and classes, candidate targets.
///
/// A training pair is a (scan, target): pairs `0..scans` are the scans with their own targets;
/// with augmentation, further pairs hold a scan and one augmented target of its stimulus.
pub struct DataTensors {
    x: Tensor,
    /// Target of each pair.
    targets: Tensor,
    /// Class of each pair.
    classes: Tensor,
    /// With augmentation: the scan of every pair (`None`: pair = scan).
    pair_scan: Option<Tensor>,
    /// With augmentation: the augmented pairs of each scan.
    augmented_pairs: std::sync::Arc<Vec<Vec<usize>>>,
    /// `[candidates, dim]` unit-norm target vectors, row = target row.
    candidates: Tensor,
    /// Target row of each scan.
    target_row: Tensor,
    device: Device,
}

impl DataTensors {
    /// Moves `data` to `device`, targets minus `target_mean` (when not empty).
    pub fn new(data: &Dataset, target_mean: &[f32], device: Device) -> Result<DataTensors> {
        let rows: Vec<usize> = (0..data.len()).collect();
        let mean = if target_mean.is_empty() {
            Tensor::zeros([data.targets.dim as i64], (Kind::Float, device))
        } else {
            Tensor::from_slice(target_mean).to_device(device)
        };
        let candidates =
            f32_rows_to_tensor(&data.targets.vectors, data.targets.dim, device)? - &mean;
        let norm = candidates.norm_scalaropt_dim(2.0, [1i64].as_slice(), true).clamp_min(1e-8);
        Ok(DataTensors {
            x: f32_rows_to_tensor(&data.x, data.width, device)?,
            targets: f32_rows_to_tensor(&data.target_vectors(&rows), data.targets.dim, device)?
                - &mean,
            classes: Tensor::from_slice(&data.classes()).to_device(device),
            candidates: candidates / norm,
            target_row: Tensor::from_slice(
                &data.target_row.iter().map(|&r| r as i64).collect::<Vec<_>>(),
            )
            .to_device(device),
            pair_scan: None,
            augmented_pairs: std::sync::Arc::new(Vec::new()),
            device,
        })
    }

    /// As [`DataTensors::new`], plus one pair per scan and augmented copy of its stimulus
    /// (targets centred on the same `target_mean`).
    pub fn with_augmented(
        data: &Dataset,
        augmented: &Augmented,
        target_mean: &[f32],
        device: Device,
    ) -> Result<DataTensors> {
        let base = DataTensors::new(data, target_mean, device)?;
        let n = data.len();
        let classes = data.classes();
        let mut scan_of: Vec<i64> = (0..n as i64).collect();
        let mut extra_targets = Vec::new();
        let mut extra_classes = Vec::new();
        let mut pairs = vec![Vec::new(); n];
        for (scan, pairs_of_scan) in pairs.iter_mut().enumerate() {
            let stimulus = &data.targets.stimulus[data.target_row[scan]];
            for copy in augmented.by_stimulus.get(stimulus).into_iter().flatten() {
                pairs_of_scan.push(scan_of.len());
                scan_of.push(scan as i64);
                extra_targets.extend_from_slice(copy);
                extra_classes.push(classes[scan]);
            }
        }
        if extra_classes.is_empty() {
            return Err(ModelsError::Params(
                "no augmented embedding matches a scan's stimulus".into(),
            ));
        }
        let mean = if target_mean.is_empty() {
            Tensor::zeros([data.targets.dim as i64], (Kind::Float, device))
        } else {
            Tensor::from_slice(target_mean).to_device(device)
        };
        let extra = f32_rows_to_tensor(&extra_targets, data.targets.dim, device)? - &mean;
        Ok(DataTensors {
            targets: Tensor::cat(&[&base.targets, &extra], 0),
            classes: Tensor::cat(
                &[&base.classes, &Tensor::from_slice(&extra_classes).to_device(device)],
                0,
            ),
            pair_scan: Some(Tensor::from_slice(&scan_of).to_device(device)),
            augmented_pairs: std::sync::Arc::new(pairs),
            ..base
        })
    }

    /// The training pairs of `scans`: the scans themselves, then their augmented pairs.
    pub fn training_pairs(&self, scans: &[usize]) -> Vec<usize> {
        let mut out = scans.to_vec();
        for &s in scans {
            out.extend(self.augmented_pairs.get(s).into_iter().flatten());
        }
        out
    }

    /// The inputs of the pairs `idx`.
    fn inputs_of(&self, idx: &Tensor) -> Tensor {
        match &self.pair_scan {
            None => self.x.index_select(0, idx),
            Some(scan) => self.x.index_select(0, &scan.index_select(0, idx)),
        }
    }

    /// The same data reading only `columns` of the inputs.
    pub fn with_columns(&self, columns: &[usize]) -> DataTensors {
        let cols = Tensor::from_slice(&columns.iter().map(|&c| c as i64).collect::<Vec<_>>())
            .to_device(self.device);
        DataTensors { x: self.x.index_select(1, &cols), ..self.shallow_clone() }
    }

    /// Another handle on the same tensors.
    pub fn shallow_clone(&self) -> DataTensors {
        DataTensors {
            x: self.x.shallow_clone(),
            targets: self.targets.shallow_clone(),
            classes: self.classes.shallow_clone(),
            candidates: self.candidates.shallow_clone(),
            target_row: self.target_row.shallow_clone(),
            pair_scan: self.pair_scan.as_ref().map(Tensor::shallow_clone),
            augmented_pairs: self.augmented_pairs.clone(),
            device: self.device,
        }
    }

    fn index(&self, rows: &[usize]) -> Tensor {
        Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>())
            .to_device(self.device)
    }
}

/// A fold's trained network.
pub struct Trained {
    /// Its variables (the best epoch's).
    pub vs: nn::VarStore,
    /// The network.
    pub net: Net,
    /// One record per epoch.
    pub records: Vec<EpochRecord>,
}

/// Sums of the loss terms over an epoch's batches, kept on the device (in f64) and read once per
/// epoch: reading a loss per batch would make the host wait for the device at every step.
struct Terms {
    /// `[total, regression, classification, reconstruction, mean_reg]`.
    sums: Tensor,
    batches: usize,
}

impl Terms {
    fn new(device: Device) -> Terms {
        Terms { sums: Tensor::zeros([5], (Kind::Double, device)), batches: 0 }
    }

    /// Adds one batch's terms (absent ones count 0).
    fn add(&mut self, terms: [Option<&Tensor>; 5]) {
        tch::no_grad(|| {
            for (i, t) in terms.iter().enumerate() {
                if let Some(t) = t {
                    let mut slot = self.sums.get(i as i64);
                    let _ = slot.g_add_(&t.detach().to_kind(Kind::Double));
                }
            }
        });
        self.batches += 1;
    }

    /// The epoch means, `[total, regression, classification, reconstruction, mean_reg]`.
    fn means(&self) -> Result<[f64; 5]> {
        let n = self.batches.max(1) as f64;
        let sums = Vec::<f64>::try_from(&self.sums.to_device(Device::Cpu))?;
        let mut out = [0.0; 5];
        for (o, s) in out.iter_mut().zip(sums) {
            *o = s / n;
        }
        Ok(out)
    }
}

#[derive(Clone, Copy)]
struct LossWeights {
    regression: f64,
    classification: f64,
    reconstruction: f64,
    /// Whether the reconstruction term is computed at all (off while the encoder is frozen).
    use_reconstruction: bool,
    /// The regression loss's form.
    form: RegressionForm,
}

impl LossWeights {
    fn of(p: &TrainParams) -> LossWeights {
        let (regression, classification) = match p.loss {
            LossKind::Regression => (1.0, 0.0),
            LossKind::Classification => (0.0, 1.0),
            LossKind::Combined => (p.regression_weight, p.classification_weight),
        };
        LossWeights {
            regression,
            classification,
            reconstruction: p.reconstruction_weight,
            use_reconstruction: true,
            form: p.regression_form,
        }
    }

    /// The weights trained in `phase`.
    fn in_phase(p: &TrainParams, phase: Phase) -> LossWeights {
        let all = LossWeights::of(p);
        LossWeights {
            regression: if phase.trains_task() { all.regression } else { 0.0 },
            classification: if phase.trains_task() { all.classification } else { 0.0 },
            use_reconstruction: phase.trains_reconstruction(),
            ..all
        }
    }

    /// The loss early stopping watches in `phase`: the task loss, or (pretraining) the
    /// reconstruction loss.
    fn monitored(&self, phase: Phase) -> LossWeights {
        if phase.monitors_reconstruction() {
            LossWeights {
                regression: 0.0,
                classification: 0.0,
                reconstruction: 1.0,
                use_reconstruction: true,
                form: self.form,
            }
        } else {
            LossWeights { reconstruction: 0.0, ..*self }
        }
    }
}

/// The task loss (regression and/or classification) and the autoencoder's reconstruction.
#[expect(
    clippy::assign_op_pattern,
    reason = "tch's `+=` adds in place; the loss graph needs new tensors"
)]
fn task_losses(
    net: &Net,
    w: &LossWeights,
    (x, t, c): (&Tensor, &Tensor, &Tensor),
    train: bool,
    encoder_train: bool,
) -> (crate::net::Outputs, Tensor, [Option<Tensor>; 3]) {
    let out = net.forward_with(x, train, encoder_train);
    let reg = (w.regression > 0.0).then(|| regression_loss_of(w.form, &out.embedding, t));
    let cls = (w.classification > 0.0).then(|| classification_loss(&out.logits, c));
    let rec = out
        .reconstruction
        .as_ref()
        .filter(|_| w.use_reconstruction)
        .map(|r| reconstruction_loss(x, r));
    let mut total = Tensor::zeros([], (Kind::Float, x.device()));
    if let Some(l) = &reg {
        total = total + l * w.regression;
    }
    if let Some(l) = &cls {
        total = total + l * w.classification;
    }
    if let Some(l) = &rec {
        total = total + l * w.reconstruction;
    }
    (out, total, [reg, cls, rec])
}

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

/// Trains one fold under `p.schedule` (one phase after another on the same network).
pub fn train_fold(
    d: &DataTensors,
    config: &NetConfig,
    p: &TrainParams,
    fold: &Fold,
    name: &str,
) -> Result<Trained> {
    let plans = phases(p.schedule, config.kind, p.pretrain_epochs, p.epochs)?;
    train_phases(d, config, p, fold, name, &plans)
}

/// Trains one fold through `plans`.
fn train_phases(
    d: &DataTensors,
    config: &NetConfig,
    p: &TrainParams,
    fold: &Fold,
    name: &str,
    plans: &[Plan],
) -> Result<Trained> {
    tch::manual_seed(p.seed.wrapping_add(fold.index as u64) as i64);
    let vs = nn::VarStore::new(d.device);
    let net = Net::new(&vs.root(), config);
    let run = FoldRun {
        d,
        config,
        p,
        fold,
        name,
        train_idx: d.index(&d.training_pairs(&fold.train)),
        val_idx: d.index(&fold.validation),
        phased: !p.schedule.is_joint(),
    };
    let mut records = Vec::new();
    for plan in plans {
        run.phase(&vs, &net, *plan, &mut records)?;
    }
    Ok(Trained { vs, net, records })
}

/// What every phase of one fold's training shares.
struct FoldRun<'a> {
    d: &'a DataTensors,
    config: &'a NetConfig,
    p: &'a TrainParams,
    fold: &'a Fold,
    name: &'a str,
    /// Training pairs (scans, then their augmented pairs).
    train_idx: Tensor,
    val_idx: Tensor,
    /// Whether records carry their phase (every schedule but the default joint one).
    phased: bool,
}

impl FoldRun<'_> {
    /// Trains one phase: its own optimizer, learning-rate schedule and early stopping (the best
    /// epoch's weights restored at its end). A frozen encoder gets no gradient and runs in
    /// evaluation mode, so its variables stay bit-identical.
    #[expect(
        clippy::assign_op_pattern,
        reason = "tch's `+=` adds in place; the loss graph needs new tensors"
    )]
    fn phase(
        &self,
        vs: &nn::VarStore,
        net: &Net,
        plan: Plan,
        records: &mut Vec<EpochRecord>,
    ) -> Result<()> {
        let (d, config, p) = (self.d, self.config, self.p);
        let frozen: Vec<Tensor> = if plan.phase.freezes_encoder() {
            vs.variables()
                .into_iter()
                .filter(|(k, v)| k.starts_with(ENCODER_PREFIX) && v.requires_grad())
                .map(|(_, v)| v.set_requires_grad(false))
                .collect()
        } else {
            Vec::new()
        };
        // Keras' epsilon and Brain2Word's amsgrad; one fused multi-tensor call per step.
        let mut opt = FusedAdam::new(
            vs,
            AdamConfig { lr: p.lr, eps: 1e-7, amsgrad: true, ..AdamConfig::default() },
        );
        let weights = LossWeights::in_phase(p, plan.phase);
        let monitored = weights.monitored(plan.phase);
        let encoder_train = !plan.phase.freezes_encoder();
        let n_train = self.train_idx.size()[0];
        let batch = p.batch_size as i64;
        let mut means: Option<Vec<Tensor>> = None;
        let mut best: Option<(f64, HashMap<String, Tensor>)> = None;
        let mut since_best = 0;
        let held_out = self.fold.test_subjects.join(",");
        let first_epoch = records.len();
        for epoch in 0..plan.epochs {
            let lr = p.lr * p.lr_decay.powi((epoch / p.lr_step_epochs.max(1)) as i32);
            opt.set_lr(lr);
            if p.mean_reg_weight > 0.0
                && epoch >= p.warmup_epochs
                && (epoch - p.warmup_epochs).is_multiple_of(p.mean_reg_round_epochs.max(1))
            {
                let fresh = word_means(net, d, &self.train_idx, config.classes as i64, batch);
                means = Some(match means.take() {
                    None => fresh,
                    Some(old) => fresh.iter().zip(&old).map(|(n, o)| (n + o) / 2.0).collect(),
                });
            }
            let perm = self.train_idx.index_select(
                0,
                &Tensor::randperm(n_train, (Kind::Int64, Device::Cpu)).to_device(d.device),
            );
            let mut terms = Terms::new(d.device);
            let mut start = 0;
            while start < n_train {
                let len = batch.min(n_train - start);
                if len < 2 {
                    break; // batch normalisation needs two samples
                }
                let idx = perm.narrow(0, start, len);
                start += len;
                let (x, t, c) = (
                    d.inputs_of(&idx),
                    d.targets.index_select(0, &idx),
                    d.classes.index_select(0, &idx),
                );
                let (out, mut total, [reg, cls, rec]) =
                    task_losses(net, &weights, (&x, &t, &c), true, encoder_train);
                let mut mean_reg = None;
                if let Some(m) = &means {
                    let mut mr = Tensor::zeros([], (Kind::Float, d.device));
                    for (h, mean) in out.hidden.iter().zip(m) {
                        mr = mr + mean_regularisation_loss(h, &mean.index_select(0, &c));
                    }
                    total = total + &mr * p.mean_reg_weight;
                    mean_reg = Some(mr);
                }
                opt.backward_step(&total)?;
                terms.add([
                    Some(&total),
                    reg.as_ref(),
                    cls.as_ref(),
                    rec.as_ref(),
                    mean_reg.as_ref(),
                ]);
            }
            let [
                train_loss,
                train_regression,
                train_classification,
                train_reconstruction,
                train_mean_reg,
            ] = terms.means()?;
            let val = validate(net, d, &monitored, &self.val_idx, batch);
            records.push(EpochRecord {
                model: self.name.to_owned(),
                fold: self.fold.index as i32,
                held_out: held_out.clone(),
                epoch: (first_epoch + epoch as usize) as i32,
                lr,
                train_loss,
                train_regression: (weights.regression > 0.0).then_some(train_regression),
                train_classification: (weights.classification > 0.0)
                    .then_some(train_classification),
                train_reconstruction: (config.kind == ModelKind::Autoencoder
                    && weights.use_reconstruction)
                    .then_some(train_reconstruction),
                train_mean_reg: means.is_some().then_some(train_mean_reg),
                val_loss: val.map(|v| v.0),
                val_top1: val.map(|v| v.1),
                val_top5: val.map(|v| v.2),
                phase: self.phased.then(|| plan.phase.name().to_owned()),
            });
            let Some((val_loss, ..)) = val else { continue };
            if best.as_ref().is_none_or(|b| val_loss < b.0) {
                best = Some((val_loss, snapshot(vs)));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= p.patience {
                    break;
                }
            }
        }
        if let Some((_, weights)) = best {
            restore(vs, &weights);
        }
        for v in &frozen {
            let _ = v.set_requires_grad(true);
        }
        Ok(())
    }
}

/// Trains `fold` again on its training and validation scans for the epochs early stopping chose
/// in each phase (its best validation epoch + 1). The records stay those of the run that chose
/// them.
fn refit(
    d: &DataTensors,
    config: &NetConfig,
    p: &TrainParams,
    fold: &Fold,
    name: &str,
    chosen: Trained,
) -> Result<Trained> {
    let plans = phases(p.schedule, config.kind, p.pretrain_epochs, p.epochs)?;
    let phased = !p.schedule.is_joint();
    let chosen_plans: Vec<Plan> = plans
        .iter()
        .map(|plan| {
            let epochs = chosen
                .records
                .iter()
                .filter(|r| !phased || r.phase.as_deref() == Some(plan.phase.name()))
                .enumerate()
                .filter_map(|(i, r)| r.val_loss.map(|v| (i, v)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map_or(plan.epochs, |(i, _)| i as u32 + 1);
            Plan { epochs, ..*plan }
        })
        .collect();
    let mut all: Vec<usize> = fold.train.iter().chain(&fold.validation).copied().collect();
    all.sort_unstable();
    let whole = Fold { train: all, validation: Vec::new(), ..fold.clone() };
    let again = train_phases(d, config, p, &whole, name, &chosen_plans)?;
    Ok(Trained { records: chosen.records, ..again })
}

fn snapshot(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect()
}

fn restore(vs: &nn::VarStore, saved: &HashMap<String, Tensor>) {
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            if let Some(v) = saved.get(&name) {
                var.copy_(v);
            }
        }
    });
}

/// Per-class mean of each hidden layer over the training scans (evaluation mode).
fn word_means(
    net: &Net,
    d: &DataTensors,
    train_idx: &Tensor,
    classes: i64,
    chunk: i64,
) -> Vec<Tensor> {
    tch::no_grad(|| {
        let n = train_idx.size()[0];
        let mut sums: Vec<Tensor> = Vec::new();
        let mut counts = Tensor::zeros([classes, 1], (Kind::Float, d.device));
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let idx = train_idx.narrow(0, start, len);
            start += len;
            let c = d.classes.index_select(0, &idx);
            let out = net.forward(&d.inputs_of(&idx), false);
            // Sums per class as a one-hot matmul, not `index_add`: on CUDA that accumulates with
            // atomics in no fixed order, and reruns would differ in the last bits.
            let one_hot = Tensor::arange(classes, (Kind::Int64, d.device))
                .unsqueeze(1)
                .eq_tensor(&c.unsqueeze(0))
                .to_kind(Kind::Float);
            if sums.is_empty() {
                sums = out
                    .hidden
                    .iter()
                    .map(|h| Tensor::zeros([classes, h.size()[1]], (Kind::Float, d.device)))
                    .collect();
            }
            for (s, h) in sums.iter_mut().zip(&out.hidden) {
                *s = &*s + one_hot.mm(h);
            }
            counts += one_hot.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
        }
        let counts = counts.clamp_min(1.0);
        sums.iter().map(|s| s / &counts).collect()
    })
}

/// The monitored validation loss `w` (in batches of `batch`, fixed order), top-1 and top-5 by
/// cosine.
fn validate(
    net: &Net,
    d: &DataTensors,
    w: &LossWeights,
    idx: &Tensor,
    batch: i64,
) -> Option<(f64, f64, f64)> {
    let n = idx.size()[0];
    if n == 0 {
        return None;
    }
    tch::no_grad(|| {
        let mut loss = 0.0;
        let mut weight = 0.0;
        let mut start = 0;
        let mut embeddings = Vec::new();
        while start < n {
            let len = batch.min(n - start);
            let i = idx.narrow(0, start, len);
            start += len;
            let (x, t, c) =
                (d.inputs_of(&i), d.targets.index_select(0, &i), d.classes.index_select(0, &i));
            let (out, total, _) = task_losses(net, w, (&x, &t, &c), false, false);
            loss += scalar(&total) * len as f64;
            weight += len as f64;
            embeddings.push(out.embedding);
        }
        let e = Tensor::cat(&embeddings, 0);
        let ranks = ranks_of(&e, &d.candidates, &d.target_row.index_select(0, idx));
        let top = |k: i64| scalar(&ranks.le(k).to_kind(Kind::Double).mean(Kind::Double));
        Some((loss / weight, top(1), top(5)))
    })
}

/// 1-based rank of each row's true candidate by cosine (ties count against it).
fn ranks_of(embedding: &Tensor, unit_candidates: &Tensor, truth: &Tensor) -> Tensor {
    let e = embedding / embedding.norm_scalaropt_dim(2.0, [1i64].as_slice(), true).clamp_min(1e-8);
    let sim = e.mm(&unit_candidates.transpose(0, 1));
    let own = sim.gather(1, &truth.unsqueeze(1), false);
    sim.ge_tensor(&own).sum_dim_intlist([1i64].as_slice(), false, Kind::Int64)
}

/// Predictions of `net` for `rows` of `data`.
pub fn predict_rows(
    net: &Net,
    d: &DataTensors,
    data: &Dataset,
    rows: &[usize],
    fold: usize,
    name: &str,
) -> Result<Predictions> {
    let x = d.x.index_select(0, &d.index(rows));
    let (mut embedding, logits) = net.predict(&x, BATCH_SIZE as i64);
    let mean = &net.config().target_mean;
    if !mean.is_empty() {
        let device = embedding.device();
        embedding += Tensor::from_slice(mean).to_device(device);
    }
    let (embedding, embedding_dim) = tensor_to_f32_rows(&embedding)?;
    let (scores, classes) = tensor_to_f32_rows(&logits)?;
    Ok(data.predictions(rows, name, fold, (embedding, embedding_dim), (scores, classes)))
}

/// Reads a fold file's config: the network, model name, fold and test subjects.
pub fn read_fold_config(path: &Path) -> Result<(NetConfig, String, usize, Vec<String>)> {
    let file = brainpipe_core::read_safetensors(path)?;
    let config =
        file.config(path)?.ok_or_else(|| ModelsError::data(path, "no `config` metadata"))?;
    let net: NetConfig = serde_json::from_value(config["net"].clone())
        .map_err(|e| ModelsError::data(path, format!("config.net: {e}")))?;
    let name = config["model"].as_str().unwrap_or(net.kind.name()).to_owned();
    let fold = config["fold"].as_u64().unwrap_or(0) as usize;
    let tests = config["test_subjects"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    Ok((net, name, fold, tests))
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod schedule_tests;
