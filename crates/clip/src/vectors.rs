//! Word → vector files for `clip.words`: GloVe text (`word v1 v2 …`), a Pereira-layout MATLAB v5
//! `.mat` (`words` char matrix, one space-padded word per row, and `data` words × dim), or Parquet
//! (a Utf8 `word` column and a `FixedSizeList<Float32>` `vector` column). Format by extension.

use std::io::{BufRead, BufReader};
use std::path::Path;

use arrow::array::{Array, StringArray};
use brainpipe_ingest::MatValue;

use crate::error::{ClipError, Result};

/// Words and their vectors, row-major `words.len() × dim`, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct WordVectors {
    /// The words, as written in the file.
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

fn vectors_error(path: &Path, message: impl Into<String>) -> ClipError {
    ClipError::Vectors { path: path.to_path_buf(), message: message.into() }
}

/// Reads a word-vector file, choosing the format by extension (`.mat`, `.parquet`, else text).
pub fn read_word_vectors(path: &Path) -> Result<WordVectors> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "mat" => {
            let bytes = std::fs::read(path).map_err(|e| ClipError::io(path, e))?;
            read_mat(&bytes, path)
        }
        "parquet" => read_parquet(path),
        _ => {
            let file = std::fs::File::open(path).map_err(|e| ClipError::io(path, e))?;
            read_glove(BufReader::new(file), path)
        }
    }
}

fn read_glove(reader: impl BufRead, path: &Path) -> Result<WordVectors> {
    let mut out = WordVectors { words: Vec::new(), dim: 0, values: Vec::new() };
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| vectors_error(path, format!("line {}: {e}", number + 1)))?;
        let mut parts = line.split_whitespace();
        let Some(word) = parts.next() else { continue };
        let vector: Vec<f32> =
            parts.map(str::parse).collect::<std::result::Result<_, _>>().map_err(|_| {
                vectors_error(
                    path,
                    format!("line {}: not `word number …` (GloVe text)", number + 1),
                )
            })?;
        if vector.is_empty() || (out.dim != 0 && vector.len() != out.dim) {
            return Err(vectors_error(
                path,
                format!(
                    "line {}: {} numbers, expected {}",
                    number + 1,
                    vector.len(),
                    out.dim.max(1)
                ),
            ));
        }
        out.dim = vector.len();
        out.words.push(word.to_owned());
        out.values.extend(vector);
    }
    if out.words.is_empty() {
        return Err(vectors_error(path, "no vectors"));
    }
    Ok(out)
}

fn read_parquet(path: &Path) -> Result<WordVectors> {
    let (_, batches) = brainpipe_core::read_table(path, None)?;
    let mut out = WordVectors { words: Vec::new(), dim: 0, values: Vec::new() };
    for batch in &batches {
        let words = batch
            .column_by_name("word")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| vectors_error(path, "needs a Utf8 column `word`"))?;
        let column = batch
            .column_by_name("vector")
            .ok_or_else(|| vectors_error(path, "needs a FixedSizeList<Float32> column `vector`"))?;
        let (values, dim) = brainpipe_core::f32_list_values(path, "vector", column.as_ref())?;
        out.dim = dim;
        for (i, row) in values.chunks(dim.max(1)).enumerate() {
            if words.is_valid(i) {
                out.words.push(words.value(i).to_owned());
                out.values.extend_from_slice(row);
            }
        }
    }
    Ok(out)
}

/// `words` (char matrix, one space-padded word per row) and `data` (words × dim) of a Pereira-style
/// MAT-file, read with brainpipe-ingest's MATLAB v5 reader.
fn read_mat(bytes: &[u8], path: &Path) -> Result<WordVectors> {
    let bad = |m: String| vectors_error(path, format!("MATLAB v5: {m}"));
    let variables = brainpipe_ingest::parse_mat(bytes).map_err(bad)?;
    let words = match variables.get("words") {
        Some(MatValue::Char { rows, .. }) => {
            rows.iter().map(|r| r.trim().to_owned()).collect::<Vec<_>>()
        }
        _ => return Err(bad("no char matrix `words`".into())),
    };
    let (rows, dim, data) = match variables.get("data") {
        Some(MatValue::Numeric { dims, data }) if dims.len() == 2 => (dims[0], dims[1], data),
        _ => return Err(bad("no 2-D numeric matrix `data`".into())),
    };
    if rows != words.len() {
        return Err(bad(format!("`data` has {rows} rows, `words` {}", words.len())));
    }
    // MATLAB stores column-major.
    let values = (0..rows).flat_map(|i| (0..dim).map(move |j| data[j * rows + i] as f32)).collect();
    Ok(WordVectors { words, dim, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glove_text_and_errors_name_the_file() {
        let v = read_glove("cat 1 2\ndog 3 4\n".as_bytes(), Path::new("v.txt")).expect("glove");
        assert_eq!((v.words.len(), v.dim, v.row(1)), (2, 2, &[3.0f32, 4.0][..]));
        let err =
            read_glove("cat 1 2\ndog 3\n".as_bytes(), Path::new("v.txt")).expect_err("ragged");
        assert!(err.to_string().starts_with("v.txt: vectors: line 2"), "{err}");
        let err = read_mat(b"not a mat file", Path::new("x.mat")).expect_err("not mat");
        assert!(err.to_string().starts_with("x.mat: vectors: MATLAB v5"), "{err}");
    }

    #[test]
    fn pereira_mat_reads_when_present() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/brain2word/180_concepts.mat"
        ));
        if !path.exists() {
            eprintln!("skipped: {} absent", path.display());
            return;
        }
        let v = read_word_vectors(path).expect("Pereira .mat");
        assert_eq!((v.words.len(), v.dim), (180, 300));
        assert_eq!(v.words[0], "ability");
    }
}
