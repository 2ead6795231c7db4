//! `ingest.nifti` end to end on a small synthetic study, and its refusals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, Int32Array, StringArray};
use brainpipe_artifacts::{SCANS, VOXELS};
use brainpipe_core::{f32_list_values, read_table, run_standalone};
use brainpipe_ingest::{IngestNifti, Synthetic};
use brainpipe_nifti::{NiftiWriter, WriteOptions, read_f32};
use serde_json::json;

fn study(dir: &Path) -> PathBuf {
    let out = dir.join("study");
    let params = json!({"subjects": 2, "seed": 3, "resolution_mm": 12, "rois": 24});
    run_standalone(&Synthetic, &BTreeMap::new(), &params, &out, &BTreeMap::new()).expect("study");
    out
}

fn ingest(
    out: &Path,
    bold: &Path,
    mask: Option<&Path>,
) -> Result<brainpipe_core::Manifest, brainpipe_core::StageError> {
    let mut inputs = BTreeMap::from([("bold".to_owned(), bold.to_path_buf())]);
    if let Some(mask) = mask {
        inputs.insert("mask".to_owned(), mask.to_path_buf());
    }
    run_standalone(&IngestNifti, &inputs, &json!({}), out, &BTreeMap::new())
}

#[test]
fn masked_rows_equal_the_volumes_and_events_label_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let study = study(dir.path());
    let out = dir.path().join("scans");
    ingest(&out, &study.join("bold"), Some(&study.join("mask.nii.gz"))).expect("ingest");
    let (_, mask) = read_f32(&study.join("mask.nii.gz")).expect("mask");
    let kept: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] != 0.0).collect();
    for subject in ["sub-01", "sub-02"] {
        let (header, bold) =
            read_f32(&study.join(format!("bold/{subject}_bold.nii.gz"))).expect("bold");
        let volume = header.volume_len();
        let (_, batches) =
            read_table(&out.join(format!("scans/{subject}.parquet")), Some(SCANS)).expect("scans");
        let mut rows = 0;
        for batch in &batches {
            let trials = batch.column_by_name("trial").expect("trial");
            let trials = trials.as_any().downcast_ref::<Int32Array>().expect("i32");
            let stimuli = batch.column_by_name("stimulus").expect("stimulus");
            let stimuli = stimuli.as_any().downcast_ref::<StringArray>().expect("utf8");
            let path = Path::new("scans");
            let (values, width) = f32_list_values(
                path,
                "voxels",
                batch.column_by_name("voxels").expect("voxels").as_ref(),
            )
            .expect("f32 list");
            assert_eq!(width, kept.len(), "one column per mask voxel");
            for r in 0..batch.num_rows() {
                let t = trials.value(r) as usize;
                let row = &values[r * width..(r + 1) * width];
                for (c, &flat) in kept.iter().enumerate() {
                    assert_eq!(
                        row[c].to_bits(),
                        bold[t * volume + flat].to_bits(),
                        "{subject} trial {t} column {c}"
                    );
                }
                assert!(!stimuli.value(r).is_empty());
            }
            rows += batch.num_rows();
        }
        assert_eq!(rows, 540, "180 words × 3 paradigms");
        let (schema, voxels) =
            read_table(&out.join(format!("scans/{subject}.voxels.parquet")), Some(VOXELS))
                .expect("voxels");
        assert_eq!(voxels.iter().map(|b| b.num_rows()).sum::<usize>(), kept.len());
        assert!(schema.metadata().contains_key("brainpipe.affine"));
        assert!(voxels[0].column_by_name("roi").expect("roi").null_count() > 0, "roi unknown here");
        let (_, written_mask) =
            read_f32(&out.join(format!("scans/{subject}.mask.nii.gz"))).expect("mask out");
        assert_eq!(written_mask, mask);
    }
}

fn write_volume(path: &Path, shape: &[usize], affine: [[f64; 4]; 4], code: i16, values: &[f32]) {
    let options = WriteOptions { affine, xform_code: code, tr_s: None, gzip_level: Some(1) };
    let mut writer = NiftiWriter::<f32>::create(path, shape, &options).expect("create");
    let per = shape[..3].iter().product::<usize>();
    for chunk in values.chunks(per) {
        writer.write_volume(chunk).expect("volume");
    }
    writer.finish().expect("finish");
}

const AFFINE: [[f64; 4]; 4] =
    [[2.0, 0.0, 0.0, -4.0], [0.0, 2.0, 0.0, -4.0], [0.0, 0.0, 2.0, -4.0], [0.0, 0.0, 0.0, 1.0]];

#[test]
fn mask_on_a_finer_grid_is_resampled_through_the_affines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bold = dir.path().join("sub-01_bold.nii.gz");
    let values: Vec<f32> = (0..4 * 4 * 4 * 2).map(|v| v as f32).collect();
    write_volume(&bold, &[4, 4, 4, 2], AFFINE, 1, &values);
    // The same space at 1 mm: keep world x < 0 (voxels i = 0, 1 of the data grid).
    let fine =
        [[1.0, 0.0, 0.0, -4.0], [0.0, 1.0, 0.0, -4.0], [0.0, 0.0, 1.0, -4.0], [0.0, 0.0, 0.0, 1.0]];
    let mut mask = vec![0.0f32; 8 * 8 * 8];
    for k in 0..8 {
        for j in 0..8 {
            for i in 0..4 {
                mask[i + 8 * (j + 8 * k)] = 1.0;
            }
        }
    }
    let mask_path = dir.path().join("mask.nii.gz");
    write_volume(&mask_path, &[8, 8, 8], fine, 1, &mask);
    let out = dir.path().join("out");
    ingest(&out, &bold, Some(&mask_path)).expect("ingest");
    let (_, voxels) = read_table(&out.join("scans/sub-01.voxels.parquet"), None).expect("voxels");
    let i = voxels[0]
        .column_by_name("i")
        .expect("i")
        .as_any()
        .downcast_ref::<Int32Array>()
        .expect("i32")
        .clone();
    assert_eq!(i.len(), 2 * 4 * 4);
    assert!(i.values().iter().all(|&v| v < 2));
}

fn refuses(out: &Path, bold: &Path, mask: Option<&Path>, needle: &str) {
    let err = ingest(out, bold, mask).expect_err(needle).to_string();
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!out.exists(), "nothing written for {needle}");
}

#[test]
fn malformed_inputs_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = d.join("out");
    let values: Vec<f32> = (0..4 * 4 * 4 * 3).map(|v| v as f32).collect();
    let bold = d.join("sub-01_bold.nii.gz");
    write_volume(&bold, &[4, 4, 4, 3], AFFINE, 1, &values);

    std::fs::write(d.join("sub-01_events.tsv"), "trial\ttrial_type\n0\ta\n1\tb\n7\tc\n")
        .expect("events");
    refuses(&out, &bold, None, "event row 3 names volume 7, but");
    std::fs::write(d.join("sub-01_events.tsv"), "trial\tword\n0\ta\n").expect("events");
    refuses(&out, &bold, None, "no `trial_type` column");
    std::fs::remove_file(d.join("sub-01_events.tsv")).expect("rm");

    let mask = d.join("mask.nii.gz");
    write_volume(&mask, &[5, 5, 5], AFFINE, 0, &[1.0; 125]);
    refuses(&out, &bold, Some(&mask), "no qform/sform to resample through");

    let empty = d.join("empty.nii.gz");
    write_volume(&empty, &[4, 4, 4], AFFINE, 1, &[0.0; 64]);
    refuses(&out, &bold, Some(&empty), "the mask keeps no voxel");

    let bytes = std::fs::read(&bold).expect("read");
    let truncated = d.join("cut");
    std::fs::create_dir(&truncated).expect("mkdir");
    std::fs::write(truncated.join("sub-02_bold.nii.gz"), &bytes[..bytes.len() / 2])
        .expect("truncate");
    refuses(&out, &truncated, None, "sub-02_bold.nii.gz");

    let nothing = d.join("nothing");
    std::fs::create_dir(&nothing).expect("mkdir");
    refuses(&out, &nothing, None, "no .nii or .nii.gz files");

    // Without events: one trial per volume.
    ingest(&out, &bold, None).expect("no events");
    let (_, batches) = read_table(&out.join("scans/sub-01.parquet"), Some(SCANS)).expect("scans");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
}
