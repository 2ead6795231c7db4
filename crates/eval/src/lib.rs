//! Evaluation of brainpipe decoders, free of LibTorch (it runs in the `brainpipe` driver).
//!
//! - [`metrics`]: Brain2Word's scores on plain slices — similarity to candidate targets, ranks,
//!   top-k, rank histograms and the pairwise accuracy (Pearson, every pair of a 180-word block).
//! - `eval.words` ([`Words`]): one model's `predictions.parquet` + `targets.parquet` →
//!   `metrics.parquet`, per held-out subject, fold and paradigm; chain one per model.
//! - [`images`]: `eval.images` ([`images::Images`]), the image-reconstruction metrics (PixCorr,
//!   SSIM, 2-way identification) as MindEye computes them.
//! - `eval.report` ([`Report`]): metrics (+ the synthetic study's oracle) → one self-contained
//!   `report.html`.
//!
//! ```
//! use brainpipe_eval::metrics::{Rows, Similarity, pairwise_accuracy, ranks, similarity_matrix, top_k};
//!
//! let targets = [1.0, 0.0, 0.2, 0.0, 1.0, 0.1, 0.3, 0.3, 1.0];
//! let predictions = [0.9, 0.1, 0.0, 0.2, 0.8, 0.3, 0.1, 0.2, 0.7];
//! let (p, t) = (Rows::new(&predictions, 3), Rows::new(&targets, 3));
//! let sim = similarity_matrix(p, t, Similarity::Cosine);
//! let r = ranks(&sim, 3, &[0, 1, 2]);
//! assert_eq!(top_k(&r, 1), 1.0);
//! assert_eq!(pairwise_accuracy(p, t), 1.0);
//! ```

use std::sync::Arc;

pub mod clip;
pub mod clip_report;
pub mod clip_tables;
mod error;
pub mod images;
pub mod metrics;
mod report;
mod words;

pub use clip::{ClipEval, ClipParams, ClipScores, score_clip};
pub use error::{EvalError, Result};
pub use report::{Oracle, Report, ReportParams, best_model, latex_table, render};
pub use words::{ALL, BRAIN2WORD_TOP_K, Scored, Words, WordsParams, score_words};

/// Every stage of this crate, for the driver's registry.
pub fn stages() -> Vec<Arc<dyn brainpipe_core::DynStage>> {
    vec![Arc::new(Words), Arc::new(Report), Arc::new(ClipEval), Arc::new(images::Images)]
}
