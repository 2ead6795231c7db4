//! Every brainpipe table kind in one place: its name and version ([`TableKind`] constants), its
//! Arrow schema, a typed reader and writer, and the column helpers they share.
//!
//! Stage crates (ingest, features, clip, models, diffusion, eval) read and write tables only
//! through this crate, and never depend on each other: a table is the contract between two
//! stages, so it lives with neither. Ports name their kind with these constants
//! (`ArtifactKind::table(PREDICTIONS)`), which lets `brainpipe plan` refuse a wiring whose kinds
//! differ. [`declared`] lists every kind with its schema; `docs/ARTIFACTS.md` is tested against it.
//!
//! ```
//! use brainpipe_artifacts::{Target, read_targets, write_targets};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("targets.parquet");
//! let target = |stimulus: &str, class| Target {
//!     stimulus: stimulus.into(),
//!     class,
//!     target: vec![0.5, -1.0],
//!     caption: None,
//!     caption_index: None,
//!     similarity: None,
//! };
//! write_targets(&path, &[target("dog", 0), target("cat", 1)])?;
//! let targets = read_targets(&path)?;
//! assert_eq!((targets.len(), targets.dim, targets.classes()), (2, 2, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use arrow::datatypes::{Field, Schema};
use brainpipe_core::{TableKind, f32_list_field};

pub mod column;
mod embeddings;
mod images;
pub mod mat;
mod models;
mod scans;
mod stimuli;
mod targets;
mod template;
mod vectors;

pub use embeddings::{
    EmbeddingKind, EmbeddingRow, embeddings_schema, read_embeddings, write_embeddings,
};
pub use images::{
    ClipTrial, ImageMetricRow, Reconstruction, clip_trials_schema, image_metrics_schema,
    read_clip_trials, read_image_metrics, read_reconstructions, reconstructions_schema,
    write_clip_trials, write_image_metrics, write_reconstructions,
};
pub use models::{
    EpochRecord, MetricRow, Predictions, metrics_schema, predictions_schema, read_metrics,
    read_predictions, read_training, training_schema, write_metrics, write_predictions,
    write_training,
};
pub use scans::{
    FeaturesWriter, ROWS_PER_GROUP, RoiBlock, Trials, VoxelTable, gather_columns, keep_columns,
    read_rois, read_trials, read_voxels, roi_label, rois_schema, scans_schema, subjects,
    voxels_schema, write_rois, write_voxels,
};
pub use stimuli::{Stimulus, image_file_name, read_stimuli, resolve_image, stimuli_schema};
pub use targets::{Target, Targets, read_targets, targets_schema, write_targets};
pub use template::{TemplateRow, read_template, template_schema, write_template};
pub use vectors::{
    Rows as WordRows, WordVectors, glove_rows, read_word_vector_rows, read_word_vectors,
};

/// A subject's trials, one row each with its voxels (`ingest.*`).
pub const SCANS: TableKind = TableKind::new("scans", 1);
/// Where each column of a `scans` table sits (`ingest.*`).
pub const VOXELS: TableKind = TableKind::new("voxels", 1);
/// One row per stimulus of a study (`ingest.*`).
pub const STIMULI: TableKind = TableKind::new("stimuli", 1);
/// Model-ready rows: the scans' identifying columns + `voxels` grouped by ROI or template-padded
/// (`features.*`).
pub const FEATURES: TableKind = TableKind::new("features", 1);
/// Where each column of a subject's `features` table came from (`features.roi`).
pub const FEATURE_VOXELS: TableKind = TableKind::new("feature-voxels", 1);
/// ROI blocks of a features table: `roi`, `label`, `first`, `count` (`features.*`).
pub const ROIS: TableKind = TableKind::new("rois", 1);
/// The per-ROI slice template of `features.template_pad`: `roi`, `z`, `count`.
pub const TEMPLATE: TableKind = TableKind::new("template", 1);
/// CLIP embeddings of images, captions and augmented images (`clip.embed`, `clip.augment`).
pub const EMBEDDINGS: TableKind = TableKind::new("embeddings", 1);
/// One regression target and class per stimulus (`clip.words`, `clip.select_captions`).
pub const TARGETS: TableKind = TableKind::new("targets", 1);
/// Per-scan predictions of a model (`models.*`).
pub const PREDICTIONS: TableKind = TableKind::new("predictions", 1);
/// Per-epoch training records (`models.train`).
pub const TRAINING: TableKind = TableKind::new("training", 1);
/// Scores per model, held-out subject, fold, paradigm and metric (`eval.words`, `eval.clip`).
pub const METRICS: TableKind = TableKind::new("metrics", 1);
/// One generated image per row (`diffusion.decode`): model, subject, trial, stimulus, fold, PNG
/// path, seed.
pub const RECONSTRUCTIONS: TableKind = TableKind::new("reconstructions", 1);
/// Reconstruction metrics per (model, subject, trial, metric) and their summaries
/// (`eval.images`).
pub const IMAGE_METRICS: TableKind = TableKind::new("image-metrics", 1);
/// One scored trial of `eval.clip`: ranks, retrieved images, the chosen caption.
pub const CLIP_TRIALS: TableKind = TableKind::new("clip-trials", 1);

/// A table kind with its schema (list widths as in a small example: 4 voxels, embeddings or
/// classes).
#[derive(Clone, Debug)]
pub struct Declared {
    /// The kind.
    pub kind: TableKind,
    /// Its columns.
    pub schema: Schema,
}

/// Every table kind brainpipe reads or writes, in data-flow order, with its schema.
pub fn declared() -> Vec<Declared> {
    const W: usize = 4;
    let declared = |kind, schema| Declared { kind, schema };
    vec![
        declared(SCANS, scans_schema(W, "ingest.synthetic")),
        declared(VOXELS, voxels_schema(VOXELS)),
        declared(STIMULI, stimuli_schema(f32_list_field("vector", W, true))),
        declared(FEATURES, scans_schema(W, "ingest.synthetic")),
        declared(FEATURE_VOXELS, voxels_schema(FEATURE_VOXELS)),
        declared(ROIS, rois_schema()),
        declared(TEMPLATE, template_schema()),
        declared(EMBEDDINGS, embeddings_schema(W)),
        declared(TARGETS, targets_schema(W)),
        declared(PREDICTIONS, predictions_schema(W, W)),
        declared(TRAINING, training_schema()),
        declared(METRICS, metrics_schema()),
        declared(RECONSTRUCTIONS, reconstructions_schema()),
        declared(IMAGE_METRICS, image_metrics_schema()),
        declared(CLIP_TRIALS, clip_trials_schema()),
    ]
}

/// The names of `schema`'s columns.
pub fn column_names(schema: &Schema) -> Vec<&str> {
    schema.fields().iter().map(|f: &std::sync::Arc<Field>| f.name().as_str()).collect()
}
