//! The tables `eval.clip` reads and writes beside `predictions/1` and `metrics/1`: the study's
//! `stimuli/1` and `clip.embed`'s `embeddings/1` (read without the LibTorch-linked clip crate),
//! and its own `clip-trials/1` (one row per scored trial: ranks, retrieved images, chosen caption).
//! Kept together so the table declarations can move as one.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{TableKind, f32_list_values, read_table};

use crate::error::{EvalError, Result};

/// `stimuli.parquet` of a study (`ingest.synthetic`, `ingest.bold5000`).
pub const STIMULI_TABLE: TableKind = TableKind::new("stimuli", 1);
/// `embeddings.parquet` of `clip.embed`.
pub const EMBEDDINGS_TABLE: TableKind = TableKind::new("embeddings", 1);
/// `trials.parquet` of `eval.clip`.
pub const CLIP_TRIALS_TABLE: TableKind = TableKind::new("clip-trials", 1);

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

fn text<'a>(path: &Path, b: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    b.column_by_name(name)
        .and_then(|a| a.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| EvalError::data(path, format!("no Utf8 column `{name}`")))
}

/// Reads the image stimuli of a `stimuli/1` table (rows with an image).
pub fn read_image_stimuli(path: &Path) -> Result<Vec<StimulusInfo>> {
    let (_, batches) = read_table(path, Some(STIMULI_TABLE))?;
    let mut out = Vec::new();
    for b in &batches {
        let (image, split) = (text(path, b, "image")?, text(path, b, "split")?);
        let vectors = match b.column_by_name("vector") {
            Some(a) if a.null_count() == 0 => Some(f32_list_values(path, "vector", a.as_ref())?),
            _ => None,
        };
        for i in (0..b.num_rows()).filter(|&i| image.is_valid(i)) {
            let vector = vectors.map(|(v, w)| v[i * w..(i + 1) * w].to_vec()).unwrap_or_default();
            out.push(StimulusInfo {
                name: image.value(i).to_owned(),
                split: split.value(i).to_owned(),
                vector,
            });
        }
    }
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

/// Reads the `image` and `caption` rows of an `embeddings/1` table.
pub fn read_clip_embeddings(path: &Path) -> Result<ClipEmbeddings> {
    let (_, batches) = read_table(path, Some(EMBEDDINGS_TABLE))?;
    let mut out = ClipEmbeddings::default();
    for b in &batches {
        let (stimulus, kind) = (text(path, b, "stimulus")?, text(path, b, "kind")?);
        let caption = text(path, b, "caption")?;
        let column = b
            .column_by_name("embedding")
            .ok_or_else(|| EvalError::data(path, "no `embedding` column"))?;
        let (values, dim) = f32_list_values(path, "embedding", column.as_ref())?;
        out.dim = dim;
        for i in 0..b.num_rows() {
            let v = &values[i * dim..(i + 1) * dim];
            if v.iter().any(|x| !x.is_finite()) {
                return Err(EvalError::data(path, format!("row {i}: non-finite embedding")));
            }
            match kind.value(i) {
                "image" => {
                    out.image_stimulus.push(stimulus.value(i).to_owned());
                    out.images.extend_from_slice(v);
                }
                "caption" => {
                    out.caption_stimulus.push(stimulus.value(i).to_owned());
                    out.caption_text.push(if caption.is_valid(i) {
                        caption.value(i).to_owned()
                    } else {
                        String::new()
                    });
                    out.captions.extend_from_slice(v);
                }
                _ => {}
            }
        }
    }
    if out.image_stimulus.is_empty() {
        return Err(EvalError::data(path, "no image embeddings (kind `image`)"));
    }
    Ok(out)
}

/// One scored trial of `eval.clip`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipTrial {
    /// Model.
    pub model: String,
    /// Held-out subject.
    pub subject: String,
    /// `single` (one presentation) or `averaged` (the mean prediction over its presentations).
    pub mode: String,
    /// Trial index (`single`), or -1 (`averaged`).
    pub trial: i32,
    /// The seen stimulus.
    pub stimulus: String,
    /// Fold of the predicting model.
    pub fold: i32,
    /// Rank of the seen image among the test images (1 = closest).
    pub rank_test: i32,
    /// Rank of the seen image among all images.
    pub rank_all: i32,
    /// The closest test images, closest first.
    pub retrieved: Vec<String>,
    /// The closest caption among the test images' captions.
    pub caption: String,
    /// Whether it is a caption of the seen image.
    pub caption_hit: bool,
}

/// Writes a `clip-trials/1` table.
pub fn write_clip_trials(path: &Path, rows: &[ClipTrial]) -> Result<()> {
    let utf8 = |f: &dyn Fn(&ClipTrial) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let int = |f: &dyn Fn(&ClipTrial) -> i32| -> ArrayRef {
        Arc::new(Int32Array::from_iter_values(rows.iter().map(f)))
    };
    let mut retrieved = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for s in &r.retrieved {
            retrieved.values().append_value(s);
        }
        retrieved.append(true);
    }
    let retrieved = retrieved.finish();
    let fields = vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("mode", DataType::Utf8, false),
        Field::new("trial", DataType::Int32, false),
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("fold", DataType::Int32, false),
        Field::new("rank_test", DataType::Int32, false),
        Field::new("rank_all", DataType::Int32, false),
        Field::new("retrieved", retrieved.data_type().clone(), false),
        Field::new("caption", DataType::Utf8, false),
        Field::new("caption_hit", DataType::Boolean, false),
    ];
    let columns: Vec<ArrayRef> = vec![
        utf8(&|r| &r.model),
        utf8(&|r| &r.subject),
        utf8(&|r| &r.mode),
        int(&|r| r.trial),
        utf8(&|r| &r.stimulus),
        int(&|r| r.fold),
        int(&|r| r.rank_test),
        int(&|r| r.rank_all),
        Arc::new(retrieved),
        utf8(&|r| &r.caption),
        Arc::new(BooleanArray::from(rows.iter().map(|r| r.caption_hit).collect::<Vec<_>>())),
    ];
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|source| brainpipe_core::Error::Arrow { path: path.to_path_buf(), source })?;
    brainpipe_core::write_table(path, CLIP_TRIALS_TABLE, &[batch])?;
    Ok(())
}

/// Reads a `clip-trials/1` table.
pub fn read_clip_trials(path: &Path) -> Result<Vec<ClipTrial>> {
    let (_, batches) = read_table(path, Some(CLIP_TRIALS_TABLE))?;
    let mut out = Vec::new();
    for b in &batches {
        let int = |name: &str| -> Result<&Int32Array> {
            b.column_by_name(name)
                .and_then(|a| a.as_any().downcast_ref::<Int32Array>())
                .ok_or_else(|| EvalError::data(path, format!("no Int32 column `{name}`")))
        };
        let (model, subject, mode, stimulus, caption) = (
            text(path, b, "model")?,
            text(path, b, "subject")?,
            text(path, b, "mode")?,
            text(path, b, "stimulus")?,
            text(path, b, "caption")?,
        );
        let (trial, fold, rank_test, rank_all) =
            (int("trial")?, int("fold")?, int("rank_test")?, int("rank_all")?);
        let retrieved = b
            .column_by_name("retrieved")
            .and_then(|a| a.as_list_opt::<i32>())
            .ok_or_else(|| EvalError::data(path, "no List<Utf8> column `retrieved`"))?;
        let hit = b
            .column_by_name("caption_hit")
            .and_then(|a| a.as_any().downcast_ref::<BooleanArray>())
            .ok_or_else(|| EvalError::data(path, "no Boolean column `caption_hit`"))?;
        for i in 0..b.num_rows() {
            let list = retrieved.value(i);
            let list = list
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| EvalError::data(path, "column `retrieved` is not List<Utf8>"))?;
            out.push(ClipTrial {
                model: model.value(i).to_owned(),
                subject: subject.value(i).to_owned(),
                mode: mode.value(i).to_owned(),
                trial: trial.value(i),
                stimulus: stimulus.value(i).to_owned(),
                fold: fold.value(i),
                rank_test: rank_test.value(i),
                rank_all: rank_all.value(i),
                retrieved: (0..list.len()).map(|j| list.value(j).to_owned()).collect(),
                caption: caption.value(i).to_owned(),
                caption_hit: hit.value(i),
            });
        }
    }
    Ok(out)
}
