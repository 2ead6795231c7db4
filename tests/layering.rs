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
const TORCH_FREE: [&str; 8] = [
    "brainpipe-core",
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
        .current_dir(env!("CARGO_MANIFEST_DIR"))
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
