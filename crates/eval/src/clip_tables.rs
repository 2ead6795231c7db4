//! What `eval.clip` reads of a study's `stimuli/1` and of `clip.embed`'s `embeddings/1`, as views
//! over brainpipe-artifacts' typed readers (the tables themselves, and `clip-trials/1`, are
//! declared there).

use std::path::Path;

use brainpipe_artifacts::{EmbeddingKind, read_embeddings, read_stimuli};

pub use brainpipe_artifacts::{ClipTrial, read_clip_trials, write_clip_trials};

use crate::error::{EvalError, Result};

/// What `eval.clip` needs of a stimulus.
#[derive(Clone, Debug, PartialEq)]
pub struct StimulusInfo {
    /// The stimulus's name (its image path, as in the targets and predictions).
    pub name: String,
    /// `train` or `test`.
    pub split: String,
    /// The generating attribute vector (synthetic studies), empty when absent.
    pub vector: Vec<f32>,
}

/// Reads the image stimuli of a `stimuli/1` table (rows with an image).
pub fn read_image_stimuli(path: &Path) -> Result<Vec<StimulusInfo>> {
    let out: Vec<StimulusInfo> = read_stimuli(path)?
        .into_iter()
        .filter_map(|s| s.image.map(|name| StimulusInfo { name, split: s.split, vector: s.vector }))
        .collect();
    if out.is_empty() {
        return Err(EvalError::data(path, "no image stimuli"));
    }
    Ok(out)
}

/// Image and caption embeddings of `clip.embed`, by stimulus name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClipEmbeddings {
    /// Stimulus of each image row.
    pub image_stimulus: Vec<String>,
    /// Image embeddings, row-major.
    pub images: Vec<f32>,
    /// Stimulus of each caption row.
    pub caption_stimulus: Vec<String>,
    /// Caption texts.
    pub caption_text: Vec<String>,
    /// Caption embeddings, row-major.
    pub captions: Vec<f32>,
    /// Width.
    pub dim: usize,
}

/// Reads the `image` and `caption` rows of an `embeddings/1` table; refuses non-finite values.
pub fn read_clip_embeddings(path: &Path) -> Result<ClipEmbeddings> {
    let (rows, values, dim) = read_embeddings(path)?;
    let mut out = ClipEmbeddings { dim, ..ClipEmbeddings::default() };
    for (i, row) in rows.into_iter().enumerate() {
        let v = &values[i * dim..(i + 1) * dim];
        if v.iter().any(|x| !x.is_finite()) {
            return Err(EvalError::data(path, format!("row {i}: non-finite embedding")));
        }
        match row.kind {
            EmbeddingKind::Image => {
                out.image_stimulus.push(row.stimulus);
                out.images.extend_from_slice(v);
            }
            EmbeddingKind::Caption => {
                out.caption_stimulus.push(row.stimulus);
                out.caption_text.push(row.caption.unwrap_or_default());
                out.captions.extend_from_slice(v);
            }
            EmbeddingKind::Augmented => {}
        }
    }
    if out.image_stimulus.is_empty() {
        return Err(EvalError::data(path, "no image embeddings (kind `image`)"));
    }
    Ok(out)
}
