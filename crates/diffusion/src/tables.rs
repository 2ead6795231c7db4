//! What the diffusion stages read of a study's `stimuli/1`, `clip.embed`'s `embeddings/1` and a
//! model's `predictions/1`, as views over brainpipe-artifacts' typed readers; the tables
//! themselves, `reconstructions/1` included, are declared there.

use std::path::Path;

use brainpipe_artifacts::{EmbeddingKind, read_embeddings, read_stimuli};

pub use brainpipe_artifacts::{Reconstruction, read_reconstructions, write_reconstructions};

use crate::error::{DiffusionError, Result};

/// A stimulus image and its split (rows of `stimuli/1` with an image).
#[derive(Clone, Debug, PartialEq)]
pub struct StimulusImage {
    /// Stimulus id.
    pub id: i32,
    /// Image path relative to the study directory.
    pub image: String,
    /// `train` or `test` (or `all`).
    pub split: String,
}

/// The images of a stimuli table, with their split.
pub fn read_stimulus_images(path: &Path) -> Result<Vec<StimulusImage>> {
    Ok(read_stimuli(path)?
        .into_iter()
        .filter_map(|s| s.image.map(|image| StimulusImage { id: s.id, image, split: s.split }))
        .collect())
}

/// The images of a stimuli table in `split` (`all`: every image).
pub fn read_split_images(path: &Path, split: &str) -> Result<Vec<StimulusImage>> {
    let mut images = read_stimulus_images(path)?;
    images.retain(|s| split == "all" || s.split == split);
    Ok(images)
}

/// Image rows of an embeddings table: (stimulus id, image path) per row, the row-major
/// embeddings and their width.
pub type ImageEmbeddings = (Vec<(i32, String)>, Vec<f32>, usize);

/// Image embeddings (`kind = image` rows of `embeddings/1`).
pub fn read_image_embeddings(path: &Path) -> Result<ImageEmbeddings> {
    let (all, v, d) = read_embeddings(path)?;
    let (mut rows, mut values) = (Vec::new(), Vec::new());
    for (i, row) in all.into_iter().enumerate() {
        if row.kind != EmbeddingKind::Image {
            continue;
        }
        let image =
            row.image.ok_or_else(|| DiffusionError::table(path, "image row without `image`"))?;
        rows.push((row.stimulus_id, image));
        values.extend_from_slice(&v[i * d..(i + 1) * d]);
    }
    Ok((rows, values, d))
}

/// One decodable row: who predicted which embedding for which trial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeRow {
    /// Model name (`ridge`, `base`…, or `truth` / `shuffled` for embeddings decoded directly).
    pub model: String,
    /// Subject of the scan.
    pub subject: String,
    /// Trial of the scan.
    pub trial: i32,
    /// The stimulus the subject saw (image path).
    pub stimulus: String,
    /// Fold whose model predicted it.
    pub fold: i32,
}

impl DecodeRow {
    /// The `reconstructions/1` row of this decoded row.
    pub fn reconstruction(&self, image: String, seed: i64) -> Reconstruction {
        Reconstruction {
            model: self.model.clone(),
            subject: self.subject.clone(),
            trial: self.trial,
            stimulus: self.stimulus.clone(),
            fold: self.fold,
            image,
            seed,
        }
    }
}

/// The rows and predicted embeddings of a `predictions/1` table.
pub fn read_predictions(path: &Path) -> Result<(Vec<DecodeRow>, Vec<f32>, usize)> {
    let p = brainpipe_artifacts::read_predictions(path)?;
    let rows = (0..p.len())
        .map(|i| DecodeRow {
            model: p.model[i].clone(),
            subject: p.subject[i].clone(),
            trial: p.trial[i],
            stimulus: p.stimulus[i].clone(),
            fold: p.fold[i],
        })
        .collect();
    Ok((rows, p.embedding, p.embedding_dim))
}
