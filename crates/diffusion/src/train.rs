//! The small conditional decoder the pipeline trains itself: a `UNet2DConditionModel` denoising
//! a lossless pixel-unshuffle "latent" of the study's images, conditioned on each image's CLIP
//! embedding as one cross-attention token (sd-image-variations' conditioning), trained with
//! DDPM's noise-prediction loss at one random timestep per sample and ~10 % of conditions
//! dropped to zeros so classifier-free guidance has an unconditional model to steer from.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor, nn};

use crate::error::{DiffusionError, Result};
use crate::pipeline::{
    CODEC_KEY, CONDITION_KEY, MODEL_INDEX_FILE, NORMALIZED_CONDITION, SCHEDULER_FILE,
};
use crate::scheduler::{
    BetaSchedule, PredictionType, Scheduler, SchedulerConfig, SchedulerKind, TimestepSpacing,
};
use crate::unet::{PerBlock, UNet2DConditionModel, UNetConfig};
use crate::weights::{save_model_dir, write_json};
use brainpipe_core::IoContext;

/// The safetensors schema of the decoder's UNet weights.
pub const DECODER_SCHEMA: &str = "brainpipe-diffusion-unet/1";

/// Conditions as our decoder reads them: `[B, D]` → `[B, 1, D]`, each row L2-normalised and
/// scaled by √D (entries of unit scale whatever the embedding's norm: predicted embeddings are
/// often shrunk towards the mean, and only their direction should matter).
pub fn condition_tokens(embeddings: &Tensor) -> Tensor {
    let dim = embeddings.size()[1] as f64;
    let norm = embeddings.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    (embeddings / norm * dim.sqrt()).unsqueeze(1)
}

/// How the decoder is built and trained.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainOptions {
    /// Pixel-unshuffle factor of the codec (image side / latent side).
    pub codec_factor: i64,
    /// Width of each UNet level.
    pub channels: Vec<i64>,
    /// ResNet blocks per level.
    pub layers_per_block: i64,
    /// Attention heads.
    pub heads: i64,
    /// Optimiser steps.
    pub steps: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate (Adam; linear warm-up, cosine decay).
    pub learning_rate: f64,
    /// Fraction of conditions replaced by zeros.
    pub condition_dropout: f64,
    /// Training timesteps.
    pub num_train_timesteps: i64,
    /// Seed of initialisation and every random draw.
    pub seed: u64,
    /// What the UNet predicts: ε (Stable Diffusion 1.x) or v (SD 2.x; learns faster here).
    pub prediction_type: PredictionType,
}

/// What training measured.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    /// Mean loss per block of `log_every` steps.
    pub loss_curve: Vec<f64>,
    /// Steps per entry of the curve.
    pub log_every: usize,
    /// Trainable parameters.
    pub parameters: i64,
    /// Wall-clock seconds of the loop: the stage notes it in the manifest, and it is left out of
    /// `training.json` so that the artifact's bytes are the same on every run.
    #[serde(skip)]
    pub seconds: f64,
    /// Training images.
    pub images: usize,
}

/// The decoder's UNet config for `options`, images of `side` pixels and conditions of `dim`.
pub fn decoder_config(options: &TrainOptions, side: i64, dim: i64) -> UNetConfig {
    let latent = 3 * options.codec_factor * options.codec_factor;
    let levels = options.channels.len();
    UNetConfig {
        in_channels: latent,
        out_channels: latent,
        sample_size: Some(Value::from(side / options.codec_factor)),
        down_block_types: vec!["CrossAttnDownBlock2D".to_owned(); levels],
        up_block_types: vec!["CrossAttnUpBlock2D".to_owned(); levels],
        block_out_channels: options.channels.clone(),
        layers_per_block: PerBlock::One(options.layers_per_block),
        norm_num_groups: 8,
        cross_attention_dim: dim,
        attention_head_dim: PerBlock::One(options.heads),
        ..UNetConfig::default()
    }
}

/// The decoder's scheduler: the cosine schedule (Nichol & Dhariwal 2021: better than linear at
/// low resolution), ε-prediction, DDIM sampling over trailing timesteps, x₀ clipped to the
/// pixel range (the codec is lossless, so latents are pixels in [-1, 1]).
pub fn decoder_scheduler(options: &TrainOptions) -> SchedulerConfig {
    SchedulerConfig {
        num_train_timesteps: options.num_train_timesteps,
        beta_schedule: BetaSchedule::SquaredcosCapV2,
        clip_sample: true,
        set_alpha_to_one: true,
        timestep_spacing: TimestepSpacing::Trailing,
        prediction_type: options.prediction_type,
        ..SchedulerConfig::new(SchedulerKind::Ddim)
    }
}

/// Trains the decoder on `images` (`[N, 3, H, W]` in [-1, 1]) and their `embeddings`
/// (`[N, D]`), on `device`.
pub fn train_decoder(
    images: &Tensor,
    embeddings: &Tensor,
    options: &TrainOptions,
    device: Device,
    mut progress: impl FnMut(usize),
) -> Result<(nn::VarStore, UNetConfig, SchedulerConfig, TrainReport)> {
    let (n, _, h, w) = images.size4()?;
    let f = options.codec_factor;
    if h != w || h % (f << (options.channels.len() - 1)) != 0 {
        return Err(DiffusionError::Params(format!(
            "images of {h}×{w}: need square sides divisible by codec_factor × 2^(levels−1) = {}",
            f << (options.channels.len() - 1)
        )));
    }
    let dim = embeddings.size()[1];
    let config = decoder_config(options, h, dim);
    config.check().map_err(DiffusionError::Params)?;
    let scheduler_config = decoder_scheduler(options);
    let scheduler = Scheduler::new(&scheduler_config);
    tch::manual_seed(options.seed as i64);
    let vs = nn::VarStore::new(device);
    let unet = UNet2DConditionModel::new(&vs.root(), &config);
    let mut opt = nn::Adam::default().build(&vs, options.learning_rate)?;
    let latents = images.to_device(device).pixel_unshuffle(f);
    let conditions = condition_tokens(&embeddings.to_device(device).to_kind(Kind::Float));
    let log_every = 10.max(options.steps / 50);
    let (mut curve, mut block) = (Vec::new(), Tensor::zeros([1], (Kind::Float, device)));
    let warmup = (options.steps / 20).max(1);
    let start = Instant::now();
    for step in 0..options.steps {
        let lr = if step < warmup {
            options.learning_rate * (step + 1) as f64 / warmup as f64
        } else {
            let progress = (step - warmup) as f64 / (options.steps - warmup).max(1) as f64;
            options.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        };
        opt.set_lr(lr);
        let batch = options.batch_size as i64;
        let index = Tensor::randint(n, [batch], (Kind::Int64, device));
        let x0 = latents.index_select(0, &index);
        let keep = Tensor::rand([batch, 1, 1], (Kind::Float, device))
            .ge(options.condition_dropout)
            .to_kind(Kind::Float);
        let context = conditions.index_select(0, &index) * keep;
        let t = Tensor::randint(options.num_train_timesteps, [batch], (Kind::Int64, device));
        let noise = x0.randn_like();
        let noisy = scheduler.add_noise(&x0, &noise, &t);
        let target = scheduler.training_target(&x0, &noise, &t);
        let loss = unet.forward(&noisy, &t, &context).mse_loss(&target, tch::Reduction::Mean);
        opt.backward_step_clip_norm(&loss, 1.0);
        block += loss.detach();
        if (step + 1) % log_every == 0 || step + 1 == options.steps {
            let steps_in_block = ((step % log_every) + 1) as f64;
            curve.push(block.double_value(&[0]) / steps_in_block);
            block = Tensor::zeros([1], (Kind::Float, device));
        }
        progress(step);
    }
    let parameters = vs.trainable_variables().iter().map(Tensor::numel).sum::<usize>() as i64;
    let report = TrainReport {
        loss_curve: curve,
        log_every,
        parameters,
        seconds: start.elapsed().as_secs_f64(),
        images: n as usize,
    };
    Ok((vs, config, scheduler_config, report))
}

/// Saves the decoder as a diffusers-layout directory: `model_index.json` (our codec and
/// condition convention under `_` keys diffusers ignores), `unet/` (`config.json` +
/// `diffusion_pytorch_model.safetensors`), `scheduler/scheduler_config.json`.
pub fn save_decoder(
    dir: &Path,
    vs: &nn::VarStore,
    config: &UNetConfig,
    scheduler: &SchedulerConfig,
    codec_factor: i64,
    image_size: i64,
) -> Result<()> {
    std::fs::create_dir_all(dir.join("scheduler")).at(dir)?;
    save_model_dir(vs, &dir.join("unet"), DECODER_SCHEMA, &config.to_diffusers_json())?;
    write_json(&dir.join("scheduler").join(SCHEDULER_FILE), &scheduler.to_diffusers_json())?;
    let index = serde_json::json!({
        "_class_name": "BrainpipeImageDecoderPipeline",
        "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", scheduler.kind.class_name()],
        CODEC_KEY: format!("pixel_unshuffle:{codec_factor}"),
        CONDITION_KEY: NORMALIZED_CONDITION,
        "_brainpipe_image_size": image_size,
    });
    write_json(&dir.join(MODEL_INDEX_FILE), &index)
}
