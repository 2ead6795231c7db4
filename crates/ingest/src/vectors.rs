//! The 180 Pereira et al. (2018) concept words and their vectors.
//!
//! The shipped default (`data/pereira180_glove6b50d.txt`, GloVe text format) holds the real 50-d
//! GloVe 6B vectors, embedded in the binary so the demo runs from any directory. A user file can
//! replace it: GloVe text (`word v1 v2 …`, any size: it is streamed and only the 180 words kept),
//! a Pereira-layout MATLAB v5 `.mat` (`words` char matrix + `data` double matrix), or Parquet
//! (a `word` string column and a `FixedSizeList<Float32>` column named `vector`; zstd or
//! uncompressed, the codecs brainpipe's Parquet build has).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use arrow::array::{Array, StringArray};
use flate2::read::ZlibDecoder;

use crate::error::{IngestError, Result};

/// The shipped 180 × 50 GloVe 6B vectors of the Pereira concepts (see `data/README.md`).
const DEFAULT_VECTORS: &str = include_str!("../../../data/pereira180_glove6b50d.txt");
/// Where the default comes from, for `study.json`.
pub(crate) const DEFAULT_VECTORS_NAME: &str = "data/pereira180_glove6b50d.txt (GloVe 6B 50d)";

/// GloVe 6B has no `argumentatively`; its adjective stands in (documented in data/README.md).
const FALLBACKS: &[(&str, &str)] = &[("argumentatively", "argumentative")];

/// Words and their vectors, row-major `words.len() × dim`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WordVectors {
    pub words: Vec<String>,
    pub dim: usize,
    pub values: Vec<f32>,
}

/// The 180 Pereira concept words, alphabetical (the order of Pereira's `180_concepts.mat`).
pub(crate) fn pereira_words() -> Vec<&'static str> {
    DEFAULT_VECTORS.lines().filter_map(|l| l.split_whitespace().next()).collect()
}

/// The shipped default vectors.
pub(crate) fn default_vectors() -> Result<WordVectors> {
    let wanted = pereira_words();
    glove_text(DEFAULT_VECTORS.as_bytes(), Path::new(DEFAULT_VECTORS_NAME), &wanted)
}

/// Reads the 180 Pereira words' vectors from a user file, format chosen by extension.
pub(crate) fn load_vectors(path: &Path) -> Result<WordVectors> {
    let wanted = pereira_words();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "mat" => {
            let bytes = std::fs::read(path).map_err(|e| IngestError::io(path, e))?;
            let (words, dim, values) = matlab_words_and_data(&bytes, path)?;
            select(
                path,
                &wanted,
                dim,
                words.into_iter().zip(values.chunks(dim).map(<[f32]>::to_vec)),
            )
        }
        "parquet" => parquet_vectors(path, &wanted),
        _ => {
            let file = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
            glove_text(BufReader::new(file), path, &wanted)
        }
    }
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

fn glove_text(reader: impl BufRead, path: &Path, wanted: &[&str]) -> Result<WordVectors> {
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
        let lower = word.to_lowercase();
        if wanted.contains(&lower.as_str()) || FALLBACKS.iter().any(|(_, f)| *f == lower) {
            rows.push((lower, vector));
        }
    }
    select(path, wanted, dim, rows)
}

fn parquet_vectors(path: &Path, wanted: &[&str]) -> Result<WordVectors> {
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
            if words.is_valid(i) {
                rows.push((words.value(i).to_owned(), chunk.to_vec()));
            }
        }
    }
    select(path, wanted, dim, rows)
}

/// MATLAB v5 element types used here.
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;

/// A numeric or char matrix from a MATLAB v5 file: its name, dims, and values (column-major).
struct MatMatrix {
    name: String,
    dims: Vec<usize>,
    values: Vec<f64>,
}

/// `words` (char matrix, one word per row) and `data` (numeric, words × dim) from a
/// Pereira-layout MATLAB v5 file.
fn matlab_words_and_data(bytes: &[u8], path: &Path) -> Result<(Vec<String>, usize, Vec<f32>)> {
    let bad = |m: &str| IngestError::vectors(path, format!("MATLAB v5: {m}"));
    if bytes.len() < 128 || !bytes.starts_with(b"MATLAB 5.0") {
        return Err(bad("not a MATLAB 5.0 MAT-file (v7.3/HDF5 files: re-save with -v7)"));
    }
    if &bytes[126..128] != b"IM" {
        return Err(bad("big-endian MAT-files are not supported"));
    }
    let mut matrices = Vec::new();
    let mut pos = 128;
    while pos + 8 <= bytes.len() {
        let (kind, len, data, next) =
            element(bytes, pos).ok_or_else(|| bad("truncated element"))?;
        match kind {
            MI_MATRIX => matrices.push(matrix(data).ok_or_else(|| bad("malformed matrix"))?),
            MI_COMPRESSED => {
                let mut inflated = Vec::new();
                ZlibDecoder::new(data)
                    .read_to_end(&mut inflated)
                    .map_err(|e| bad(&format!("zlib: {e}")))?;
                let (k, _, inner, _) =
                    element(&inflated, 0).ok_or_else(|| bad("truncated compressed element"))?;
                if k == MI_MATRIX {
                    matrices.push(matrix(inner).ok_or_else(|| bad("malformed matrix"))?);
                }
            }
            _ => {}
        }
        let _ = len;
        pos = next;
    }
    let find = |name: &str| matrices.iter().find(|m| m.name == name);
    let words = find("words").ok_or_else(|| bad("no variable `words`"))?;
    let data = find("data").ok_or_else(|| bad("no variable `data`"))?;
    let (n, width) = match words.dims[..] {
        [n, w] => (n, w),
        _ => return Err(bad("`words` is not a 2-D char matrix")),
    };
    let names: Vec<String> = (0..n)
        .map(|i| {
            (0..width)
                .filter_map(|j| char::from_u32(words.values[j * n + i] as u32))
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .collect();
    let (rows, dim) = match data.dims[..] {
        [r, d] if r == n => (r, d),
        _ => return Err(bad(&format!("`data` is not {n} × dim like `words`"))),
    };
    let mut values = vec![0.0f32; rows * dim];
    for i in 0..rows {
        for j in 0..dim {
            values[i * dim + j] = data.values[j * rows + i] as f32;
        }
    }
    Ok((names, dim, values))
}

/// The element at `pos`: (type, byte count, data, position of the next element).
fn element(bytes: &[u8], pos: usize) -> Option<(u32, usize, &[u8], usize)> {
    let word =
        |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let first = word(pos)?;
    if first >> 16 != 0 {
        // Small data element: type and size share the first word, data in the next four bytes.
        let len = (first >> 16) as usize;
        let data = bytes.get(pos + 4..pos + 4 + len)?;
        return Some((first & 0xFFFF, len, data, pos + 8));
    }
    let len = word(pos + 4)? as usize;
    let data = bytes.get(pos + 8..pos + 8 + len)?;
    let padded = if first == MI_COMPRESSED { len } else { len.div_ceil(8) * 8 };
    Some((first, len, data, pos + 8 + padded))
}

fn matrix(data: &[u8]) -> Option<MatMatrix> {
    let (_, _, _, next) = element(data, 0)?; // array flags
    let (_, _, dims_raw, next) = element(data, next)?;
    let dims = dims_raw
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let (_, _, name, next) = element(data, next)?;
    let (kind, _, real, _) = element(data, next)?;
    let values = match kind {
        MI_DOUBLE => real
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        MI_SINGLE => real
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        MI_UINT16 => {
            real.chunks_exact(2).map(|c| f64::from(u16::from_le_bytes([c[0], c[1]]))).collect()
        }
        MI_INT32 => real
            .chunks_exact(4)
            .map(|c| f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        MI_UINT8 | MI_UTF8 => real.iter().map(|&b| f64::from(b)).collect(),
        MI_INT8 => real.iter().map(|&b| f64::from(b as i8)).collect(),
        _ => return None,
    };
    Some(MatMatrix { name: String::from_utf8_lossy(name).into_owned(), dims, values })
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
        let err = glove_text("cat 1 2\ndog 3 4\n".as_bytes(), Path::new("v.txt"), &pereira_words())
            .expect_err("missing");
        let msg = err.to_string();
        assert!(
            msg.starts_with("v.txt: word vectors: lacks 179 of the 180") && !msg.contains('\n'),
            "{msg}"
        );
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
