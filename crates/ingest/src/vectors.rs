//! The 180 Pereira et al. (2018) concept words and their vectors.
//!
//! The shipped default (`data/pereira180_glove6b50d.txt`, GloVe text format) holds the real 50-d
//! GloVe 6B vectors, embedded in the binary so the demo runs from any directory. A user file can
//! replace it: GloVe text (`word v1 v2 …`, any size: it is streamed and only the 180 words kept),
//! a Pereira-layout MATLAB v5 `.mat` (`words` char matrix + `data` double matrix), or Parquet
//! (a `word` string column and a `FixedSizeList<Float32>` column named `vector`; zstd or
//! uncompressed, the codecs brainpipe's Parquet build has).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use arrow::array::{Array, StringArray};

use crate::error::{IngestError, Result};
use crate::mat::{MatValue, read_mat};

/// The shipped 180 × 50 GloVe 6B vectors of the Pereira concepts (see `data/README.md`).
const DEFAULT_VECTORS: &str = include_str!("../../../data/pereira180_glove6b50d.txt");
/// Where the default comes from, for `study.json`.
pub(crate) const DEFAULT_VECTORS_NAME: &str = "data/pereira180_glove6b50d.txt (GloVe 6B 50d)";

/// GloVe 6B has no `argumentatively`; its adjective stands in (documented in data/README.md).
const FALLBACKS: &[(&str, &str)] = &[("argumentatively", "argumentative")];

/// Words and their vectors, row-major `words.len() × dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct WordVectors {
    /// The words.
    pub words: Vec<String>,
    /// Vector width.
    pub dim: usize,
    /// Row-major values.
    pub values: Vec<f32>,
}

impl WordVectors {
    /// The vector of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
}

/// Reads every word of a word → vector file, in file order, choosing the format by extension
/// (`.mat` Pereira layout, `.parquet`, else GloVe text). `clip.words` reads targets through this.
pub fn read_word_vectors(path: &Path) -> Result<WordVectors> {
    let (dim, rows) = read_rows(path, &|_| true)?;
    if rows.is_empty() || dim == 0 {
        return Err(IngestError::vectors(path, "no vectors"));
    }
    let mut out = WordVectors { words: Vec::with_capacity(rows.len()), dim, values: Vec::new() };
    for (word, vector) in rows {
        out.words.push(word);
        out.values.extend(vector);
    }
    if out.values.iter().any(|v| !v.is_finite()) {
        return Err(IngestError::vectors(path, "vectors are not finite"));
    }
    Ok(out)
}

/// (word, vector) rows of a vector file.
type Rows = Vec<(String, Vec<f32>)>;

/// The rows of a vector file whose (lower-cased) word `keep` accepts, and the vector width.
fn read_rows(path: &Path, keep: &dyn Fn(&str) -> bool) -> Result<(usize, Rows)> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "mat" => {
            let (words, dim, values) = matlab_words_and_data(path)?;
            let rows = words
                .into_iter()
                .zip(values.chunks(dim.max(1)).map(<[f32]>::to_vec))
                .filter(|(w, _)| keep(&w.to_lowercase()))
                .collect();
            Ok((dim, rows))
        }
        "parquet" => parquet_rows(path, keep),
        _ => {
            let file = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
            glove_rows(BufReader::new(file), path, keep)
        }
    }
}

/// The 180 Pereira concept words, alphabetical (the order of Pereira's `180_concepts.mat`).
pub(crate) fn pereira_words() -> Vec<&'static str> {
    DEFAULT_VECTORS.lines().filter_map(|l| l.split_whitespace().next()).collect()
}

/// The shipped default vectors.
pub(crate) fn default_vectors() -> Result<WordVectors> {
    let wanted = pereira_words();
    let path = Path::new(DEFAULT_VECTORS_NAME);
    let (dim, rows) =
        glove_rows(DEFAULT_VECTORS.as_bytes(), path, &|w| wanted_or_fallback(&wanted, w))?;
    select(path, &wanted, dim, rows)
}

/// Reads the 180 Pereira words' vectors from a user file, format chosen by extension.
pub(crate) fn load_vectors(path: &Path) -> Result<WordVectors> {
    let wanted = pereira_words();
    let (dim, rows) = read_rows(path, &|w| wanted_or_fallback(&wanted, w))?;
    select(path, &wanted, dim, rows)
}

fn wanted_or_fallback(wanted: &[&str], word: &str) -> bool {
    wanted.contains(&word) || FALLBACKS.iter().any(|(_, f)| *f == word)
}

/// Keeps the `wanted` words (case-insensitive, with [`FALLBACKS`]) in `wanted` order.
fn select(
    path: &Path,
    wanted: &[&str],
    dim: usize,
    rows: impl IntoIterator<Item = (String, Vec<f32>)>,
) -> Result<WordVectors> {
    let mut found: HashMap<String, Vec<f32>> = HashMap::new();
    let needed: HashMap<String, ()> = wanted
        .iter()
        .map(|w| w.to_string())
        .chain(FALLBACKS.iter().map(|(_, f)| f.to_string()))
        .map(|w| (w, ()))
        .collect();
    for (word, vector) in rows {
        let word = word.trim().to_lowercase();
        if needed.contains_key(&word) && !found.contains_key(&word) {
            found.insert(word, vector);
        }
    }
    let mut values = Vec::with_capacity(wanted.len() * dim);
    let mut missing = Vec::new();
    for &word in wanted {
        let fallback = FALLBACKS.iter().find(|(w, _)| *w == word).map(|(_, f)| *f);
        match found.get(word).or_else(|| fallback.and_then(|f| found.get(f))) {
            Some(v) => values.extend_from_slice(v),
            None => missing.push(word),
        }
    }
    if !missing.is_empty() {
        return Err(IngestError::vectors(
            path,
            format!(
                "lacks {} of the 180 Pereira words (first: {})",
                missing.len(),
                missing[..missing.len().min(3)].join(", ")
            ),
        ));
    }
    if dim == 0 || values.iter().any(|v| !v.is_finite()) {
        return Err(IngestError::vectors(path, "vectors are empty or not finite"));
    }
    Ok(WordVectors { words: wanted.iter().map(|w| w.to_string()).collect(), dim, values })
}

/// GloVe text rows (streamed: only kept words are held, so any size of file works).
fn glove_rows(
    reader: impl BufRead,
    path: &Path,
    keep: &dyn Fn(&str) -> bool,
) -> Result<(usize, Rows)> {
    let mut dim = 0;
    let mut rows = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line =
            line.map_err(|e| IngestError::vectors(path, format!("line {}: {e}", number + 1)))?;
        let mut parts = line.split_whitespace();
        let Some(word) = parts.next() else { continue };
        let vector: Vec<f32> = match parts.map(str::parse).collect() {
            Ok(v) => v,
            Err(_) => {
                return Err(IngestError::vectors(
                    path,
                    format!("line {}: not `word number …` (GloVe text)", number + 1),
                ));
            }
        };
        if vector.is_empty() {
            return Err(IngestError::vectors(
                path,
                format!("line {}: no numbers after the word (GloVe text)", number + 1),
            ));
        }
        if dim == 0 {
            dim = vector.len();
        } else if vector.len() != dim {
            return Err(IngestError::vectors(
                path,
                format!("line {}: {} numbers, earlier lines have {dim}", number + 1, vector.len()),
            ));
        }
        if keep(&word.to_lowercase()) {
            rows.push((word.to_owned(), vector));
        }
    }
    Ok((dim, rows))
}

fn parquet_rows(path: &Path, keep: &dyn Fn(&str) -> bool) -> Result<(usize, Rows)> {
    let (_, batches) = brainpipe_core::read_table(path, None)?;
    let mut rows = Vec::new();
    let mut dim = 0;
    for batch in &batches {
        let words = batch
            .column_by_name("word")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| IngestError::vectors(path, "needs a string column `word`"))?;
        let column = batch.column_by_name("vector").ok_or_else(|| {
            IngestError::vectors(path, "needs a FixedSizeList<Float32> column `vector`")
        })?;
        let (values, d) = brainpipe_core::f32_list_values(path, "vector", column.as_ref())?;
        dim = d;
        for (i, chunk) in values.chunks(d.max(1)).enumerate() {
            if words.is_valid(i) && keep(&words.value(i).to_lowercase()) {
                rows.push((words.value(i).to_owned(), chunk.to_vec()));
            }
        }
    }
    Ok((dim, rows))
}

/// `words` (a char matrix, one word per row, or a cell array of strings) and `data` (numeric,
/// words × dims) from a Pereira-layout MATLAB v5 file.
fn matlab_words_and_data(path: &Path) -> Result<(Vec<String>, usize, Vec<f32>)> {
    let bad = |m: &str| IngestError::vectors(path, format!("MATLAB: {m}"));
    let variables = read_mat(path)?;
    let words: Vec<String> = match variables.get("words") {
        Some(MatValue::Char { rows, .. }) => rows.iter().map(|r| r.trim().to_owned()).collect(),
        Some(MatValue::Cell { items, .. }) => items
            .iter()
            .map(|item| item.text().map(|t| t.trim().to_owned()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("`words` is a cell array with non-text elements"))?,
        _ => return Err(bad("no char matrix or cell array `words`")),
    };
    let n = words.len();
    let (dim, data) = match variables.get("data") {
        Some(MatValue::Numeric { dims, data }) if dims.len() == 2 && dims[0] == n => {
            (dims[1], data)
        }
        _ => return Err(bad(&format!("no numeric `data` of {n} rows (one per word)"))),
    };
    let mut values = vec![0.0f32; n * dim];
    for i in 0..n {
        for j in 0..dim {
            values[i * dim + j] = data[j * n + i] as f32;
        }
    }
    Ok((words, dim, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_has_180_words_of_50_dims() {
        let v = default_vectors().expect("shipped vectors");
        assert_eq!((v.words.len(), v.dim, v.values.len()), (180, 50, 9000));
        assert_eq!(&v.words[..3], ["ability", "accomplished", "angry"]);
    }

    #[test]
    fn glove_text_lacking_words_is_one_line_error() {
        let wanted = pereira_words();
        let path = Path::new("v.txt");
        let (dim, rows) =
            glove_rows("cat 1 2\ndog 3 4\n".as_bytes(), path, &|w| wanted_or_fallback(&wanted, w))
                .expect("valid text");
        let err = select(path, &wanted, dim, rows).expect_err("missing");
        let msg = err.to_string();
        assert!(
            msg.starts_with("v.txt: word vectors: lacks 179 of the 180") && !msg.contains('\n'),
            "{msg}"
        );
    }

    #[test]
    fn every_word_of_a_file_in_file_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.txt");
        std::fs::write(&path, "Cat 1 2\ndog 3 4\n").expect("write");
        let v = read_word_vectors(&path).expect("glove");
        assert_eq!(
            (v.words.clone(), v.dim, v.row(1)),
            (vec!["Cat".to_owned(), "dog".to_owned()], 2, &[3.0f32, 4.0][..])
        );
        std::fs::write(&path, "cat 1 2\ndog 3\n").expect("write");
        let err = read_word_vectors(&path).expect_err("ragged").to_string();
        assert!(
            err.contains("v.txt: word vectors: line 2: 1 numbers, earlier lines have 2"),
            "{err}"
        );
        std::fs::write(&path, "").expect("write");
        assert!(read_word_vectors(&path).expect_err("empty").to_string().contains("no vectors"));
    }

    #[test]
    fn reference_mat_file_reads_when_present() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/brain2word/180_concepts.mat"
        ));
        if !path.exists() {
            eprintln!("skipped: {} absent", path.display());
            return;
        }
        let v = load_vectors(path).expect("Pereira .mat");
        assert_eq!((v.words.len(), v.dim), (180, 300));
    }
}
