//! `clip.words` on the word vectors the project ships (and Pereira's .mat when present), and its
//! one-line errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use brainpipe_artifacts::read_targets;
use brainpipe_core::{Manifest, run_standalone};
use brainpipe_targets::Words;
use serde_json::json;

fn run(inputs: &[(&str, &Path)], out: &Path) -> Result<Manifest, String> {
    let inputs: BTreeMap<String, PathBuf> =
        inputs.iter().map(|(k, v)| ((*k).to_owned(), v.to_path_buf())).collect();
    run_standalone(&Words, &inputs, &json!({}), out, &BTreeMap::new()).map_err(|e| e.to_string())
}

#[test]
fn words_targets_from_shipped_glove_vectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vectors = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../data/pereira180_glove6b50d.txt");
    let m = run(&[("vectors", &vectors)], &dir.path().join("words")).expect("clip.words");
    assert_eq!(m.notes["words"], 180);
    let targets = read_targets(&dir.path().join("words/targets.parquet")).expect("targets").rows();
    assert_eq!(
        (targets.len(), targets[0].target.len(), targets[0].stimulus.as_str(), targets[179].class),
        (180, 50, "ability", 179)
    );
    let mat = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../../shared/data/brain2word/180_concepts.mat");
    if !mat.exists() {
        eprintln!("skipped the Pereira .mat: {} absent", mat.display());
        return;
    }
    run(&[("vectors", &mat)], &dir.path().join("mat")).expect("clip.words on the .mat");
    let targets = read_targets(&dir.path().join("mat/targets.parquet")).expect("targets").rows();
    assert_eq!((targets.len(), targets[0].target.len()), (180, 300));
}

#[test]
fn an_unreadable_vector_file_is_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("vectors.txt");
    std::fs::write(&bad, "dog 0.1 0.2\ncat 0.3\n").expect("write");
    let err = run(&[("vectors", &bad)], &dir.path().join("out")).expect_err("ragged rows");
    assert!(err.contains("vectors.txt"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!dir.path().join("out/targets.parquet").exists(), "nothing half-written");
}
