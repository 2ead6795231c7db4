//! `AutoencoderKL` as diffusers builds it (Stable Diffusion's VAE and its tiny test configs):
//! `DownEncoderBlock2D` / `UpDecoderBlock2D`, a middle block with one single-head attention,
//! a diagonal Gaussian posterior, `quant_conv` / `post_quant_conv`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::{Tensor, nn};

use crate::error::{DiffusionError, Result};
use crate::layers::{
    Downsample, ResnetBlock2D, ResnetShape, Upsample, VaeAttention, conv2d, group_norm,
};
use brainpipe_core::IoContext;
use brainpipe_core::{SafetensorsFile, ShapeCheck};

/// GroupNorm eps everywhere in the VAE (diffusers hard-codes 1e-6 there).
const VAE_EPS: f64 = 1e-6;

/// The fields of a diffusers `AutoencoderKL` `config.json` this implementation reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    /// Image channels in.
    pub in_channels: i64,
    /// Image channels out.
    pub out_channels: i64,
    /// `DownEncoderBlock2D` per level.
    pub down_block_types: Vec<String>,
    /// `UpDecoderBlock2D` per level.
    pub up_block_types: Vec<String>,
    /// Width of each level.
    pub block_out_channels: Vec<i64>,
    /// ResNet blocks per encoder level (decoder: one more).
    pub layers_per_block: i64,
    /// `silu` (the only one built).
    pub act_fn: String,
    /// Latent channels.
    pub latent_channels: i64,
    /// GroupNorm groups.
    pub norm_num_groups: i64,
    /// Image side the VAE was trained on (metadata).
    pub sample_size: Option<Value>,
    /// Latents are multiplied by it after encoding (SD: 0.18215).
    pub scaling_factor: f64,
    /// Subtracted before scaling when set (SD3/Flux; null for SD 1.x).
    pub shift_factor: Option<f64>,
    /// Whether `quant_conv` exists.
    pub use_quant_conv: bool,
    /// Whether `post_quant_conv` exists.
    pub use_post_quant_conv: bool,
    /// Whether the middle blocks hold an attention.
    pub mid_block_add_attention: bool,
    /// Run in f32 under half precision (diffusers' hint; kept as metadata).
    pub force_upcast: bool,
}

impl Default for VaeConfig {
    fn default() -> Self {
        VaeConfig {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec!["DownEncoderBlock2D".to_owned()],
            up_block_types: vec!["UpDecoderBlock2D".to_owned()],
            block_out_channels: vec![64],
            layers_per_block: 1,
            act_fn: "silu".to_owned(),
            latent_channels: 4,
            norm_num_groups: 32,
            sample_size: Some(Value::from(32)),
            scaling_factor: 0.18215,
            shift_factor: None,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
            force_upcast: true,
        }
    }
}

impl VaeConfig {
    /// Checks every size this config gives against the tensors of `weights` (diffusers' names),
    /// as [`crate::UNetConfig::backed_by`] does: building allocates no more than the file holds.
    pub fn backed_by(&self, weights: &SafetensorsFile) -> std::result::Result<(), String> {
        let ch = &self.block_out_channels;
        let (first, last) = (ch[0], ch[ch.len() - 1]);
        let latent = self.latent_channels;
        let mut b = ShapeCheck::new(weights, "config.json");
        b.shape("encoder.conv_in.weight", &[first, self.in_channels, 3, 3])
            .shape("encoder.conv_out.weight", &[2 * latent, last, 3, 3])
            .shape("decoder.conv_in.weight", &[last, latent, 3, 3])
            .shape("decoder.conv_out.weight", &[self.out_channels, first, 3, 3]);
        for i in 0..ch.len() {
            let down = format!("encoder.down_blocks.{i}");
            let resnets = format!("{down}.resnets");
            b.count(&resnets, self.layers_per_block, &resnets, "layers_per_block");
            b.shape(
                &format!("{down}.resnets.0.conv1.weight"),
                &[ch[i], ch[i.saturating_sub(1)], 3, 3],
            );
            let up = format!("decoder.up_blocks.{i}.resnets");
            b.count(&up, self.layers_per_block + 1, &up, "layers_per_block + 1 =");
        }
        b.finish()
    }

    /// Stable Diffusion 1.x's VAE (`vae/config.json` of `runwayml/stable-diffusion-v1-5`).
    pub fn sd15() -> Self {
        VaeConfig {
            down_block_types: vec!["DownEncoderBlock2D".to_owned(); 4],
            up_block_types: vec!["UpDecoderBlock2D".to_owned(); 4],
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            sample_size: Some(Value::from(512)),
            ..VaeConfig::default()
        }
    }

    /// Reads a diffusers `vae/config.json` and checks it.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        let config: VaeConfig =
            serde_json::from_str(&text).map_err(|e| DiffusionError::config(path, e.to_string()))?;
        config.check().map_err(|m| DiffusionError::config(path, m))?;
        Ok(config)
    }

    /// Why this config cannot be built here, if it cannot.
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut problems = Vec::new();
        let levels = self.block_out_channels.len();
        if levels == 0 {
            problems.push("block_out_channels is empty".to_owned());
        }
        if self.down_block_types.len() != levels || self.up_block_types.len() != levels {
            problems.push("one down and one up block type per block_out_channels".to_owned());
        }
        if self.down_block_types.iter().any(|t| t != "DownEncoderBlock2D") {
            problems.push("only DownEncoderBlock2D is supported".to_owned());
        }
        if self.up_block_types.iter().any(|t| t != "UpDecoderBlock2D") {
            problems.push("only UpDecoderBlock2D is supported".to_owned());
        }
        if self.act_fn != "silu" {
            problems.push("act_fn other than silu is not supported".to_owned());
        }
        if self.block_out_channels.iter().any(|c| c % self.norm_num_groups != 0) {
            problems.push(format!("channels not divisible by {} groups", self.norm_num_groups));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }

    /// The `config.json` diffusers writes for this model.
    pub fn to_diffusers_json(&self) -> Value {
        let mut v = serde_json::to_value(self).expect("a VAE config serialises");
        if let Value::Object(map) = &mut v {
            map.insert("_class_name".to_owned(), Value::from("AutoencoderKL"));
            map.insert("_diffusers_version".to_owned(), Value::from("0.42.1"));
        }
        v
    }
}

#[derive(Debug)]
struct MidBlock {
    resnets: Vec<ResnetBlock2D>,
    attention: Option<VaeAttention>,
}

impl MidBlock {
    fn new(p: nn::Path<'_>, channels: i64, groups: i64, attention: bool) -> Self {
        let shape = ResnetShape {
            cin: channels,
            cout: channels,
            temb: None,
            groups,
            eps: VAE_EPS,
            output_scale_factor: 1.0,
        };
        MidBlock {
            resnets: (0..2).map(|j| ResnetBlock2D::new(&p / "resnets" / j, shape)).collect(),
            attention: attention
                .then(|| VaeAttention::new(&p / "attentions" / 0, channels, groups, VAE_EPS)),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut x = self.resnets[0].forward(x, None);
        if let Some(attn) = &self.attention {
            x = attn.forward(&x);
        }
        self.resnets[1].forward(&x, None)
    }
}

#[derive(Debug)]
struct Level {
    resnets: Vec<ResnetBlock2D>,
    down: Option<Downsample>,
    up: Option<Upsample>,
}

fn resnet(cin: i64, cout: i64, groups: i64) -> ResnetShape {
    ResnetShape { cin, cout, temb: None, groups, eps: VAE_EPS, output_scale_factor: 1.0 }
}

#[derive(Debug)]
struct Encoder {
    conv_in: nn::Conv2D,
    down_blocks: Vec<Level>,
    mid_block: MidBlock,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl Encoder {
    fn new(p: nn::Path<'_>, c: &VaeConfig) -> Self {
        let ch = &c.block_out_channels;
        let levels = ch.len();
        let g = c.norm_num_groups;
        let mut cout = ch[0];
        let down_blocks = (0..levels)
            .map(|i| {
                let cin = cout;
                cout = ch[i];
                let bp = &p / "down_blocks" / i;
                Level {
                    resnets: (0..c.layers_per_block)
                        .map(|j| {
                            let from = if j == 0 { cin } else { cout };
                            ResnetBlock2D::new(&bp / "resnets" / j, resnet(from, cout, g))
                        })
                        .collect(),
                    down: (i + 1 < levels)
                        .then(|| Downsample::new(&bp / "downsamplers" / 0, cout, 0)),
                    up: None,
                }
            })
            .collect();
        let last = ch[levels - 1];
        Encoder {
            conv_in: conv2d(&p / "conv_in", c.in_channels, ch[0], 3, 1, 1),
            down_blocks,
            mid_block: MidBlock::new(&p / "mid_block", last, g, c.mid_block_add_attention),
            conv_norm_out: group_norm(&p / "conv_norm_out", g, last, VAE_EPS),
            conv_out: conv2d(&p / "conv_out", last, 2 * c.latent_channels, 3, 1, 1),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut x = x.apply(&self.conv_in);
        for level in &self.down_blocks {
            for r in &level.resnets {
                x = r.forward(&x, None);
            }
            if let Some(down) = &level.down {
                x = down.forward(&x);
            }
        }
        self.mid_block.forward(&x).apply(&self.conv_norm_out).silu().apply(&self.conv_out)
    }
}

#[derive(Debug)]
struct Decoder {
    conv_in: nn::Conv2D,
    mid_block: MidBlock,
    up_blocks: Vec<Level>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl Decoder {
    fn new(p: nn::Path<'_>, c: &VaeConfig) -> Self {
        let reversed: Vec<i64> = c.block_out_channels.iter().rev().copied().collect();
        let levels = reversed.len();
        let g = c.norm_num_groups;
        let mut out = reversed[0];
        let up_blocks = (0..levels)
            .map(|i| {
                let prev = out;
                out = reversed[i];
                let bp = &p / "up_blocks" / i;
                Level {
                    resnets: (0..=c.layers_per_block)
                        .map(|j| {
                            let from = if j == 0 { prev } else { out };
                            ResnetBlock2D::new(&bp / "resnets" / j, resnet(from, out, g))
                        })
                        .collect(),
                    down: None,
                    up: (i + 1 < levels).then(|| Upsample::new(&bp / "upsamplers" / 0, out)),
                }
            })
            .collect();
        let first = c.block_out_channels[0];
        Decoder {
            conv_in: conv2d(&p / "conv_in", c.latent_channels, reversed[0], 3, 1, 1),
            mid_block: MidBlock::new(&p / "mid_block", reversed[0], g, c.mid_block_add_attention),
            up_blocks,
            conv_norm_out: group_norm(&p / "conv_norm_out", g, first, VAE_EPS),
            conv_out: conv2d(&p / "conv_out", first, c.out_channels, 3, 1, 1),
        }
    }
    fn forward(&self, z: &Tensor) -> Tensor {
        let mut x = self.mid_block.forward(&z.apply(&self.conv_in));
        for level in &self.up_blocks {
            for r in &level.resnets {
                x = r.forward(&x, None);
            }
            if let Some(up) = &level.up {
                x = up.forward(&x, None);
            }
        }
        x.apply(&self.conv_norm_out).silu().apply(&self.conv_out)
    }
}

/// The posterior `encode` returns: a diagonal Gaussian over the latents.
#[derive(Debug)]
pub struct DiagonalGaussian {
    /// Its mean (`latent_dist.mode()`).
    pub mean: Tensor,
    /// Its log-variance, clamped to [-30, 20] as diffusers does.
    pub logvar: Tensor,
}

impl DiagonalGaussian {
    /// `mean + std · noise` (`latent_dist.sample()` given the noise).
    pub fn sample_with(&self, noise: &Tensor) -> Tensor {
        &self.mean + (&self.logvar * 0.5).exp() * noise
    }
}

/// diffusers' `AutoencoderKL`.
#[derive(Debug)]
pub struct AutoencoderKL {
    config: VaeConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<nn::Conv2D>,
    post_quant_conv: Option<nn::Conv2D>,
}

impl AutoencoderKL {
    /// Builds the model's variables under `p` (names as in diffusers' state dict).
    ///
    /// # Panics
    /// If the config fails [`VaeConfig::check`] (loaders check first).
    pub fn new(p: &nn::Path<'_>, config: &VaeConfig) -> Self {
        if let Err(message) = config.check() {
            panic!("unsupported VAE config: {message}");
        }
        let l = config.latent_channels;
        AutoencoderKL {
            config: config.clone(),
            encoder: Encoder::new(p / "encoder", config),
            decoder: Decoder::new(p / "decoder", config),
            quant_conv: config
                .use_quant_conv
                .then(|| conv2d(p / "quant_conv", 2 * l, 2 * l, 1, 1, 0)),
            post_quant_conv: config
                .use_post_quant_conv
                .then(|| conv2d(p / "post_quant_conv", l, l, 1, 1, 0)),
        }
    }

    /// Its config.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Images in [-1, 1] `[B, 3, H, W]` → the latent posterior (unscaled).
    pub fn encode(&self, images: &Tensor) -> DiagonalGaussian {
        let mut moments = self.encoder.forward(images);
        if let Some(q) = &self.quant_conv {
            moments = moments.apply(q);
        }
        let parts = moments.chunk(2, 1);
        DiagonalGaussian { mean: parts[0].shallow_clone(), logvar: parts[1].clamp(-30.0, 20.0) }
    }

    /// Unscaled latents → images (about [-1, 1]).
    pub fn decode(&self, latents: &Tensor) -> Tensor {
        let z = match &self.post_quant_conv {
            Some(q) => latents.apply(q),
            None => latents.shallow_clone(),
        };
        self.decoder.forward(&z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sizes_must_be_the_weights_sizes_before_anything_is_built() {
        let config = VaeConfig {
            down_block_types: vec!["DownEncoderBlock2D".to_owned(); 2],
            up_block_types: vec!["UpDecoderBlock2D".to_owned(); 2],
            block_out_channels: vec![8, 16],
            norm_num_groups: 4,
            ..VaeConfig::default()
        };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _vae = AutoencoderKL::new(&vs.root(), &config);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.safetensors");
        brainpipe_tensor::save_var_store(&vs, &path, "test/1", &serde_json::json!({}))
            .expect("save");
        let weights = crate::weights::read_weights(&path).expect("read");
        config.backed_by(&weights).expect("its own weights back it");
        let wider = VaeConfig { block_out_channels: vec![8, 1 << 30], ..config.clone() };
        let err = wider.backed_by(&weights).expect_err("a width the weights lack");
        assert!(err.contains("encoder.conv_out.weight"), "{err}");
        let latent = VaeConfig { latent_channels: 1 << 40, ..config.clone() };
        assert!(latent.backed_by(&weights).expect_err("latent").contains("conv_out"));
        let deeper = VaeConfig { layers_per_block: 500, ..config };
        let err = deeper.backed_by(&weights).expect_err("layers");
        assert!(err.contains("encoder.down_blocks.0.resnets") && err.contains("500"), "{err}");
    }
}
