//! The tables this crate reads (`stimuli/1`, `embeddings/1`, `predictions/1`) and writes
//! (`reconstructions/1`), through brainpipe-core's generic table helpers. Schemas:
//! docs/ARTIFACTS.md. (Kept in one module so the table kinds can move to a shared artifacts
//! crate without touching the stages.)

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{TableKind, f32_list_values, read_table};

use crate::error::{DiffusionError, Result};

/// A study's stimuli (`ingest.synthetic`, `ingest.bold5000`).
pub const STIMULI_TABLE: TableKind = TableKind::new("stimuli", 1);
/// CLIP embeddings of images and captions (`clip.embed`).
pub const EMBEDDINGS_TABLE: TableKind = TableKind::new("embeddings", 1);
/// Per-scan predictions of a model (`models.*`).
pub const PREDICTIONS_TABLE: TableKind = TableKind::new("predictions", 1);
/// One reconstructed image per decoded row (`diffusion.decode`).
pub const RECONSTRUCTIONS_TABLE: TableKind = TableKind::new("reconstructions", 1);

fn column<'a, T: 'static>(
    path: &Path,
    batch: &'a RecordBatch,
    name: &str,
    ty: &str,
) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|a| a.as_any().downcast_ref::<T>())
        .ok_or_else(|| DiffusionError::table(path, format!("no {ty} column `{name}`")))
}

fn strings(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let a = column::<StringArray>(path, batch, name, "Utf8")?;
    Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())).collect())
}

fn required_strings(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<String>> {
    strings(path, batch, name)?
        .into_iter()
        .map(|s| s.ok_or_else(|| DiffusionError::table(path, format!("null in `{name}`"))))
        .collect()
}

fn ints(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<i32>> {
    let a = column::<Int32Array>(path, batch, name, "Int32")?;
    if a.null_count() > 0 {
        return Err(DiffusionError::table(path, format!("null in `{name}`")));
    }
    Ok(a.values().to_vec())
}

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
    let (_, batches) = read_table(path, Some(STIMULI_TABLE))?;
    let mut out = Vec::new();
    for batch in &batches {
        let ids = ints(path, batch, "id")?;
        let images = strings(path, batch, "image")?;
        let splits = required_strings(path, batch, "split")?;
        for ((id, image), split) in ids.into_iter().zip(images).zip(splits) {
            if let Some(image) = image {
                out.push(StimulusImage { id, image, split });
            }
        }
    }
    Ok(out)
}

/// Image embeddings (`kind = image` rows of `embeddings/1`): (stimulus id, image path) per row,
/// the row-major values and their width.
pub fn read_image_embeddings(path: &Path) -> Result<ImageEmbeddings> {
    let (_, batches) = read_table(path, Some(EMBEDDINGS_TABLE))?;
    let (mut rows, mut values, mut dim) = (Vec::new(), Vec::new(), 0);
    for batch in &batches {
        let ids = ints(path, batch, "stimulus_id")?;
        let kinds = required_strings(path, batch, "kind")?;
        let images = strings(path, batch, "image")?;
        let array = batch
            .column_by_name("embedding")
            .ok_or_else(|| DiffusionError::table(path, "no column `embedding`"))?;
        let (v, d) = f32_list_values(path, "embedding", array.as_ref())?;
        dim = d;
        for i in 0..batch.num_rows() {
            if kinds[i] != "image" {
                continue;
            }
            let image = images[i]
                .clone()
                .ok_or_else(|| DiffusionError::table(path, "image row without `image`"))?;
            rows.push((ids[i], image));
            values.extend_from_slice(&v[i * d..(i + 1) * d]);
        }
    }
    Ok((rows, values, dim))
}

/// Image rows of an embeddings table: (stimulus id, image path) per row, the row-major
/// embeddings and their width.
pub type ImageEmbeddings = (Vec<(i32, String)>, Vec<f32>, usize);

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

/// The rows and predicted embeddings of a `predictions/1` table.
pub fn read_predictions(path: &Path) -> Result<(Vec<DecodeRow>, Vec<f32>, usize)> {
    let (_, batches) = read_table(path, Some(PREDICTIONS_TABLE))?;
    let (mut rows, mut values, mut dim) = (Vec::new(), Vec::new(), 0);
    for batch in &batches {
        let model = required_strings(path, batch, "model")?;
        let subject = required_strings(path, batch, "subject")?;
        let stimulus = required_strings(path, batch, "stimulus")?;
        let trial = ints(path, batch, "trial")?;
        let fold = ints(path, batch, "fold")?;
        let array = batch
            .column_by_name("embedding")
            .ok_or_else(|| DiffusionError::table(path, "no column `embedding`"))?;
        let (v, d) = f32_list_values(path, "embedding", array.as_ref())?;
        dim = d;
        values.extend_from_slice(v);
        for i in 0..batch.num_rows() {
            rows.push(DecodeRow {
                model: model[i].clone(),
                subject: subject[i].clone(),
                trial: trial[i],
                stimulus: stimulus[i].clone(),
                fold: fold[i],
            });
        }
    }
    Ok((rows, values, dim))
}

/// One row of `reconstructions/1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconstruction {
    /// What was decoded.
    pub row: DecodeRow,
    /// PNG path relative to the `images` output directory.
    pub image: String,
    /// Seed of the row's initial noise.
    pub seed: i64,
}

/// The Arrow schema of `reconstructions/1`.
pub fn reconstructions_schema() -> Schema {
    Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("trial", DataType::Int32, false),
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("fold", DataType::Int32, false),
        Field::new("image", DataType::Utf8, false),
        Field::new("seed", DataType::Int64, false),
    ])
}

/// Writes a `reconstructions/1` table.
pub fn write_reconstructions(path: &Path, rows: &[Reconstruction]) -> Result<()> {
    let utf8 = |f: &dyn Fn(&Reconstruction) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        utf8(&|r| &r.row.model),
        utf8(&|r| &r.row.subject),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.row.trial))),
        utf8(&|r| &r.row.stimulus),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.row.fold))),
        utf8(&|r| &r.image),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.seed))),
    ];
    let batch = RecordBatch::try_new(Arc::new(reconstructions_schema()), columns)
        .map_err(|source| brainpipe_core::Error::Arrow { path: path.to_path_buf(), source })?;
    brainpipe_core::write_table(path, RECONSTRUCTIONS_TABLE, &[batch])?;
    Ok(())
}

/// Reads a `reconstructions/1` table.
pub fn read_reconstructions(path: &Path) -> Result<Vec<Reconstruction>> {
    let (_, batches) = read_table(path, Some(RECONSTRUCTIONS_TABLE))?;
    let mut out = Vec::new();
    for batch in &batches {
        let model = required_strings(path, batch, "model")?;
        let subject = required_strings(path, batch, "subject")?;
        let stimulus = required_strings(path, batch, "stimulus")?;
        let image = required_strings(path, batch, "image")?;
        let trial = ints(path, batch, "trial")?;
        let fold = ints(path, batch, "fold")?;
        let seed = column::<Int64Array>(path, batch, "seed", "Int64")?;
        for i in 0..batch.num_rows() {
            out.push(Reconstruction {
                row: DecodeRow {
                    model: model[i].clone(),
                    subject: subject[i].clone(),
                    trial: trial[i],
                    stimulus: stimulus[i].clone(),
                    fold: fold[i],
                },
                image: image[i].clone(),
                seed: seed.value(i),
            });
        }
    }
    Ok(out)
}
