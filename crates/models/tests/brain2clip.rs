//! Brain2CLIP training through the stage: schedules record their phases, the held-out subject
//! is never touched (pretraining and early stopping included), augmentation multiplies the
//! training pairs exactly ×(1 + copies), and CPU runs are byte-identical.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_artifacts::read_training;
use brainpipe_core::{TableKind, f32_list_array, f32_list_field, run_standalone, write_table};
use brainpipe_models::{
    Dataset, Train, TrainOutputs, TrainParams, read_augmented, train_augmented,
};
use serde_json::{Value, json};

/// LibTorch's generator is process-global: trainings take turns.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    TRAINING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn params(schedule: &str) -> Value {
    json!({
        "model": "autoencoder", "loss": "regression", "hidden": [24, 12], "epochs": 4,
        "pretrain_epochs": 3, "batch_size": 20, "patience": 10, "device": "cpu", "threads": 1,
        "schedule": schedule,
    })
}

fn ins(study: &common::Study) -> BTreeMap<String, PathBuf> {
    [("features".to_owned(), study.features.clone()), ("targets".to_owned(), study.targets.clone())]
        .into()
}

/// An `embeddings/1` table as clip.augment writes it: `copies` augmented rows per word, each
/// the word's index pattern plus the copy number.
fn write_augmented(path: &Path, words: usize, copies: usize, dim: usize) {
    let n = words * copies;
    let schema = Arc::new(Schema::new(vec![
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("stimulus_id", DataType::Int32, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("caption_index", DataType::Int32, true),
        Field::new("caption", DataType::Utf8, true),
        Field::new("augmentation", DataType::Int32, true),
        Field::new("image", DataType::Utf8, true),
        f32_list_field("embedding", dim, false),
    ]));
    let values: Vec<f32> = (0..n * dim).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("word{}", i / copies)))),
        Arc::new(Int32Array::from_iter_values((0..n).map(|i| (i / copies) as i32))),
        Arc::new(StringArray::from_iter_values((0..n).map(|_| "augmented"))),
        Arc::new(Int32Array::from(vec![None; n])),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
        Arc::new(Int32Array::from_iter_values((0..n).map(|i| (i % copies) as i32))),
        Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("augmented/{i}.png")))),
        f32_list_array(values, dim),
    ];
    let batch = RecordBatch::try_new(schema, columns).expect("batch");
    write_table(path, TableKind::new("embeddings", 1), &[batch]).expect("embeddings");
}

#[test]
fn schedules_record_their_phases_and_joint_writes_no_phase_column() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 3, 20, 8, 0.5);
    for (schedule, first, second) in [
        ("pretrain_then_regression", "pretrain", "regression"),
        ("pretrain_then_joint", "pretrain", "joint"),
    ] {
        let out = dir.path().join(schedule);
        run_standalone(&Train, &ins(&study), &params(schedule), &out, &BTreeMap::new())
            .expect("train");
        let records = read_training(&out.join("training.parquet")).expect("training");
        for fold in 0..3 {
            let phases: Vec<&str> = records
                .iter()
                .filter(|r| r.fold == fold)
                .map(|r| r.phase.as_deref().expect("every epoch has a phase"))
                .collect();
            let pretrain = phases.iter().take_while(|p| **p == first).count();
            assert!((1..=3).contains(&pretrain), "{schedule}: {phases:?}");
            assert!(phases[pretrain..].iter().all(|p| *p == second), "{schedule}: {phases:?}");
            assert!(phases.len() > pretrain, "{schedule}: a second phase");
        }
    }
    let out = dir.path().join("joint");
    run_standalone(&Train, &ins(&study), &params("joint"), &out, &BTreeMap::new()).expect("train");
    let records = read_training(&out.join("training.parquet")).expect("training");
    assert!(records.iter().all(|r| r.phase.is_none()), "joint keeps the old table");
    // A pretraining schedule needs a decoder.
    let mut base = params("pretrain_then_joint");
    base["model"] = json!("base");
    let err =
        run_standalone(&Train, &ins(&study), &base, &dir.path().join("bad"), &BTreeMap::new())
            .expect_err("base cannot pretrain");
    assert!(err.to_string().contains("needs `model: autoencoder`"), "{err}");
}

/// Replaces every input of `subject` by other values: a fold holding that subject out must train
/// the same bytes if nothing of it is read (pretraining and early stopping included).
fn poison(features: &Path, subject: &str, out: &Path) {
    let (_, batches) = brainpipe_core::read_table(features, None).expect("features");
    let mut fixed = Vec::new();
    for b in &batches {
        let subjects = b
            .column_by_name("subject")
            .and_then(|a| a.as_any().downcast_ref::<StringArray>())
            .expect("subject");
        let voxels = b.column_by_name("voxels").expect("voxels");
        let (values, width) =
            brainpipe_core::f32_list_values(features, "voxels", voxels.as_ref()).expect("voxels");
        let mut values = values.to_vec();
        for i in 0..b.num_rows() {
            if subjects.value(i) == subject {
                for (k, v) in values[i * width..(i + 1) * width].iter_mut().enumerate() {
                    *v = ((i + k) % 13) as f32 * 3.0 - 20.0;
                }
            }
        }
        let mut columns = b.columns().to_vec();
        let idx = b.schema().index_of("voxels").expect("voxels");
        columns[idx] = f32_list_array(values, width);
        fixed.push(RecordBatch::try_new(b.schema(), columns).expect("batch"));
    }
    write_table(out, TableKind::new("features", 1), &fixed).expect("write");
}

#[test]
fn loso_never_touches_the_held_out_subject_in_pretraining_or_early_stopping() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 3, 20, 8, 0.5);
    let poisoned = dir.path().join("poisoned.parquet");
    poison(&study.features, "sub-01", &poisoned);
    for schedule in ["pretrain_then_regression", "pretrain_then_joint", "joint"] {
        let mut p = params(schedule);
        p["refit"] = json!(true);
        let clean = dir.path().join(format!("{schedule}-clean"));
        run_standalone(&Train, &ins(&study), &p, &clean, &BTreeMap::new()).expect("train");
        let mut other = ins(&study);
        other.insert("features".into(), poisoned.clone());
        let dirty = dir.path().join(format!("{schedule}-dirty"));
        run_standalone(&Train, &other, &p, &dirty, &BTreeMap::new()).expect("train");
        // Fold 0 holds out sub-01: its model must not depend on sub-01's scans …
        let fold0 = |d: &Path| std::fs::read(d.join("model/fold-00.safetensors")).expect("read");
        assert!(fold0(&clean) == fold0(&dirty), "{schedule}: fold 0 read its held-out subject");
        // … while folds that train on sub-01 do.
        let fold1 = |d: &Path| std::fs::read(d.join("model/fold-01.safetensors")).expect("read");
        assert!(fold1(&clean) != fold1(&dirty), "{schedule}: the poison reaches other folds");
        let records = |d: &Path| {
            read_training(&d.join("training.parquet"))
                .expect("training")
                .into_iter()
                .filter(|r| r.fold == 0)
                .collect::<Vec<_>>()
        };
        assert_eq!(records(&clean), records(&dirty), "{schedule}: fold 0's early stopping");
    }
}

#[test]
fn augmentation_multiplies_training_pairs_by_one_plus_copies() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 3, 20, 8, 0.5);
    let augmented = dir.path().join("augmented.parquet");
    write_augmented(&augmented, 20, 4, 8);
    let data = Dataset::read(&study.features, &study.targets, "stimulus").expect("data");
    let aug = read_augmented(&augmented, 8).expect("augmented");
    assert_eq!(aug.by_stimulus.len(), 20);
    let p = TrainParams {
        hidden: vec![16, 8],
        epochs: 2,
        batch_size: 20,
        device: brainpipe_core::DeviceChoice::Cpu,
        augment: true,
        ..TrainParams::default()
    };
    let out = TrainOutputs {
        model_dir: dir.path().join("m"),
        predictions: dir.path().join("p.parquet"),
        training: dir.path().join("t.parquet"),
    };
    let summary =
        train_augmented(&data, &[], Some(&aug), &p, tch::Device::Cpu, &out).expect("train");
    for (fold, pairs) in summary.fold_sets.iter().zip(&summary.training_pairs) {
        assert_eq!(*pairs, fold.train.len() * (1 + 4), "fold {}", fold.index);
    }
    // Without augmentation: the scans alone.
    let plain = TrainParams { augment: false, ..p.clone() };
    let summary = train_augmented(&data, &[], None, &plain, tch::Device::Cpu, &out).expect("train");
    for (fold, pairs) in summary.fold_sets.iter().zip(&summary.training_pairs) {
        assert_eq!(*pairs, fold.train.len());
    }
    // Through the stage, the param and the input go together.
    let mut stage_ins = ins(&study);
    let mut sp = params("joint");
    sp["augment"] = json!(true);
    let err = run_standalone(&Train, &stage_ins, &sp, &dir.path().join("a"), &BTreeMap::new())
        .expect_err("no input");
    assert!(err.to_string().contains("needs the `augmented` input"), "{err}");
    stage_ins.insert("augmented".into(), augmented.clone());
    run_standalone(&Train, &stage_ins, &sp, &dir.path().join("b"), &BTreeMap::new())
        .expect("augmented training");
    sp["augment"] = json!(false);
    let err = run_standalone(&Train, &stage_ins, &sp, &dir.path().join("c"), &BTreeMap::new())
        .expect_err("input without the param");
    assert!(err.to_string().contains("augment: true"), "{err}");
}

#[test]
fn schedules_and_augmentation_are_deterministic_on_the_cpu() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 2, 20, 8, 0.5);
    let augmented = dir.path().join("augmented.parquet");
    write_augmented(&augmented, 20, 4, 8);
    let mut inputs = ins(&study);
    inputs.insert("augmented".into(), augmented);
    let mut p = params("pretrain_then_regression");
    p["augment"] = json!(true);
    let mut runs = Vec::new();
    for k in 0..2 {
        let out = dir.path().join(format!("run{k}"));
        run_standalone(&Train, &inputs, &p, &out, &BTreeMap::new()).expect("train");
        let files = ["predictions.parquet", "training.parquet", "model/fold-00.safetensors"];
        runs.push(files.map(|f| std::fs::read(out.join(f)).expect("read")));
    }
    assert!(runs[0] == runs[1], "reruns differ");
}

#[test]
fn the_plain_cosine_regression_loss_trains_and_differs_from_batch_negatives() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 2, 20, 8, 0.5);
    let mut predictions = Vec::new();
    for form in ["batch_negatives", "cosine"] {
        let mut p = params("joint");
        p["regression_form"] = json!(form);
        p["epochs"] = json!(20);
        let out = dir.path().join(form);
        run_standalone(&Train, &ins(&study), &p, &out, &BTreeMap::new()).expect("train");
        let records = read_training(&out.join("training.parquet")).expect("training");
        if form == "cosine" {
            // It learns: per fold, the mean plain loss of the last five epochs is below that of
            // the first five.
            for fold in 0..2 {
                let losses: Vec<f64> = records
                    .iter()
                    .filter(|r| r.fold == fold)
                    .map(|r| r.train_regression.expect("regression term"))
                    .collect();
                assert!(losses.len() >= 10, "fold {fold}: {losses:?}");
                let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
                let (first, last) = (mean(&losses[..5]), mean(&losses[losses.len() - 5..]));
                assert!(last < first && last > -1.0, "fold {fold}: {first} → {last}");
            }
        }
        predictions.push(std::fs::read(out.join("predictions.parquet")).expect("predictions"));
    }
    assert!(predictions[0] != predictions[1], "the form changes what is learnt");
}
