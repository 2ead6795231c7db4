//! `models.ridge` against a closed-form ridge in numpy (`tests/ridge_reference.py`): at a fixed
//! alpha, and with the alpha chosen by inner cross-validation, under leave-one-subject-out folds;
//! every fold's alpha, weights, bias and predicted rows must agree. Needs
//! `BRAINPIPE_REF_PYTHON` (set by `make test`): skipped with a message when unset (a failure when
//! `CI` is set).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use brainpipe_core::run_standalone;
use brainpipe_models::Ridge;
use serde_json::json;

#[test]
fn ridge_matches_numpy_closed_form_at_fixed_and_cross_validated_alpha() {
    let Some(python) = brainpipe_core::reference_python(
        "ridge_matches_numpy_closed_form_at_fixed_and_cross_validated_alpha",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 3, 20, 8, 0.5);
    let inputs: BTreeMap<String, std::path::PathBuf> = [
        ("features".to_owned(), study.features.clone()),
        ("targets".to_owned(), study.targets.clone()),
    ]
    .into();
    let default_alphas = json!([1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6]);
    let runs = [
        ("fixed", json!({"device": "cpu", "alphas": [10.0]}), json!([10.0])),
        ("loso-cv", json!({"device": "cpu"}), default_alphas),
    ];
    let mut args: Vec<String> = Vec::new();
    let mut chosen = Vec::new();
    for (name, params, alphas) in &runs {
        let out = dir.path().join(name);
        let m = run_standalone(&Ridge, &inputs, params, &out, &BTreeMap::new())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        chosen.push(m.notes["alphas"].clone());
        args.push(out.display().to_string());
        args.push(alphas.to_string());
    }
    let script = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/ridge_reference.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&study.features)
        .arg(&study.targets)
        .args(&args)
        .output()
        .expect("BRAINPIPE_REF_PYTHON is set but cannot be run");
    assert!(
        out.status.success(),
        "numpy ridge disagrees:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    println!("numpy closed-form ridge agrees: {report}");
    for (i, run) in report.as_array().expect("runs").iter().enumerate() {
        assert_eq!(run["alphas"], chosen[i], "the stage's `alphas` note is the folds' alphas");
    }
    // The cross-validated runs did choose (not every fold at the grid's edge).
    let picked: Vec<f64> = chosen[1..]
        .iter()
        .flat_map(|a| a.as_array().expect("alphas").iter().filter_map(serde_json::Value::as_f64))
        .collect();
    assert!(picked.iter().all(|a| *a > 1.0 && *a < 1e6), "{picked:?}");
}
