//! Every table kind against pyarrow (the reference venv, `$BRAINPIPE_REF_PYTHON`):
//!
//! - pyarrow reads each kind with the documented schema (the declared columns, types and
//!   nullability, and the `brainpipe.schema` tag);
//! - pyarrow rewrites each with snappy, gzip, lz4, brotli, zstd and no compression, and the
//!   stages' typed readers read every rewrite back to the same values.
//!
//! Without the interpreter the test is skipped, except under `CI=1`, where it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int32Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_artifacts::*;
use brainpipe_core::{TableKind, f32_list_array, write_table};

const CODECS: [&str; 6] = ["snappy", "gzip", "lz4", "brotli", "zstd", "none"];
/// List widths: the examples of [`declared`].
const W: usize = 4;

fn python() -> Option<PathBuf> {
    brainpipe_core::reference_python("the pyarrow round trip")
}

fn voxel_table(features: bool) -> VoxelTable {
    VoxelTable {
        dims: [3, 2, 2],
        affine: [
            [2.0, 0.0, 0.0, -3.0],
            [0.0, 2.0, 0.0, 1.0],
            [0.0, 0.0, 2.0, 0.5],
            [0.0, 0.0, 0.0, 1.0],
        ],
        ijk: (0..W as i32).map(|c| [c % 3, c % 2, 1]).collect(),
        xyz: (0..W).map(|c| [c as f32, -0.5, 1.25]).collect(),
        roi: (0..W as i32)
            .map(|c| if features || c != 1 { Some(c / 2 + 1) } else { None })
            .collect(),
        scan_column: if features { vec![3, 1, 0, 2] } else { (0..W as i32).collect() },
    }
}

fn stimuli_batch() -> RecordBatch {
    let mut captions = ListBuilder::new(StringBuilder::new());
    captions.values().append_value("a dog on grass");
    captions.values().append_value("a brown dog");
    captions.append(true);
    captions.append(false);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(vec![0, 1])),
        Arc::new(StringArray::from(vec![None, Some("house")])),
        Arc::new(StringArray::from(vec![Some("images/img-00000.png"), None])),
        Arc::new(StringArray::from(vec!["train", "test"])),
        Arc::new(captions.finish()),
        Arc::new(Int32Array::from(vec![Some(1), None])),
        f32_list_array((0..2 * W).map(|v| v as f32 * 0.25).collect(), W),
    ];
    let schema = stimuli_schema(brainpipe_core::f32_list_field("vector", W, true));
    RecordBatch::try_new(Arc::new(schema), columns).expect("stimuli batch")
}

fn trial_meta(rows: usize) -> RecordBatch {
    let schema = scans_schema(W, "test");
    let meta = Schema::new(schema.fields()[..7].to_vec());
    let text = |prefix: &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values((0..rows).map(|r| format!("{prefix}{r}"))))
    };
    RecordBatch::try_new(
        Arc::new(meta),
        vec![
            text("sub-"),
            text("ses-"),
            text("run-"),
            Arc::new(Int32Array::from_iter_values(0..rows as i32)),
            text("word"),
            text("picture"),
            Arc::new(Float64Array::from(vec![Some(1.5), None, Some(9.0)][..rows].to_vec())),
        ],
    )
    .expect("meta")
}

fn write_scans(path: &Path) {
    let meta = trial_meta(3);
    let mut columns = meta.columns().to_vec();
    columns.push(f32_list_array((0..3 * W).map(|v| v as f32 - 2.5).collect(), W));
    let batch =
        RecordBatch::try_new(Arc::new(scans_schema(W, "test")), columns).expect("scans batch");
    write_table(path, SCANS, &[batch]).expect("scans");
}

fn write_features(path: &Path) {
    let meta = trial_meta(3);
    let mut writer = FeaturesWriter::create(path, &meta.schema(), W).expect("features");
    writer.write(&meta, (0..3 * W).map(|v| v as f32 * 0.5).collect()).expect("rows");
    writer.finish().expect("finish");
}

/// Writes one table of every kind with its own writer; returns kind → file.
fn write_every_kind(dir: &Path) -> BTreeMap<&'static str, PathBuf> {
    let path = |kind: TableKind| dir.join(format!("{}.parquet", kind.name));
    let mut files = BTreeMap::new();
    let mut add = |kind: TableKind| {
        files.insert(kind.name, path(kind));
        path(kind)
    };
    write_scans(&add(SCANS));
    write_voxels(&add(VOXELS), VOXELS, &voxel_table(false)).expect("voxels");
    write_table(&add(STIMULI), STIMULI, &[stimuli_batch()]).expect("stimuli");
    write_features(&add(FEATURES));
    write_voxels(&add(FEATURE_VOXELS), FEATURE_VOXELS, &voxel_table(true)).expect("f-voxels");
    let blocks = vec![
        RoiBlock { roi: 1, label: "roi-001".into(), first: 0, count: 2 },
        RoiBlock { roi: 2, label: "roi-002".into(), first: 2, count: 2 },
    ];
    write_rois(&add(ROIS), &blocks).expect("rois");
    let rows = [TemplateRow { roi: 1, z: 0, count: 2 }, TemplateRow { roi: 2, z: 1, count: 2 }];
    write_template(&add(TEMPLATE), &rows).expect("template");
    let embedded = vec![
        EmbeddingRow {
            stimulus: "images/a.png".into(),
            stimulus_id: 0,
            kind: EmbeddingKind::Caption,
            caption_index: Some(1),
            caption: Some("a dog".into()),
            augmentation: None,
            image: None,
        },
        EmbeddingRow {
            stimulus: "images/a.png".into(),
            stimulus_id: 0,
            kind: EmbeddingKind::Augmented,
            caption_index: None,
            caption: None,
            augmentation: Some(2),
            image: Some("augmented/a-2.png".into()),
        },
    ];
    let values: Vec<f32> = (0..2 * W).map(|v| v as f32 / 8.0).collect();
    write_embeddings(&add(EMBEDDINGS), &embedded, values, W).expect("embeddings");
    let target = |stimulus: &str, class: i32, caption: Option<&str>| Target {
        stimulus: stimulus.into(),
        class,
        target: (0..W).map(|v| (v as i32 + class) as f32).collect(),
        caption: caption.map(Into::into),
        caption_index: caption.map(|_| 3),
        similarity: caption.map(|_| 0.25),
    };
    write_targets(
        &add(TARGETS),
        &[target("dog", 0, None), target("images/a.png", 1, Some("a dog"))],
    )
    .expect("targets");
    let predictions = Predictions {
        model: vec!["base".into(); 2],
        subject: vec!["sub-01".into(), "sub-02".into()],
        trial: vec![0, 5],
        stimulus: vec!["dog".into(), "cat".into()],
        paradigm: vec!["picture".into(); 2],
        fold: vec![0, 1],
        class: vec![0, -1],
        embedding: (0..2 * W).map(|v| v as f32).collect(),
        embedding_dim: W,
        scores: (0..2 * W).map(|v| -(v as f32)).collect(),
        classes: W,
    };
    write_predictions(&add(PREDICTIONS), &predictions).expect("predictions");
    let records = vec![EpochRecord {
        model: "base".into(),
        fold: 0,
        held_out: "sub-01".into(),
        epoch: 3,
        lr: 1e-3,
        train_loss: -0.5,
        train_regression: Some(-0.25),
        val_top1: Some(0.125),
        ..EpochRecord::default()
    }];
    write_training(&add(TRAINING), &records).expect("training");
    let metrics = vec![MetricRow {
        model: "ridge".into(),
        subject: "all".into(),
        fold: -1,
        paradigm: "all".into(),
        metric: "rank_count".into(),
        index: Some(2),
        value: 7.0,
    }];
    write_metrics(&add(METRICS), &metrics).expect("metrics");
    let reconstructions = vec![Reconstruction {
        model: "truth".into(),
        subject: "all".into(),
        trial: 3,
        stimulus: "images/img-00003.png".into(),
        fold: -1,
        image: "truth/all/trial-0003.png".into(),
        seed: -4_611_686_018_427_387_904,
    }];
    write_reconstructions(&add(RECONSTRUCTIONS), &reconstructions).expect("reconstructions");
    let image_metrics = vec![
        ImageMetricRow {
            model: "ridge".into(),
            subject: "sub-01".into(),
            trial: 3,
            stimulus: "images/img-00003.png".into(),
            metric: "ssim_gaussian".into(),
            value: 0.625,
        },
        ImageMetricRow {
            model: "ridge".into(),
            subject: "all".into(),
            trial: -1,
            stimulus: String::new(),
            metric: "pixcorr.mean".into(),
            value: -0.125,
        },
    ];
    write_image_metrics(&add(IMAGE_METRICS), &image_metrics).expect("image metrics");
    let trials = vec![ClipTrial {
        model: "ridge".into(),
        subject: "sub-01".into(),
        mode: "averaged".into(),
        trial: -1,
        stimulus: "images/img-00001.png".into(),
        fold: 0,
        rank_test: 2,
        rank_all: 5,
        retrieved: vec!["images/img-00004.png".into(), "images/img-00001.png".into()],
        caption: "a red square".into(),
        caption_hit: false,
    }];
    write_clip_trials(&add(CLIP_TRIALS), &trials).expect("clip trials");
    files
}

/// What the stages' typed reader of `kind` makes of `path`, as text to compare.
fn read_typed(kind: &str, path: &Path) -> String {
    let trials = |kind| {
        let t = read_trials(path, kind, W, &[0, 1, 2, 3]).expect("trials");
        format!("{:?} {:?}", t.values, t.meta.columns())
    };
    match kind {
        "scans" => trials(SCANS),
        "features" => trials(FEATURES),
        "voxels" => format!("{:?}", read_voxels(path, VOXELS).expect("voxels")),
        "feature-voxels" => format!("{:?}", read_voxels(path, FEATURE_VOXELS).expect("voxels")),
        "stimuli" => format!("{:?}", read_stimuli(path).expect("stimuli")),
        "rois" => format!("{:?}", read_rois(path).expect("rois")),
        "template" => format!("{:?}", read_template(path).expect("template")),
        "embeddings" => format!("{:?}", read_embeddings(path).expect("embeddings")),
        "targets" => format!("{:?}", read_targets(path).expect("targets")),
        "predictions" => format!("{:?}", read_predictions(path).expect("predictions")),
        "training" => format!("{:?}", read_training(path).expect("training")),
        "metrics" => format!("{:?}", read_metrics(path).expect("metrics")),
        "reconstructions" => {
            format!("{:?}", read_reconstructions(path).expect("reconstructions"))
        }
        "image-metrics" => format!("{:?}", read_image_metrics(path).expect("image metrics")),
        "clip-trials" => format!("{:?}", read_clip_trials(path).expect("clip trials")),
        other => panic!("no typed reader for `{other}`"),
    }
}

/// pyarrow's name of an Arrow type.
fn pyarrow_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "string".into(),
        DataType::Int32 => "int32".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Int64 => "int64".into(),
        DataType::Boolean => "bool".into(),
        DataType::FixedSizeList(item, n) => format!(
            "fixed_size_list<{}: {}{}>[{n}]",
            item.name(),
            pyarrow_type(item.data_type()),
            if item.is_nullable() { "" } else { " not null" }
        ),
        DataType::List(item) => format!(
            "list<{}: {}{}>",
            item.name(),
            pyarrow_type(item.data_type()),
            if item.is_nullable() { "" } else { " not null" }
        ),
        other => panic!("no pyarrow name for {other}"),
    }
}

const SCRIPT: &str = r#"
import json, sys
import pyarrow.parquet as pq
spec = json.loads(sys.argv[1])
problems = []
for kind, entry in spec.items():
    table = pq.read_table(entry["path"])
    tag = (table.schema.metadata or {}).get(b"brainpipe.schema", b"").decode()
    if tag != entry["tag"]:
        problems.append(f"{kind}: brainpipe.schema is {tag!r}, expected {entry['tag']!r}")
    got = [[f.name, str(f.type), f.nullable] for f in table.schema]
    if got != entry["fields"]:
        problems.append(f"{kind}: pyarrow sees {got}, documented {entry['fields']}")
    for codec in entry["codecs"]:
        pq.write_table(table, f"{entry['path']}.{codec}.parquet", compression=codec)
        meta = pq.ParquetFile(f"{entry['path']}.{codec}.parquet").metadata
        used = {meta.row_group(0).column(c).compression for c in range(meta.num_columns)}
        want = {"none": "UNCOMPRESSED", "lz4": "LZ4"}.get(codec, codec.upper())
        if not all(u.startswith(want) for u in used):
            problems.append(f"{kind}: asked pyarrow for {codec}, it wrote {used}")
print("\n".join(problems))
"#;

#[test]
fn every_kind_round_trips_through_pyarrow_and_reads_back_under_every_codec() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_every_kind(dir.path());
    let declared: BTreeMap<&str, Declared> =
        declared().into_iter().map(|d| (d.kind.name, d)).collect();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        declared.keys().collect::<Vec<_>>(),
        "one written table per declared kind"
    );
    let mut spec = serde_json::Map::new();
    for (kind, path) in &files {
        let d = &declared[kind];
        // `features` are the scans' identifying columns as read, then `voxels`.
        let fields: Vec<serde_json::Value> = d
            .schema
            .fields()
            .iter()
            .map(|f: &Arc<Field>| {
                serde_json::json!([f.name(), pyarrow_type(f.data_type()), f.is_nullable()])
            })
            .collect();
        spec.insert(
            (*kind).to_owned(),
            serde_json::json!({"path": path, "tag": d.kind.tag(), "fields": fields, "codecs": CODECS}),
        );
    }
    let output = Command::new(&python)
        .args(["-c", SCRIPT, &serde_json::Value::Object(spec).to_string()])
        .output()
        .expect("BRAINPIPE_REF_PYTHON runs");
    assert!(output.status.success(), "pyarrow: {}", String::from_utf8_lossy(&output.stderr));
    let problems = String::from_utf8_lossy(&output.stdout);
    assert!(problems.trim().is_empty(), "{problems}");
    for (kind, path) in &files {
        let original = read_typed(kind, path);
        for codec in CODECS {
            let rewritten = PathBuf::from(format!("{}.{codec}.parquet", path.display()));
            assert_eq!(read_typed(kind, &rewritten), original, "`{kind}` rewritten with {codec}");
        }
    }
}
