//! `models.train` in shards: each fold trained alone into its shard directory, then merged,
//! gives the bytes of the unsharded run (model files, predictions, training history). Its own
//! test binary: LibTorch's random generator is process-global.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use brainpipe_core::{Context, Stage, output_files, run_standalone};
use brainpipe_models::{Train, TrainParams};
use serde_json::{Value, json};

/// Trains with `params` whole and in shards (in reverse order, after other draws of the
/// generator) and checks the merge against the whole run; returns the shard count.
fn sharded_equals_whole(params: Value) -> usize {
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 3, 12, 8, 0.5);
    let inputs: BTreeMap<String, PathBuf> = [
        ("features".to_owned(), study.features.clone()),
        ("targets".to_owned(), study.targets.clone()),
    ]
    .into();
    let whole = dir.path().join("whole");
    run_standalone(&Train, &inputs, &params, &whole, &BTreeMap::new()).expect("whole run");
    let p: TrainParams = serde_json::from_value(params).expect("params");
    let count = Train.shards(&Context::new(inputs.clone(), Train.outputs(), PathBuf::new()), &p);
    let count = count.expect("shard count");
    let mut shards = vec![PathBuf::new(); count];
    for index in (0..count).rev() {
        tch::manual_seed(1000 + index as i64);
        let _ = tch::Tensor::randn([100], (tch::Kind::Float, tch::Device::Cpu));
        let shard = dir.path().join(format!("shard-{index}"));
        std::fs::create_dir_all(&shard).expect("shard dir");
        let mut ctx = Context::new(inputs.clone(), Train.outputs(), shard.clone());
        Train.run_shard(&mut ctx, &p, index, count).expect("shard");
        assert_eq!(ctx.notes()["fold"], json!(index));
        shards[index] = shard;
    }
    let merged = dir.path().join("merged");
    std::fs::create_dir_all(&merged).expect("merged dir");
    let mut ctx = Context::new(inputs.clone(), Train.outputs(), merged.clone());
    Train.merge_shards(&mut ctx, &p, &shards).expect("merge");
    assert_eq!(ctx.notes()["folds"], json!(count));
    assert_eq!(ctx.notes()["shards"], json!(count));
    let (whole_files, merged_files) = (output_files(&whole), output_files(&merged));
    let names: Vec<_> = whole_files.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(names.len(), count + 2, "{names:?}");
    for ((a, bytes_a), (b, bytes_b)) in whole_files.iter().zip(&merged_files) {
        assert_eq!(a, b);
        assert!(bytes_a == bytes_b, "{} differs between the whole run and the merge", a.display());
    }
    assert_eq!(whole_files.len(), merged_files.len());

    // A shard count the data do not give, and shards out of order, are refused.
    let mut ctx = Context::new(inputs.clone(), Train.outputs(), dir.path().join("shard-0"));
    let error = Train.run_shard(&mut ctx, &p, 0, count + 1).expect_err("wrong count");
    assert!(error.to_string().contains(&format!("split into {count} folds")), "{error}");
    shards.swap(0, 1);
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again).expect("dir");
    let mut ctx = Context::new(inputs, Train.outputs(), again);
    let error = Train.merge_shards(&mut ctx, &p, &shards).expect_err("out of order");
    assert!(error.to_string().contains("fold.json"), "{error}");
    assert!(error.to_string().contains("expected fold 0"), "{error}");
    count
}

/// One test for both cases: the tests of one binary run on parallel threads, and LibTorch's
/// generator is shared.
#[test]
fn folds_trained_as_shards_merge_into_the_bytes_of_the_whole_run() {
    let loso = sharded_equals_whole(json!({
        "hidden": [24, 12], "epochs": 3, "batch_size": 16, "device": "cpu", "threads": 1,
    }));
    assert_eq!(loso, 3, "one fold per subject");
    // Within-subject folds, refit, a pretraining schedule (the `phase` column) and mean
    // regularisation.
    let within = sharded_equals_whole(json!({
        "model": "autoencoder", "schedule": "pretrain_then_joint", "pretrain_epochs": 2,
        "hidden": [16, 8], "epochs": 3, "batch_size": 16, "device": "cpu", "threads": 1,
        "cv": "within_subject", "folds": 2, "refit": true, "mean_reg_weight": 0.1,
        "warmup_epochs": 1,
    }));
    assert_eq!(within, 6, "two folds per subject");
}
