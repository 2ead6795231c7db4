//! Brain2CLIP augmentation targets: the `augmented` rows of a `clip.augment` embeddings table,
//! read as extra targets per stimulus (the seed's fourth experiment: each training image ×4,
//! every augmented embedding an extra target for the same scan).

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, Int32Array, StringArray};
use brainpipe_core::{TableKind, f32_list_values, read_table};

use crate::error::{ModelsError, Result};

/// `embeddings/1` (written by `clip.embed` and `clip.augment`).
pub const EMBEDDINGS_TABLE: TableKind = TableKind::new("embeddings", 1);

/// Augmented target vectors per stimulus name, in copy order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Augmented {
    /// Stimulus → its copies' embeddings (each `dim` wide).
    pub by_stimulus: BTreeMap<String, Vec<Vec<f32>>>,
    /// Width of an embedding.
    pub dim: usize,
}

/// Reads the rows of kind `augmented` of an `embeddings/1` table; `dim` must be the targets'.
pub fn read_augmented(path: &Path, dim: usize) -> Result<Augmented> {
    let (_, batches) = read_table(path, Some(EMBEDDINGS_TABLE))?;
    let mut copies: BTreeMap<String, Vec<(i32, Vec<f32>)>> = BTreeMap::new();
    for batch in &batches {
        let text = |name: &str| -> Result<&StringArray> {
            batch
                .column_by_name(name)
                .and_then(|a| a.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| ModelsError::data(path, format!("no Utf8 column `{name}`")))
        };
        let (stimulus, kind) = (text("stimulus")?, text("kind")?);
        let copy = batch
            .column_by_name("augmentation")
            .and_then(|a| a.as_any().downcast_ref::<Int32Array>())
            .ok_or_else(|| ModelsError::data(path, "no Int32 column `augmentation`"))?;
        let embedding = batch
            .column_by_name("embedding")
            .ok_or_else(|| ModelsError::data(path, "no `embedding` column"))?;
        let (values, width) = f32_list_values(path, "embedding", embedding.as_ref())?;
        for i in (0..batch.num_rows()).filter(|&i| kind.value(i) == "augmented") {
            if width != dim {
                return Err(ModelsError::data(
                    path,
                    format!("augmented embeddings are {width} wide, the targets {dim}"),
                ));
            }
            let v = &values[i * width..(i + 1) * width];
            if v.iter().any(|x| !x.is_finite()) {
                return Err(ModelsError::data(path, format!("row {i}: non-finite embedding")));
            }
            let k = if copy.is_valid(i) { copy.value(i) } else { 0 };
            copies.entry(stimulus.value(i).to_owned()).or_default().push((k, v.to_vec()));
        }
    }
    if copies.is_empty() {
        return Err(ModelsError::data(path, "no rows of kind `augmented` (clip.augment's table)"));
    }
    let by_stimulus = copies
        .into_iter()
        .map(|(s, mut c)| {
            c.sort_by_key(|(k, _)| *k);
            (s, c.into_iter().map(|(_, v)| v).collect())
        })
        .collect();
    Ok(Augmented { by_stimulus, dim })
}
