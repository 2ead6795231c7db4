//! CPU determinism: two runs with the same seed and one LibTorch thread write byte-identical
//! predictions and model files. Its own test binary, because LibTorch's random generator is
//! process-global and tests of one binary run on parallel threads.

mod common;

use std::collections::BTreeMap;

use brainpipe_core::run_standalone;
use brainpipe_models::Train;
use serde_json::json;

#[test]
fn cpu_training_is_deterministic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let study = common::write_study(dir.path(), 2, 20, 8, 0.5);
    let ins: BTreeMap<String, std::path::PathBuf> = [
        ("features".to_owned(), study.features.clone()),
        ("targets".to_owned(), study.targets.clone()),
    ]
    .into();
    let params =
        json!({"hidden": [48, 24], "epochs": 4, "batch_size": 20, "device": "cpu", "threads": 1});
    let mut runs = Vec::new();
    for k in 0..2 {
        if k == 1 {
            // The second run starts from another generator state and after other draws: the
            // stage must seed everything it uses itself.
            tch::manual_seed(12345);
            let draws = tch::Tensor::randn([1000], (tch::Kind::Float, tch::Device::Cpu));
            assert_eq!(draws.numel(), 1000);
        }
        let out = dir.path().join(format!("run{k}"));
        run_standalone(&Train, &ins, &params, &out, &BTreeMap::new()).expect("train");
        runs.push(std::fs::read(out.join("predictions.parquet")).expect("read"));
        for f in ["fold-00.safetensors", "fold-01.safetensors"] {
            runs.push(std::fs::read(out.join("model").join(f)).expect("read"));
        }
    }
    assert!(runs[0] == runs[3] && runs[1] == runs[4] && runs[2] == runs[5], "reruns differ");
}
