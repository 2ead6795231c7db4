//! `ingest.bold5000` on a small fixture in the BOLD5000 2.0 layout.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, ListArray, StringArray};
use brainpipe_artifacts::{SCANS, STIMULI};
use brainpipe_core::{read_table, run_standalone};
use brainpipe_ingest::IngestBold5000;
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

    let (_, batches) = read_table(&out.join("scans/CSI1.parquet"), Some(SCANS)).expect("scans");
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

    let (_, batches) = read_table(&out.join("stimuli.parquet"), Some(STIMULI)).expect("stimuli");
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

/// Betas whose value names the voxel: NIfTI index + 1000 × volume.
fn indexed_betas(dir: &Path, subject: &str, volumes: usize) {
    let path = dir.join(format!("{subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-01.nii.gz"));
    let options = WriteOptions { affine: AFFINE, xform_code: 1, tr_s: None, gzip_level: Some(1) };
    let mut w = NiftiWriter::<f32>::create(&path, &[4, 4, 3, volumes], &options).expect("create");
    for v in 0..volumes {
        let volume: Vec<f32> = (0..48).map(|i| (i + 1000 * v) as f32).collect();
        w.write_volume(&volume).expect("volume");
    }
    w.finish().expect("finish");
}

/// ROI masks written by NumPy / SciPy: CSI1 has `LHPPA` (bool, C order), `RHPPA` (uint8, Fortran
/// order, in a subject folder) and `EarlyVis` (float64, a field of a .mat struct; it overlaps
/// LHPPA at (1, 0, 0)); CSI2 has `LHPPA` (float32 with a NaN, which is outside).
const ROI_FIXTURE: &str = r#"
import sys, os
import numpy as np
import scipy.io
d = sys.argv[1]
os.makedirs(os.path.join(d, "CSI1"), exist_ok=True)
def mask(dtype, points, value=1):
    m = np.zeros((4, 4, 3), dtype=dtype)
    for p in points:
        m[p] = value
    return m
np.save(os.path.join(d, "CSI1_roi_LHPPA.npy"), mask(bool, [(0, 0, 0), (1, 0, 0), (3, 2, 1)]))
np.save(os.path.join(d, "CSI1", "RHPPA.npy"), np.asfortranarray(mask(np.uint8, [(2, 3, 2), (0, 1, 2)], 7)))
scipy.io.savemat(os.path.join(d, "CSI1_visual.mat"), {"rois": {"EarlyVis": mask(np.float64, [(1, 0, 0), (3, 3, 0)], 2.5)}})
csi2 = mask(np.float32, [(2, 2, 2)], 0.5)
csi2[0, 0, 0] = np.nan
np.save(os.path.join(d, "CSI2_roi_LHPPA.npy"), csi2)
"#;

/// The reference Python, or `None` (skip; a failure when `CI` is set).
fn reference_python() -> Option<String> {
    brainpipe_core::reference_python("the BOLD5000 oracle").map(|p| p.display().to_string())
}

/// `betas/` (indexed betas, one session of two trials) and `lists/` for `subjects` under `d`.
fn roi_study(d: &Path, subjects: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    let (beta_dir, lists) = (d.join("betas"), d.join("lists"));
    std::fs::create_dir_all(&beta_dir).expect("mkdir");
    for subject in subjects {
        indexed_betas(&beta_dir, subject, 2);
        list(&lists, subject, "01", "01", &["a.jpg", "b.jpg"]);
    }
    (beta_dir, lists)
}

fn python_fixture(python: &str, script: &str, dir: &Path) {
    let status = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir)
        .status()
        .expect("run the reference python");
    assert!(status.success(), "fixture script failed");
}

fn voxel_table(path: &Path) -> Vec<(i32, i32, i32, Option<i32>)> {
    let (_, batches) = read_table(path, Some(brainpipe_artifacts::VOXELS)).expect("voxels");
    let column = |b: &arrow::array::RecordBatch, name: &str| {
        b.column_by_name(name)
            .expect(name)
            .as_any()
            .downcast_ref::<arrow::array::Int32Array>()
            .expect("int32")
            .clone()
    };
    batches
        .iter()
        .flat_map(|b| {
            let (i, j, k, roi) = (column(b, "i"), column(b, "j"), column(b, "k"), column(b, "roi"));
            (0..b.num_rows())
                .map(|r| {
                    (i.value(r), j.value(r), k.value(r), roi.is_valid(r).then(|| roi.value(r)))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn roi_masks_select_and_label_the_voxels() {
    let Some(python) = reference_python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (beta_dir, lists) = roi_study(d, &["CSI1", "CSI2"]);
    let rois = d.join("rois");
    std::fs::create_dir_all(&rois).expect("mkdir");
    python_fixture(&python, ROI_FIXTURE, &rois);
    let inputs = BTreeMap::from([
        ("betas".to_owned(), beta_dir),
        ("lists".to_owned(), lists),
        ("rois".to_owned(), rois),
    ]);
    let out = d.join("out");
    let manifest =
        run_standalone(&IngestBold5000, &inputs, &json!({}), &out, &BTreeMap::new()).expect("run");
    assert_eq!(manifest.notes["rois"], json!(["EarlyVis", "LHPPA", "RHPPA"]));

    // Columns in NIfTI order; (1, 0, 0) is in EarlyVis and LHPPA and takes the first name.
    let csi1 = voxel_table(&out.join("scans/CSI1.voxels.parquet"));
    assert_eq!(
        csi1,
        vec![
            (0, 0, 0, Some(2)),
            (1, 0, 0, Some(1)),
            (3, 3, 0, Some(1)),
            (3, 2, 1, Some(2)),
            (0, 1, 2, Some(3)),
            (2, 3, 2, Some(3)),
        ]
    );
    assert_eq!(voxel_table(&out.join("scans/CSI2.voxels.parquet")), vec![(2, 2, 2, Some(2))]);
    let (_, batches) = read_table(&out.join("scans/CSI1.parquet"), Some(SCANS)).expect("s");
    let (values, width) = brainpipe_core::f32_list_values(
        &out,
        "voxels",
        batches[0].column_by_name("voxels").expect("v").as_ref(),
    )
    .expect("values");
    assert_eq!(width, 6);
    let expected: Vec<f32> = [0, 1, 15, 27, 36, 46]
        .iter()
        .map(|&i| i as f32)
        .chain([1000.0, 1001.0, 1015.0, 1027.0, 1036.0, 1046.0])
        .collect();
    assert_eq!(values, expected.as_slice());
}

#[test]
fn malformed_roi_masks_are_refused_naming_the_file() {
    let Some(python) = reference_python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (beta_dir, lists) = roi_study(d, &["CSI1"]);
    let script = r#"
import sys, os
import numpy as np
d = sys.argv[1]
for name, array in [("shape", np.ones((4, 4, 2), bool)), ("dtype", np.ones((4, 4, 3), np.complex64)), ("good", np.ones((4, 4, 3), np.int16))]:
    os.makedirs(os.path.join(d, name), exist_ok=True)
    np.save(os.path.join(d, name, "CSI1_roi_V1.npy"), array)
"#;
    python_fixture(&python, script, d);
    let good = std::fs::read(d.join("good/CSI1_roi_V1.npy")).expect("good");
    std::fs::create_dir_all(d.join("magic")).expect("mkdir");
    std::fs::write(d.join("magic/CSI1_roi_V1.npy"), b"\x89HDF\r\n\x1a\n not numpy").expect("w");
    std::fs::create_dir_all(d.join("truncated")).expect("mkdir");
    std::fs::write(d.join("truncated/CSI1_roi_V1.npy"), &good[..good.len() - 10]).expect("w");
    std::fs::create_dir_all(d.join("none")).expect("mkdir");
    std::fs::write(d.join("none/CSI2_roi_V1.npy"), &good).expect("w");
    for (case, needle) in [
        ("shape", "shape [4, 4, 2] does not match the betas' grid [4, 4, 3]"),
        ("dtype", "dtype `<c8` is not a mask type"),
        ("magic", "no \\x93NUMPY magic"),
        ("truncated", "truncated: 86 data bytes for 48 values of 2 bytes"),
        ("none", "no ROI masks for subject CSI1"),
    ] {
        let inputs = BTreeMap::from([
            ("betas".to_owned(), beta_dir.clone()),
            ("lists".to_owned(), lists.clone()),
            ("rois".to_owned(), d.join(case)),
        ]);
        let out = d.join(format!("out-{case}"));
        let err = run_standalone(&IngestBold5000, &inputs, &json!({}), &out, &BTreeMap::new())
            .expect_err(case)
            .to_string();
        let file = if case == "none" { d.join(case) } else { d.join(case).join("CSI1_roi_V1.npy") };
        assert!(err.contains(&file.display().to_string()) && err.contains(needle), "{case}: {err}");
        assert!(!err.contains('\n'), "{case}: one line: {err}");
        assert!(!out.exists(), "{case}: nothing written");
    }
}
