//! The crate graph reads as the data flow: stage crates depend on infrastructure (core,
//! artifacts, tensor, nifti), never on each other, so a table is the contract between two stages
//! and either can be replaced without touching the other.

use std::process::Command;

use serde_json::Value;

/// Stage crates, in data-flow order.
const STAGES: [&str; 7] = [
    "brainpipe-ingest",
    "brainpipe-features",
    "brainpipe-clip",
    "brainpipe-targets",
    "brainpipe-models",
    "brainpipe-diffusion",
    "brainpipe-eval",
];

/// Crates that must build without LibTorch (the driver links them).
const TORCH_FREE: [&str; 9] = [
    "brainpipe-core",
    "brainpipe-hf",
    "brainpipe-artifacts",
    "brainpipe-params",
    "brainpipe-pipeline",
    "brainpipe-ingest",
    "brainpipe-features",
    "brainpipe-targets",
    "brainpipe-eval",
];

fn metadata() -> Value {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
        ))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// (package, dependency) for every normal or build dependency of a workspace package (dev
/// dependencies are test fixtures: a stage's tests may run the stages upstream of it).
fn edges(metadata: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name");
        for dep in package["dependencies"].as_array().expect("dependencies") {
            if dep["kind"].as_str() != Some("dev") {
                out.push((name.to_owned(), dep["name"].as_str().expect("dep name").to_owned()));
            }
        }
    }
    out
}

#[test]
fn no_stage_crate_depends_on_another() {
    let metadata = metadata();
    let edges = edges(&metadata);
    assert!(edges.iter().any(|(p, _)| p == "brainpipe-artifacts"), "the workspace is read");
    let wrong: Vec<String> = edges
        .iter()
        .filter(|(p, d)| STAGES.contains(&p.as_str()) && STAGES.contains(&d.as_str()))
        .map(|(p, d)| format!("{p} -> {d}"))
        .collect();
    assert!(wrong.is_empty(), "stage crates depending on stage crates: {wrong:?}");
}

#[test]
fn artifacts_and_the_driver_side_crates_need_no_libtorch() {
    let metadata = metadata();
    let edges = edges(&metadata);
    // Transitively through workspace crates.
    for root in TORCH_FREE {
        let mut seen = vec![root.to_owned()];
        let mut i = 0;
        while i < seen.len() {
            let from = seen[i].clone();
            for (p, d) in &edges {
                if *p == from && !seen.contains(d) {
                    assert!(
                        !matches!(d.as_str(), "tch" | "torch-sys" | "brainpipe-tensor"),
                        "{root} reaches {d} through {from}"
                    );
                    if d.starts_with("brainpipe-") {
                        seen.push(d.clone());
                    }
                }
            }
            i += 1;
        }
    }
}

/// Every stage of the LibTorch worker has its params declared in brainpipe-params (so `plan`
/// checks them without starting the worker), and the worker holds no stage the driver runs
/// itself: a stage runs in the worker only if it needs LibTorch.
#[test]
fn every_worker_stage_declares_its_params_and_needs_the_worker() {
    let output = Command::new(env!("CARGO_BIN_EXE_brainpipe-torch"))
        .arg("catalogue")
        .output()
        .expect("brainpipe-torch runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let catalogue: Value = serde_json::from_slice(&output.stdout).expect("catalogue JSON");
    let stages = catalogue["stages"].as_array().expect("stages");
    assert!(stages.len() >= 8, "the worker's stages: {}", stages.len());
    let mut undeclared = Vec::new();
    for stage in stages {
        let name = stage["name"].as_str().expect("name");
        let has_params = stage["params"].as_array().is_some_and(|p| !p.is_empty());
        if has_params && brainpipe_params::canonical(name).is_none() {
            undeclared.push(name.to_owned());
        }
        assert!(
            !["clip.words", "clip.select_captions"].contains(&name),
            "{name} needs no LibTorch but is in the worker"
        );
    }
    assert!(undeclared.is_empty(), "worker stages without declared params: {undeclared:?}");
}
