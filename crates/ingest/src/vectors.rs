//! The 180 Pereira et al. (2018) concept words and their vectors.
//!
//! The shipped default (`data/pereira180_glove6b50d.txt`, GloVe text format) holds the real 50-d
//! GloVe 6B vectors, embedded in the binary so the demo runs from any directory. A user file can
//! replace it: GloVe text (`word v1 v2 …`, any size: it is streamed and only the 180 words kept),
//! a Pereira-layout MATLAB v5 `.mat` (`words` char matrix + `data` double matrix), or Parquet
//! (a `word` string column and a `FixedSizeList<Float32>` column named `vector`; zstd or
//! uncompressed, the codecs brainpipe's Parquet build has).

use std::collections::HashMap;
use std::path::Path;

use brainpipe_artifacts::{WordVectors, glove_rows, read_word_vector_rows};

use crate::error::{IngestError, Result};

/// The shipped 180 × 50 GloVe 6B vectors of the Pereira concepts (see `data/README.md`).
const DEFAULT_VECTORS: &str = include_str!("../../../data/pereira180_glove6b50d.txt");
/// Where the default comes from, for `study.json`.
pub(crate) const DEFAULT_VECTORS_NAME: &str = "data/pereira180_glove6b50d.txt (GloVe 6B 50d)";

/// GloVe 6B has no `argumentatively`; its adjective stands in (documented in data/README.md).
const FALLBACKS: &[(&str, &str)] = &[("argumentatively", "argumentative")];

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
    let (dim, rows) = read_word_vector_rows(path, &|w| wanted_or_fallback(&wanted, w))?;
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
    fn reference_mat_file_reads_when_present() {
        let path = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
        )
        .join("../../../shared/data/brain2word/180_concepts.mat");
        if !path.exists() {
            eprintln!("skipped: {} absent", path.display());
            return;
        }
        let v = load_vectors(&path).expect("Pereira .mat");
        assert_eq!((v.words.len(), v.dim), (180, 300));
    }
}
