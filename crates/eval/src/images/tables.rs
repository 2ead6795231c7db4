//! The tables `eval.images` reads and writes, through brainpipe-core's generic table helpers (no
//! other stage crate): it reads `reconstructions/1` (`diffusion.decode`), `stimuli/1` (a study) and
//! `embeddings/1` (`clip.embed`), and writes `image-metrics/1`. Schemas: docs/ARTIFACTS.md.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{TableKind, f32_list_values, read_table, write_table};

use crate::error::{EvalError, Result};

/// `image_metrics.parquet` (`eval.images`): one value per (model, subject, trial, metric), plus
/// summaries (`trial` = -1).
pub const IMAGE_METRICS_TABLE: TableKind = TableKind::new("image-metrics", 1);
/// `reconstructions.parquet` (`diffusion.decode`): one generated image per row.
pub const RECONSTRUCTIONS_TABLE: TableKind = TableKind::new("reconstructions", 1);
/// A study's `stimuli.parquet` (read for its `id`, `word` and `image` columns).
const STIMULI_TABLE: TableKind = TableKind::new("stimuli", 1);
/// `clip.embed`'s `embeddings.parquet` (read for its `kind = image` rows).
const EMBEDDINGS_TABLE: TableKind = TableKind::new("embeddings", 1);

use crate::tables::column;

fn opt_strings(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let a = column::<StringArray>(path, batch, name, "Utf8")?;
    Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())).collect())
}

fn strings(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<String>> {
    opt_strings(path, batch, name)?
        .into_iter()
        .map(|s| s.ok_or_else(|| EvalError::data(path, format!("null in column `{name}`"))))
        .collect()
}

fn ints(path: &Path, batch: &RecordBatch, name: &str) -> Result<Vec<i32>> {
    let a = column::<Int32Array>(path, batch, name, "Int32")?;
    if a.null_count() > 0 {
        return Err(EvalError::data(path, format!("null in column `{name}`")));
    }
    Ok(a.values().to_vec())
}

/// One row of `image-metrics/1`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageMetricRow {
    /// Model name (`truth`: the decoder fed the true embeddings, the ceiling).
    pub model: String,
    /// Held-out subject; `all` in summaries pooled over subjects.
    pub subject: String,
    /// Trial of the reconstruction; -1 in summaries.
    pub trial: i32,
    /// The stimulus shown (empty in summaries).
    pub stimulus: String,
    /// Per pair: `pixcorr`, `ssim_gaussian`, `ssim_uniform7`, `2way_pixels`, `2way_<features>`.
    /// Summaries: `<metric>.mean`, `<metric>.sd` (sample s.d. over pairs), `<metric>.n`, and
    /// `<metric>.subject_sd` (s.d. over held-out subjects' means, subject `all`).
    pub metric: String,
    /// The value.
    pub value: f64,
}

/// Writes an `image-metrics/1` table.
pub fn write_image_metrics(path: &Path, rows: &[ImageMetricRow]) -> Result<()> {
    if rows.is_empty() {
        return Err(EvalError::data(path, "no image metrics to write"));
    }
    let schema = Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("trial", DataType::Int32, false),
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]);
    let utf8 = |f: fn(&ImageMetricRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        utf8(|r| r.model.as_str()),
        utf8(|r| r.subject.as_str()),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.trial))),
        utf8(|r| r.stimulus.as_str()),
        utf8(|r| r.metric.as_str()),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns)
        .map_err(|source| brainpipe_core::Error::Arrow { path: path.to_path_buf(), source })?;
    write_table(path, IMAGE_METRICS_TABLE, &[batch])?;
    Ok(())
}

/// Reads an `image-metrics/1` table.
pub fn read_image_metrics(path: &Path) -> Result<Vec<ImageMetricRow>> {
    let (_, batches) = read_table(path, Some(IMAGE_METRICS_TABLE))?;
    let mut out = Vec::new();
    for b in &batches {
        let model = strings(path, b, "model")?;
        let subject = strings(path, b, "subject")?;
        let trial = ints(path, b, "trial")?;
        let stimulus = strings(path, b, "stimulus")?;
        let metric = strings(path, b, "metric")?;
        let value = column::<Float64Array>(path, b, "value", "Float64")?;
        for i in 0..b.num_rows() {
            out.push(ImageMetricRow {
                model: model[i].clone(),
                subject: subject[i].clone(),
                trial: trial[i],
                stimulus: stimulus[i].clone(),
                metric: metric[i].clone(),
                value: if value.is_valid(i) { value.value(i) } else { f64::NAN },
            });
        }
    }
    Ok(out)
}

/// One row of `reconstructions/1` (the columns `eval.images` uses).
#[derive(Clone, Debug, PartialEq)]
pub struct Reconstruction {
    /// Model name.
    pub model: String,
    /// Held-out subject.
    pub subject: String,
    /// Trial.
    pub trial: i32,
    /// The stimulus shown (its name in the stimuli table).
    pub stimulus: String,
    /// PNG path relative to the decoder's `images/` output directory.
    pub image: String,
}

/// Reads a `reconstructions/1` table (`fold` and `seed` are not needed and not required).
pub fn read_reconstructions(path: &Path) -> Result<Vec<Reconstruction>> {
    let (_, batches) = read_table(path, Some(RECONSTRUCTIONS_TABLE))?;
    let mut out = Vec::new();
    for b in &batches {
        let model = strings(path, b, "model")?;
        let subject = strings(path, b, "subject")?;
        let trial = ints(path, b, "trial")?;
        let stimulus = strings(path, b, "stimulus")?;
        let image = strings(path, b, "image")?;
        for i in 0..b.num_rows() {
            out.push(Reconstruction {
                model: model[i].clone(),
                subject: subject[i].clone(),
                trial: trial[i],
                stimulus: stimulus[i].clone(),
                image: image[i].clone(),
            });
        }
    }
    if out.is_empty() {
        return Err(EvalError::data(path, "the reconstructions table is empty"));
    }
    Ok(out)
}

/// A stimulus's file name: scans name an image stimulus by it (the events' trial_type), stimuli
/// tables by its path.
pub(crate) fn file_name(stimulus: &str) -> String {
    Path::new(stimulus)
        .file_name()
        .map_or_else(|| stimulus.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// A study's stimuli: name (word, else image path, else id), id and image file name → image path
/// as written.
pub(crate) fn read_stimulus_images(path: &Path) -> Result<HashMap<String, String>> {
    let (_, batches) = read_table(path, Some(STIMULI_TABLE))?;
    let mut out = HashMap::new();
    for b in &batches {
        let ids = ints(path, b, "id")?;
        let images = opt_strings(path, b, "image")?;
        let words = match b.column_by_name("word") {
            Some(_) => opt_strings(path, b, "word")?,
            None => vec![None; b.num_rows()],
        };
        for i in 0..b.num_rows() {
            if let Some(image) = &images[i] {
                let name = words[i].clone().unwrap_or_else(|| image.clone());
                out.insert(name, image.clone());
                out.entry(ids[i].to_string()).or_insert_with(|| image.clone());
                // Scans name their stimulus by the image's file name (the events' trial_type).
                out.entry(file_name(image)).or_insert_with(|| image.clone());
            }
        }
    }
    Ok(out)
}

/// Image embeddings of an `embeddings/1` table: `(stimulus, image path, vector)` of its
/// `kind = image` rows, and their width.
pub(crate) type ImageFeatures = (Vec<(String, Option<String>, Vec<f64>)>, usize);

/// Reads the `kind = image` rows of an `embeddings/1` table.
pub(crate) fn read_image_features(path: &Path) -> Result<ImageFeatures> {
    let (_, batches) = read_table(path, Some(EMBEDDINGS_TABLE))?;
    let mut out = Vec::new();
    let mut dim = 0;
    for b in &batches {
        let stimulus = strings(path, b, "stimulus")?;
        let kind = strings(path, b, "kind")?;
        let image = opt_strings(path, b, "image")?;
        let array = b
            .column_by_name("embedding")
            .ok_or_else(|| EvalError::data(path, "no column `embedding`"))?;
        let (values, d) = f32_list_values(path, "embedding", array.as_ref())?;
        dim = d;
        for i in (0..b.num_rows()).filter(|&i| kind[i] == "image") {
            let v = values[i * d..(i + 1) * d].iter().map(|&x| f64::from(x)).collect();
            out.push((stimulus[i].clone(), image[i].clone(), v));
        }
    }
    if out.is_empty() {
        return Err(EvalError::data(path, "no `image` rows in the embeddings table"));
    }
    Ok((out, dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_metrics_round_trip_and_empty_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.parquet");
        let rows = vec![ImageMetricRow {
            model: "ridge".into(),
            subject: "sub-01".into(),
            trial: 3,
            stimulus: "images/img-00003.png".into(),
            metric: "ssim_gaussian".into(),
            value: 0.25,
        }];
        write_image_metrics(&path, &rows).expect("write");
        assert_eq!(read_image_metrics(&path).expect("read"), rows);
        assert!(write_image_metrics(&dir.path().join("e.parquet"), &[]).is_err());
    }
}
