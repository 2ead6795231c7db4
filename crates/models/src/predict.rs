//! `models.predict`: applies the fold models of `models.train` to a features table.

use std::path::PathBuf;

use brainpipe_artifacts::{Predictions, write_predictions};
use brainpipe_core::{ArtifactKind, Context, Port, Stage, StageError};
use brainpipe_tensor::{ResolveDevice, device_name, load_var_store};
use tch::nn;

use crate::data::Dataset;
use crate::error::{ModelsError, Result};
use crate::net::{Net, PrecisionExt};
use crate::train::{DataTensors, predict_rows, read_fold_config};
pub use brainpipe_params::models::PredictParams;

/// `models.predict`.
pub struct Predict;

impl Stage for Predict {
    type Params = PredictParams;
    const NAME: &'static str = "models.predict";
    const VERSION: u32 = 3;
    const SUMMARY: &'static str = "Applies the fold models of models.train to features: predicted embeddings and class scores";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input(
                "model",
                ArtifactKind::Directory,
                "the `model` directory of models.train (fold-NN.safetensors)",
            ),
            Port::input(
                "features",
                ArtifactKind::table(brainpipe_artifacts::FEATURES),
                "features.parquet of the same width as at training",
            ),
            Port::input(
                "targets",
                ArtifactKind::table(brainpipe_artifacts::TARGETS),
                "targets.parquet: the stimulus → class join",
            ),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "predictions",
            "predictions.parquet",
            ArtifactKind::table(brainpipe_artifacts::PREDICTIONS),
            "per scan and fold: predicted embedding and class scores",
        )]
    }

    fn run(&self, ctx: &mut Context, p: &PredictParams) -> Result<(), StageError> {
        let device = p.device.resolve()?;
        ctx.set_device(device_name(device));
        let data =
            Dataset::read(ctx.input("features")?, ctx.input("targets")?, &p.stimulus_column)?;
        let predictions =
            predict_dir(&ctx.input("model")?.to_path_buf(), &data, p.test_only, device)?;
        ctx.note("rows", predictions.len());
        write_predictions(&ctx.output("predictions"), &predictions)?;
        Ok(())
    }
}

/// Predictions of every `fold-NN.safetensors` in `dir`.
pub fn predict_dir(
    dir: &PathBuf,
    data: &Dataset,
    test_only: bool,
    device: tch::Device,
) -> Result<Predictions> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| brainpipe_core::Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelsError::data(dir, "no *.safetensors fold models"));
    }
    let tensors = DataTensors::new(data, &[], device)?;
    let mut out = Predictions::default();
    for file in &files {
        let (config, name, fold, tests) = read_fold_config(file)?;
        if config.expected_features_width() != data.width {
            return Err(ModelsError::data(
                file,
                format!(
                    "model reads features {} columns wide, these have {}",
                    config.expected_features_width(),
                    data.width
                ),
            ));
        }
        if config.columns.iter().any(|&c| c >= data.width) {
            return Err(ModelsError::data(file, "config.net.columns index past the features"));
        }
        let tensors = if config.columns.is_empty() {
            tensors.shallow_clone()
        } else {
            tensors.with_columns(&config.columns)
        };
        let _tf32 = config.precision.activate();
        let mut vs = nn::VarStore::new(device);
        let net = Net::new(&vs.root(), &config);
        load_var_store(&mut vs, file)?;
        let rows: Vec<usize> =
            (0..data.len()).filter(|&i| !test_only || tests.contains(&data.subject[i])).collect();
        if rows.is_empty() {
            continue;
        }
        out.extend(predict_rows(&net, &tensors, data, &rows, fold, &name)?);
    }
    if out.is_empty() {
        return Err(ModelsError::data(
            dir,
            "no scan of the features belongs to a fold's test subjects",
        ));
    }
    Ok(out)
}
