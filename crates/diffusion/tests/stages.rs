//! `diffusion.train` and `diffusion.decode` end to end on a tiny hand-made study (solid-colour
//! images, their colour as the "embedding"), through the standalone runner: outputs, schema,
//! byte-determinism, and the errors bad inputs get.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, ListBuilder, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{
    StageError, TableKind, f32_list_array, f32_list_field, run_standalone, write_table,
};
use brainpipe_diffusion::{Decode, Train, read_png, read_reconstructions, write_png};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

const COLOURS: [[f32; 3]; 8] = [
    [1.0, -1.0, -1.0],
    [-1.0, 1.0, -1.0],
    [-1.0, -1.0, 1.0],
    [1.0, 1.0, -1.0],
    [1.0, -1.0, 1.0],
    [-1.0, 1.0, 1.0],
    [1.0, 1.0, 1.0],
    [-1.0, -1.0, -1.0],
];

/// Writes stimuli.parquet, images/, embeddings.parquet of an 8-image study (6 train, 2 test).
fn study(dir: &Path) {
    std::fs::create_dir_all(dir.join("images")).expect("mkdir");
    let mut names = Vec::new();
    for (i, c) in COLOURS.iter().enumerate() {
        let name = format!("images/img-{i:05}.png");
        let image = Tensor::from_slice(c).view([3, 1, 1]).expand([3, 16, 16], false).contiguous();
        write_png(&dir.join(&name), &image).expect("png");
        names.push(name);
    }
    let split: Vec<&str> = (0..8).map(|i| if i < 6 { "train" } else { "test" }).collect();
    let mut captions = ListBuilder::new(StringBuilder::new());
    for _ in 0..8 {
        captions.values().append_value("a colour");
        captions.append(true);
    }
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("word", DataType::Utf8, true),
        Field::new("image", DataType::Utf8, true),
        Field::new("split", DataType::Utf8, false),
        Field::new(
            "captions",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(0..8)),
        Arc::new(StringArray::from(vec![None::<&str>; 8])),
        Arc::new(StringArray::from_iter_values(&names)),
        Arc::new(StringArray::from_iter_values(&split)),
        Arc::new(captions.finish()),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns).expect("batch");
    write_table(&dir.join("stimuli.parquet"), TableKind::new("stimuli", 1), &[batch])
        .expect("stimuli");
    let values: Vec<f32> = COLOURS.iter().flat_map(|c| [c[0], c[1], c[2], 0.5]).collect();
    let schema = Schema::new(vec![
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("stimulus_id", DataType::Int32, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("image", DataType::Utf8, true),
        f32_list_field("embedding", 4, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(&names)),
        Arc::new(Int32Array::from_iter_values(0..8)),
        Arc::new(StringArray::from_iter_values(["image"; 8])),
        Arc::new(StringArray::from_iter_values(&names)),
        f32_list_array(values, 4),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns).expect("batch");
    write_table(&dir.join("embeddings.parquet"), TableKind::new("embeddings", 1), &[batch])
        .expect("embeddings");
}

fn run(
    stage: &dyn brainpipe_core::DynStage,
    inputs: &[(&str, PathBuf)],
    params: Value,
    out: &Path,
) -> Result<brainpipe_core::Manifest, StageError> {
    let inputs: BTreeMap<String, PathBuf> =
        inputs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    run_standalone(stage, &inputs, &params, out, &BTreeMap::new())
}

fn train(dir: &Path, out: &Path) {
    let inputs = [
        ("stimuli", dir.join("stimuli.parquet")),
        ("images", dir.join("images")),
        ("embeddings", dir.join("embeddings.parquet")),
    ];
    let params = json!({"image_size": 0, "codec_factor": 2, "channels": [16, 32], "heads": 2, "steps": 4, "batch_size": 4, "device": "cpu"});
    run(&Train, &inputs, params, out).expect("diffusion.train");
}

#[test]
fn train_then_decode_writes_pngs_and_the_reconstructions_table_deterministically() {
    let dir = tempfile::tempdir().expect("tempdir");
    study(dir.path());
    let model = dir.path().join("train");
    train(dir.path(), &model);
    for file in [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
    ] {
        assert!(model.join("decoder").join(file).is_file(), "{file}");
    }
    let log: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("training.json")).expect("log"))
            .expect("json");
    assert_eq!(log["report"]["images"], 6, "the train split only");
    assert!(log["report"].get("seconds").is_none(), "no wall time in an artifact");

    // Runs a and b: the same batch size, byte-identical. Run c: another batch size, which changes
    // LibTorch's CPU kernels' summation order (last-bit differences the sampling loop amplifies),
    // so it is compared by pixel values, not bytes.
    let mut bytes = Vec::new();
    let mut pixels = Vec::new();
    for run_name in ["a", "b", "c"] {
        let out = dir.path().join(run_name);
        let inputs = [
            ("model", model.join("decoder")),
            ("embeddings", dir.path().join("embeddings.parquet")),
            ("stimuli", dir.path().join("stimuli.parquet")),
        ];
        let params =
            json!({"steps": 3, "batch_size": if run_name == "c" { 8 } else { 1 }, "device": "cpu"});
        run(&Decode, &inputs, params, &out).expect("diffusion.decode");
        let rows = read_reconstructions(&out.join("reconstructions.parquet")).expect("table");
        assert_eq!(rows.len(), 2, "the two test images");
        assert_eq!(rows[0].model, "truth");
        assert_eq!(rows[0].stimulus, "images/img-00006.png");
        assert_eq!(rows[1].image, "truth/all/trial-0001.png");
        let png: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| std::fs::read(out.join("images").join(&r.image)).expect("png"))
            .collect();
        bytes.push(png);
        let decoded: Vec<Tensor> = rows
            .iter()
            .map(|r| read_png(&out.join("images").join(&r.image)).expect("decode png"))
            .collect();
        pixels.push(Tensor::stack(&decoded, 0));
    }
    assert_eq!(bytes[0], bytes[1], "same inputs, params and seed: the same bytes");
    let levels = (&pixels[0] - &pixels[2]).abs().max().double_value(&[]) * 127.5;
    assert!(levels <= 3.0, "batch size 8 vs 1: {levels} grey levels apart");
}

#[test]
fn decode_refuses_bad_inputs_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    study(dir.path());
    let model = dir.path().join("train");
    train(dir.path(), &model);
    let decoder = model.join("decoder");
    let neither = run(
        &Decode,
        &[("model", decoder.clone())],
        json!({"device": "cpu"}),
        &dir.path().join("x"),
    );
    assert!(neither.expect_err("no rows").to_string().contains("exactly one of"));
    let no_stimuli = run(
        &Decode,
        &[("model", decoder.clone()), ("embeddings", dir.path().join("embeddings.parquet"))],
        json!({"device": "cpu"}),
        &dir.path().join("y"),
    );
    assert!(no_stimuli.expect_err("no split").to_string().contains("needs `stimuli`"));
    // A stimuli table where an embeddings table belongs.
    let wrong_kind = run(
        &Decode,
        &[
            ("model", decoder.clone()),
            ("embeddings", dir.path().join("stimuli.parquet")),
            ("stimuli", dir.path().join("stimuli.parquet")),
        ],
        json!({"device": "cpu"}),
        &dir.path().join("z"),
    );
    let err = wrong_kind.expect_err("wrong kind").to_string();
    assert!(err.contains("stimuli.parquet") && err.contains("embeddings"), "{err}");
    // A model directory with a corrupted weight file.
    let broken = dir.path().join("broken");
    copy_dir(&decoder, &broken);
    std::fs::write(
        broken.join("unet/diffusion_pytorch_model.safetensors"),
        b"\x08\0\0\0\0\0\0\0{}garbage",
    )
    .expect("write");
    let err = run(
        &Decode,
        &[
            ("model", broken),
            ("embeddings", dir.path().join("embeddings.parquet")),
            ("stimuli", dir.path().join("stimuli.parquet")),
        ],
        json!({"device": "cpu"}),
        &dir.path().join("w"),
    )
    .expect_err("corrupt weights")
    .to_string();
    assert!(err.contains("diffusion_pytorch_model.safetensors"), "{err}");
    assert!(!dir.path().join("w").exists(), "nothing half-written");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn loader_lists_every_missing_unexpected_and_misshaped_weight() {
    use brainpipe_core::{read_safetensors, write_safetensors};
    let fixtures = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../tests/fixtures/diffusion/image_variation");
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("p");
    copy_dir(&fixtures, &copy);
    let path = copy.join("unet/diffusion_pytorch_model.safetensors");
    let mut file = read_safetensors(&path).expect("read");
    file.tensors.retain(|t| t.name != "conv_in.bias");
    let stray = file.tensors[0].clone();
    file.tensors.push(brainpipe_core::NamedTensor { name: "extra.weight".to_owned(), ..stray });
    let target =
        file.tensors.iter_mut().find(|t| t.name == "conv_out.bias").expect("conv_out.bias");
    target.shape = vec![2, 2];
    let config = file.config(&path).expect("config").unwrap_or(json!({}));
    write_safetensors(&path, &file.tensors, "x/1", &config).expect("write");
    let err = brainpipe_diffusion::DiffusionPipeline::load(&copy, Device::Cpu, Kind::Float)
        .expect_err("bad weights")
        .to_string();
    assert!(err.contains("missing `conv_in.bias`"), "{err}");
    assert!(err.contains("unexpected `extra.weight`"), "{err}");
    assert!(err.contains("`conv_out.bias` has shape [2, 2]"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn predictions_are_averaged_over_repeats_per_model_subject_and_stimulus() {
    use brainpipe_diffusion::{DecodeRow, select_predictions};
    let row = |model: &str, subject: &str, trial: i32, stimulus: &str| DecodeRow {
        model: model.to_owned(),
        subject: subject.to_owned(),
        trial,
        stimulus: stimulus.to_owned(),
        fold: 0,
    };
    let rows = vec![
        row("ridge", "s2", 0, "a.png"),
        row("ridge", "s1", 0, "a.png"),
        row("ridge", "s2", 1, "b.png"),
        row("ridge", "s2", 2, "a.png"),
        row("base", "s2", 0, "a.png"),
    ];
    let values = [1.0f32, 10.0, 2.0, 20.0, 5.0, 50.0, 3.0, 30.0, 7.0, 70.0];
    let (out, v, dim) = select_predictions(rows.clone(), &values, 2, true, 0, 0);
    assert_eq!(dim, 2);
    let names: Vec<(&str, &str, i32)> =
        out.iter().map(|r| (r.model.as_str(), r.subject.as_str(), r.trial)).collect();
    assert_eq!(
        names,
        [("ridge", "s2", 0), ("ridge", "s1", 0), ("ridge", "s2", 1), ("base", "s2", 0)]
    );
    assert_eq!(v, [2.0, 20.0, 2.0, 20.0, 5.0, 50.0, 7.0, 70.0], "ridge/s2/a = mean of 1 and 3");
    let (out, v, _) = select_predictions(rows.clone(), &values, 2, false, 1, 0);
    assert_eq!(out.len(), 1, "only the first subject by name (s1), every presentation");
    assert_eq!(v, [2.0, 20.0]);
    let (out, _, _) = select_predictions(rows.clone(), &values, 2, false, 0, 0);
    assert_eq!(out.len(), 5);
    // The first stimulus by name (a.png) of the first subject by name (s2 has a and b; s1 only a).
    let (out, v, _) = select_predictions(rows.clone(), &values, 2, true, 0, 1);
    let kept: Vec<(&str, &str)> =
        out.iter().map(|r| (r.subject.as_str(), r.stimulus.as_str())).collect();
    assert_eq!(kept, [("s2", "a.png"), ("s1", "a.png"), ("s2", "a.png")], "b.png left out");
    assert_eq!(v, [2.0, 20.0, 2.0, 20.0, 7.0, 70.0]);
    let (out, _, _) = select_predictions(rows, &values, 2, true, 1, 8);
    assert_eq!(out.len(), 1, "s1's one stimulus: fewer than 8 is all of them");
}

#[test]
fn predictions_decode_only_the_split_and_the_first_stimuli_of_the_first_subjects() {
    use brainpipe_artifacts::{Predictions, write_predictions};
    let dir = tempfile::tempdir().expect("tempdir");
    study(dir.path());
    let model = dir.path().join("train");
    train(dir.path(), &model);
    // Two held-out subjects; s1's scans name images by file name (as events do), s2's by path.
    // img-00000 is a training image: with `stimuli`, `split: test` leaves it out.
    let shown = [("s1", "img-00007.png"), ("s1", "img-00006.png"), ("s1", "img-00000.png")];
    let shown = shown.iter().copied().chain([("s2", "images/img-00006.png")]);
    let mut p = Predictions { embedding_dim: 4, ..Predictions::default() };
    for (trial, (subject, stimulus)) in shown.enumerate() {
        p.model.push("ridge".into());
        p.subject.push(subject.into());
        p.trial.push(trial as i32);
        p.stimulus.push(stimulus.into());
        p.paradigm.push("image".into());
        p.fold.push(0);
        p.class.push(-1);
        p.embedding.extend([0.5, -0.5, 0.25, 0.5]);
    }
    let table = dir.path().join("predictions.parquet");
    write_predictions(&table, &p).expect("predictions");
    let decode = |params: Value, out: &str| {
        let inputs = [
            ("model", model.join("decoder")),
            ("predictions", table.clone()),
            ("stimuli", dir.path().join("stimuli.parquet")),
        ];
        let out = dir.path().join(out);
        run(&Decode, &inputs, params, &out).expect("diffusion.decode");
        let rows = read_reconstructions(&out.join("reconstructions.parquet")).expect("table");
        rows.into_iter().map(|r| (r.subject, r.stimulus)).collect::<Vec<_>>()
    };
    let all = decode(json!({"steps": 2, "device": "cpu"}), "all");
    let pair = |s: &str, t: &str| (s.to_owned(), t.to_owned());
    assert_eq!(
        all,
        [
            pair("s1", "img-00007.png"),
            pair("s1", "img-00006.png"),
            pair("s2", "images/img-00006.png")
        ],
        "the training image is not decoded"
    );
    let gallery =
        decode(json!({"steps": 2, "device": "cpu", "subjects": 1, "max_stimuli": 1}), "g");
    assert_eq!(gallery, [pair("s1", "img-00006.png")], "s1's first test image by name");
}
