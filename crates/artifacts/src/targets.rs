//! `targets/1`: one regression target (and class) per stimulus, shared by Brain2Word and
//! Brain2CLIP training (`clip.words`, `clip.select_captions`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float32Array, Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{Error, Result, f32_list_array, f32_list_field, read_table};

use crate::TARGETS;
use crate::column::{f32_rows, floats32, int_values, ints, string_values, strings, write_batch};

/// One row of a `targets/1` table, as a writer builds it.
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

/// A whole `targets/1` table, columnar: what trainers and evaluators read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Targets {
    /// Stimulus key (the word or image path).
    pub stimulus: Vec<String>,
    /// Class index.
    pub class: Vec<i32>,
    /// Target vectors, `rows × dim`.
    pub vectors: Vec<f32>,
    /// Width of a target.
    pub dim: usize,
    /// The chosen caption of each row (null for words, or when the table has no such column;
    /// the optional columns may be left empty by code that builds targets by hand).
    pub caption: Vec<Option<String>>,
    /// Its index among the stimulus's captions.
    pub caption_index: Vec<Option<i32>>,
    /// Cosine similarity between the image and the chosen caption.
    pub similarity: Vec<Option<f32>>,
}

impl Targets {
    /// Number of targets.
    pub fn len(&self) -> usize {
        self.stimulus.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.stimulus.is_empty()
    }

    /// Number of classes: one more than the largest class index.
    pub fn classes(&self) -> usize {
        self.class.iter().map(|&c| c.max(0) as usize + 1).max().unwrap_or(0)
    }

    /// Target vector of row `i`.
    pub fn vector(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// Row of each class (`None` where no target has that class).
    pub fn row_of_class(&self) -> Vec<Option<usize>> {
        let mut rows = vec![None; self.classes()];
        for (i, &c) in self.class.iter().enumerate() {
            if let Ok(c) = usize::try_from(c) {
                rows[c] = Some(i);
            }
        }
        rows
    }

    /// The rows, as a writer builds them.
    pub fn rows(&self) -> Vec<Target> {
        (0..self.len())
            .map(|i| Target {
                stimulus: self.stimulus[i].clone(),
                class: self.class[i],
                target: self.vector(i).to_vec(),
                caption: self.caption.get(i).cloned().flatten(),
                caption_index: self.caption_index.get(i).copied().flatten(),
                similarity: self.similarity.get(i).copied().flatten(),
            })
            .collect()
    }
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
        return Err(Error::schema(path, "targets must be non-empty vectors of one width"));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(targets.iter().map(|t| t.stimulus.as_str()))),
        Arc::new(Int32Array::from_iter_values(targets.iter().map(|t| t.class))),
        f32_list_array(targets.iter().flat_map(|t| t.target.iter().copied()).collect(), dim),
        Arc::new(StringArray::from_iter(targets.iter().map(|t| t.caption.as_deref()))),
        Arc::new(Int32Array::from_iter(targets.iter().map(|t| t.caption_index))),
        Arc::new(Float32Array::from_iter(targets.iter().map(|t| t.similarity))),
    ];
    write_batch(path, TARGETS, targets_schema(dim), columns)
}

/// Reads a `targets/1` table; refuses an empty table, negative classes and a stimulus or class
/// with two targets. `caption`, `caption_index` and `similarity` may be absent (tables written
/// by other tools): they read as nulls.
pub fn read_targets(path: &Path) -> Result<Targets> {
    let (_, batches) = read_table(path, Some(TARGETS))?;
    let mut out = Targets::default();
    for b in &batches {
        let (v, dim) = f32_rows(path, b, "target")?;
        out.stimulus.extend(string_values(path, b, "stimulus")?);
        out.class.extend(int_values(path, b, "class")?);
        out.vectors.extend_from_slice(v);
        out.dim = dim;
        let rows = b.num_rows();
        let present = |name: &str| b.column_by_name(name).is_some();
        if present("caption") {
            let a = strings(path, b, "caption")?;
            out.caption.extend((0..rows).map(|i| crate::column::opt_string(a, i)));
        } else {
            out.caption.extend(std::iter::repeat_n(None, rows));
        }
        if present("caption_index") {
            let a = ints(path, b, "caption_index")?;
            out.caption_index.extend((0..rows).map(|i| crate::column::opt_int(a, i)));
        } else {
            out.caption_index.extend(std::iter::repeat_n(None, rows));
        }
        if present("similarity") {
            let a = floats32(path, b, "similarity")?;
            out.similarity.extend((0..rows).map(|i| a.is_valid(i).then(|| a.value(i))));
        } else {
            out.similarity.extend(std::iter::repeat_n(None, rows));
        }
    }
    if out.is_empty() {
        return Err(Error::schema(path, "the targets table is empty"));
    }
    if let Some(c) = out.class.iter().find(|&&c| c < 0) {
        return Err(Error::schema(path, format!("negative class {c}")));
    }
    let mut seen = HashSet::new();
    for s in &out.stimulus {
        if !seen.insert(s.as_str()) {
            return Err(Error::schema(path, format!("stimulus `{s}` has two targets")));
        }
    }
    let mut classes = HashSet::new();
    for c in &out.class {
        if !classes.insert(*c) {
            return Err(Error::schema(path, format!("class {c} has two targets")));
        }
    }
    Ok(out)
}
