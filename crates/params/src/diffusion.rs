//! Params of the `diffusion.*` stages (the image decoder) and the choices they name.

use brainpipe_core::{DeviceChoice, Precision};
use serde::{Deserialize, Serialize};

use crate::{at_least, threads};

/// What the decoder's network predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The added noise ε.
    Epsilon,
    /// v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022).
    VPrediction,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The samplers `diffusion.decode`'s `scheduler` may name (empty: the model's own).
pub const SCHEDULERS: [&str; 3] = ["ddim", "pndm", "ddpm"];

brainpipe_core::params! {
    /// Params of `diffusion.train`.
    pub struct TrainParams {
        /// Which images of the stimuli table to train on (`train`; `all` for every image).
        pub split: String = "train".to_owned(),
        /// Side the decoder learns and draws images at: the study's images are area-averaged down to it (it must divide their side; 0: as they are). 32 keeps a 2-core CPU within the demo budget.
        pub image_size: i64 = 32,
        /// Pixel-unshuffle factor: 32² RGB images become 16² latents of 12 channels (lossless).
        pub codec_factor: i64 = 2,
        /// Width of each UNet level (one level per entry; each but the last halves the side).
        pub channels: Vec<i64> = vec![32, 64],
        /// ResNet blocks per down level (up levels: one more), as diffusers' `layers_per_block`.
        pub layers_per_block: i64 = 1,
        /// Attention heads (diffusers' `attention_head_dim` in SD 1.x configs).
        pub heads: i64 = 4,
        /// Optimiser steps (sized to the demo's CPU budget, see docs/DIFFUSION.md).
        pub steps: usize = 300,
        /// Images per step.
        pub batch_size: usize = 16,
        /// Peak learning rate (Adam; linear warm-up over 5 % of the steps, cosine decay).
        pub learning_rate: f64 = 2e-3,
        /// Fraction of conditions replaced by zeros, for classifier-free guidance (sd-image-variations and SD: 10 %).
        pub condition_dropout: f64 = 0.1,
        /// DDPM training timesteps.
        pub num_train_timesteps: i64 = 1000,
        /// Seed of initialisation and every random draw.
        pub seed: u64 = 0,
        /// `epsilon` (SD 1.x) or `v_prediction` (SD 2.x; on a short CPU budget it learns faster).
        pub prediction_type: PredictionType = PredictionType::VPrediction,
        /// `auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`.
        pub device: DeviceChoice = DeviceChoice::Auto,
        /// CPU threads for LibTorch (0: the worker's share of the cores). Float reductions split
        /// by thread count, so a fixed number makes CPU bytes the same whatever `--jobs` gives.
        pub threads: i32 = 0,
    }
    validate = check_train;
}

/// What `diffusion.decode` decodes when no predictions table is given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingSource {
    /// Each image's own embedding (the ceiling; rows of model `truth`).
    #[default]
    Own,
    /// Each image decoded from another image's embedding (a cyclic shift: the control; rows of model `shuffled`).
    Shuffled,
}

brainpipe_core::params! {
    /// Params of `diffusion.decode`.
    pub struct DecodeParams {
        /// With `embeddings` instead of `predictions`: decode each image's `own` embedding (rows of model `truth`) or another image's (`shuffled`).
        pub source: EmbeddingSource = EmbeddingSource::Own,
        /// Which images of the stimuli table (`test`; `all`): with `embeddings`, the images decoded;
        /// with `predictions` and a `stimuli` input, the stimuli whose predictions are decoded.
        pub split: String = "test".to_owned(),
        /// Denoising steps (DDIM with trailing spacing: 10 draw the in-pipeline decoder's images as well as 25, measured in docs/DIFFUSION.md).
        pub steps: usize = 10,
        /// Classifier-free guidance scale (1: unguided; the in-pipeline decoder is best at 1.5–3, measured in docs/DIFFUSION.md).
        pub guidance_scale: f64 = 2.0,
        /// `ddim`, `pndm` or `ddpm` (the schedule stays the model's); empty: the model's own scheduler.
        pub scheduler: String = String::new(),
        /// With `predictions`: decode the mean of each (model, subject, stimulus)'s repeated presentations — as MindEye and Brain-Diffuser decode the averaged test trials — instead of every presentation.
        pub average_repeats: bool = true,
        /// With `predictions`: decode only the first N held-out subjects (by name; 0: all), a CPU budget knob.
        pub subjects: usize = 0,
        /// With `predictions`: decode only the first N stimuli by name (0: all) — with `subjects: 1`
        /// and `split: test`, exactly the report's gallery (its first 8 test images of the first
        /// held-out subject). With `predictions` and `stimuli`, only stimuli of `split` are decoded.
        #[serde(skip_serializing_if = "is_zero")]
        pub max_stimuli: usize = 0,
        /// Seed of every row's initial noise (each row's own seed is derived from it and the row).
        pub seed: u64 = 0,
        /// Rows per denoising batch (results do not depend on it).
        pub batch_size: usize = 16,
        /// `auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`.
        pub device: DeviceChoice = DeviceChoice::Auto,
        /// `fp32` or `bf16` (bf16 is for GPUs; CPU determinism and parity are in fp32).
        pub precision: Precision = Precision::Fp32,
        /// CPU threads for LibTorch (0: the worker's share of the cores). Float reductions split
        /// by thread count, so a fixed number makes CPU bytes the same whatever `--jobs` gives.
        pub threads: i32 = 0,
    }
    validate = check_decode;
}

fn check_train(p: &TrainParams) -> Result<(), String> {
    threads(p.threads)?;
    if p.split.is_empty() {
        return Err("`split` must name a split (`train`, `test` or `all`)".into());
    }
    if p.image_size < 0 {
        return Err(format!(
            "`image_size` must be 0 (as the images are) or positive, got {}",
            p.image_size
        ));
    }
    if p.codec_factor < 1 {
        return Err(format!("`codec_factor` must be at least 1, got {}", p.codec_factor));
    }
    if p.channels.is_empty() || p.channels.iter().any(|&c| c < 1) {
        return Err("`channels` must list at least one positive width".into());
    }
    if p.heads < 1 || p.channels.iter().any(|c| c % p.heads != 0) {
        return Err(format!(
            "`heads` must be positive and divide every width of `channels` ({:?}), got {}",
            p.channels, p.heads
        ));
    }
    if p.layers_per_block < 1 {
        return Err(format!("`layers_per_block` must be at least 1, got {}", p.layers_per_block));
    }
    at_least("steps", p.steps, 1)?;
    at_least("batch_size", p.batch_size, 1)?;
    if !(p.learning_rate > 0.0 && p.learning_rate.is_finite()) {
        return Err(format!("`learning_rate` must be positive, got {}", p.learning_rate));
    }
    if !(p.condition_dropout.is_finite() && (0.0..1.0).contains(&p.condition_dropout)) {
        return Err(format!("`condition_dropout` must be in [0, 1), got {}", p.condition_dropout));
    }
    if p.num_train_timesteps < 2 {
        return Err(format!(
            "`num_train_timesteps` must be at least 2, got {}",
            p.num_train_timesteps
        ));
    }
    Ok(())
}

fn check_decode(p: &DecodeParams) -> Result<(), String> {
    threads(p.threads)?;
    at_least("steps", p.steps, 1)?;
    at_least("batch_size", p.batch_size, 1)?;
    if !(p.guidance_scale.is_finite() && p.guidance_scale >= 1.0) {
        return Err(format!(
            "`guidance_scale` must be at least 1 (1: unguided), got {}",
            p.guidance_scale
        ));
    }
    if !p.scheduler.is_empty() && !SCHEDULERS.contains(&p.scheduler.as_str()) {
        return Err(format!(
            "`scheduler`: unknown scheduler `{}` (known: {}; empty: the model's own)",
            p.scheduler,
            SCHEDULERS.join(", ")
        ));
    }
    Ok(())
}
