//! A model directory whose `config.json` claims sizes its weights do not have is refused before
//! any variable is allocated (issue 15: size claims are checked against the bytes that back
//! them, never trusted for an allocation).

use brainpipe_clip::{ClipConfig, LoadedClip};
use tch::Device;

/// A change to a config.json.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

/// Saves the small model, rewrites its config.json through `edit`, loads it back.
fn load_edited(
    edit: impl Fn(&mut serde_json::Value),
) -> (tempfile::TempDir, Result<LoadedClip, String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    LoadedClip::new(&ClipConfig::small(), Device::Cpu).save(dir.path()).expect("save");
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
    edit(&mut config);
    std::fs::write(&path, config.to_string()).expect("rewrite");
    let loaded = LoadedClip::load(dir.path(), Device::Cpu).map_err(|e| e.to_string());
    (dir, loaded)
}

#[test]
fn config_sizes_the_weights_do_not_back_are_refused_before_allocating() {
    let (_dir, untouched) = load_edited(|_| {});
    untouched.expect("the saved directory loads");
    let cases: [(&str, Edit); 4] = [
        // 2^40 × 32 floats: 140 TB, were it allocated.
        ("token_embedding", Box::new(|c| c["text_config"]["vocab_size"] = (1_i64 << 40).into())),
        (
            "vision encoder layers",
            Box::new(|c| {
                let n = c["vision_config"]["num_hidden_layers"].as_i64().expect("layers");
                c["vision_config"]["num_hidden_layers"] = (n + 1).into();
            }),
        ),
        ("text_projection", Box::new(|c| c["projection_dim"] = 100_000.into())),
        ("fc1", Box::new(|c| c["text_config"]["intermediate_size"] = 1_000_000_000.into())),
    ];
    for (what, edit) in cases {
        let (dir, loaded) = load_edited(edit);
        let err = loaded.err().unwrap_or_else(|| panic!("{what}: refused"));
        let weights = dir.path().join("model.safetensors").display().to_string();
        assert!(err.starts_with(&format!("{weights}: weights: ")), "{what}: {err}");
        assert!(err.contains(what) && !err.contains('\n'), "{what}: {err}");
    }
}
