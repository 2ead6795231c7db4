//! `eval.images` run the way every runner runs it (`run_standalone`): a decoder's
//! `reconstructions` table + `images/` against a study's stimuli table + images, with CLIP-like
//! features; plain directories; the report fragment through `eval.report`; bad inputs as one-line
//! errors naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_artifacts::{MetricRow, write_metrics};
use brainpipe_core::{TableKind, f32_list_array, f32_list_field, run_standalone, write_table};
use brainpipe_eval::Report;
use brainpipe_eval::images::{
    Images, MINDEYE_SIZE, pair_metrics, read_image_metrics, read_png, two_way,
};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/fixtures/images")
    .join(name)
}

fn utf8(values: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn table(path: &Path, kind: &'static str, fields: Vec<Field>, columns: Vec<ArrayRef>) {
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch");
    write_table(path, TableKind::new(kind, 1), &[batch]).expect("table");
}

/// The seen images of the study and their reconstructions' sources.
const SEEN: [&str; 3] = ["astronaut.png", "scene_a.png", "chelsea.png"];
const RECON: [&str; 3] = ["coffee.png", "scene_b.png", "astronaut.png"];

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    stimuli: PathBuf,
    images: PathBuf,
    reconstructions: PathBuf,
}

/// study/{stimuli.parquet, images/img-0000k.png}; decode/{reconstructions.parquet, images/…}
/// with models `ridge` (RECON) and `truth` (the seen images themselves), one subject each.
fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let study = root.join("study");
    let images = study.join("images");
    std::fs::create_dir_all(&images).expect("mkdir");
    let names: Vec<String> = (0..3).map(|k| format!("images/img-{k:05}.png")).collect();
    for (k, n) in SEEN.iter().enumerate() {
        std::fs::copy(fixture(n), study.join(&names[k])).expect("copy");
    }
    let stimuli = study.join("stimuli.parquet");
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    table(
        &stimuli,
        "stimuli",
        vec![
            Field::new("id", DataType::Int32, false),
            Field::new("image", DataType::Utf8, true),
            Field::new("split", DataType::Utf8, false),
        ],
        vec![Arc::new(Int32Array::from(vec![0, 1, 2])), utf8(&refs), utf8(&["test"; 3])],
    );
    let decode = root.join("decode");
    let mut rows: Vec<(String, String, i32, String, String)> = Vec::new();
    for (model, sources) in [("ridge", RECON), ("truth", SEEN)] {
        std::fs::create_dir_all(decode.join("images").join(model)).expect("mkdir");
        for (k, src) in sources.iter().enumerate() {
            let rel = format!("{model}/sub-01_trial{k}.png");
            std::fs::copy(fixture(src), decode.join("images").join(&rel)).expect("copy");
            rows.push((model.into(), "sub-01".into(), k as i32, names[k].clone(), rel));
        }
    }
    let reconstructions = decode.join("reconstructions.parquet");
    let col = |f: fn(&(String, String, i32, String, String)) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    table(
        &reconstructions,
        "reconstructions",
        vec![
            Field::new("model", DataType::Utf8, false),
            Field::new("subject", DataType::Utf8, false),
            Field::new("trial", DataType::Int32, false),
            Field::new("stimulus", DataType::Utf8, false),
            Field::new("fold", DataType::Int32, false),
            Field::new("image", DataType::Utf8, false),
            Field::new("seed", DataType::Int64, false),
        ],
        vec![
            col(|r| r.0.as_str()),
            col(|r| r.1.as_str()),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
            col(|r| r.3.as_str()),
            Arc::new(Int32Array::from(vec![0; rows.len()])),
            col(|r| r.4.as_str()),
            Arc::new(Int64Array::from(vec![7; rows.len()])),
        ],
    );
    World { _dir: dir, root, stimuli, images, reconstructions }
}

/// An `embeddings/1` table of `kind = image` rows.
fn embeddings(path: &Path, rows: &[(&str, &str, [f32; 3])]) {
    let stim: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let img: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let n = rows.len();
    table(
        path,
        "embeddings",
        vec![
            Field::new("stimulus", DataType::Utf8, false),
            Field::new("stimulus_id", DataType::Int32, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("caption_index", DataType::Int32, true),
            Field::new("caption", DataType::Utf8, true),
            Field::new("augmentation", DataType::Int32, true),
            Field::new("image", DataType::Utf8, true),
            f32_list_field("embedding", 3, false),
        ],
        vec![
            utf8(&stim),
            Arc::new(Int32Array::from_iter_values(0..n as i32)),
            utf8(&vec!["image"; n]),
            Arc::new(Int32Array::from(vec![None; n])),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
            Arc::new(Int32Array::from(vec![None; n])),
            utf8(&img),
            f32_list_array(rows.iter().flat_map(|r| r.2).collect(), 3),
        ],
    );
}

fn run(inputs: &[(&str, &Path)], params: serde_json::Value, out: &Path) -> Result<(), String> {
    let inputs: BTreeMap<String, PathBuf> =
        inputs.iter().map(|(k, v)| ((*k).to_owned(), v.to_path_buf())).collect();
    run_standalone(&Images, &inputs, &params, out, &BTreeMap::new())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn table_mode_values_summaries_features_and_report() {
    let w = world();
    let seen_features = w.root.join("seen_emb.parquet");
    let names: Vec<String> = (0..3).map(|k| format!("images/img-{k:05}.png")).collect();
    embeddings(
        &seen_features,
        &[
            (names[0].as_str(), names[0].as_str(), [1.0, 0.0, 0.0]),
            (names[1].as_str(), names[1].as_str(), [0.0, 1.0, 0.0]),
            (names[2].as_str(), names[2].as_str(), [0.0, 0.0, 1.0]),
        ],
    );
    let recon_features = w.root.join("recon_emb.parquet");
    embeddings(
        &recon_features,
        &[
            ("r0", "ridge/sub-01_trial0.png", [0.9, 0.2, 0.0]),
            ("r1", "ridge/sub-01_trial1.png", [0.0, 0.1, 1.0]),
            ("r2", "ridge/sub-01_trial2.png", [0.1, 0.0, 0.8]),
            ("t0", "truth/sub-01_trial0.png", [1.0, 0.0, 0.0]),
            ("t1", "truth/sub-01_trial1.png", [0.0, 1.0, 0.0]),
            ("t2", "truth/sub-01_trial2.png", [0.0, 0.0, 1.0]),
        ],
    );
    let out = w.root.join("eval");
    run(
        &[
            ("reconstructions", &w.reconstructions),
            ("stimuli", &w.stimuli),
            ("images", &w.images),
            ("reconstruction_features", &recon_features),
            ("seen_features", &seen_features),
        ],
        json!({"pixel_features": 16}),
        &out,
    )
    .expect("eval.images");
    let rows = read_image_metrics(&out.join("image_metrics.parquet")).expect("read");
    let get = |model: &str, trial: i32, metric: &str| {
        rows.iter()
            .find(|r| r.model == model && r.trial == trial && r.metric == metric)
            .map(|r| r.value)
            .unwrap_or_else(|| panic!("no {model} {trial} {metric}"))
    };
    // Per pair: the library functions on the same files.
    for k in 0..3 {
        let seen = read_png(&fixture(SEEN[k])).expect("seen");
        let recon = read_png(&fixture(RECON[k])).expect("recon");
        let m = pair_metrics(&seen, &recon, MINDEYE_SIZE, true);
        assert_eq!(get("ridge", k as i32, "pixcorr"), m.pixcorr);
        assert_eq!(get("ridge", k as i32, "ssim_gaussian"), m.ssim_gaussian);
        assert_eq!(get("ridge", k as i32, "ssim_uniform7"), m.ssim_uniform7);
        assert!((get("truth", k as i32, "ssim_gaussian") - 1.0).abs() < 1e-12);
        assert_eq!(get("truth", k as i32, "2way_pixels"), 1.0);
    }
    // Features: ridge's reconstruction 1 looks like image 2 (loses to it), the others win.
    let ridge_clip: Vec<f64> = (0..3).map(|k| get("ridge", k, "2way_clip")).collect();
    let reals = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let preds: Vec<f64> =
        [0.9f32, 0.2, 0.0, 0.0, 0.1, 1.0, 0.1, 0.0, 0.8].iter().map(|&v| f64::from(v)).collect();
    assert_eq!(ridge_clip, two_way(&reals, &preds, 3));
    assert_eq!(ridge_clip[1], 0.5);
    // Summaries: mean over the pairs, n, and subject `all`.
    let mean = rows
        .iter()
        .find(|r| r.model == "ridge" && r.subject == "all" && r.metric == "ssim_gaussian.mean")
        .expect("summary");
    let direct = (0..3).map(|k| get("ridge", k, "ssim_gaussian")).sum::<f64>() / 3.0;
    assert!((mean.value - direct).abs() < 1e-15 && mean.trial == -1);
    assert!(
        rows.iter().any(|r| r.subject == "sub-01" && r.metric == "2way_clip.n" && r.value == 3.0)
    );

    // The report gets MindEye's table and the distributions.
    let metrics = w.root.join("metrics.parquet");
    write_metrics(
        &metrics,
        &[MetricRow {
            model: "ridge".into(),
            subject: "all".into(),
            fold: -1,
            paradigm: "all".into(),
            metric: "top1".into(),
            index: None,
            value: 0.5,
        }],
    )
    .expect("metrics");
    let report = w.root.join("report");
    let inputs: BTreeMap<String, PathBuf> = [
        ("metrics".to_owned(), metrics),
        ("image_metrics".to_owned(), out.join("image_metrics.parquet")),
    ]
    .into();
    run_standalone(&Report, &inputs, &json!({}), &report, &BTreeMap::new()).expect("report");
    let html = std::fs::read_to_string(report.join("report.html")).expect("html");
    for needle in
        ["Image reconstructions", "PixCorr ↑", "CLIP 2-way ↑", "pixels 2-way ↑", "Distributions"]
    {
        assert!(html.contains(needle), "report lacks {needle}");
    }
    assert!(html.trim_end().ends_with("</body></html>"));
}

#[test]
fn plain_directories_pair_by_file_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (seen, recon) = (dir.path().join("seen"), dir.path().join("recon"));
    std::fs::create_dir_all(&seen).expect("mkdir");
    std::fs::create_dir_all(&recon).expect("mkdir");
    for (k, (s, r)) in SEEN.iter().zip(RECON).enumerate() {
        std::fs::copy(fixture(s), seen.join(format!("{k}.png"))).expect("copy");
        std::fs::copy(fixture(r), recon.join(format!("{k}.png"))).expect("copy");
    }
    let out = dir.path().join("out");
    let inputs = [("reconstruction_images", recon.as_path()), ("images", seen.as_path())];
    let err = run(&inputs, json!({}), &dir.path().join("x")).expect_err("no model");
    assert!(err.contains("`model`"), "{err}");
    run(&inputs, json!({"model": "mine", "size": 64, "antialias": false}), &out).expect("dirs");
    let rows = read_image_metrics(&out.join("image_metrics.parquet")).expect("read");
    let s = read_png(&seen.join("1.png")).expect("png");
    let r = read_png(&recon.join("1.png")).expect("png");
    let m = pair_metrics(&s, &r, 64, false);
    let v = rows.iter().find(|x| x.trial == 1 && x.metric == "ssim_gaussian").expect("row");
    assert_eq!((v.model.as_str(), v.value), ("mine", m.ssim_gaussian));
    // A reconstruction without a seen image of the same name is refused, naming it.
    std::fs::copy(fixture("coffee.png"), recon.join("extra.png")).expect("copy");
    let err = run(&inputs, json!({"model": "m"}), &dir.path().join("y")).expect_err("unpaired");
    assert!(err.contains("extra.png") && err.contains("no seen image"), "{err}");
}

#[test]
fn bad_inputs_are_one_line_errors_naming_the_file() {
    let w = world();
    let base = [
        ("reconstructions", w.reconstructions.as_path()),
        ("stimuli", w.stimuli.as_path()),
        ("images", w.images.as_path()),
    ];
    let check = |err: String, needles: &[&str]| {
        assert!(!err.contains('\n'), "multi-line: {err}");
        for n in needles {
            assert!(err.contains(n), "`{err}` lacks `{n}`");
        }
    };
    // An unreadable PNG.
    let victim = w.root.join("decode/images/ridge/sub-01_trial1.png");
    std::fs::write(&victim, b"\x89PNG\r\n\x1a\n garbage").expect("write");
    let err = run(&base, json!({}), &w.root.join("o1")).expect_err("corrupt png");
    check(err, &["sub-01_trial1.png", "not a readable PNG"]);
    // A missing reconstruction file.
    std::fs::remove_file(&victim).expect("rm");
    let err = run(&base, json!({}), &w.root.join("o2")).expect_err("missing png");
    check(err, &["sub-01_trial1.png", "not found"]);
    std::fs::copy(fixture("coffee.png"), &victim).expect("restore");
    // A stimulus the stimuli table does not know.
    let other = w.root.join("stimuli_short.parquet");
    table(
        &other,
        "stimuli",
        vec![
            Field::new("id", DataType::Int32, false),
            Field::new("image", DataType::Utf8, true),
            Field::new("split", DataType::Utf8, false),
        ],
        vec![Arc::new(Int32Array::from(vec![0])), utf8(&["images/img-00000.png"]), utf8(&["test"])],
    );
    let mut inputs = base;
    inputs[1] = ("stimuli", other.as_path());
    let err = run(&inputs, json!({}), &w.root.join("o3")).expect_err("unknown stimulus");
    check(err, &["reconstructions.parquet", "img-00001.png", "has no image"]);
    // Features: mismatched counts (a reconstruction without features) and widths.
    let seen_features = w.root.join("seen_emb.parquet");
    embeddings(
        &seen_features,
        &[("images/img-00000.png", "images/img-00000.png", [1.0, 0.0, 0.0])],
    );
    let recon_features = w.root.join("recon_emb.parquet");
    embeddings(&recon_features, &[("r0", "ridge/sub-01_trial0.png", [1.0, 0.0, 0.0])]);
    let mut with_features = base.to_vec();
    with_features.push(("reconstruction_features", &recon_features));
    with_features.push(("seen_features", &seen_features));
    let err = run(&with_features, json!({}), &w.root.join("o4")).expect_err("missing features");
    check(err, &["recon_emb.parquet", "no features of"]);
    let err =
        run(&with_features[..4], json!({}), &w.root.join("o5")).expect_err("one feature table");
    check(err, &["seen_features"]);
    // Not a reconstructions table.
    let mut wrong = base;
    wrong[0] = ("reconstructions", w.stimuli.as_path());
    let err = run(&wrong, json!({}), &w.root.join("o6")).expect_err("wrong kind");
    check(err, &["stimuli.parquet"]);
    assert!(!w.root.join("o1/image_metrics.parquet").exists(), "nothing half-written");
}
