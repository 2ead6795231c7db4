//! The Brain2Word demo chain without the pipeline runner (the library calls `make demo` makes
//! through `pipelines/brain2word.yaml`): synthetic study → ingest → features → targets → ridge,
//! base, roi, autoencoder, meanreg → eval.words → eval.report. Prints the results table.
//!
//! `cargo run --release -p brainpipe-models --example brain2word_demo -- OUT [epochs] [hidden,hidden] [extra params JSON]`
//! (defaults 20 and 2000,200; the pipeline's figures: `OUT 20 2000,200 '{"loss":"regression"}'`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use brainpipe_core::{
    DynStage, TableKind, f32_list_array, f32_list_field, f32_list_values, read_table,
    run_standalone, write_table,
};
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error>;

fn stage(name: &str) -> Result<Arc<dyn DynStage>, Error> {
    brainpipe_ingest::stages()
        .into_iter()
        .chain(brainpipe_features::stages())
        .chain(brainpipe_models::stages())
        .chain(brainpipe_eval::stages())
        .find(|s| s.name() == name)
        .ok_or_else(|| format!("no stage {name}").into())
}

fn run(name: &str, out: &Path, inputs: &[(&str, PathBuf)], params: Value) -> Result<(), Error> {
    if out.join("manifest.json").is_file() {
        return Ok(());
    }
    let started = Instant::now();
    let ins: BTreeMap<String, PathBuf> =
        inputs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    let manifest = run_standalone(stage(name)?.as_ref(), &ins, &params, out, &BTreeMap::new())?;
    eprintln!(
        "{name:>24} {:>7.1} s  {}",
        started.elapsed().as_secs_f64(),
        serde_json::to_string(&manifest.notes)?
    );
    Ok(())
}

/// `clip.words` on the study's own vectors: stimulus = word, class = id, target = vector.
fn targets(stimuli: &Path, out: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(out)?;
    let path = out.join("targets.parquet");
    let (_, batches) = read_table(stimuli, None)?;
    let mut words = Vec::new();
    let mut ids = Vec::new();
    let mut values = Vec::new();
    let mut dim = 0;
    for b in &batches {
        let w = b
            .column_by_name("word")
            .and_then(|a| a.as_any().downcast_ref::<StringArray>())
            .ok_or("word")?;
        let id = b
            .column_by_name("id")
            .and_then(|a| a.as_any().downcast_ref::<Int32Array>())
            .ok_or("id")?;
        let (v, d) = f32_list_values(
            stimuli,
            "vector",
            b.column_by_name("vector").ok_or("vector")?.as_ref(),
        )?;
        for i in 0..b.num_rows() {
            words.push(w.value(i).to_owned());
            ids.push(id.value(i));
        }
        values.extend_from_slice(v);
        dim = d;
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("stimulus", DataType::Utf8, false),
        Field::new("class", DataType::Int32, false),
        f32_list_field("target", dim, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(words)),
            Arc::new(Int32Array::from(ids)),
            f32_list_array(values, dim),
        ],
    )?;
    write_table(&path, TableKind::new("targets", 1), &[batch])?;
    Ok(path)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let root =
        PathBuf::from(args.get(1).ok_or("usage: brain2word_demo OUT [epochs] [hidden,hidden]")?);
    let epochs: u32 = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let hidden: Vec<usize> =
        args.get(3).map_or(Ok(vec![2000, 200]), |s| s.split(',').map(str::parse).collect())?;
    let extra: Value = args.get(4).map_or(Ok(json!({})), |s| serde_json::from_str(s))?;
    let d = |name: &str| root.join(name);
    run(
        "ingest.synthetic",
        &d("study"),
        &[],
        json!({"paradigm": "words", "subjects": 4, "seed": 7, "resolution_mm": 6}),
    )?;
    run(
        "ingest.nifti",
        &d("scans"),
        &[("bold", d("study/bold")), ("mask", d("study/mask.nii.gz"))],
        json!({"stimulus_column": "trial_type", "paradigm_column": "paradigm"}),
    )?;
    run(
        "features.roi",
        &d("features"),
        &[("scans", d("scans/scans")), ("atlas", d("study/atlas.nii.gz"))],
        json!({}),
    )?;
    run("features.template_pad", &d("padded"), &[("features", d("features/features"))], json!({}))?;
    let targets = targets(&d("study/stimuli.parquet"), &d("targets"))?;
    let features = d("padded/features.parquet");
    run(
        "models.ridge",
        &d("ridge"),
        &[("features", features.clone()), ("targets", targets.clone())],
        json!({}),
    )?;
    let mut previous: Option<PathBuf> = None;
    let mut evaluate = |model: &str, training: bool| -> Result<(), Error> {
        let mut ins = vec![
            ("predictions", d(&format!("{model}/predictions.parquet"))),
            ("targets", targets.clone()),
        ];
        if training {
            ins.push(("training", d(&format!("{model}/training.parquet"))));
        }
        if let Some(p) = &previous {
            ins.push(("previous", p.clone()));
        }
        run("eval.words", &d(&format!("eval-{model}")), &ins, json!({}))?;
        previous = Some(d(&format!("eval-{model}/metrics.parquet")));
        Ok(())
    };
    evaluate("ridge", false)?;
    let common = |model: &str, name: &str| {
        let mut p = json!({"model": model, "name": name, "hidden": hidden, "epochs": epochs, "device": "auto"});
        if let (Some(o), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        p
    };
    let models = [
        ("base", "base", json!({})),
        ("roi", "roi", json!({"roi_scale": 2})),
        ("autoencoder", "autoencoder", json!({})),
        (
            "base",
            "meanreg",
            json!({"mean_reg_weight": 0.5, "loss": "combined", "classification_weight": 0.1}),
        ),
    ];
    for (model, name, more) in models {
        let mut p = common(model, name);
        if let (Some(o), Some(e)) = (p.as_object_mut(), more.as_object()) {
            o.extend(e.clone());
        }
        let mut ins = vec![("features", features.clone()), ("targets", targets.clone())];
        if model == "roi" {
            ins.push(("rois", d("padded/rois.parquet")));
        }
        run("models.train", &d(name), &ins, p)?;
        evaluate(name, true)?;
    }
    let metrics = previous.ok_or("no metrics")?;
    run(
        "eval.report",
        &d("report"),
        &[("metrics", metrics.clone()), ("study", d("study/study.json"))],
        json!({}),
    )?;
    let rows = brainpipe_artifacts::read_metrics(&metrics)?;
    let oracle = brainpipe_eval::Oracle::read(&d("study/study.json"))?;
    println!("| model | top-1 | top-5 | top-10 | pairwise | top-5 / oracle |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for model in ["ridge", "base", "roi", "autoencoder", "meanreg"] {
        let get = |m: &str| {
            rows.iter()
                .find(|r| {
                    r.model == model && r.subject == "all" && r.paradigm == "all" && r.metric == m
                })
                .map_or(f64::NAN, |r| r.value)
        };
        println!(
            "| {model} | {:.2} % | {:.2} % | {:.2} % | {:.2} % | {:.0} % |",
            100.0 * get("top1"),
            100.0 * get("top5"),
            100.0 * get("top10"),
            100.0 * get("pairwise"),
            100.0 * get("top5") / oracle.top5
        );
    }
    println!(
        "| oracle | {:.2} % | {:.2} % | | {:.2} % | |",
        100.0 * oracle.top1,
        100.0 * oracle.top5,
        100.0 * oracle.pairwise
    );
    Ok(())
}
