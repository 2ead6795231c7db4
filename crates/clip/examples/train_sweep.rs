//! Sweeps `clip.train` settings on the synthetic images world and prints best-caption accuracy
//! (how the defaults were chosen; see docs/CLIP.md). Arguments: `steps:lr:weight_decay:all|best:batch`
//! each; `SAVE_MODEL=DIR` keeps the last model.
use std::collections::BTreeMap;

use brainpipe_artifacts::read_stimuli;
use brainpipe_clip::{CaptionChoice, ClipConfig, TrainParams, pairs, train};
use tch::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let study = dir.path().join("study");
    let params = serde_json::json!({"paradigm": "images", "subjects": 1, "resolution_mm": 12, "rois": 20, "test_repeats": 1});
    brainpipe_core::run_standalone(
        &brainpipe_ingest::Synthetic,
        &BTreeMap::new(),
        &params,
        &study,
        &BTreeMap::new(),
    )
    .map_err(|e| e.to_string())?;
    let table = study.join("stimuli.parquet");
    let stimuli = read_stimuli(&table)?;
    let all = pairs(&stimuli, Some(&study.join("images")), &table, true)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for spec in args {
        // steps:lr:wd:captions:batch
        let f: Vec<&str> = spec.split(':').collect();
        let p = TrainParams {
            steps: f[0].parse()?,
            learning_rate: f[1].parse()?,
            weight_decay: f[2].parse()?,
            captions: if f[3] == "best" { CaptionChoice::Best } else { CaptionChoice::All },
            batch_size: f[4].parse()?,
            ..TrainParams::default()
        };
        let t = std::time::Instant::now();
        let (clip, r) = train(&all, &ClipConfig::small(), &p, Device::Cpu)?;
        if let Some(dir) = std::env::var_os("SAVE_MODEL") {
            clip.save(std::path::Path::new(&dir))?;
        }
        println!(
            "{spec}: train {:.3} held-out {:.3} chance {:.3} loss {:.3} scale {:.1} ({:.0} s)",
            r.train_best_caption_accuracy,
            r.test_best_caption_accuracy,
            r.chance,
            r.losses.last().map_or(f64::NAN, |l| l.1),
            r.logit_scale,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
