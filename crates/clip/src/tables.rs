//! The tables this crate reads (`stimuli/1`, from `ingest.synthetic` or a real study) and writes
//! (`embeddings/1`, `targets/1`); their schemas are documented in docs/ARTIFACTS.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{
    TableKind, f32_list_array, f32_list_field, f32_list_values, read_table, write_table,
};

use crate::error::{ClipError, Result};

/// `stimuli.parquet` (written by `ingest.synthetic`).
pub const STIMULI_TABLE: TableKind = TableKind::new("stimuli", 1);
/// `embeddings.parquet`: CLIP embeddings of images, captions and augmented images.
pub const EMBEDDINGS_TABLE: TableKind = TableKind::new("embeddings", 1);
/// `targets.parquet`: one regression target (and class) per stimulus, shared by Brain2Word and
/// Brain2CLIP training.
pub const TARGETS_TABLE: TableKind = TableKind::new("targets", 1);
/// `reconstructions.parquet` (written by `diffusion.decode`): embedded by `clip.embed` for the
/// CLIP identification of reconstructions.
pub const RECONSTRUCTIONS_TABLE: TableKind = TableKind::new("reconstructions", 1);

/// One row of a stimuli table.
#[derive(Clone, Debug, PartialEq)]
pub struct Stimulus {
    /// Stimulus id (the class index of the classification head; `stimulus` in events files).
    pub id: i32,
    /// The word (words world).
    pub word: Option<String>,
    /// The image path, relative to the study's output directory (images world).
    pub image: Option<String>,
    /// `train` or `test`.
    pub split: String,
    /// Captions of an image (empty for words).
    pub captions: Vec<String>,
    /// Index into `captions` of the caption the generator recorded as the best description.
    pub best_caption: Option<i32>,
}

impl Stimulus {
    /// The stimulus's name: its word, else its image path, else its id.
    pub fn name(&self) -> String {
        self.word.clone().or_else(|| self.image.clone()).unwrap_or_else(|| self.id.to_string())
    }
}

fn column<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| ClipError::table(path, format!("no column `{name}`")))
}

fn strings<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    column(path, batch, name)?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| ClipError::table(path, format!("column `{name}` is not Utf8")))
}

fn ints<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a Int32Array> {
    column(path, batch, name)?
        .as_any()
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| ClipError::table(path, format!("column `{name}` is not Int32")))
}

fn opt_string(array: &StringArray, i: usize) -> Option<String> {
    array.is_valid(i).then(|| array.value(i).to_owned())
}

fn opt_int(array: &Int32Array, i: usize) -> Option<i32> {
    array.is_valid(i).then(|| array.value(i))
}

/// Reads a `stimuli/1` table.
pub fn read_stimuli(path: &Path) -> Result<Vec<Stimulus>> {
    let (_, batches) = read_table(path, Some(STIMULI_TABLE))?;
    let mut out = Vec::new();
    for batch in &batches {
        let ids = ints(path, batch, "id")?;
        let words = strings(path, batch, "word")?;
        let images = strings(path, batch, "image")?;
        let splits = strings(path, batch, "split")?;
        let best = ints(path, batch, "best_caption")?;
        let captions = column(path, batch, "captions")?
            .as_list_opt::<i32>()
            .ok_or_else(|| ClipError::table(path, "column `captions` is not List<Utf8>"))?;
        for i in 0..batch.num_rows() {
            let texts = if captions.is_valid(i) {
                let list = captions.value(i);
                let list = list
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| ClipError::table(path, "column `captions` is not List<Utf8>"))?;
                (0..list.len())
                    .filter(|&j| list.is_valid(j))
                    .map(|j| list.value(j).to_owned())
                    .collect()
            } else {
                Vec::new()
            };
            out.push(Stimulus {
                id: ids.value(i),
                word: opt_string(words, i),
                image: opt_string(images, i),
                split: splits.value(i).to_owned(),
                captions: texts,
                best_caption: opt_int(best, i),
            });
        }
    }
    Ok(out)
}

/// One row of a `reconstructions/1` table (diffusion.decode's): the seen stimulus and the
/// reconstruction's PNG, relative to the decoder's `images/` directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconstructionImage {
    /// The stimulus the reconstruction is of (the seen image's path in its study).
    pub stimulus: String,
    /// The reconstruction's trial.
    pub trial: i32,
    /// The PNG, relative to the decoder's `images/` directory.
    pub image: String,
}

/// Reads the `stimulus`, `trial` and `image` columns of a `reconstructions/1` table.
pub fn read_reconstruction_images(path: &Path) -> Result<Vec<ReconstructionImage>> {
    let (_, batches) = read_table(path, Some(RECONSTRUCTIONS_TABLE))?;
    let mut out = Vec::new();
    for batch in &batches {
        let stimulus = strings(path, batch, "stimulus")?;
        let trial = ints(path, batch, "trial")?;
        let image = strings(path, batch, "image")?;
        for i in 0..batch.num_rows() {
            out.push(ReconstructionImage {
                stimulus: stimulus.value(i).to_owned(),
                trial: trial.value(i),
                image: image.value(i).to_owned(),
            });
        }
    }
    if out.is_empty() {
        return Err(ClipError::table(path, "the reconstructions table is empty"));
    }
    Ok(out)
}

/// Where an image of a stimuli table lives: paths are relative to the study's output directory
/// (`images/img-00000.png`), so they resolve against the `images` port's parent, the `images`
/// directory itself, or the stimuli table's folder — the first that exists.
pub fn resolve_image(relative: &str, images_dir: Option<&Path>, stimuli: &Path) -> Result<PathBuf> {
    let given = Path::new(relative);
    if given.is_absolute() {
        return Ok(given.to_path_buf());
    }
    let mut candidates = Vec::new();
    if let Some(dir) = images_dir {
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join(given));
        }
        candidates.push(dir.join(given));
        if let Some(name) = given.file_name() {
            candidates.push(dir.join(name));
        }
    }
    if let Some(folder) = stimuli.parent() {
        candidates.push(folder.join(given));
    }
    candidates.iter().find(|c| c.is_file()).cloned().ok_or_else(|| {
        ClipError::image(
            candidates.first().map_or(given, PathBuf::as_path),
            "not found (image of the stimuli table)",
        )
    })
}

/// What an embedding row embeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingKind {
    /// A stimulus image.
    Image,
    /// One caption of a stimulus.
    Caption,
    /// An augmented copy of a stimulus image.
    Augmented,
}

impl EmbeddingKind {
    /// The value of the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            EmbeddingKind::Image => "image",
            EmbeddingKind::Caption => "caption",
            EmbeddingKind::Augmented => "augmented",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "image" => EmbeddingKind::Image,
            "caption" => EmbeddingKind::Caption,
            "augmented" => EmbeddingKind::Augmented,
            _ => return None,
        })
    }
}

/// One row of an `embeddings/1` table.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingRow {
    /// The stimulus's name (word or image path).
    pub stimulus: String,
    /// The stimulus id.
    pub stimulus_id: i32,
    /// What is embedded.
    pub kind: EmbeddingKind,
    /// Captions: the index into the stimulus's captions.
    pub caption_index: Option<i32>,
    /// Captions: the text.
    pub caption: Option<String>,
    /// Augmented images: which copy (0-based).
    pub augmentation: Option<i32>,
    /// Images: the path embedded (as given in the stimuli table, or of the augmented copy).
    pub image: Option<String>,
}

fn embeddings_schema(dim: usize) -> Schema {
    Schema::new(vec![
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("stimulus_id", DataType::Int32, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("caption_index", DataType::Int32, true),
        Field::new("caption", DataType::Utf8, true),
        Field::new("augmentation", DataType::Int32, true),
        Field::new("image", DataType::Utf8, true),
        f32_list_field("embedding", dim, false),
    ])
}

fn batch_error(path: &Path) -> impl Fn(arrow::error::ArrowError) -> ClipError + '_ {
    move |source| brainpipe_core::Error::Arrow { path: path.to_path_buf(), source }.into()
}

/// Writes an `embeddings/1` table: `rows` with their row-major `embeddings` of width `dim`.
pub fn write_embeddings(
    path: &Path,
    rows: &[EmbeddingRow],
    embeddings: Vec<f32>,
    dim: usize,
) -> Result<()> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.stimulus.as_str()))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.stimulus_id))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.kind.as_str()))),
        Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.caption_index))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.caption.as_deref()))),
        Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.augmentation))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.image.as_deref()))),
        f32_list_array(embeddings, dim),
    ];
    let batch = RecordBatch::try_new(Arc::new(embeddings_schema(dim)), columns)
        .map_err(batch_error(path))?;
    Ok(write_table(path, EMBEDDINGS_TABLE, &[batch])?)
}

/// Reads an `embeddings/1` table: its rows, row-major embeddings and their width.
pub fn read_embeddings(path: &Path) -> Result<(Vec<EmbeddingRow>, Vec<f32>, usize)> {
    let (_, batches) = read_table(path, Some(EMBEDDINGS_TABLE))?;
    let mut rows = Vec::new();
    let mut values = Vec::new();
    let mut dim = 0;
    for batch in &batches {
        let stimulus = strings(path, batch, "stimulus")?;
        let ids = ints(path, batch, "stimulus_id")?;
        let kind = strings(path, batch, "kind")?;
        let caption_index = ints(path, batch, "caption_index")?;
        let caption = strings(path, batch, "caption")?;
        let augmentation = ints(path, batch, "augmentation")?;
        let image = strings(path, batch, "image")?;
        let (v, d) =
            f32_list_values(path, "embedding", column(path, batch, "embedding")?.as_ref())?;
        dim = d;
        values.extend_from_slice(v);
        for i in 0..batch.num_rows() {
            let k = EmbeddingKind::parse(kind.value(i)).ok_or_else(|| {
                ClipError::table(path, format!("unknown kind `{}`", kind.value(i)))
            })?;
            rows.push(EmbeddingRow {
                stimulus: stimulus.value(i).to_owned(),
                stimulus_id: ids.value(i),
                kind: k,
                caption_index: opt_int(caption_index, i),
                caption: opt_string(caption, i),
                augmentation: opt_int(augmentation, i),
                image: opt_string(image, i),
            });
        }
    }
    Ok((rows, values, dim))
}

/// One row of a `targets/1` table.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The stimulus's name (word or image path), as in the stimuli table.
    pub stimulus: String,
    /// The class index for the classification head: the stimulus id (0..180 for Pereira words).
    pub class: i32,
    /// The regression target.
    pub target: Vec<f32>,
    /// The chosen caption (Brain2CLIP), if any.
    pub caption: Option<String>,
    /// Its index among the stimulus's captions.
    pub caption_index: Option<i32>,
    /// Cosine similarity between the image and the chosen caption.
    pub similarity: Option<f32>,
}

/// The Arrow schema of `targets/1` for targets of width `dim`.
pub fn targets_schema(dim: usize) -> Schema {
    Schema::new(vec![
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("class", DataType::Int32, false),
        f32_list_field("target", dim, false),
        Field::new("caption", DataType::Utf8, true),
        Field::new("caption_index", DataType::Int32, true),
        Field::new("similarity", DataType::Float32, true),
    ])
}

/// Writes a `targets/1` table. Every target must have the same width.
pub fn write_targets(path: &Path, targets: &[Target]) -> Result<()> {
    let dim = targets.first().map_or(0, |t| t.target.len());
    if dim == 0 || targets.iter().any(|t| t.target.len() != dim) {
        return Err(ClipError::table(path, "targets must be non-empty vectors of one width"));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(targets.iter().map(|t| t.stimulus.as_str()))),
        Arc::new(Int32Array::from_iter_values(targets.iter().map(|t| t.class))),
        f32_list_array(targets.iter().flat_map(|t| t.target.iter().copied()).collect(), dim),
        Arc::new(StringArray::from_iter(targets.iter().map(|t| t.caption.as_deref()))),
        Arc::new(Int32Array::from_iter(targets.iter().map(|t| t.caption_index))),
        Arc::new(Float32Array::from_iter(targets.iter().map(|t| t.similarity))),
    ];
    let batch =
        RecordBatch::try_new(Arc::new(targets_schema(dim)), columns).map_err(batch_error(path))?;
    Ok(write_table(path, TARGETS_TABLE, &[batch])?)
}

/// Reads a `targets/1` table.
pub fn read_targets(path: &Path) -> Result<Vec<Target>> {
    let (_, batches) = read_table(path, Some(TARGETS_TABLE))?;
    let mut out = Vec::new();
    for batch in &batches {
        let stimulus = strings(path, batch, "stimulus")?;
        let class = ints(path, batch, "class")?;
        let (values, dim) =
            f32_list_values(path, "target", column(path, batch, "target")?.as_ref())?;
        let caption = strings(path, batch, "caption")?;
        let caption_index = ints(path, batch, "caption_index")?;
        let similarity = column(path, batch, "similarity")?
            .as_any()
            .downcast_ref::<Float32Array>()
            .ok_or_else(|| ClipError::table(path, "column `similarity` is not Float32"))?;
        for i in 0..batch.num_rows() {
            out.push(Target {
                stimulus: stimulus.value(i).to_owned(),
                class: class.value(i),
                target: values[i * dim..(i + 1) * dim].to_vec(),
                caption: opt_string(caption, i),
                caption_index: opt_int(caption_index, i),
                similarity: similarity.is_valid(i).then(|| similarity.value(i)),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_embeddings_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("targets.parquet");
        let targets = vec![
            Target {
                stimulus: "dog".into(),
                class: 0,
                target: vec![1.0, 2.0],
                caption: None,
                caption_index: None,
                similarity: None,
            },
            Target {
                stimulus: "images/a.png".into(),
                class: 1,
                target: vec![3.0, 4.0],
                caption: Some("a dog".into()),
                caption_index: Some(2),
                similarity: Some(0.5),
            },
        ];
        write_targets(&path, &targets).expect("write");
        assert_eq!(read_targets(&path).expect("read"), targets);
        let path = dir.path().join("embeddings.parquet");
        let rows = vec![EmbeddingRow {
            stimulus: "images/a.png".into(),
            stimulus_id: 3,
            kind: EmbeddingKind::Caption,
            caption_index: Some(1),
            caption: Some("a cat".into()),
            augmentation: None,
            image: None,
        }];
        write_embeddings(&path, &rows, vec![0.5, 0.25, 1.0], 3).expect("write");
        assert_eq!(read_embeddings(&path).expect("read"), (rows, vec![0.5, 0.25, 1.0], 3));
    }
}
