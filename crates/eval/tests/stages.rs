//! `eval.words` chained over two models (with a training table), the same models as one list
//! input, and `eval.report` on the result, run the way every runner runs them (`run_standalone`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_artifacts::{
    EpochRecord, Predictions, read_metrics, write_predictions, write_training,
};
use brainpipe_core::{TableKind, f32_list_array, f32_list_field, run_standalone, write_table};
use brainpipe_eval::{ALL, Report, Words};
use serde_json::json;

#[test]
fn words_chain_and_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = dir.path().join("targets.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("class", DataType::Int32, false),
        f32_list_field("target", 2, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["a", "b", "c"])),
        Arc::new(Int32Array::from(vec![0, 1, 2])),
        f32_list_array(vec![1.0, 0.0, 0.0, 1.0, -1.0, -0.5], 2),
    ];
    let batch = RecordBatch::try_new(schema, columns).expect("batch");
    write_table(&targets, TableKind::new("targets", 1), &[batch]).expect("targets");
    let mut previous: Option<PathBuf> = None;
    for model in ["ridge", "base"] {
        let predictions = dir.path().join(format!("{model}.parquet"));
        write_predictions(
            &predictions,
            &Predictions {
                model: vec![model.into(); 3],
                subject: vec!["sub-01".into(); 3],
                trial: vec![0, 1, 2],
                stimulus: vec!["a".into(), "b".into(), "c".into()],
                paradigm: vec!["picture".into(); 3],
                fold: vec![0; 3],
                class: vec![0, 1, 2],
                embedding: vec![0.9, 0.1, 0.1, 0.8, -0.7, -0.6],
                embedding_dim: 2,
                ..Predictions::default()
            },
        )
        .expect("predictions");
        let mut inputs: BTreeMap<String, PathBuf> =
            [("predictions".to_owned(), predictions), ("targets".to_owned(), targets.clone())]
                .into();
        if model == "base" {
            let training = dir.path().join("training.parquet");
            let record = EpochRecord {
                model: "base".into(),
                held_out: "sub-01".into(),
                train_loss: -0.2,
                ..Default::default()
            };
            write_training(&training, &[record]).expect("training");
            inputs.insert("training".into(), training);
        }
        if let Some(p) = &previous {
            inputs.insert("previous".into(), p.clone());
        }
        let out = dir.path().join(format!("eval-{model}"));
        run_standalone(&Words, &inputs, &json!({}), &out, &BTreeMap::new()).expect("eval.words");
        previous = Some(out.join("metrics.parquet"));
    }
    let metrics = previous.expect("metrics");
    let rows = read_metrics(&metrics).expect("read");

    // The same two models as one list input (`predictions#0`, `predictions#1`): the same rows.
    let listed: BTreeMap<String, PathBuf> = [
        ("predictions#0".to_owned(), dir.path().join("ridge.parquet")),
        ("predictions#1".to_owned(), dir.path().join("base.parquet")),
        ("training#0".to_owned(), dir.path().join("training.parquet")),
        ("targets".to_owned(), targets.clone()),
    ]
    .into();
    let out = dir.path().join("eval-list");
    run_standalone(&Words, &listed, &json!({}), &out, &BTreeMap::new()).expect("list inputs");
    assert_eq!(read_metrics(&out.join("metrics.parquet")).expect("read"), rows);
    // The same model twice is refused, naming the second table; so is `model` over a list.
    let twice: BTreeMap<String, PathBuf> = [
        ("predictions#0".to_owned(), dir.path().join("base.parquet")),
        ("predictions#1".to_owned(), dir.path().join("base.parquet")),
        ("targets".to_owned(), targets.clone()),
    ]
    .into();
    let err = run_standalone(&Words, &twice, &json!({}), &dir.path().join("x"), &BTreeMap::new())
        .expect_err("duplicate model");
    assert!(err.to_string().contains("model `base` is also in"), "{err}");
    let err = run_standalone(
        &Words,
        &listed,
        &json!({"model": "m"}),
        &dir.path().join("y"),
        &BTreeMap::new(),
    )
    .expect_err("model over a list");
    assert!(err.to_string().contains("`model` names one predictions table"), "{err}");
    // `targets` takes one artifact.
    let mut bad = listed.clone();
    bad.insert("targets#1".to_owned(), targets.clone());
    let err = run_standalone(&Words, &bad, &json!({}), &dir.path().join("z"), &BTreeMap::new())
        .expect_err("list on a single input");
    assert!(err.to_string().contains("takes one artifact"), "{err}");
    for model in ["ridge", "base"] {
        let top1 = rows.iter().find(|r| {
            r.model == model && r.subject == ALL && r.paradigm == ALL && r.metric == "top1"
        });
        assert_eq!(top1.map(|r| r.value), Some(1.0), "{model}");
    }
    assert!(rows.iter().any(|r| r.metric == "curve.train_loss" && r.model == "base"));
    let out = dir.path().join("report");
    let inputs: BTreeMap<String, PathBuf> = [("metrics".to_owned(), metrics)].into();
    run_standalone(&Report, &inputs, &json!({"title": "t"}), &out, &BTreeMap::new())
        .expect("eval.report");
    let html = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert!(html.contains("ridge") && html.contains("base") && html.contains("<svg"));
}
