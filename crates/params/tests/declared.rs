//! Each declared stage refuses what its stage would refuse, with a one-line message naming the
//! param, and accepts its defaults.

use brainpipe_params::{DECLARED, canonical};
use serde_json::json;

fn refused(stage: &str, with: serde_json::Value) -> String {
    let check = canonical(stage).expect("declared");
    let err = check(&with).expect_err("refused");
    assert!(!err.contains('\n'), "one line: {err}");
    err
}

#[test]
fn every_declared_stage_accepts_its_defaults() {
    for (stage, check) in DECLARED {
        check(&json!({})).unwrap_or_else(|e| panic!("{stage}: defaults refused: {e}"));
        check(&serde_json::Value::Null).unwrap_or_else(|e| panic!("{stage}: no `with`: {e}"));
    }
}

#[test]
fn diffusion_params_are_checked_before_the_worker_starts() {
    let err = refused("diffusion.decode", json!({"scheduler": "dpm"}));
    assert!(err.contains("`scheduler`: unknown scheduler `dpm`"), "{err}");
    let err = refused("diffusion.decode", json!({"guidance_scale": 0.5}));
    assert!(err.contains("`guidance_scale`"), "{err}");
    let err = refused("diffusion.decode", json!({"source": "shufled"}));
    assert!(err.contains("unknown variant `shufled`"), "{err}");
    let err = refused("diffusion.train", json!({"channels": [32, 60], "heads": 8}));
    assert!(err.contains("`heads`"), "{err}");
    let err = refused("diffusion.train", json!({"prediction_type": "sample"}));
    assert!(err.contains("unknown variant `sample`"), "{err}");
    let err = refused("diffusion.train", json!({"device": "gpu"}));
    assert!(err.contains("gpu"), "{err}");
}

#[test]
fn clip_and_models_params_are_checked_too() {
    let err = refused("clip.embed", json!({"threads": -1}));
    assert!(err.contains("`threads`"), "{err}");
    let err = refused("clip.augment", json!({"min_crop_area": 0}));
    assert!(err.contains("`min_crop_area`"), "{err}");
    let err = refused("models.train", json!({"schedule": "pretrain_then_joint"}));
    assert!(err.contains("needs `model: autoencoder`"), "{err}");
    let err = refused("models.train", json!({"lernrate": 1e-3}));
    assert!(err.contains("lernrate"), "{err}");
    let check = canonical("models.train").expect("declared");
    let ok = check(&json!({"model": "autoencoder", "schedule": "pretrain_then_joint"}));
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn the_regression_form_is_declared_and_left_out_of_keys_at_its_default() {
    let check = canonical("models.train").expect("declared");
    let default = check(&json!({})).expect("defaults");
    assert!(default.get("regression_form").is_none(), "default left out: {default}");
    let explicit = check(&json!({"regression_form": "batch_negatives"})).expect("explicit");
    assert_eq!(explicit, default, "the default spelled out keys the same");
    let cosine = check(&json!({"regression_form": "cosine"})).expect("cosine");
    assert_eq!(cosine["regression_form"], "cosine");
    let err = refused("models.train", json!({"regression_form": "cosin"}));
    assert!(err.contains("unknown variant `cosin`"), "{err}");
}

#[test]
fn the_classifier_input_and_ridge_threads_are_declared_and_left_out_of_keys_at_their_defaults() {
    let check = canonical("models.train").expect("declared");
    let default = check(&json!({})).expect("defaults");
    assert!(default.get("classifier_input").is_none(), "default left out: {default}");
    let explicit = check(&json!({"classifier_input": "embedding"})).expect("explicit");
    assert_eq!(explicit, default, "the default spelled out keys the same");
    let hidden = check(&json!({"classifier_input": "hidden"})).expect("hidden");
    assert_eq!(hidden["classifier_input"], "hidden");
    let err = refused("models.train", json!({"classifier_input": "hiden"}));
    assert!(err.contains("unknown variant `hiden`"), "{err}");
    let ridge = canonical("models.ridge").expect("declared");
    let default = ridge(&json!({})).expect("defaults");
    assert!(default.get("threads").is_none(), "default left out: {default}");
    assert_eq!(ridge(&json!({"threads": 1})).expect("one thread")["threads"], 1);
}
