//! `features.roi` and `features.template_pad` end to end on small scans fixtures; the numpy /
//! nibabel cross-checks run when `BRAINPIPE_REF_PYTHON` names the reference interpreter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use brainpipe_artifacts::{FEATURE_VOXELS, FEATURES, read_rois, read_voxels};
use brainpipe_core::{Manifest, f32_list_values, read_table, run_standalone};
mod fixture;

use brainpipe_features::{BRAIN2WORD_WIDTH, RoiFeatures, TemplatePad};
use brainpipe_nifti::{WriteOptions, XFORM_SCANNER, write_volume};
use fixture::{ScanSubject, Trial};
use serde_json::{Value, json};

/// A small deterministic generator (xorshift64*), so fixtures need no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn value(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
    }
}

const GRID: [usize; 3] = [5, 6, 7];
const AFFINE: [[f64; 4]; 4] =
    [[2.0, 0.0, 0.0, -5.0], [0.0, 2.0, 0.0, -6.0], [0.0, 0.0, 2.0, -7.0], [0.0, 0.0, 0.0, 1.0]];

/// 3 paradigms × `stimuli` stimuli, one run per paradigm.
fn trials(stimuli: usize) -> Vec<Trial> {
    ["word_cloud", "sentence", "picture"]
        .iter()
        .flat_map(|p| {
            (0..stimuli).map(move |s| Trial {
                session: String::new(),
                run: (*p).to_owned(),
                stimulus: format!("w{s:03}"),
                paradigm: (*p).to_owned(),
            })
        })
        .collect()
}

/// A subject whose voxels are a random subset of the grid, each with a random ROI 0..=rois.
fn subject(name: &str, seed: u64, rois: i32, keep_per_mille: u64) -> ScanSubject {
    let mut rng = Rng(seed);
    let (mut ijk, mut roi) = (Vec::new(), Vec::new());
    for k in 0..GRID[2] as i32 {
        for j in 0..GRID[1] as i32 {
            for i in 0..GRID[0] as i32 {
                if rng.below(1000) < keep_per_mille {
                    ijk.push([i, j, k]);
                    roi.push(Some(rng.below(rois as u64 + 1) as i32));
                }
            }
        }
    }
    ScanSubject { name: name.to_owned(), dims: GRID, affine: AFFINE, ijk, roi }
}

fn write_random(dir: &Path, s: &ScanSubject, trials: &[Trial], seed: u64) {
    let mut rng = Rng(seed);
    s.write(dir, trials, |_, block| block.iter_mut().for_each(|v| *v = rng.value()))
        .expect("write scans");
}

fn run(
    stage: &dyn brainpipe_core::DynStage,
    inputs: &[(&str, &Path)],
    params: Value,
    out: &Path,
) -> Result<Manifest, String> {
    let inputs: BTreeMap<String, PathBuf> =
        inputs.iter().map(|(k, v)| ((*k).to_owned(), v.to_path_buf())).collect();
    run_standalone(stage, &inputs, &params, out, &BTreeMap::new()).map_err(|e| e.to_string())
}

/// Runs a reference script; skipped (with a message) when `BRAINPIPE_REF_PYTHON` is unset, a
/// failure then when `CI` is set.
fn reference(script: &str, args: &[&Path]) {
    let Some(python) = brainpipe_core::reference_python("reference") else {
        return;
    };
    let script = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/ref")
    .join(script);
    let output = Command::new(&python).arg(&script).args(args).output().expect("run python");
    assert!(
        output.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&output.stdout));
}

fn rows(path: &Path) -> (usize, Vec<f32>) {
    let (_, batches) = read_table(path, Some(FEATURES)).expect("features table");
    let mut values = Vec::new();
    let mut width = 0;
    for b in &batches {
        let col = b.column_by_name("voxels").expect("voxels");
        let (v, w) = f32_list_values(path, "voxels", col.as_ref()).expect("f32 list");
        values.extend_from_slice(v);
        width = w;
    }
    (width, values)
}

#[test]
fn roi_groups_normalises_and_records_dropped_voxels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scans = dir.path().join("scans");
    let trials = trials(4);
    let s = subject("sub-01", 11, 3, 600);
    let width = s.ijk.len();
    let (nan_col, const_col) = (3, 5);
    let mut rng = Rng(5);
    s.write(&scans, &trials, |_, block| {
        for (i, v) in block.iter_mut().enumerate() {
            *v = match i % width {
                c if c == nan_col && i / width == 2 => f32::NAN,
                c if c == const_col => 1.25,
                _ => rng.value(),
            };
        }
    })
    .expect("write");
    let out = dir.path().join("out");
    let manifest =
        run(&RoiFeatures, &[("scans", &scans)], json!({"normalise": "run"}), &out).expect("runs");
    let outside = s.roi.iter().filter(|r| **r == Some(0)).count();
    let bad: usize = [nan_col, const_col].iter().filter(|&&c| s.roi[c] != Some(0)).count();
    assert_eq!(manifest.notes["dropped_outside_voxels"], json!(outside));
    assert_eq!(
        manifest.notes["dropped_nan_voxels"].as_u64().unwrap_or(0)
            + manifest.notes["dropped_constant_voxels"].as_u64().unwrap_or(0),
        bad as u64
    );
    let voxels =
        read_voxels(&out.join("features/sub-01.voxels.parquet"), FEATURE_VOXELS).expect("voxels");
    assert_eq!(voxels.len(), width - outside - bad);
    let pairs: Vec<(i32, i32)> =
        voxels.roi.iter().zip(&voxels.scan_column).map(|(r, c)| (r.unwrap_or(-1), *c)).collect();
    let mut sorted = pairs.clone();
    sorted.sort();
    assert_eq!(pairs, sorted, "columns grouped by ROI, scan order within");
    let rois = read_rois(&out.join("features/sub-01.rois.parquet")).expect("rois");
    assert_eq!(rois.iter().map(|b| b.count).sum::<usize>(), voxels.len());
    assert_eq!(rois[1].first, rois[0].count);
    // z-scored per run: every column has mean 0 and sd 1 over each paradigm's 4 trials
    let (w, values) = rows(&out.join("features/sub-01.parquet"));
    for c in 0..w {
        let run: Vec<f64> = (0..4).map(|t| f64::from(values[t * w + c])).collect();
        let mean = run.iter().sum::<f64>() / 4.0;
        let var = run.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "column {c}: {mean} {var}");
    }
}

#[test]
fn atlas_is_resampled_nearest_neighbour_like_nibabel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scans = dir.path().join("scans");
    let mut s = subject("sub-01", 3, 1, 700);
    s.roi = vec![None; s.ijk.len()];
    write_random(&scans, &s, &trials(3), 9);
    // the atlas on a finer, rotated, shifted grid
    let (c, sn) = (0.2f64.cos(), 0.2f64.sin());
    let atlas_affine = [
        [1.3 * c, -1.3 * sn, 0.0, -7.3],
        [1.3 * sn, 1.3 * c, 0.0, -9.1],
        [0.0, 0.0, 1.7, -8.2],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let dims = [9, 11, 10];
    let mut rng = Rng(17);
    let labels: Vec<i16> =
        (0..dims.iter().product::<usize>()).map(|_| rng.below(5) as i16).collect();
    let atlas = dir.path().join("atlas.nii.gz");
    let options = WriteOptions {
        affine: atlas_affine,
        xform_code: XFORM_SCANNER,
        tr_s: None,
        gzip_level: Some(1),
    };
    write_volume(&atlas, dims, &labels, &options).expect("atlas");
    let out = dir.path().join("out");
    run(
        &RoiFeatures,
        &[("scans", &scans), ("atlas", &atlas)],
        json!({"outside": "keep", "normalise": "none"}),
        &out,
    )
    .expect("runs");
    let voxels =
        read_voxels(&out.join("features/sub-01.voxels.parquet"), FEATURE_VOXELS).expect("voxels");
    assert_eq!(voxels.len(), s.ijk.len(), "outside kept: every voxel");
    reference("resample_reference.py", &[&scans, &atlas, &out.join("features")]);
}

#[test]
fn template_pad_matches_the_numpy_reimplementation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scans = dir.path().join("scans");
    let trials = trials(25); // 75 trials: two row groups
    for (n, (seed, rois, density)) in
        [(1u64, 3, 450), (2, 3, 700), (3, 2, 300)].into_iter().enumerate()
    {
        let s = subject(&format!("sub-{:02}", n + 1), seed, rois, density);
        write_random(&scans, &s, &trials, 100 + seed);
    }
    let roi_out = dir.path().join("roi");
    run(&RoiFeatures, &[("scans", &scans)], json!({"normalise": "none"}), &roi_out).expect("roi");
    let features = roi_out.join("features");
    for fill in ["slice_mean", "zero"] {
        let out = dir.path().join(format!("pad-{fill}"));
        let manifest = run(&TemplatePad, &[("features", &features)], json!({"fill": fill}), &out)
            .expect("pad");
        let width = manifest.notes["width"].as_u64().expect("width") as usize;
        let (w, values) = rows(&out.join("features.parquet"));
        assert_eq!((w, values.len()), (width, 3 * 75 * width));
        let rois = read_rois(&out.join("rois.parquet")).expect("rois");
        assert_eq!(rois.last().map(|b| b.first + b.count), Some(width));
        let overflow: u64 = manifest.notes["subjects"]
            .as_object()
            .expect("subjects")
            .values()
            .map(|v| v["overflow_voxels"].as_u64().unwrap_or(0))
            .sum();
        assert!(overflow > 0, "the fixture exercises overflow");
        reference("pad_reference.py", &[&features, &out, Path::new(fill)]);
    }
}

#[test]
fn brain2word_template_gives_65730_columns() {
    let shared = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../../shared/data/brain2word");
    let last_dim = shared.join("last_dim.npz");
    if !last_dim.is_file() {
        eprintln!("skipping: {} is absent", last_dim.display());
        return;
    }
    let template = brainpipe_features::Template::read(&last_dim).expect("Brain2Word template");
    assert_eq!(template.rois.len(), 333);
    assert_eq!(template.width(), BRAIN2WORD_WIDTH);
    // a subject with a few voxels in ROIs 1..=3 fits; blocks of every other ROI are zero
    let dir = tempfile::tempdir().expect("tempdir");
    let scans = dir.path().join("scans");
    let mut s = subject("sub-01", 8, 3, 300);
    s.roi.iter_mut().for_each(|r| *r = r.map(|v| v.max(1)));
    write_random(&scans, &s, &trials(2), 4);
    let roi_out = dir.path().join("roi");
    run(&RoiFeatures, &[("scans", &scans)], json!({}), &roi_out).expect("roi");
    let out = dir.path().join("pad");
    let manifest = run(
        &TemplatePad,
        &[("features", &roi_out.join("features")), ("template", &last_dim)],
        json!({}),
        &out,
    )
    .expect("pad");
    assert_eq!(manifest.notes["width"], json!(BRAIN2WORD_WIDTH));
    let (w, values) = rows(&out.join("features.parquet"));
    assert_eq!((w, values.len()), (BRAIN2WORD_WIDTH, 6 * BRAIN2WORD_WIDTH));
    let rois = read_rois(&out.join("rois.parquet")).expect("rois");
    assert_eq!((rois.len(), rois[332].first + rois[332].count), (333, BRAIN2WORD_WIDTH));
}

#[test]
fn stability_selection_ignores_held_out_trials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trials = trials(10);
    let s = subject("sub-01", 21, 2, 500);
    let width = s.ijk.len();
    let selected = |poison: f32| -> Vec<i32> {
        let scans = dir.path().join(format!("scans-{poison}"));
        let mut rng = Rng(77);
        s.write(&scans, &trials, |first, block| {
            for (i, v) in block.iter_mut().enumerate() {
                let (t, c) = (first + i / width, i % width);
                let stimulus = (t % 10) as f32;
                // half the voxels respond to the stimulus, all have noise
                *v = if c % 2 == 0 { stimulus } else { 0.0 } + rng.value();
                if t % 10 == 9 {
                    *v += poison * (c as f32); // held-out stimulus w009
                }
            }
        })
        .expect("write");
        let out = dir.path().join(format!("out-{poison}"));
        let params = json!({"select": "stability", "select_top": 8, "holdout_stimuli": ["w009"]});
        let manifest = run(&RoiFeatures, &[("scans", &scans)], params, &out).expect("runs");
        assert!(manifest.notes["dropped_unselected_voxels"].as_u64().unwrap_or(0) > 0);
        read_voxels(&out.join("features/sub-01.voxels.parquet"), FEATURE_VOXELS)
            .expect("voxels")
            .scan_column
    };
    let clean = selected(0.0);
    assert_eq!(clean.len(), 8);
    assert!(clean.iter().all(|c| c % 2 == 0), "the stimulus-driven voxels win: {clean:?}");
    assert_eq!(selected(50.0), clean, "held-out trials never change the choice");
}

#[test]
fn bad_inputs_fail_on_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scans = dir.path().join("scans");
    let s = subject("sub-01", 4, 2, 500);
    write_random(&scans, &s, &trials(3), 1);
    let one_line_and_nothing_written =
        |result: Result<Manifest, String>, out: &Path, want: &str| {
            let err = result.expect_err("must fail");
            assert!(!err.contains('\n') && err.contains(want), "{err}");
            assert!(!out.exists(), "{} was written", out.display());
        };

    // an atlas far away from the mask
    let atlas = dir.path().join("atlas.nii.gz");
    let far = [
        [2.0, 0.0, 0.0, 500.0],
        [0.0, 2.0, 0.0, 500.0],
        [0.0, 0.0, 2.0, 500.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let options =
        WriteOptions { affine: far, xform_code: XFORM_SCANNER, tr_s: None, gzip_level: Some(1) };
    write_volume(&atlas, [4, 4, 4], &[1i16; 64], &options).expect("atlas");
    let out = dir.path().join("no-overlap");
    let result = run(&RoiFeatures, &[("scans", &scans), ("atlas", &atlas)], json!({}), &out);
    one_line_and_nothing_written(result, &out, "lies in an ROI");

    // a subject whose every value is NaN
    let nan_scans = dir.path().join("nan-scans");
    s.write(&nan_scans, &trials(3), |_, block| block.fill(f32::NAN)).expect("write");
    let out = dir.path().join("nan");
    let result = run(&RoiFeatures, &[("scans", &nan_scans)], json!({}), &out);
    one_line_and_nothing_written(result, &out, "no usable voxel");

    // no ROI source: an atlas asked for but not given; voxels without labels and no atlas
    let out = dir.path().join("no-atlas");
    let result = run(&RoiFeatures, &[("scans", &scans)], json!({"roi_source": "atlas"}), &out);
    one_line_and_nothing_written(result, &out, "needs the `atlas` input");
    let unlabelled = dir.path().join("unlabelled");
    let mut bare = s.clone();
    bare.roi = vec![None; bare.ijk.len()];
    write_random(&unlabelled, &bare, &trials(3), 2);
    let out = dir.path().join("unlabelled-out");
    let result = run(&RoiFeatures, &[("scans", &unlabelled)], json!({}), &out);
    one_line_and_nothing_written(result, &out, "give an `atlas` input");

    // a template smaller than an ROI
    let roi_out = dir.path().join("roi");
    run(&RoiFeatures, &[("scans", &scans)], json!({}), &roi_out).expect("roi");
    let small = dir.path().join("small");
    let template = dir.path().join("template.parquet");
    brainpipe_features::Template {
        rois: vec![
            brainpipe_features::RoiTemplate { roi: 1, slices: vec![(0, 1)] },
            brainpipe_features::RoiTemplate { roi: 2, slices: vec![(0, 1)] },
        ],
    }
    .write(&template)
    .expect("template");
    let result = run(
        &TemplatePad,
        &[("features", &roi_out.join("features")), ("template", &template)],
        json!({}),
        &small,
    );
    one_line_and_nothing_written(result, &small, "template smaller than an ROI");
}
