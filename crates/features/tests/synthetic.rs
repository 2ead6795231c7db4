//! The demo's path: the synthetic study → `ingest.nifti` → `features.roi` with the study's atlas →
//! `features.template_pad`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use brainpipe_artifacts::{FEATURES, read_rois};
use brainpipe_core::{read_table, run_standalone};
use brainpipe_features::{RoiFeatures, TemplatePad};
use brainpipe_ingest::{IngestNifti, Synthetic};
use serde_json::json;

#[test]
fn synthetic_study_gets_roi_features_and_a_common_width() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run =
        |stage: &dyn brainpipe_core::DynStage, inputs: &[(&str, PathBuf)], params, out: &str| {
            let inputs: BTreeMap<String, PathBuf> =
                inputs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
            run_standalone(stage, &inputs, &params, &dir.path().join(out), &BTreeMap::new())
                .unwrap_or_else(|e| panic!("{}: {e}", stage.name()))
        };
    let study = dir.path().join("study");
    run(&Synthetic, &[], json!({"subjects": 2, "resolution_mm": 12, "rois": 30}), "study");
    run(
        &IngestNifti,
        &[("bold", study.join("bold")), ("mask", study.join("mask.nii.gz"))],
        json!({}),
        "scans",
    );
    let roi = run(
        &RoiFeatures,
        &[("scans", dir.path().join("scans/scans")), ("atlas", study.join("atlas.nii.gz"))],
        json!({}),
        "roi",
    );
    let features = dir.path().join("roi/features");
    let rois = read_rois(&features.join("sub-01.rois.parquet")).expect("rois");
    assert!(rois.len() > 1 && rois.iter().all(|b| b.roi > 0), "{rois:?}");
    assert!(roi.notes["dropped_outside_voxels"].as_u64().is_some());
    let pad = run(&TemplatePad, &[("features", features)], json!({}), "pad");
    let width = pad.notes["width"].as_u64().expect("width") as usize;
    let padded = read_rois(&dir.path().join("pad/rois.parquet")).expect("rois");
    assert_eq!(padded.iter().map(|b| b.count).sum::<usize>(), width);
    let (schema, batches) =
        read_table(&dir.path().join("pad/features.parquet"), Some(FEATURES)).expect("table");
    assert_eq!(
        schema.field_with_name("voxels").map(|f| f.data_type().clone()).ok(),
        Some(brainpipe_core::f32_list_type(width))
    );
    assert!(batches.iter().map(|b| b.num_rows()).sum::<usize>() > 0);
}
