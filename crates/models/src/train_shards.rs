//! `models.train` in shards, one per cross-validation fold (a Slurm job array's tasks), and the
//! merge that writes the stage's outputs from them: the bytes of the unsharded run.
//!
//! Each fold seeds its own training (`seed + fold`) and the folds are a function of the data and
//! params, so fold `k` trained alone gives the weights, predictions and epochs it gets in a whole
//! run. A shard directory holds `model/fold-NN.safetensors`, the fold's `predictions.parquet`
//! (absent when the fold tests no scan), its `training.parquet` and `fold.json` (counts and
//! timing). The merge concatenates the parts in fold order and writes them through
//! [`write_outputs`], the writer of the unsharded run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use brainpipe_artifacts::{
    Predictions, read_predictions, read_training, write_predictions, write_training,
};
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::augmented::Augmented;
use crate::cv::folds;
use crate::data::Dataset;
use crate::error::{ModelsError, Result};
use crate::net::PrecisionExt;
use crate::train::{
    FoldPart, TrainOutputs, TrainParams, TrainSummary, fold_file, prepare, train_one_fold,
    write_outputs,
};

/// The shard's record of what it did (`fold.json`).
const FOLD_FILE: &str = "fold.json";

/// Version of [`FOLD_FILE`]'s layout.
const FOLD_FORMAT: u32 = 1;

/// What a shard records next to its parts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardRecord {
    /// [`FOLD_FORMAT`].
    pub format: u32,
    /// The fold it trained.
    pub fold: usize,
    /// Folds of the whole run.
    pub folds: usize,
    /// Scans of the dataset.
    pub scans: usize,
    /// Scans without a target, skipped.
    pub skipped_scans: usize,
    /// Input columns of the fold's network.
    pub selected: usize,
    /// (scan, target) training pairs of the fold.
    pub training_pairs: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// Wall-clock seconds of the fold's training.
    pub seconds: f64,
    /// The device it trained on.
    pub device: String,
    /// Rows of its `predictions.parquet` (0: no file).
    pub predictions: usize,
    /// Width of a predicted embedding.
    pub embedding_dim: usize,
    /// Class scores per prediction.
    pub classes: usize,
}

/// The folds `p` splits `data` into: the stage's shards.
pub fn fold_count(data: &Dataset, p: &TrainParams) -> usize {
    folds(&data.subject, p.cv, p.folds, p.validation, p.validation_fraction, p.seed).len()
}

/// Trains fold `index` of `count` into the shard directory `dir`. Fails when the data do not
/// split into `count` folds (they changed since the shards were planned).
pub fn train_shard(
    data: &Dataset,
    rois: &[(usize, usize)],
    augmented: Option<&Augmented>,
    p: &TrainParams,
    device: Device,
    (index, count): (usize, usize),
    dir: &Path,
) -> Result<ShardRecord> {
    let prepared = prepare(data, rois, augmented, p, device)?;
    if prepared.fold_sets.len() != count || index >= count {
        return Err(ModelsError::Params(format!(
            "shard {index} of {count}: the data split into {} folds",
            prepared.fold_sets.len()
        )));
    }
    let _tf32 = p.precision.activate();
    let tensors = prepared.tensors(data, augmented)?;
    let model_dir = dir.join("model");
    std::fs::create_dir_all(&model_dir).map_err(|e| brainpipe_core::Error::io(&model_dir, e))?;
    let started = Instant::now();
    let fold = &prepared.fold_sets[index];
    let part = train_one_fold(data, rois, &tensors, &prepared, p, fold, &model_dir)?;
    let record = ShardRecord {
        format: FOLD_FORMAT,
        fold: index,
        folds: count,
        scans: data.len(),
        skipped_scans: data.skipped,
        selected: part.selected,
        training_pairs: part.training_pairs,
        epochs: part.records.len(),
        seconds: started.elapsed().as_secs_f64(),
        device: brainpipe_tensor::device_name(device),
        predictions: part.predictions.len(),
        embedding_dim: part.predictions.embedding_dim,
        classes: part.predictions.classes,
    };
    if !part.predictions.is_empty() {
        write_predictions(&dir.join("predictions.parquet"), &part.predictions)?;
    }
    write_training(&dir.join("training.parquet"), &part.records)?;
    let json =
        serde_json::to_vec_pretty(&record).map_err(|e| ModelsError::data(dir, e.to_string()))?;
    let file = dir.join(FOLD_FILE);
    std::fs::write(&file, json).map_err(|e| brainpipe_core::Error::io(&file, e))?;
    Ok(record)
}

/// What a merge wrote.
pub struct Merged {
    /// Folds, epochs, summed training seconds, columns and pairs per fold.
    pub summary: TrainSummary,
    /// Scans of the dataset.
    pub scans: usize,
    /// Scans skipped.
    pub skipped_scans: usize,
    /// The device the shards trained on (shard 0's).
    pub device: String,
}

/// Writes the stage's outputs into `out` from the shard directories `shards` (fold 0 first),
/// each checked to be the fold of its position in a run of `shards.len()` folds.
pub fn merge(shards: &[PathBuf], out: &TrainOutputs) -> Result<Merged> {
    std::fs::create_dir_all(&out.model_dir)
        .map_err(|e| brainpipe_core::Error::io(&out.model_dir, e))?;
    let mut parts = Vec::new();
    let mut records: Vec<ShardRecord> = Vec::new();
    for (index, dir) in shards.iter().enumerate() {
        let file = dir.join(FOLD_FILE);
        let bytes = std::fs::read(&file).map_err(|e| brainpipe_core::Error::io(&file, e))?;
        let record: ShardRecord = serde_json::from_slice(&bytes)
            .map_err(|e| ModelsError::data(&file, format!("not a shard record: {e}")))?;
        if record.format != FOLD_FORMAT || record.fold != index || record.folds != shards.len() {
            return Err(ModelsError::data(
                &file,
                format!(
                    "shard of fold {} of {} (format {}), expected fold {index} of {} (format {FOLD_FORMAT})",
                    record.fold,
                    record.folds,
                    record.format,
                    shards.len()
                ),
            ));
        }
        let predictions = if record.predictions == 0 {
            Predictions {
                embedding_dim: record.embedding_dim,
                classes: record.classes,
                ..Predictions::default()
            }
        } else {
            let path = dir.join("predictions.parquet");
            let predictions = read_predictions(&path)?;
            if predictions.len() != record.predictions {
                return Err(ModelsError::data(
                    &path,
                    format!("{} rows, {FOLD_FILE} says {}", predictions.len(), record.predictions),
                ));
            }
            predictions
        };
        let training = read_training(&dir.join("training.parquet"))?;
        let model = dir.join("model").join(fold_file(index));
        let to = out.model_dir.join(fold_file(index));
        std::fs::copy(&model, &to).map_err(|e| brainpipe_core::Error::io(&model, e))?;
        parts.push(FoldPart {
            predictions,
            records: training,
            selected: record.selected,
            training_pairs: record.training_pairs,
        });
        records.push(record);
    }
    let first = records
        .first()
        .ok_or_else(|| ModelsError::Params("a merge needs at least one shard".into()))?;
    let (scans, skipped_scans, device) = (first.scans, first.skipped_scans, first.device.clone());
    let (selected, training_pairs, epochs) = write_outputs(out, parts)?;
    Ok(Merged {
        summary: TrainSummary {
            folds: shards.len(),
            epochs,
            seconds: records.iter().map(|r| r.seconds).sum(),
            selected,
            training_pairs,
            fold_sets: Vec::new(),
        },
        scans,
        skipped_scans,
        device,
    })
}
