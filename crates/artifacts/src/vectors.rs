//! Word → vector files (`clip.words` targets, the synthetic study's latents): GloVe text
//! (`word v1 v2 …`, streamed), a Pereira-layout MATLAB v5 `.mat` (`words` char matrix + `data`
//! double matrix), or Parquet (a `word` string column and a `FixedSizeList<Float32>` column named
//! `vector`).

use std::io::{BufRead, BufReader};
use std::path::Path;

use arrow::array::{Array, StringArray};
use brainpipe_core::{Error, IoContext, Result};

use crate::mat::{MatValue, read_mat};

fn vectors_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::schema(path, format!("word vectors: {message}"))
}

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
/// (`.mat` Pereira layout, `.parquet`, else GloVe text).
pub fn read_word_vectors(path: &Path) -> Result<WordVectors> {
    let (dim, rows) = read_word_vector_rows(path, &|_| true)?;
    if rows.is_empty() || dim == 0 {
        return Err(vectors_error(path, "no vectors"));
    }
    let mut out = WordVectors { words: Vec::with_capacity(rows.len()), dim, values: Vec::new() };
    for (word, vector) in rows {
        out.words.push(word);
        out.values.extend(vector);
    }
    if out.values.iter().any(|v| !v.is_finite()) {
        return Err(vectors_error(path, "vectors are not finite"));
    }
    Ok(out)
}

/// (word, vector) rows of a vector file.
pub type Rows = Vec<(String, Vec<f32>)>;

/// The rows of a vector file whose (lower-cased) word `keep` accepts, and the vector width.
pub fn read_word_vector_rows(path: &Path, keep: &dyn Fn(&str) -> bool) -> Result<(usize, Rows)> {
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
            let file = std::fs::File::open(path).at(path)?;
            glove_rows(BufReader::new(file), path, keep)
        }
    }
}

/// GloVe text rows (streamed: only kept words are held, so any size of file works).
pub fn glove_rows(
    reader: impl BufRead,
    path: &Path,
    keep: &dyn Fn(&str) -> bool,
) -> Result<(usize, Rows)> {
    let mut dim = 0;
    let mut rows = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| vectors_error(path, format!("line {}: {e}", number + 1)))?;
        let mut parts = line.split_whitespace();
        let Some(word) = parts.next() else { continue };
        let vector: Vec<f32> = match parts.map(str::parse).collect() {
            Ok(v) => v,
            Err(_) => {
                return Err(vectors_error(
                    path,
                    format!("line {}: not `word number …` (GloVe text)", number + 1),
                ));
            }
        };
        if vector.is_empty() {
            return Err(vectors_error(
                path,
                format!("line {}: no numbers after the word (GloVe text)", number + 1),
            ));
        }
        if dim == 0 {
            dim = vector.len();
        } else if vector.len() != dim {
            return Err(vectors_error(
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
            .ok_or_else(|| vectors_error(path, "needs a string column `word`"))?;
        let column = batch
            .column_by_name("vector")
            .ok_or_else(|| vectors_error(path, "needs a FixedSizeList<Float32> column `vector`"))?;
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
    let bad = |m: &str| vectors_error(path, format!("MATLAB: {m}"));
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
}
