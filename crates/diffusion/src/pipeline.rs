//! A diffusers pipeline directory (`model_index.json`, `unet/`, `vae/`, `scheduler/`,
//! `image_encoder/` or `text_encoder/` + `tokenizer/`) loaded unchanged, and the guided sampling
//! loop of diffusers' Stable Diffusion pipelines.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tch::{Device, Kind, Tensor, nn};

use crate::error::{DiffusionError, Result};
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulerKind};
use crate::unet::{UNet2DConditionModel, UNetConfig};
use crate::vae::{AutoencoderKL, VaeConfig};
use crate::weights::{copy_weights, read_weights, weights_file};
use brainpipe_core::IoContext;

/// `model_index.json`.
pub const MODEL_INDEX_FILE: &str = "model_index.json";
/// `scheduler/scheduler_config.json`.
pub const SCHEDULER_FILE: &str = "scheduler_config.json";
/// The private `model_index.json` key naming a pixel codec used instead of a VAE
/// (`pixel_unshuffle:F`); diffusers ignores keys that start with `_`.
pub const CODEC_KEY: &str = "_brainpipe_codec";
/// The private `model_index.json` key saying conditions are L2-normalised and scaled by √D
/// before they enter the UNet (our decoder's convention, see [`condition_tokens`](crate::condition_tokens)).
pub const CONDITION_KEY: &str = "_brainpipe_condition";
/// Its value.
pub const NORMALIZED_CONDITION: &str = "l2_normalized_times_sqrt_dim";

/// How images become the latents the UNet denoises, and back.
#[derive(Debug)]
pub enum Codec {
    /// Stable Diffusion's VAE: latents = posterior mean (or sample) × `scaling_factor`.
    Vae(Box<AutoencoderKL>),
    /// Lossless: `pixel_unshuffle` by the factor (images [-1, 1], 3·F² channels at 1/F the side).
    PixelUnshuffle(i64),
}

impl Codec {
    /// Images in [-1, 1] `[B, 3, H, W]` → latents (the VAE's posterior mean, scaled).
    pub fn encode(&self, images: &Tensor) -> Tensor {
        match self {
            Codec::Vae(vae) => {
                let c = vae.config();
                let mean = vae.encode(images).mean;
                (mean - c.shift_factor.unwrap_or(0.0)) * c.scaling_factor
            }
            Codec::PixelUnshuffle(f) => images.pixel_unshuffle(*f),
        }
    }

    /// Latents → images (about [-1, 1]).
    pub fn decode(&self, latents: &Tensor) -> Tensor {
        match self {
            Codec::Vae(vae) => {
                let c = vae.config();
                vae.decode(&(latents / c.scaling_factor + c.shift_factor.unwrap_or(0.0)))
            }
            Codec::PixelUnshuffle(f) => latents.pixel_shuffle(*f),
        }
    }

    /// Latent channels and the factor between image and latent sides.
    pub fn latent_shape(&self) -> (i64, i64) {
        match self {
            Codec::Vae(vae) => {
                let c = vae.config();
                (c.latent_channels, 1 << (c.block_out_channels.len() as i64 - 1))
            }
            Codec::PixelUnshuffle(f) => (3 * f * f, *f),
        }
    }

    /// Parses `pixel_unshuffle:F`.
    pub fn parse_pixel(text: &str) -> Option<i64> {
        text.strip_prefix("pixel_unshuffle:")?.parse().ok().filter(|f| *f >= 1)
    }
}

/// What the condition is, as the pipeline directory declares it.
#[derive(Clone, Debug, PartialEq)]
pub enum Conditioning {
    /// A CLIP image embedding as one cross-attention token (`image_encoder/`,
    /// sd-image-variations); the unconditional input is zeros.
    ImageEmbedding {
        /// The image encoder's folder (embed with brainpipe-clip's `Embedder`).
        encoder: Option<PathBuf>,
    },
    /// CLIP text hidden states (`text_encoder/` + `tokenizer/`, SD text-to-image); the
    /// unconditional input is the hidden states of the empty prompt.
    TextHiddenStates {
        /// The text encoder's folder.
        encoder: PathBuf,
        /// The tokenizer's folder.
        tokenizer: PathBuf,
    },
}

/// A loaded diffusers pipeline directory.
#[derive(Debug)]
pub struct DiffusionPipeline {
    /// The denoiser.
    pub unet: UNet2DConditionModel,
    /// Images ⇄ latents.
    pub codec: Codec,
    /// The scheduler of `scheduler/`.
    pub scheduler: SchedulerConfig,
    /// The condition the UNet expects.
    pub conditioning: Conditioning,
    /// Whether conditions are L2-normalised × √D first (our decoder) or enter as given.
    pub normalize_condition: bool,
    /// The variables of the UNet and the VAE.
    pub var_stores: Vec<nn::VarStore>,
    /// Where they live.
    pub device: Device,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).at(path)?;
    serde_json::from_str(&text).map_err(|e| DiffusionError::config(path, e.to_string()))
}

impl DiffusionPipeline {
    /// Loads `dir` onto `device` in `kind` (F32, or BF16/F16 for inference on GPUs): every
    /// config checked, every weight matched by name and shape. Problems in the layout are one
    /// error listing them all.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
        let index_path = dir.join(MODEL_INDEX_FILE);
        let index = read_json(&index_path)?;
        let map = index
            .as_object()
            .ok_or_else(|| DiffusionError::config(&index_path, "expected a JSON object"))?;
        let component = |name: &str| -> Option<String> {
            map.get(name)?.as_array()?.get(1)?.as_str().map(str::to_owned)
        };
        let mut problems = Vec::new();
        let mut need = |name: &str, file: &str| {
            let path = dir.join(name).join(file);
            if !path.is_file() {
                problems.push(format!("missing {name}/{file}"));
            }
        };
        need("unet", "config.json");
        need("scheduler", SCHEDULER_FILE);
        let has_vae = component("vae").is_some();
        if has_vae {
            need("vae", "config.json");
        }
        let text = component("text_encoder").is_some();
        if text {
            need("text_encoder", "config.json");
            need("tokenizer", "vocab.json");
        }
        let image = component("image_encoder").is_some();
        if image {
            need("image_encoder", "config.json");
        }
        let codec_key = map.get(CODEC_KEY).and_then(Value::as_str);
        if !has_vae && codec_key.and_then(Codec::parse_pixel).is_none() {
            problems.push(format!("no `vae` component and no `{CODEC_KEY}: pixel_unshuffle:F`"));
        }
        if let Some(class) = component("unet").filter(|c| c != "UNet2DConditionModel") {
            problems.push(format!("unet is `{class}`, expected UNet2DConditionModel"));
        }
        if !problems.is_empty() {
            return Err(DiffusionError::config(&index_path, problems.join(", ")));
        }
        let default_kind = component("scheduler")
            .and_then(|c| serde_json::from_value::<SchedulerKind>(Value::from(c)).ok())
            .unwrap_or(SchedulerKind::Pndm);
        let scheduler =
            SchedulerConfig::from_file(&dir.join("scheduler").join(SCHEDULER_FILE), default_kind)?;
        // Weights are read and each config's sizes checked against them before any variable is
        // allocated: a config.json is never trusted for an allocation.
        let unet_config = UNetConfig::from_file(&dir.join("unet").join("config.json"))?;
        let unet_path = weights_file(&dir.join("unet"))?;
        let unet_weights = read_weights(&unet_path)?;
        unet_config.backed_by(&unet_weights).map_err(|m| DiffusionError::weights(&unet_path, m))?;
        let mut unet_vs = nn::VarStore::new(device);
        let unet = UNet2DConditionModel::new(&unet_vs.root(), &unet_config);
        copy_weights(&mut unet_vs, &unet_weights, &unet_path)?;
        drop(unet_weights);
        let mut var_stores = vec![unet_vs];
        let codec = if has_vae {
            let vae_config = VaeConfig::from_file(&dir.join("vae").join("config.json"))?;
            let vae_path = weights_file(&dir.join("vae"))?;
            let vae_weights = read_weights(&vae_path)?;
            vae_config
                .backed_by(&vae_weights)
                .map_err(|m| DiffusionError::weights(&vae_path, m))?;
            let mut vae_vs = nn::VarStore::new(device);
            let vae = AutoencoderKL::new(&vae_vs.root(), &vae_config);
            copy_weights(&mut vae_vs, &vae_weights, &vae_path)?;
            var_stores.push(vae_vs);
            Codec::Vae(Box::new(vae))
        } else {
            Codec::PixelUnshuffle(codec_key.and_then(Codec::parse_pixel).expect("checked above"))
        };
        for vs in &mut var_stores {
            vs.set_kind(kind);
        }
        let conditioning = if text {
            Conditioning::TextHiddenStates {
                encoder: dir.join("text_encoder"),
                tokenizer: dir.join("tokenizer"),
            }
        } else {
            Conditioning::ImageEmbedding { encoder: image.then(|| dir.join("image_encoder")) }
        };
        let normalize_condition =
            map.get(CONDITION_KEY).and_then(Value::as_str) == Some(NORMALIZED_CONDITION);
        Ok(DiffusionPipeline {
            unet,
            codec,
            scheduler,
            conditioning,
            normalize_condition,
            var_stores,
            device,
        })
    }
}

/// The options of [`denoise`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleOptions {
    /// Inference steps.
    pub steps: usize,
    /// Classifier-free guidance scale (≤ 1: no unconditional pass, as diffusers).
    pub guidance_scale: f64,
}

/// diffusers' denoising loop: from `latents` (already scaled by the initial noise sigma, 1 for
/// these schedulers) through every inference timestep, `guidance_scale · (cond − uncond) +
/// uncond` when guided (the unconditional half first, as diffusers batches it). `noise` draws the
/// DDPM variance noise of a step (unused by DDIM and PNDM). The model runs in the kind of its
/// weights; the scheduler arithmetic in f32.
pub fn denoise(
    unet: &UNet2DConditionModel,
    scheduler: &SchedulerConfig,
    latents: &Tensor,
    condition: &Tensor,
    unconditional: &Tensor,
    options: SampleOptions,
    mut noise: impl FnMut(&Tensor) -> Tensor,
) -> Result<Tensor> {
    let mut scheduler = Scheduler::new(scheduler);
    scheduler.set_timesteps(options.steps)?;
    let model_kind = condition.kind();
    let guided = options.guidance_scale > 1.0;
    let context = if guided {
        Tensor::cat(&[unconditional, condition], 0)
    } else {
        condition.shallow_clone()
    };
    // The state stays in f32 (f64 when the caller asks for it, as the diffusers parity test
    // does), whatever precision the UNet runs in.
    let state_kind = if latents.kind() == Kind::Double { Kind::Double } else { Kind::Float };
    let mut x = latents.to_kind(state_kind);
    let timesteps = scheduler.timesteps().to_vec();
    tch::no_grad(|| {
        for t in timesteps {
            let input = if guided { Tensor::cat(&[&x, &x], 0) } else { x.shallow_clone() };
            let t_tensor = Tensor::from_slice(&[t]).to_device(x.device());
            let out =
                unet.forward(&input.to_kind(model_kind), &t_tensor, &context).to_kind(state_kind);
            let out = if guided {
                let parts = out.chunk(2, 0);
                &parts[0] + (&parts[1] - &parts[0]) * options.guidance_scale
            } else {
                out
            };
            let z = noise(&x);
            x = scheduler.step(&out, t, &x, Some(&z));
        }
    });
    Ok(x)
}
