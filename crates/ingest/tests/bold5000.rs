//! `ingest.bold5000` on a small fixture in the BOLD5000 2.0 layout.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, ListArray, StringArray};
use brainpipe_core::{read_table, run_standalone};
use brainpipe_ingest::{IngestBold5000, SCANS_TABLE, STIMULI_TABLE};
use brainpipe_nifti::{NiftiWriter, WriteOptions};
use serde_json::json;

const AFFINE: [[f64; 4]; 4] =
    [[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]];

fn betas(dir: &Path, subject: &str, session: &str, volumes: usize) {
    let path =
        dir.join(format!("{subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{session}.nii.gz"));
    let options = WriteOptions { affine: AFFINE, xform_code: 1, tr_s: None, gzip_level: Some(1) };
    let mut w = NiftiWriter::<f32>::create(&path, &[4, 4, 3, volumes], &options).expect("create");
    for v in 0..volumes {
        w.write_volume(&[v as f32 + 0.5; 48]).expect("volume");
    }
    w.finish().expect("finish");
}

fn list(root: &Path, subject: &str, session: &str, run: &str, lines: &[&str]) {
    let dir = root.join(subject).join(format!("{subject}_sess{session}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(format!("CSI_sess{session}_run{run}.txt")), lines.join("\n") + "\n")
        .expect("list");
}

#[test]
fn betas_lists_and_captions_become_scans_and_stimuli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (beta_dir, lists) = (d.join("betas"), d.join("Stimuli_Presentation_Lists"));
    std::fs::create_dir_all(&beta_dir).expect("mkdir");
    betas(&beta_dir, "CSI1", "01", 5);
    betas(&beta_dir, "CSI1", "02", 2);
    betas(&beta_dir, "CSI2", "01", 3);
    let coco_a = "COCO_train2014_000000000036.jpg";
    let coco_b = "COCO_train2014_000000000049.jpg";
    list(&lists, "CSI1", "01", "01", &[coco_a, "airplanecabin1.jpg", "n01440764_10110.JPEG"]);
    list(&lists, "CSI1", "01", "02", &[coco_b, &format!("rep_{coco_a}")]);
    list(&lists, "CSI1", "02", "01", &[coco_b, "airplanecabin1.jpg"]);
    list(&lists, "CSI2", "01", "01", &[coco_a, coco_b, "airplanecabin1.jpg"]);
    let captions = json!({
        "images": [{"id": 36, "file_name": coco_a}, {"id": 49, "file_name": coco_b}],
        "annotations": (0..10).map(|i| json!({"id": 100 - i, "image_id": if i < 5 { 36 } else { 49 }, "caption": format!("caption {i} ")})).collect::<Vec<_>>(),
    });
    std::fs::write(d.join("captions_train2014.json"), captions.to_string()).expect("captions");
    let images = d.join("images");
    for (sub, name) in [
        ("COCO", coco_a),
        ("COCO", coco_b),
        ("Scene", "airplanecabin1.jpg"),
        ("ImageNet", "n01440764_10110.JPEG"),
    ] {
        std::fs::create_dir_all(images.join(sub)).expect("mkdir");
        std::fs::write(images.join(sub).join(name), b"jpeg").expect("image");
    }
    let inputs = BTreeMap::from([
        ("betas".to_owned(), beta_dir.clone()),
        ("lists".to_owned(), lists.clone()),
        ("captions".to_owned(), d.join("captions_train2014.json")),
        ("images".to_owned(), images),
    ]);
    let out = d.join("out");
    run_standalone(&IngestBold5000, &inputs, &json!({}), &out, &BTreeMap::new()).expect("ingest");

    let (_, batches) =
        read_table(&out.join("scans/CSI1.parquet"), Some(SCANS_TABLE)).expect("scans");
    let stimuli: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let s = b
                .column_by_name("stimulus")
                .expect("s")
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8")
                .clone();
            (0..s.len()).map(move |i| s.value(i).to_owned())
        })
        .collect();
    assert_eq!(
        stimuli,
        vec![
            coco_a,
            "airplanecabin1.jpg",
            "n01440764_10110.JPEG",
            coco_b,
            coco_a,
            coco_b,
            "airplanecabin1.jpg"
        ]
    );

    let (_, batches) =
        read_table(&out.join("stimuli.parquet"), Some(STIMULI_TABLE)).expect("stimuli");
    let b = &batches[0];
    let image = b
        .column_by_name("image")
        .expect("image")
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8");
    let split = b
        .column_by_name("split")
        .expect("split")
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8");
    let caps = b
        .column_by_name("captions")
        .expect("captions")
        .as_any()
        .downcast_ref::<ListArray>()
        .expect("list");
    let rows: BTreeMap<String, (String, usize)> = (0..b.num_rows())
        .map(|r| {
            (
                image.value(r).to_owned(),
                (split.value(r).to_owned(), if caps.is_null(r) { 0 } else { caps.value(r).len() }),
            )
        })
        .collect();
    assert_eq!(
        rows[&format!("COCO/{coco_a}")],
        ("test".to_owned(), 5),
        "shown 4 times, 5 captions"
    );
    assert_eq!(rows["ImageNet/n01440764_10110.JPEG"], ("train".to_owned(), 0));
    assert_eq!(rows.len(), 4);
    let first = caps.value(0);
    let first = first.as_any().downcast_ref::<StringArray>().expect("utf8");
    assert_eq!(first.value(0), "caption 4", "annotation-id order, trimmed");

    // A list that disagrees with the betas is refused, naming the beta file.
    list(&lists, "CSI2", "01", "02", &[coco_a]);
    let err =
        run_standalone(&IngestBold5000, &inputs, &json!({}), &d.join("out2"), &BTreeMap::new())
            .expect_err("mismatch")
            .to_string();
    assert!(
        err.contains("CSI2_GLMbetas") && err.contains("name 4 trials, the betas have 3 volumes"),
        "{err}"
    );
    assert!(!d.join("out2").exists());
}
