//! `eval.clip` against a numpy implementation of its definitions (`clip_reference.py`) on the
//! same Parquet files: every metric row equal to 1e-9. Needs `BRAINPIPE_REF_PYTHON` (numpy and
//! pyarrow; `make test` sets it): skipped with a message when unset, a failure when unset under
//! `CI` or when set and unusable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int32Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_artifacts::{Predictions, read_clip_trials, read_metrics, write_predictions};
use brainpipe_core::{TableKind, f32_list_array, f32_list_field, run_standalone, write_table};
use brainpipe_eval::ClipEval;
use serde_json::{Value, json};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn below(&mut self, n: usize) -> usize {
        (((self.next() + 1.0) / 2.0 * n as f32) as usize).min(n - 1)
    }
}

const DIM: usize = 8;
const TRAIN: usize = 14;
const TEST: usize = 10;

fn image(i: usize) -> String {
    format!("images/img-{i:05}.png")
}

/// A study of `TRAIN + TEST` images (synthetic-world vectors), their embeddings (one image, three
/// captions each), and two models' predictions for 3 subjects (test images twice).
fn fixtures(dir: &Path) -> (PathBuf, PathBuf, Vec<PathBuf>) {
    let mut rng = Lcg(3);
    let n = TRAIN + TEST;
    let mut vectors = Vec::new();
    for _ in 0..n {
        let mut v = [0.0f32; 18];
        v[rng.below(4)] = 1.0;
        let shapes = 1 + rng.below(3);
        v[4] = shapes as f32 / 3.0;
        for _ in 0..shapes {
            v[5 + rng.below(4)] += 1.0;
            v[9 + rng.below(6)] += 1.0;
        }
        vectors.extend_from_slice(&v);
    }
    let mut captions = ListBuilder::new(StringBuilder::new());
    for i in 0..n {
        for k in 0..3 {
            captions.values().append_value(format!("caption {k} of {i}"));
        }
        captions.append(true);
    }
    let stimuli = dir.join("stimuli.parquet");
    let captions = captions.finish();
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("word", DataType::Utf8, true),
        Field::new("image", DataType::Utf8, true),
        Field::new("split", DataType::Utf8, false),
        Field::new("captions", captions.data_type().clone(), true),
        Field::new("best_caption", DataType::Int32, true),
        f32_list_field("vector", 18, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(0..n as i32)),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
        Arc::new(StringArray::from_iter_values((0..n).map(image))),
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| if i < TRAIN { "train" } else { "test" }),
        )),
        Arc::new(captions),
        Arc::new(Int32Array::from(vec![Some(0); n])),
        f32_list_array(vectors, 18),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns).expect("stimuli");
    write_table(&stimuli, TableKind::new("stimuli", 1), &[batch]).expect("stimuli");

    // Embeddings: images then captions (each caption near its image).
    let mut values: Vec<f32> = (0..n * DIM).map(|_| rng.next()).collect();
    let image_values = values.clone();
    let (mut stim, mut kind, mut text) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        stim.push(image(i));
        kind.push("image");
        text.push(None);
    }
    for i in 0..n {
        for k in 0..3 {
            stim.push(image(i));
            kind.push("caption");
            text.push(Some(format!("caption {k} of {i}")));
            for d in 0..DIM {
                values.push(image_values[i * DIM + d] + 0.8 * rng.next());
            }
        }
    }
    let rows = stim.len();
    let embeddings = dir.join("embeddings.parquet");
    let schema = Schema::new(vec![
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("stimulus_id", DataType::Int32, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("caption_index", DataType::Int32, true),
        Field::new("caption", DataType::Utf8, true),
        Field::new("augmentation", DataType::Int32, true),
        Field::new("image", DataType::Utf8, true),
        f32_list_field("embedding", DIM, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(stim.clone())),
        Arc::new(Int32Array::from_iter_values((0..rows).map(|r| (r % n) as i32))),
        Arc::new(StringArray::from(kind)),
        Arc::new(Int32Array::from(vec![None; rows])),
        Arc::new(StringArray::from(text)),
        Arc::new(Int32Array::from(vec![None; rows])),
        Arc::new(StringArray::from(vec![None::<&str>; rows])),
        f32_list_array(values, DIM),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns).expect("embeddings");
    write_table(&embeddings, TableKind::new("embeddings", 1), &[batch]).expect("embeddings");

    let mut predictions = Vec::new();
    for (m, noise) in [("ridge", 1.5f32), ("joint", 0.9)] {
        let mut p = Predictions { embedding_dim: DIM, ..Predictions::default() };
        for s in 0..3 {
            let shown: Vec<usize> = (0..TRAIN).chain(TRAIN..n).chain(TRAIN..n).collect();
            for (trial, i) in shown.into_iter().enumerate() {
                p.model.push(m.to_owned());
                p.subject.push(format!("sub-{:02}", s + 1));
                p.trial.push(trial as i32);
                p.stimulus.push(image(i));
                p.paradigm.push("image".into());
                p.fold.push(s);
                p.class.push(i as i32);
                for d in 0..DIM {
                    p.embedding.push(image_values[i * DIM + d] + noise * rng.next());
                }
            }
        }
        let path = dir.join(format!("{m}.parquet"));
        write_predictions(&path, &p).expect("predictions");
        predictions.push(path);
    }
    (embeddings, stimuli, predictions)
}

fn reference_python() -> Option<String> {
    brainpipe_core::reference_python("the eval.clip numpy oracle").map(|p| p.display().to_string())
}

#[test]
fn eval_clip_equals_numpy_definitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (embeddings, stimuli, predictions) = fixtures(dir.path());
    let mut inputs: BTreeMap<String, PathBuf> =
        [("embeddings".to_owned(), embeddings.clone()), ("stimuli".to_owned(), stimuli.clone())]
            .into();
    for (i, p) in predictions.iter().enumerate() {
        inputs.insert(format!("predictions#{i}"), p.clone());
    }
    // 10 test images per subject, subsets of 6: the draws differ.
    let params = json!({"subset": 6, "draws": 5, "seed": 11});
    let out = dir.path().join("out");
    run_standalone(&ClipEval, &inputs, &params, &out, &BTreeMap::new()).expect("eval.clip");
    let rows = read_metrics(&out.join("metrics.parquet")).expect("metrics");
    let trials = read_clip_trials(&out.join("trials.parquet")).expect("trials");
    // 2 models × 3 subjects × (20 single + 10 averaged).
    assert_eq!(trials.len(), 2 * 3 * (2 * TEST + TEST));
    assert!(trials.iter().all(|t| t.retrieved.len() == 5 && !t.caption.is_empty()));
    let top1 = rows
        .iter()
        .find(|r| {
            r.model == "joint"
                && r.subject == "all"
                && r.paradigm == "averaged"
                && r.metric == "top1"
        })
        .expect("top1")
        .value;
    assert!(top1 > 0.2, "the less noisy model finds images ({top1})");
    assert!(rows.iter().any(|r| r.metric.starts_with("confusion.background.")));

    let Some(python) = reference_python() else { return };
    let script = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/clip_reference.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script).arg(&embeddings).arg(&stimuli).args(["6", "5", "11"]).args(&predictions);
    let output = cmd.output().unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reference: Vec<Value> = serde_json::from_slice(&output.stdout).expect("json");
    let mut ours: BTreeMap<(String, String, String, String, Option<i32>), f64> = BTreeMap::new();
    for r in &rows {
        ours.insert(
            (r.model.clone(), r.subject.clone(), r.paradigm.clone(), r.metric.clone(), r.index),
            r.value,
        );
    }
    assert_eq!(reference.len(), ours.len(), "as many rows as the reference");
    for r in &reference {
        let key = (
            r[0].as_str().expect("model").to_owned(),
            r[1].as_str().expect("subject").to_owned(),
            r[2].as_str().expect("mode").to_owned(),
            r[3].as_str().expect("metric").to_owned(),
            r[4].as_i64().map(|i| i as i32),
        );
        let want = r[5].as_f64().expect("value");
        let got = ours.get(&key).unwrap_or_else(|| panic!("no row {key:?}"));
        assert!((got - want).abs() <= 1e-9, "{key:?}: {got} vs numpy {want}");
    }
}

#[test]
fn eval_clip_refuses_a_study_without_test_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (embeddings, _, predictions) = fixtures(dir.path());
    let inputs: BTreeMap<String, PathBuf> = [
        ("embeddings".to_owned(), embeddings.clone()),
        ("stimuli".to_owned(), embeddings.clone()),
        ("predictions#0".to_owned(), predictions[0].clone()),
    ]
    .into();
    let err =
        run_standalone(&ClipEval, &inputs, &json!({}), &dir.path().join("o"), &BTreeMap::new())
            .expect_err("an embeddings table is no stimuli table");
    assert!(err.to_string().contains("embeddings.parquet"), "{err}");
}
