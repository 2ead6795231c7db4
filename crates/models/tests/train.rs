//! Training on a tiny study: the loss falls, the models beat chance, LOSO folds (and their
//! validation scans) never hold the test subject, reloading a fold model reproduces its
//! predictions (CPU determinism: tests/determinism.rs).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use brainpipe_artifacts::{read_predictions, read_targets, read_training};
use brainpipe_core::run_standalone;
use brainpipe_eval::metrics::Similarity;
use brainpipe_eval::{ALL, score_words};
use brainpipe_models::{Dataset, Predict, Ridge, Train, predict_dir};
use serde_json::{Value, json};

/// LibTorch's random generator is process-global: tests that train take turns, so each run's
/// shuffles and dropout draws are its own (the refit test compares two runs).
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    TRAINING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn inputs(pairs: &[(&str, &Path)]) -> BTreeMap<String, PathBuf> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.to_path_buf())).collect()
}

fn tiny(model: &str) -> Value {
    json!({
        "model": model, "hidden": [48, 24], "epochs": 30, "batch_size": 20, "patience": 30,
        "device": "cpu", "threads": 1, "dropout": 0.1,
    })
}

fn top5(out: &Path, targets: &Path) -> f64 {
    mean_metric(out, targets, "top5")
}

/// eval.words' `metric` (e.g. `top5`, `class_top5`) over every subject and paradigm of a
/// training run's predictions.
fn mean_metric(out: &Path, targets: &Path, metric: &str) -> f64 {
    let p = read_predictions(&out.join("predictions.parquet")).expect("predictions");
    let t = read_targets(targets).expect("targets");
    let s = score_words(&p, &t, Similarity::Cosine, true, &[5], out).expect("scores");
    s.rows
        .iter()
        .find(|r| r.subject == ALL && r.paradigm == ALL && r.metric == metric)
        .unwrap_or_else(|| panic!("{metric}"))
        .value
}

#[test]
fn base_roi_and_autoencoder_learn_and_reload_identically() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 3, 20, 8, 0.5);
    for model in ["base", "roi", "autoencoder"] {
        let out = dir.path().join(model);
        let mut ins = inputs(&[("features", &study.features), ("targets", &study.targets)]);
        if model == "roi" {
            ins.insert("rois".into(), study.rois.clone());
        }
        let mut params = tiny(model);
        if model == "autoencoder" {
            params["tied"] = json!(true);
            // The bf16 path of the large matmuls learns too (CPU bfloat16 here).
            params["precision"] = json!("bf16");
        }
        if model == "roi" {
            // 6 blocks of 7–13 columns: ⌈size/20⌉ would leave a 6-unit bottleneck.
            params["roi_scale"] = json!(2);
            params["roi_groups"] = json!(2);
        }
        run_standalone(&Train, &ins, &params, &out, &BTreeMap::new()).expect("train");
        let records = read_training(&out.join("training.parquet")).expect("training");
        let fold0: Vec<_> = records.iter().filter(|r| r.fold == 0).collect();
        let first = fold0.first().expect("epochs").train_loss;
        let last = fold0.last().expect("epochs").train_loss;
        assert!(last < first - 0.1, "{model}: training loss falls ({first} → {last})");
        let score = top5(&out, &study.targets);
        assert!(score > 0.5, "{model}: top-5 {score} far above chance (0.25)");

        // Reloading the fold models gives the same predictions, bit for bit.
        let data = Dataset::read(&study.features, &study.targets, "stimulus").expect("data");
        let again =
            predict_dir(&out.join("model"), &data, true, tch::Device::Cpu).expect("predict");
        let before = read_predictions(&out.join("predictions.parquet")).expect("predictions");
        assert_eq!(again.embedding, before.embedding, "{model}: reload changes predictions");
        assert_eq!(again.scores, before.scores);
    }
    let out = dir.path().join("predict");
    let ins = inputs(&[
        ("model", &dir.path().join("base/model")),
        ("features", &study.features),
        ("targets", &study.targets),
    ]);
    let m = run_standalone(&Predict, &ins, &json!({"device": "cpu"}), &out, &BTreeMap::new())
        .expect("models.predict");
    // The stage reproduces models.train's own predictions of each fold's test subjects, file for
    // file; with `test_only: false` every fold model predicts every scan.
    let trained = std::fs::read(dir.path().join("base/predictions.parquet")).expect("trained");
    let predicted = std::fs::read(out.join("predictions.parquet")).expect("predicted");
    assert!(trained == predicted, "models.predict differs from models.train's predictions");
    let scans = Dataset::read(&study.features, &study.targets, "stimulus").expect("data");
    assert_eq!(m.notes["rows"], json!(scans.subject.len()));
    let all = dir.path().join("predict-all");
    let params = json!({"device": "cpu", "test_only": false});
    let m = run_standalone(&Predict, &ins, &params, &all, &BTreeMap::new()).expect("every scan");
    let every = read_predictions(&all.join("predictions.parquet")).expect("predictions");
    let folds = 3; // leave-one-subject-out over 3 subjects
    assert_eq!(every.subject.len(), folds * scans.subject.len());
    assert_eq!(m.notes["rows"], json!(folds * scans.subject.len()));
    let held_out = read_predictions(&out.join("predictions.parquet")).expect("predictions");
    let dim = held_out.embedding_dim;
    for i in 0..held_out.subject.len() {
        let j = (0..every.subject.len())
            .find(|&j| {
                every.fold[j] == held_out.fold[i]
                    && every.subject[j] == held_out.subject[i]
                    && every.trial[j] == held_out.trial[i]
            })
            .expect("the held-out scan among every scan");
        assert_eq!(
            every.embedding[j * dim..(j + 1) * dim],
            held_out.embedding[i * dim..(i + 1) * dim],
            "the same fold model gives the same prediction"
        );
    }
}

#[test]
fn mean_regularisation_and_ridge_run() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 3, 20, 8, 0.5);
    let ins = inputs(&[("features", &study.features), ("targets", &study.targets)]);
    let mut params = tiny("base");
    params["mean_reg_weight"] = json!(0.5);
    params["warmup_epochs"] = json!(5);
    params["mean_reg_round_epochs"] = json!(3);
    params["name"] = json!("meanreg");
    let out = dir.path().join("meanreg");
    run_standalone(&Train, &ins, &params, &out, &BTreeMap::new()).expect("train");
    let records = read_training(&out.join("training.parquet")).expect("training");
    assert!(records.iter().any(|r| r.train_mean_reg.is_some()), "mean regularisation ran");
    assert!(records.iter().all(|r| r.model == "meanreg"));
    let out = dir.path().join("ridge");
    run_standalone(&Ridge, &ins, &json!({"device": "cpu"}), &out, &BTreeMap::new()).expect("ridge");
    let score = top5(&out, &study.targets);
    assert!(score > 0.5, "ridge top-5 {score}");
}

#[test]
fn loso_folds_and_early_stopping_never_see_the_test_subject() {
    let _turn = one_at_a_time();
    use brainpipe_models::cv::Validation;
    use brainpipe_models::{TrainOutputs, TrainParams, train_all};
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 3, 20, 8, 0.5);
    let data = Dataset::read(&study.features, &study.targets, "stimulus").expect("data");
    for validation in [Validation::Fraction, Validation::Subject] {
        let params = TrainParams {
            hidden: vec![16, 8],
            epochs: 2,
            batch_size: 20,
            validation,
            device: brainpipe_core::DeviceChoice::Cpu,
            ..TrainParams::default()
        };
        let out = TrainOutputs {
            model_dir: dir.path().join("m"),
            predictions: dir.path().join("p.parquet"),
            training: dir.path().join("t.parquet"),
        };
        let summary = train_all(&data, &[], &params, tch::Device::Cpu, &out).expect("train");
        assert_eq!(summary.fold_sets.len(), 3);
        for fold in &summary.fold_sets {
            let test = &fold.test_subjects[0];
            assert!(fold.test.iter().all(|&i| &data.subject[i] == test));
            for &i in fold.train.iter().chain(&fold.validation) {
                assert_ne!(
                    &data.subject[i], test,
                    "fold {} fits or early-stops on its test subject",
                    fold.index
                );
            }
        }
        let predictions = read_predictions(&out.predictions).expect("predictions");
        for (subject, fold) in predictions.subject.iter().zip(&predictions.fold) {
            assert_eq!(&summary.fold_sets[*fold as usize].test_subjects[0], subject);
        }
    }
}

#[test]
fn input_selection_finds_the_informative_rois_from_training_scans_and_reloads() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 3, 20, 8, 0.5);
    let ins = inputs(&[
        ("features", &study.features),
        ("targets", &study.targets),
        ("rois", &study.rois),
    ]);
    let data = Dataset::read(&study.features, &study.targets, "stimulus").expect("data");
    let informative: Vec<usize> = (0..30).collect();
    for model in ["base", "roi"] {
        let mut params = tiny(model);
        params["select"] = json!("roi_stability");
        params["select_columns"] = json!(25);
        params["roi_scale"] = json!(2);
        let out = dir.path().join(format!("sel-{model}"));
        run_standalone(&Train, &ins, &params, &out, &BTreeMap::new()).expect("train");
        for fold in 0..3 {
            let file = out.join(format!("model/fold-{fold:02}.safetensors"));
            let (net, ..) = brainpipe_models::read_fold_config(&file).expect("config");
            // Whole ROIs: the three informative blocks (30 columns ≥ 25).
            assert_eq!(net.columns, informative, "{model} fold {fold}");
            assert_eq!((net.inputs, net.features_width), (30, 60));
            if model == "roi" {
                let blocks = brainpipe_models::read_roi_blocks(&study.rois, 60).expect("rois");
                let kept: Vec<(usize, usize)> =
                    blocks.into_iter().filter(|&(first, _)| first < 30).collect();
                assert_eq!(net.rois, kept, "the ROI blocks of the kept columns");
            }
        }
        assert!(top5(&out, &study.targets) > 0.5, "{model} with selection learns");
        let again =
            predict_dir(&out.join("model"), &data, true, tch::Device::Cpu).expect("predict");
        let before = read_predictions(&out.join("predictions.parquet")).expect("predictions");
        assert_eq!(again.embedding, before.embedding, "{model}: reload changes predictions");
    }
    // Ridge: the weights of unselected columns are zero in the full-width fold file.
    let out = dir.path().join("sel-ridge");
    let params = json!({"device": "cpu", "select": "voxel_stability", "select_columns": 12});
    run_standalone(&Ridge, &ins, &params, &out, &BTreeMap::new()).expect("ridge");
    let file = brainpipe_core::read_safetensors(&out.join("model/fold-00.safetensors"))
        .expect("fold file");
    let weight = file.tensor("weight").and_then(|t| t.to_f32()).expect("weight");
    let used: Vec<usize> = (0..60).filter(|&c| (0..8).any(|d| weight[d * 60 + c] != 0.0)).collect();
    assert_eq!(used.len(), 12);
    assert!(used.iter().all(|&c| c < 30), "stable columns lie in the informative ROIs: {used:?}");
    assert!(top5(&out, &study.targets) > 0.5);
    // roi_stability without ROI blocks is refused.
    let no_rois = inputs(&[("features", &study.features), ("targets", &study.targets)]);
    let params = json!({"device": "cpu", "select": "roi_stability", "select_columns": 12});
    let err = run_standalone(&Ridge, &no_rois, &params, &dir.path().join("x"), &BTreeMap::new())
        .expect_err("needs rois");
    assert!(err.to_string().contains("rois"), "{err}");
}

#[test]
fn refit_trains_again_on_the_validation_scans_too() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 3, 20, 8, 0.5);
    let ins = inputs(&[("features", &study.features), ("targets", &study.targets)]);
    let data = Dataset::read(&study.features, &study.targets, "stimulus").expect("data");
    let mut params = tiny("base");
    params["validation_fraction"] = json!(0.25);
    params["patience"] = json!(4);
    let plain = dir.path().join("plain");
    run_standalone(&Train, &ins, &params, &plain, &BTreeMap::new()).expect("train");
    params["refit"] = json!(true);
    let refit = dir.path().join("refit");
    run_standalone(&Train, &ins, &params, &refit, &BTreeMap::new()).expect("train with refit");
    // The epochs were chosen by the same run: same records; the weights differ (more scans).
    let records = |out: &Path| -> Vec<(i32, i32, f64, Option<f64>)> {
        let all = read_training(&out.join("training.parquet")).expect("training");
        all.iter().map(|r| (r.fold, r.epoch, r.train_loss, r.val_loss)).collect()
    };
    let (before, after) = (records(&plain), records(&refit));
    assert!(
        before == after,
        "the refit changed the epoch records ({} vs {})",
        before.len(),
        after.len()
    );
    let predictions =
        |out: &Path| read_predictions(&out.join("predictions.parquet")).expect("predictions");
    assert_ne!(predictions(&plain).embedding, predictions(&refit).embedding);
    assert!(top5(&refit, &study.targets) > 0.5, "the refit model learns");
    let again = predict_dir(&refit.join("model"), &data, true, tch::Device::Cpu).expect("predict");
    assert_eq!(again.embedding, predictions(&refit).embedding, "reload reproduces the refit");
}

#[test]
fn the_classifier_can_read_the_last_hidden_layer_and_reloads_identically() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 3, 20, 8, 0.5);
    let ins = inputs(&[("features", &study.features), ("targets", &study.targets)]);
    let mut scores = Vec::new();
    for input in ["embedding", "hidden"] {
        let mut params = tiny("base");
        params["loss"] = json!("classification");
        params["classifier_input"] = json!(input);
        let out = dir.path().join(input);
        run_standalone(&Train, &ins, &params, &out, &BTreeMap::new()).expect("train");
        let fold = out.join("model/fold-00.safetensors");
        let file = brainpipe_core::read_safetensors(&fold).expect("fold file");
        let classifier = file.tensor("classifier.weight").expect("classifier.weight");
        let norms = file.tensors.iter().filter(|t| t.name.starts_with("head_norm.")).count();
        let config = file.config(&fold).expect("config").expect("config present");
        if input == "hidden" {
            // 20 words, read from the last hidden layer's 24 units; no embedding BN before it.
            assert_eq!(classifier.shape, vec![20, 24]);
            assert_eq!(norms, 0, "no head_norm.* when the classifier reads the hidden layer");
            assert_eq!(config["net"]["classifier_input"], "hidden");
        } else {
            assert_eq!(classifier.shape, vec![20, 8]);
            assert!(norms > 0);
            // The default is not written, so files from before the choice keep their bytes.
            assert!(config["net"].get("classifier_input").is_none(), "{}", config["net"]);
            assert!(config["params"].get("classifier_input").is_none());
        }
        let data = Dataset::read(&study.features, &study.targets, "stimulus").expect("data");
        let again =
            predict_dir(&out.join("model"), &data, true, tch::Device::Cpu).expect("predict");
        let before = read_predictions(&out.join("predictions.parquet")).expect("predictions");
        assert_eq!(again.scores, before.scores, "{input}: reload changes the class scores");
        scores.push((mean_metric(&out, &study.targets, "class_top5"), before.scores));
    }
    assert_ne!(scores[0].1, scores[1].1, "the two heads give different class scores");
    // Both heads learn the 20 classes above chance (5 / 20); reading the hidden layer, the
    // classifier is not squeezed through the 8-dim embedding's dropout.
    let (embedding, hidden) = (scores[0].0, scores[1].0);
    eprintln!("class top-5: embedding {embedding}, hidden {hidden}");
    assert!(embedding > 0.3, "embedding: class top-5 {embedding}");
    assert!(hidden > 0.5, "hidden: class top-5 {hidden}");
}
