//! Benchmark driver for `bench/features.sh`: generates a Pereira-size `scans` directory and runs
//! one features stage on it, so `/usr/bin/time -v` can measure each stage's time and peak memory.
//!
//! ```text
//! bench_features gen SCANS_DIR SUBJECTS TRIALS VOXELS   # scans with Gordon-like ROI columns
//! bench_features roi SCANS_DIR OUT_DIR                  # features.roi (normalise: run)
//! bench_features pad FEATURES_DIR OUT_DIR               # features.template_pad (derived template)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use brainpipe_core::Context;
#[path = "../tests/fixture/mod.rs"]
mod fixture;

use brainpipe_features::{RoiFeatures, TemplatePad};
use fixture::{ScanSubject, Trial};

/// Gordon et al. (2016)'s parcellation, as Pereira et al. (2018) distributed it.
const GORDON_ROIS: usize = 333;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let started = Instant::now();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["gen", dir, subjects, trials, voxels] => {
            generate(Path::new(dir), subjects.parse()?, trials.parse()?, voxels.parse()?)?
        }
        ["roi", scans, out] => {
            run(&RoiFeatures, "scans", scans, out)?;
        }
        ["pad", features, out] => {
            run(&TemplatePad, "features", features, out)?;
        }
        _ => {
            return Err(
                "usage: bench_features gen DIR S T V | roi SCANS OUT | pad FEATURES OUT".into()
            );
        }
    }
    eprintln!("{} took {:.2} s", args[0], started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs `stage` on `input`, writing into `out`. The stage runs in-process through a bare
/// `Context`, without `run_standalone`'s manifest: the runner hashes outputs with blake3 over
/// memory maps, whose (clean, reclaimable) file pages would count in the peak RSS measured here.
fn run(
    stage: &dyn brainpipe_core::DynStage,
    port: &str,
    input: &str,
    out: &str,
) -> Result<(), Error> {
    let inputs = BTreeMap::from([(port.to_owned(), PathBuf::from(input))]);
    std::fs::create_dir_all(out)?;
    let mut ctx = Context::new(inputs, stage.outputs(), PathBuf::from(out));
    let params = stage.canonical_params(&serde_json::json!({}))?;
    stage.run_json(&mut ctx, &params)?;
    let notes: BTreeMap<_, _> =
        ctx.notes().iter().filter(|(k, _)| k.as_str() != "subjects").collect();
    eprintln!("{}: {}", stage.name(), serde_json::to_string(&notes)?);
    Ok(())
}

/// Pereira-like scans: per subject about `voxels` columns (±4 %), in contiguous Gordon-like ROI
/// runs along a 79×95×68 grid, 3 paradigms × `trials / 3` stimuli, values uniform noise.
fn generate(dir: &Path, subjects: usize, trials: usize, voxels: usize) -> Result<(), Error> {
    let dims = [79usize, 95, 68];
    let affine = [
        [3.0, 0.0, 0.0, -118.0],
        [0.0, 3.0, 0.0, -142.0],
        [0.0, 0.0, 3.0, -101.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let paradigms = ["word_cloud", "sentence", "picture"];
    let per = trials.div_ceil(paradigms.len());
    let rows: Vec<Trial> = (0..trials)
        .map(|t| Trial {
            session: String::new(),
            run: paradigms[t / per].to_owned(),
            stimulus: format!("w{:03}", t % per),
            paradigm: paradigms[t / per].to_owned(),
        })
        .collect();
    for s in 0..subjects {
        let width = voxels - voxels / 25 + (s * 7919) % (voxels / 12 + 1);
        let stride = (dims.iter().product::<usize>() / width).max(1);
        let ijk: Vec<[i32; 3]> = (0..width)
            .map(|c| {
                let at = c * stride;
                [
                    (at % dims[0]) as i32,
                    (at / dims[0] % dims[1]) as i32,
                    (at / dims[0] / dims[1]) as i32,
                ]
            })
            .collect();
        let roi = (0..width).map(|c| Some((1 + c * GORDON_ROIS / width) as i32)).collect();
        let subject = ScanSubject { name: format!("sub-{:02}", s + 1), dims, affine, ijk, roi };
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (s as u64 + 1);
        subject.write(dir, &rows, |_, block| {
            for v in block.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *v = (state >> 40) as f32 / (1u64 << 24) as f32;
            }
        })?;
        eprintln!("wrote {} ({width} voxels)", subject.name);
    }
    Ok(())
}
