//! The ingest stages in shards, one per subject (a Slurm job array's tasks): each subject
//! computed alone into its shard directory, in reverse order, then merged, gives the bytes and
//! notes of the unsharded run. And the refusals: a shard count the inputs do not give, shards
//! out of order, a shard without its record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use brainpipe_core::{Context, Stage, output_files, run_standalone};
use brainpipe_ingest::{IngestBold5000, IngestNifti, IngestPereira, Synthetic};
use brainpipe_nifti::{NiftiWriter, WriteOptions};
use serde_json::{Value, json};

/// Runs `stage` whole and in shards (each alone, last subject first) and checks the merge
/// against the whole run: every file's bytes and every note. Returns the shard count and the
/// shard directories' parent, for further checks.
fn sharded_equals_whole<S: Stage>(
    stage: &S,
    inputs: &BTreeMap<String, PathBuf>,
    params: Value,
    dir: &Path,
) -> (usize, PathBuf) {
    let whole = dir.join("whole");
    let manifest = run_standalone(stage, inputs, &params, &whole, &BTreeMap::new()).expect("whole");
    let p: S::Params = serde_json::from_value(params).expect("params");
    let probe = Context::new(inputs.clone(), stage.outputs(), PathBuf::new());
    let count = stage.shards(&probe, &p).expect("shard count");
    let area = dir.join("shards");
    let mut shards = vec![PathBuf::new(); count];
    for index in (0..count).rev() {
        let shard = area.join(format!("{index:04}"));
        std::fs::create_dir_all(&shard).expect("shard dir");
        let mut ctx = Context::new(inputs.clone(), stage.outputs(), shard.clone());
        stage.run_shard(&mut ctx, &p, index, count).expect("shard");
        assert!(shard.join("subject.json").is_file(), "the shard's record");
        shards[index] = shard;
    }
    let merged = dir.join("merged");
    std::fs::create_dir_all(&merged).expect("merged dir");
    let mut ctx = Context::new(inputs.clone(), stage.outputs(), merged.clone());
    stage.merge_shards(&mut ctx, &p, &shards).expect("merge");
    let (whole_files, merged_files) = (output_files(&whole), output_files(&merged));
    let names = |f: &BTreeMap<PathBuf, Vec<u8>>| -> Vec<PathBuf> { f.keys().cloned().collect() };
    assert_eq!(names(&merged_files), names(&whole_files), "the same files");
    for ((name, a), (_, b)) in whole_files.iter().zip(&merged_files) {
        assert!(a == b, "{} differs between the whole run and the merge", name.display());
    }
    let notes = manifest.notes.clone();
    assert_eq!(&notes, ctx.notes(), "the same notes");
    (count, area)
}

/// The refusals every subject-sharded stage shares, on the shards `sharded_equals_whole` left
/// (moved out by the merge: their records remain).
fn refusals<S: Stage>(
    stage: &S,
    inputs: &BTreeMap<String, PathBuf>,
    params: Value,
    (count, area): (usize, PathBuf),
) {
    let p: S::Params = serde_json::from_value(params).expect("params");
    let shard = area.join("other");
    std::fs::create_dir_all(&shard).expect("dir");
    let mut ctx = Context::new(inputs.clone(), stage.outputs(), shard.clone());
    let error =
        stage.run_shard(&mut ctx, &p, 0, count + 1).expect_err("a count the inputs do not give");
    assert!(
        error.to_string().contains(&format!("shard 0 of {}: ", count + 1))
            && error.to_string().contains(&format!(" holds {count} subjects")),
        "{error}"
    );
    let mut shards: Vec<PathBuf> = (0..count).map(|k| area.join(format!("{k:04}"))).collect();
    shards.swap(0, 1);
    let out = area.join("swapped");
    std::fs::create_dir_all(&out).expect("dir");
    let mut ctx = Context::new(inputs.clone(), stage.outputs(), out.clone());
    let error = stage.merge_shards(&mut ctx, &p, &shards).expect_err("out of order").to_string();
    let record = shards[0].join("subject.json");
    assert!(error.starts_with(&format!("{}: shard of subject ", record.display())), "{error}");
    assert!(error.contains("expected ") && !error.contains('\n'), "{error}");
    assert_eq!(std::fs::read_dir(&out).expect("out").count(), 0, "nothing moved before the checks");
    shards.swap(0, 1);
    std::fs::remove_file(shards[count - 1].join("subject.json")).expect("remove");
    let error = stage.merge_shards(&mut ctx, &p, &shards).expect_err("no record").to_string();
    assert!(
        error.contains(&shards[count - 1].join("subject.json").display().to_string()),
        "{error}"
    );
    // A hostile record: not JSON, or a subject name with control characters.
    let record = shards[count - 1].join("subject.json");
    std::fs::write(&record, "\u{1b}[2J{\n").expect("garbage");
    let error = stage.merge_shards(&mut ctx, &p, &shards).expect_err("garbage").to_string();
    assert!(
        error.starts_with(&format!("{}: not a subject shard record", record.display())),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
    let forged =
        json!({"format": 1, "index": count - 1, "count": count, "subject": "x\ny", "result": {}});
    std::fs::write(&record, forged.to_string()).expect("forged");
    let error = stage.merge_shards(&mut ctx, &p, &shards).expect_err("forged").to_string();
    assert!(error.contains("shard of subject x\\ny") && !error.contains('\n'), "{error}");
    let error = stage.merge_shards(&mut ctx, &p, &shards[1..]).expect_err("a shard short");
    assert!(
        error
            .to_string()
            .contains(&format!("a merge of {} shards for {count} subjects", count - 1)),
        "{error}"
    );
}

#[test]
fn synthetic_subjects_alone_merge_into_the_whole_study() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Words, with time series (per-run BOLD and events files).
    let params =
        json!({"subjects": 3, "seed": 5, "resolution_mm": 12, "rois": 24, "time_series": true});
    let found = sharded_equals_whole(&Synthetic, &BTreeMap::new(), params.clone(), dir.path());
    assert_eq!(found.0, 3);
    let p = serde_json::from_value(params.clone()).expect("params");
    assert_eq!(Synthetic.planned_shards(&p), Some(3), "known from the params alone");
    refusals(&Synthetic, &BTreeMap::new(), params, found);
    // Images: the shared outputs include the rendered images.
    let dir = tempfile::tempdir().expect("tempdir");
    let params = json!({"paradigm": "images", "subjects": 2, "resolution_mm": 12, "rois": 24,
        "train_images": 12, "test_images": 6, "test_repeats": 2, "image_size": 16});
    assert_eq!(sharded_equals_whole(&Synthetic, &BTreeMap::new(), params, dir.path()).0, 2);
}

#[test]
fn nifti_subjects_alone_merge_into_the_whole_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let study = dir.path().join("study");
    let params = json!({"subjects": 3, "seed": 3, "resolution_mm": 12, "rois": 24});
    run_standalone(&Synthetic, &BTreeMap::new(), &params, &study, &BTreeMap::new()).expect("study");
    let inputs = BTreeMap::from([
        ("bold".to_owned(), study.join("bold")),
        ("mask".to_owned(), study.join("mask.nii.gz")),
    ]);
    let params = json!({"stimulus_column": "trial_type"});
    let found = sharded_equals_whole(&IngestNifti, &inputs, params.clone(), &dir.path().join("n"));
    assert_eq!(found.0, 3);
    let p = serde_json::from_value(params.clone()).expect("params");
    assert_eq!(IngestNifti.planned_shards(&p), None, "its subjects are the input's");
    refusals(&IngestNifti, &inputs, params, found);
}

/// A BOLD5000-layout beta file of `volumes` volumes.
fn betas(dir: &Path, subject: &str, session: &str, volumes: usize) {
    let path =
        dir.join(format!("{subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{session}.nii.gz"));
    let affine =
        [[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
    let options = WriteOptions { affine, xform_code: 1, tr_s: None, gzip_level: Some(1) };
    let mut w = NiftiWriter::<f32>::create(&path, &[4, 4, 3, volumes], &options).expect("create");
    for v in 0..volumes {
        let volume: Vec<f32> = (0..48).map(|i| v as f32 + i as f32 / 7.0).collect();
        w.write_volume(&volume).expect("volume");
    }
    w.finish().expect("finish");
}

fn list(root: &Path, subject: &str, session: &str, lines: &[&str]) {
    let dir = root.join(subject).join(format!("{subject}_sess{session}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(format!("CSI_sess{session}_run01.txt")), lines.join("\n") + "\n")
        .expect("list");
}

#[test]
fn bold5000_subjects_alone_merge_into_the_whole_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (beta_dir, lists) = (d.join("betas"), d.join("lists"));
    std::fs::create_dir_all(&beta_dir).expect("mkdir");
    let (a, b) = ("COCO_train2014_000000000036.jpg", "COCO_train2014_000000000049.jpg");
    betas(&beta_dir, "CSI1", "01", 3);
    betas(&beta_dir, "CSI1", "02", 2);
    betas(&beta_dir, "CSI2", "01", 3);
    list(&lists, "CSI1", "01", &[a, "airplanecabin1.jpg", &format!("rep_{a}")]);
    list(&lists, "CSI1", "02", &[b, "airplanecabin1.jpg"]);
    list(&lists, "CSI2", "01", &[a, b, "n01440764_10110.JPEG"]);
    let captions = json!({
        "images": [{"id": 36, "file_name": a}, {"id": 49, "file_name": b}],
        "annotations": (0..6).map(|i| json!({"id": 10 - i, "image_id": if i < 3 { 36 } else { 49 }, "caption": format!("caption {i}")})).collect::<Vec<_>>(),
    });
    std::fs::write(d.join("captions.json"), captions.to_string()).expect("captions");
    let inputs = BTreeMap::from([
        ("betas".to_owned(), beta_dir),
        ("lists".to_owned(), lists),
        ("captions".to_owned(), d.join("captions.json")),
    ]);
    let found = sharded_equals_whole(&IngestBold5000, &inputs, json!({}), &d.join("b"));
    assert_eq!(found.0, 2);
    // A subject shard writes its subject's files and its record, not the stimuli table.
    let shard: Vec<PathBuf> = output_files(&found.1.join("0000")).into_keys().collect();
    assert_eq!(shard, [PathBuf::from("subject.json")], "its files were moved by the merge");
    refusals(&IngestBold5000, &inputs, json!({}), found);
}

#[test]
fn pereira_subjects_alone_merge_into_the_whole_import() {
    let Some(python) =
        brainpipe_core::reference_python("pereira_subjects_alone_merge_into_the_whole_import")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("pereira");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pereira_fixture.py");
    let status = Command::new(python).arg(&script).arg(&data).status().expect("python");
    assert!(status.success(), "fixture script failed");
    let inputs = BTreeMap::from([("data".to_owned(), data)]);
    let found = sharded_equals_whole(&IngestPereira, &inputs, json!({}), &dir.path().join("p"));
    assert_eq!(found.0, 2);
    refusals(&IngestPereira, &inputs, json!({}), found);
}
