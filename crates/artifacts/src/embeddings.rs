//! `embeddings/1`: CLIP embeddings of images, captions and augmented images (`clip.embed`,
//! `clip.augment`).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{Error, Result, f32_list_array, f32_list_field, read_table};

use crate::EMBEDDINGS;
use crate::column::{
    f32_rows, ints, opt_int, opt_int_column, opt_string, opt_strings, strings, write_batch,
};

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

/// The Arrow schema of `embeddings/1` for embeddings of width `dim`.
pub fn embeddings_schema(dim: usize) -> Schema {
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
    write_batch(path, EMBEDDINGS, embeddings_schema(dim), columns)
}

/// Reads an `embeddings/1` table: its rows, row-major embeddings and their width.
pub fn read_embeddings(path: &Path) -> Result<(Vec<EmbeddingRow>, Vec<f32>, usize)> {
    let (_, batches) = read_table(path, Some(EMBEDDINGS))?;
    let mut rows = Vec::new();
    let mut values = Vec::new();
    let mut dim = 0;
    for batch in &batches {
        let stimulus = strings(path, batch, "stimulus")?;
        let ids = ints(path, batch, "stimulus_id")?;
        let kind = strings(path, batch, "kind")?;
        // Nullable columns may be left out by a table written elsewhere: all null.
        let caption_index = opt_int_column(path, batch, "caption_index")?;
        let caption = opt_strings(path, batch, "caption")?;
        let augmentation = opt_int_column(path, batch, "augmentation")?;
        let image = opt_strings(path, batch, "image")?;
        let (v, d) = f32_rows(path, batch, "embedding")?;
        dim = d;
        values.extend_from_slice(v);
        for i in 0..batch.num_rows() {
            let k = EmbeddingKind::parse(kind.value(i))
                .ok_or_else(|| Error::schema(path, format!("unknown kind `{}`", kind.value(i))))?;
            rows.push(EmbeddingRow {
                stimulus: stimulus.value(i).to_owned(),
                stimulus_id: ids.value(i),
                kind: k,
                caption_index: caption_index.and_then(|a| opt_int(a, i)),
                caption: caption.and_then(|a| opt_string(a, i)),
                augmentation: augmentation.and_then(|a| opt_int(a, i)),
                image: image.and_then(|a| opt_string(a, i)),
            });
        }
    }
    Ok((rows, values, dim))
}
