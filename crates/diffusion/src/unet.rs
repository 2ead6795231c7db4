//! `UNet2DConditionModel` as diffusers builds it for Stable Diffusion 1.x/2.x and its tiny test
//! configs: `CrossAttnDownBlock2D` / `DownBlock2D`, `UNetMidBlock2DCrossAttn`,
//! `CrossAttnUpBlock2D` / `UpBlock2D`, with diffusers' variable names and `config.json` fields,
//! one timestep per sample (what DDPM training needs).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::{Tensor, nn};

use crate::error::{DiffusionError, Result};
use crate::layers::{
    Downsample, ResnetBlock2D, ResnetShape, TimestepEmbedding, Transformer2D, TransformerShape,
    Upsample, conv2d, group_norm, timestep_embedding,
};
use brainpipe_core::IoContext;
use brainpipe_core::{SafetensorsFile, ShapeCheck};

/// An `int` or a per-block list of ints, as diffusers configs write `attention_head_dim`,
/// `transformer_layers_per_block` and `layers_per_block`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    /// The same value for every block.
    One(i64),
    /// One value per down block (up blocks read it reversed).
    Each(Vec<i64>),
}

impl PerBlock {
    /// The value of down block `i`.
    pub fn get(&self, i: usize) -> i64 {
        match self {
            PerBlock::One(v) => *v,
            PerBlock::Each(v) => v.get(i).or(v.last()).copied().unwrap_or(1),
        }
    }
}

/// The fields of a diffusers `UNet2DConditionModel` `config.json` this implementation reads.
/// Unknown fields are kept out; fields that would change the architecture in ways not built here
/// (class embeddings, added conditioning, other block types) are refused by [`UNetConfig::check`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UNetConfig {
    /// Width of the input.
    pub in_channels: i64,
    /// Width of the output.
    pub out_channels: i64,
    /// Side (or `[h, w]`) of the latents the model was trained on (metadata).
    pub sample_size: Option<Value>,
    /// Maps the input from [0, 1] to [-1, 1] first.
    pub center_input_sample: bool,
    /// Cosines before sines in the timestep embedding (SD: true).
    pub flip_sin_to_cos: bool,
    /// `downscale_freq_shift` of the timestep embedding (SD: 0).
    pub freq_shift: f64,
    /// `CrossAttnDownBlock2D` or `DownBlock2D` per level.
    pub down_block_types: Vec<String>,
    /// `UNetMidBlock2DCrossAttn` (the only one built).
    pub mid_block_type: Option<String>,
    /// `CrossAttnUpBlock2D` or `UpBlock2D` per level.
    pub up_block_types: Vec<String>,
    /// Width of each level.
    pub block_out_channels: Vec<i64>,
    /// ResNet blocks per down level (up levels: one more).
    pub layers_per_block: PerBlock,
    /// Padding of the down-sampling convolutions.
    pub downsample_padding: i64,
    /// Output scale of the middle block's ResNets.
    pub mid_block_scale_factor: f64,
    /// `silu` (the only one built).
    pub act_fn: String,
    /// GroupNorm groups.
    pub norm_num_groups: i64,
    /// GroupNorm eps of the ResNets and the output norm.
    pub norm_eps: f64,
    /// Width of the cross-attention context (CLIP: 768 for ViT-L/14).
    pub cross_attention_dim: i64,
    /// Transformer blocks per attention.
    pub transformer_layers_per_block: PerBlock,
    /// **The number of heads** in SD 1.x configs (a historical misnomer diffusers keeps).
    pub attention_head_dim: PerBlock,
    /// The number of heads when set (overrides `attention_head_dim`).
    pub num_attention_heads: Option<PerBlock>,
    /// Linear instead of 1×1-conv projections around the transformer (SD 2.x).
    pub use_linear_projection: bool,
    /// Attention softmax in f32 under half precision.
    pub upcast_attention: bool,
    /// `positional` (the only one built).
    pub time_embedding_type: String,
    /// `default` (the only one built).
    pub resnet_time_scale_shift: String,
    /// Must be null.
    pub class_embed_type: Option<String>,
    /// Must be null.
    pub addition_embed_type: Option<String>,
    /// Must be null.
    pub encoder_hid_dim: Option<i64>,
    /// Must be null.
    pub time_cond_proj_dim: Option<i64>,
    /// Must be null.
    pub num_class_embeds: Option<i64>,
    /// Must be false.
    pub dual_cross_attention: bool,
    /// Must be false.
    pub only_cross_attention: Value,
    /// Must be 3.
    pub conv_in_kernel: i64,
    /// Must be 3.
    pub conv_out_kernel: i64,
}

impl Default for UNetConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        UNetConfig {
            in_channels: 4,
            out_channels: 4,
            sample_size: None,
            center_input_sample: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            down_block_types: s(&[
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ]),
            mid_block_type: Some("UNetMidBlock2DCrossAttn".to_owned()),
            up_block_types: s(&[
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ]),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: PerBlock::One(2),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            act_fn: "silu".to_owned(),
            norm_num_groups: 32,
            norm_eps: 1e-5,
            cross_attention_dim: 1280,
            transformer_layers_per_block: PerBlock::One(1),
            attention_head_dim: PerBlock::One(8),
            num_attention_heads: None,
            use_linear_projection: false,
            upcast_attention: false,
            time_embedding_type: "positional".to_owned(),
            resnet_time_scale_shift: "default".to_owned(),
            class_embed_type: None,
            addition_embed_type: None,
            encoder_hid_dim: None,
            time_cond_proj_dim: None,
            num_class_embeds: None,
            dual_cross_attention: false,
            only_cross_attention: Value::Bool(false),
            conv_in_kernel: 3,
            conv_out_kernel: 3,
        }
    }
}

impl UNetConfig {
    /// The SD 1.5 UNet with `cross_attention_dim` 768 (`lambdalabs/sd-image-variations-diffusers`
    /// and `runwayml/stable-diffusion-v1-5` share it).
    pub fn sd15() -> Self {
        UNetConfig {
            sample_size: Some(Value::from(64)),
            cross_attention_dim: 768,
            ..UNetConfig::default()
        }
    }

    /// Reads a diffusers `unet/config.json` and checks it ([`UNetConfig::check`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        let config: UNetConfig =
            serde_json::from_str(&text).map_err(|e| DiffusionError::config(path, e.to_string()))?;
        config.check().map_err(|m| DiffusionError::config(path, m))?;
        Ok(config)
    }

    /// Why this config cannot be built here, if it cannot (every reason, joined).
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut problems = Vec::new();
        let levels = self.block_out_channels.len();
        if levels == 0 {
            problems.push("block_out_channels is empty".to_owned());
        }
        if self.down_block_types.len() != levels || self.up_block_types.len() != levels {
            problems.push(format!(
                "{} down and {} up block types for {levels} block_out_channels",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        for t in &self.down_block_types {
            if t != "CrossAttnDownBlock2D" && t != "DownBlock2D" {
                problems.push(format!("down block `{t}` is not supported"));
            }
        }
        for t in &self.up_block_types {
            if t != "CrossAttnUpBlock2D" && t != "UpBlock2D" {
                problems.push(format!("up block `{t}` is not supported"));
            }
        }
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2DCrossAttn") {
            problems.push(format!("mid block {:?} is not supported", self.mid_block_type));
        }
        let mut unsupported = |cond: bool, what: &str| {
            if cond {
                problems.push(format!("{what} is not supported"));
            }
        };
        unsupported(self.act_fn != "silu", "act_fn other than silu");
        unsupported(self.time_embedding_type != "positional", "time_embedding_type");
        unsupported(self.resnet_time_scale_shift != "default", "resnet_time_scale_shift");
        unsupported(self.class_embed_type.is_some(), "class_embed_type");
        unsupported(self.addition_embed_type.is_some(), "addition_embed_type");
        unsupported(self.encoder_hid_dim.is_some(), "encoder_hid_dim");
        unsupported(self.time_cond_proj_dim.is_some(), "time_cond_proj_dim");
        unsupported(self.num_class_embeds.is_some(), "num_class_embeds");
        unsupported(self.dual_cross_attention, "dual_cross_attention");
        unsupported(self.only_cross_attention != Value::Bool(false), "only_cross_attention");
        unsupported(self.conv_in_kernel != 3 || self.conv_out_kernel != 3, "kernel other than 3");
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            if c % self.norm_num_groups != 0 {
                problems.push(format!(
                    "block {i}: {c} channels not divisible by {} groups",
                    self.norm_num_groups
                ));
            }
            if self.down_block_types.get(i).is_some_and(|t| t.starts_with("CrossAttn"))
                && c % self.heads(i) != 0
            {
                problems.push(format!(
                    "block {i}: {c} channels not divisible by {} heads",
                    self.heads(i)
                ));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }

    /// Attention heads of down block `i`.
    pub fn heads(&self, i: usize) -> i64 {
        self.num_attention_heads.as_ref().unwrap_or(&self.attention_head_dim).get(i)
    }

    /// Checks every size this config gives against the tensors of `weights` (diffusers' names):
    /// widths, ResNet and transformer counts, channels in and out, the time embedding and the
    /// cross-attention context; so that building the model allocates no more than the file
    /// holds. The first disagreement is the error.
    pub fn backed_by(&self, weights: &SafetensorsFile) -> std::result::Result<(), String> {
        let ch = &self.block_out_channels;
        let levels = ch.len();
        let mut b = ShapeCheck::new(weights, "config.json");
        b.shape("conv_in.weight", &[ch[0], self.in_channels, 3, 3])
            .shape("conv_out.weight", &[self.out_channels, ch[0], 3, 3])
            .shape("time_embedding.linear_1.weight", &[self.time_embed_dim(), ch[0]]);
        for (i, kind) in self.down_block_types.iter().enumerate() {
            let down = format!("down_blocks.{i}");
            let from = ch[i.saturating_sub(1)];
            let layers = self.layers_per_block.get(i);
            let resnets = format!("{down}.resnets");
            b.count(&resnets, layers, &resnets, "layers_per_block");
            b.shape(&format!("{down}.resnets.0.conv1.weight"), &[ch[i], from, 3, 3]);
            let up = format!("up_blocks.{}", levels - 1 - i);
            let resnets = format!("{up}.resnets");
            b.count(&resnets, layers + 1, &resnets, "layers_per_block + 1 =");
            if kind.starts_with("CrossAttn") {
                let attention = format!("{down}.attentions.0");
                let blocks = self.transformer_layers_per_block.get(i);
                let transformers = format!("{attention}.transformer_blocks");
                b.count(&transformers, blocks, &transformers, "transformer layers");
                b.shape(
                    &format!("{attention}.transformer_blocks.0.attn2.to_k.weight"),
                    &[ch[i], self.cross_attention_dim],
                );
            }
        }
        b.finish()
    }

    /// Width of the time embedding (4 × the first level's width).
    pub fn time_embed_dim(&self) -> i64 {
        self.block_out_channels[0] * 4
    }

    /// The `config.json` diffusers writes for this model.
    pub fn to_diffusers_json(&self) -> Value {
        let mut v = serde_json::to_value(self).expect("a UNet config serialises");
        if let Value::Object(map) = &mut v {
            map.insert("_class_name".to_owned(), Value::from("UNet2DConditionModel"));
            map.insert("_diffusers_version".to_owned(), Value::from("0.42.1"));
        }
        v
    }
}

#[derive(Debug)]
struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    downsampler: Option<Downsample>,
}

#[derive(Debug)]
struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    upsampler: Option<Upsample>,
}

#[derive(Debug)]
struct MidBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
}

/// diffusers' `UNet2DConditionModel`: predicts the noise (or v) of `sample` at `timesteps`
/// given `encoder_hidden_states`.
#[derive(Debug)]
pub struct UNet2DConditionModel {
    config: UNetConfig,
    conv_in: nn::Conv2D,
    time_embedding: TimestepEmbedding,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl UNet2DConditionModel {
    /// Builds the model's variables under `p` (names as in diffusers' state dict).
    ///
    /// # Panics
    /// If the config fails [`UNetConfig::check`] (loaders check first).
    pub fn new(p: &nn::Path<'_>, config: &UNetConfig) -> Self {
        if let Err(message) = config.check() {
            panic!("unsupported UNet config: {message}");
        }
        let c = config;
        let ch = &c.block_out_channels;
        let levels = ch.len();
        let temb = c.time_embed_dim();
        let resnet = |cin, cout, scale| ResnetShape {
            cin,
            cout,
            temb: Some(temb),
            groups: c.norm_num_groups,
            eps: c.norm_eps,
            output_scale_factor: scale,
        };
        let transformer = |channels, level: usize| TransformerShape {
            channels,
            heads: c.heads(level),
            layers: c.transformer_layers_per_block.get(level),
            context_dim: c.cross_attention_dim,
            groups: c.norm_num_groups,
            linear_projection: c.use_linear_projection,
            upcast: c.upcast_attention,
        };
        let mut down_blocks = Vec::with_capacity(levels);
        let mut cout = ch[0];
        for (i, kind) in c.down_block_types.iter().enumerate() {
            let cin = cout;
            cout = ch[i];
            let bp = p / "down_blocks" / i;
            let layers = c.layers_per_block.get(i);
            let cross = kind.starts_with("CrossAttn");
            down_blocks.push(DownBlock {
                resnets: (0..layers)
                    .map(|j| {
                        let from = if j == 0 { cin } else { cout };
                        ResnetBlock2D::new(&bp / "resnets" / j, resnet(from, cout, 1.0))
                    })
                    .collect(),
                attentions: if cross {
                    (0..layers)
                        .map(|j| Transformer2D::new(&bp / "attentions" / j, transformer(cout, i)))
                        .collect()
                } else {
                    Vec::new()
                },
                downsampler: (i + 1 < levels)
                    .then(|| Downsample::new(&bp / "downsamplers" / 0, cout, c.downsample_padding)),
            });
        }
        let last = ch[levels - 1];
        let mp = p / "mid_block";
        let mid_block = MidBlock {
            resnets: (0..2)
                .map(|j| {
                    ResnetBlock2D::new(
                        &mp / "resnets" / j,
                        resnet(last, last, c.mid_block_scale_factor),
                    )
                })
                .collect(),
            attentions: vec![Transformer2D::new(
                &mp / "attentions" / 0,
                transformer(last, levels - 1),
            )],
        };
        let reversed: Vec<i64> = ch.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(levels);
        let mut out = reversed[0];
        for (i, kind) in c.up_block_types.iter().enumerate() {
            let prev = out;
            out = reversed[i];
            let skip_in = reversed[(i + 1).min(levels - 1)];
            let level = levels - 1 - i;
            let layers = c.layers_per_block.get(level) + 1;
            let bp = p / "up_blocks" / i;
            let cross = kind.starts_with("CrossAttn");
            up_blocks.push(UpBlock {
                resnets: (0..layers)
                    .map(|j| {
                        let skip = if j == layers - 1 { skip_in } else { out };
                        let from = if j == 0 { prev } else { out };
                        ResnetBlock2D::new(&bp / "resnets" / j, resnet(from + skip, out, 1.0))
                    })
                    .collect(),
                attentions: if cross {
                    (0..layers)
                        .map(|j| {
                            Transformer2D::new(&bp / "attentions" / j, transformer(out, level))
                        })
                        .collect()
                } else {
                    Vec::new()
                },
                upsampler: (i + 1 < levels).then(|| Upsample::new(&bp / "upsamplers" / 0, out)),
            });
        }
        UNet2DConditionModel {
            config: c.clone(),
            conv_in: conv2d(p / "conv_in", c.in_channels, ch[0], 3, 1, 1),
            time_embedding: TimestepEmbedding::new(p / "time_embedding", ch[0], temb),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(p / "conv_norm_out", c.norm_num_groups, ch[0], c.norm_eps),
            conv_out: conv2d(p / "conv_out", ch[0], c.out_channels, 3, 1, 1),
        }
    }

    /// Its config.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// `sample` `[B, C, H, W]`, `timesteps` `[B]` (or `[1]`, broadcast: one per sample, any
    /// integer or float kind), `context` `[B, T, cross_attention_dim]` → `[B, out, H, W]`.
    pub fn forward(&self, sample: &Tensor, timesteps: &Tensor, context: &Tensor) -> Tensor {
        let batch = sample.size()[0];
        let kind = sample.kind();
        let timesteps =
            if timesteps.dim() == 0 { timesteps.reshape([1]) } else { timesteps.shallow_clone() };
        let timesteps = timesteps.expand([batch], false);
        let t_emb = timestep_embedding(
            &timesteps,
            self.config.block_out_channels[0],
            self.config.flip_sin_to_cos,
            self.config.freq_shift,
        )
        .to_kind(kind);
        let emb = self.time_embedding.forward(&t_emb);
        let sample = if self.config.center_input_sample {
            sample * 2.0 - 1.0
        } else {
            sample.shallow_clone()
        };
        let mut x = sample.apply(&self.conv_in);
        let mut skips = vec![x.shallow_clone()];
        for block in &self.down_blocks {
            for (j, resnet) in block.resnets.iter().enumerate() {
                x = resnet.forward(&x, Some(&emb));
                if let Some(attn) = block.attentions.get(j) {
                    x = attn.forward(&x, context);
                }
                skips.push(x.shallow_clone());
            }
            if let Some(down) = &block.downsampler {
                x = down.forward(&x);
                skips.push(x.shallow_clone());
            }
        }
        x = self.mid_block.resnets[0].forward(&x, Some(&emb));
        x = self.mid_block.attentions[0].forward(&x, context);
        x = self.mid_block.resnets[1].forward(&x, Some(&emb));
        for block in &self.up_blocks {
            for (j, resnet) in block.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip per up-block resnet");
                x = resnet.forward(&Tensor::cat(&[&x, &skip], 1), Some(&emb));
                if let Some(attn) = block.attentions.get(j) {
                    x = attn.forward(&x, context);
                }
            }
            if let Some(up) = &block.upsampler {
                // The next skip's size (diffusers' `upsample_size` when sides are not multiples).
                let size = skips.last().map(|s| (s.size()[2], s.size()[3]));
                x = up.forward(&x, size);
            }
        }
        x.apply(&self.conv_norm_out).silu().apply(&self.conv_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_error_quoting_the_file_stays_one_line() {
        // The class of defect the hf_config fuzz target found in CLIP's config.json: serde quotes
        // a value as the file wrote it, newlines included.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"down_block_types": ["Down\nBlock2D"]}"#).expect("write");
        let err = UNetConfig::from_file(&path).expect_err("malformed").to_string();
        assert!(err.starts_with(&format!("{}: ", path.display())), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    /// A two-level UNet small enough to build in a test, and its weights as a file reads them.
    fn small() -> (UNetConfig, SafetensorsFile, tempfile::TempDir) {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        let config = UNetConfig {
            down_block_types: s(&["CrossAttnDownBlock2D", "DownBlock2D"]),
            up_block_types: s(&["UpBlock2D", "CrossAttnUpBlock2D"]),
            block_out_channels: vec![8, 16],
            layers_per_block: PerBlock::One(1),
            norm_num_groups: 4,
            cross_attention_dim: 6,
            attention_head_dim: PerBlock::One(2),
            ..UNetConfig::default()
        };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _unet = UNet2DConditionModel::new(&vs.root(), &config);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.safetensors");
        brainpipe_tensor::save_var_store(&vs, &path, "test/1", &serde_json::json!({}))
            .expect("save");
        let weights = crate::weights::read_weights(&path).expect("read");
        (config, weights, dir)
    }

    #[test]
    fn config_sizes_must_be_the_weights_sizes_before_anything_is_built() {
        let (config, weights, _dir) = small();
        config.backed_by(&weights).expect("its own weights back it");
        let wider = UNetConfig { block_out_channels: vec![8, 16_000_000], ..config.clone() };
        let err = wider.backed_by(&weights).expect_err("a width the weights lack");
        assert!(err.contains("down_blocks.1.resnets.0.conv1.weight"), "{err}");
        let deeper = UNetConfig { layers_per_block: PerBlock::One(1_000_000), ..config.clone() };
        let err = deeper.backed_by(&weights).expect_err("layers the weights lack");
        assert!(err.contains("resnets") && err.contains("1000000"), "{err}");
        let context = UNetConfig { cross_attention_dim: 1 << 40, ..config.clone() };
        let err = context.backed_by(&weights).expect_err("a context the weights lack");
        assert!(err.contains("attn2.to_k"), "{err}");
        let more = UNetConfig { transformer_layers_per_block: PerBlock::One(3), ..config };
        assert!(more.backed_by(&weights).expect_err("blocks").contains("transformer_blocks"));
    }
}
