//! `stimuli/1`: one row per stimulus of a study (written by `ingest.synthetic` and the importers).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{Error, Result, read_table};

use crate::STIMULI;
use crate::column::{ints, opt_int, opt_int_column, opt_string, opt_strings, strings};

/// The `stimuli/1` columns with the given `vector` field: non-null for generated studies, null
/// for imported ones (they have no generating latent).
pub fn stimuli_schema(vector: Field) -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("word", DataType::Utf8, true),
        Field::new("image", DataType::Utf8, true),
        Field::new("split", DataType::Utf8, false),
        Field::new(
            "captions",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new("best_caption", DataType::Int32, true),
        vector,
    ])
}

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
    /// The generating attribute vector (synthetic studies); empty when the column is absent or
    /// null (imported studies).
    pub vector: Vec<f32>,
}

impl Stimulus {
    /// The stimulus's name: its word, else its image path, else its id.
    pub fn name(&self) -> String {
        self.word.clone().or_else(|| self.image.clone()).unwrap_or_else(|| self.id.to_string())
    }
}

/// Reads a `stimuli/1` table.
pub fn read_stimuli(path: &Path) -> Result<Vec<Stimulus>> {
    let (_, batches) = read_table(path, Some(STIMULI))?;
    let mut out = Vec::new();
    let not_list = || Error::schema(path, "column `captions` is not List<Utf8>");
    for batch in &batches {
        let ids = ints(path, batch, "id")?;
        // Nullable columns may be left out by a table written elsewhere: all null.
        let words = opt_strings(path, batch, "word")?;
        let images = opt_strings(path, batch, "image")?;
        let splits = strings(path, batch, "split")?;
        let best = opt_int_column(path, batch, "best_caption")?;
        let captions = match batch.column_by_name("captions") {
            None => None,
            Some(a) => Some(a.as_list_opt::<i32>().ok_or_else(not_list)?),
        };
        let vectors = match batch.column_by_name("vector") {
            Some(a) if a.null_count() == 0 => {
                Some(brainpipe_core::f32_list_values(path, "vector", a.as_ref())?)
            }
            _ => None,
        };
        for i in 0..batch.num_rows() {
            let texts = match captions {
                Some(captions) if captions.is_valid(i) => {
                    let list = captions.value(i);
                    let list = list.as_any().downcast_ref::<StringArray>().ok_or_else(not_list)?;
                    (0..list.len())
                        .filter(|&j| list.is_valid(j))
                        .map(|j| list.value(j).to_owned())
                        .collect()
                }
                _ => Vec::new(),
            };
            out.push(Stimulus {
                id: ids.value(i),
                word: words.and_then(|a| opt_string(a, i)),
                image: images.and_then(|a| opt_string(a, i)),
                split: splits.value(i).to_owned(),
                captions: texts,
                best_caption: best.and_then(|a| opt_int(a, i)),
                vector: vectors.map(|(v, w)| v[i * w..(i + 1) * w].to_vec()).unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// An image stimulus's file name: scans name an image by it (the events' `trial_type`), stimuli
/// tables by its path relative to the study (`images/img-00000.png`).
pub fn image_file_name(stimulus: &str) -> String {
    Path::new(stimulus)
        .file_name()
        .map_or_else(|| stimulus.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Where an image of a stimuli table lives: paths are relative to the study's output directory
/// (`images/img-00000.png`), so they resolve against the `images` port's parent, the `images`
/// directory itself, or the stimuli table's folder — the first that exists. An absolute path is
/// taken as it is.
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
        Error::schema(
            candidates.first().map_or(given, PathBuf::as_path),
            "not found (image of the stimuli table)",
        )
    })
}
