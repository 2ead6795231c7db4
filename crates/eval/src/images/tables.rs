//! What `eval.images` reads of a study's `stimuli/1` and of `clip.embed`'s `embeddings/1`, as
//! views over brainpipe-artifacts' typed readers; `reconstructions/1` and `image-metrics/1` are
//! declared there too.

use std::collections::HashMap;
use std::path::Path;

use brainpipe_artifacts::{
    EmbeddingKind, image_file_name as file_name, read_embeddings, read_stimuli,
};

pub use brainpipe_artifacts::{
    IMAGE_METRICS, ImageMetricRow, RECONSTRUCTIONS, Reconstruction, read_image_metrics,
    read_reconstructions, write_image_metrics,
};

use crate::error::{EvalError, Result};

/// A study's stimuli: name (word, else image path, else id), id and image file name → image path
/// as written.
pub(crate) fn read_stimulus_images(path: &Path) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for s in read_stimuli(path)? {
        if let Some(image) = &s.image {
            out.insert(s.name(), image.clone());
            out.entry(s.id.to_string()).or_insert_with(|| image.clone());
            // Scans name their stimulus by the image's file name (the events' trial_type).
            out.entry(file_name(image)).or_insert_with(|| image.clone());
        }
    }
    Ok(out)
}

/// Image embeddings of an `embeddings/1` table: `(stimulus, image path, vector)` of its
/// `kind = image` rows, and their width.
pub(crate) type ImageFeatures = (Vec<(String, Option<String>, Vec<f64>)>, usize);

/// Reads the `kind = image` rows of an `embeddings/1` table.
pub(crate) fn read_image_features(path: &Path) -> Result<ImageFeatures> {
    let (rows, values, dim) = read_embeddings(path)?;
    let out: Vec<_> = rows
        .into_iter()
        .enumerate()
        .filter(|(_, r)| r.kind == EmbeddingKind::Image)
        .map(|(i, r)| {
            let v = values[i * dim..(i + 1) * dim].iter().map(|&x| f64::from(x)).collect();
            (r.stimulus, r.image, v)
        })
        .collect();
    if out.is_empty() {
        return Err(EvalError::data(path, "no `image` rows in the embeddings table"));
    }
    Ok((out, dim))
}
