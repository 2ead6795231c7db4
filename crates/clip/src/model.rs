//! The CLIP model on LibTorch, with Hugging Face's variable paths.
//!
//! Every variable lives at the path `transformers`' `CLIPModel` gives it
//! (`vision_model.encoder.layers.{i}.self_attn.q_proj.weight`, `text_projection.weight`,
//! `logit_scale`…), so a Hugging Face `model.safetensors` loads by name, unchanged, and the files
//! [`ClipModel::save`] writes load in `transformers`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use brainpipe_core::{
    Dtype, IoContext, NamedTensor, SafetensorsFile, ShapeCheck, one_line, read_safetensors,
};
use brainpipe_tensor::{save_var_store, weight_mismatches};
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};

use crate::config::{Activation, ClipConfig, TextConfig, VisionConfig};
use crate::error::{ClipError, Result};
use crate::image::Preprocessor;
use crate::tokenizer::{Tokenizer, VOCAB_FILE};

/// The weights file name in a model directory (Hugging Face's).
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The config file name in a model directory (Hugging Face's).
pub const CONFIG_FILE: &str = "config.json";
/// The image preprocessing config in a model directory (Hugging Face's).
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";
/// The `__metadata__` tag of the weights this crate writes.
pub const CLIP_SCHEMA: &str = "hf-clip/1";
/// Buffers older `transformers` versions saved beside the weights; they hold no parameters.
const IGNORED_SUFFIX: &str = "position_ids";

fn linear(p: nn::Path<'_>, inputs: i64, outputs: i64, std: f64, bias: bool) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: Init::Randn { mean: 0.0, stdev: std },
        bs_init: bias.then_some(Init::Const(0.0)),
        bias,
    };
    nn::linear(p, inputs, outputs, config)
}

fn layer_norm(p: nn::Path<'_>, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

fn activate(x: &Tensor, act: Activation) -> Tensor {
    match act {
        // Radford et al. 2021's sigmoid approximation of GELU.
        Activation::QuickGelu => x * (x * 1.702).sigmoid(),
        Activation::Gelu => x.gelu("none"),
    }
}

/// Shapes shared by the two towers' encoder layers.
#[derive(Clone, Copy, Debug)]
struct LayerShape {
    hidden: i64,
    intermediate: i64,
    heads: i64,
    layers: i64,
    eps: f64,
    act: Activation,
}

/// Both towers' configs name the encoder's shape with the same fields.
macro_rules! layer_shape_from {
    ($($config:ty),*) => {$(
        impl From<&$config> for LayerShape {
            fn from(c: &$config) -> Self {
                LayerShape {
                    hidden: c.hidden_size,
                    intermediate: c.intermediate_size,
                    heads: c.num_attention_heads,
                    layers: c.num_hidden_layers,
                    eps: c.layer_norm_eps,
                    act: c.hidden_act,
                }
            }
        }
    )*};
}

layer_shape_from!(TextConfig, VisionConfig);

/// One pre-LN transformer block (`CLIPEncoderLayer`).
#[derive(Debug)]
struct EncoderLayer {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    out_proj: nn::Linear,
    layer_norm1: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    layer_norm2: nn::LayerNorm,
    heads: i64,
    act: Activation,
}

impl EncoderLayer {
    /// Initialised as `CLIPPreTrainedModel._init_weights` does (factor 1).
    fn new(p: nn::Path<'_>, s: LayerShape) -> Self {
        let d = s.hidden;
        let in_std = (d as f64).powf(-0.5) * ((2 * s.layers.max(1)) as f64).powf(-0.5);
        let out_std = (d as f64).powf(-0.5);
        let fc_std = ((2 * d) as f64).powf(-0.5);
        let attn = &p / "self_attn";
        let mlp = &p / "mlp";
        EncoderLayer {
            q_proj: linear(&attn / "q_proj", d, d, in_std, true),
            k_proj: linear(&attn / "k_proj", d, d, in_std, true),
            v_proj: linear(&attn / "v_proj", d, d, in_std, true),
            out_proj: linear(&attn / "out_proj", d, d, out_std, true),
            layer_norm1: layer_norm(&p / "layer_norm1", d, s.eps),
            fc1: linear(&mlp / "fc1", d, s.intermediate, fc_std, true),
            fc2: linear(&mlp / "fc2", s.intermediate, d, in_std, true),
            layer_norm2: layer_norm(&p / "layer_norm2", d, s.eps),
            heads: s.heads,
            act: s.act,
        }
    }

    fn forward(&self, x: &Tensor, causal: bool) -> Tensor {
        let (b, n, d) = x.size3().expect("encoder input is [batch, tokens, hidden]");
        let head_dim = d / self.heads;
        let h = x.apply(&self.layer_norm1);
        // One GEMM for q, k and v (3× wider) instead of three: the variables keep transformers'
        // separate names, the weights are concatenated per call (cheap next to the activations).
        let weight = Tensor::cat(&[&self.q_proj.ws, &self.k_proj.ws, &self.v_proj.ws], 0);
        let bias = match (&self.q_proj.bs, &self.k_proj.bs, &self.v_proj.bs) {
            (Some(q), Some(k), Some(v)) => Some(Tensor::cat(&[q, k, v], 0)),
            _ => None,
        };
        let qkv = h
            .linear(&weight, bias.as_ref())
            .view([b, n, 3, self.heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let attended = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            causal,
            None,
            false,
        );
        let attended = attended.transpose(1, 2).reshape([b, n, d]).apply(&self.out_proj);
        let x = x + attended;
        let h = activate(&x.apply(&self.layer_norm2).apply(&self.fc1), self.act).apply(&self.fc2);
        x + h
    }
}

#[derive(Debug)]
struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    fn new(p: nn::Path<'_>, s: LayerShape) -> Self {
        let layers = &p / "layers";
        Encoder { layers: (0..s.layers).map(|i| EncoderLayer::new(&layers / i, s)).collect() }
    }

    fn forward(&self, x: &Tensor, causal: bool) -> Tensor {
        let mut x = x.shallow_clone();
        for layer in &self.layers {
            x = layer.forward(&x, causal);
        }
        x
    }
}

/// The image tower up to the pooled, post-LayerNorm class token (`CLIPVisionTransformer`).
#[derive(Debug)]
struct VisionTransformer {
    patch_embedding: nn::Conv2D,
    class_embedding: Tensor,
    position_embedding: nn::Embedding,
    pre_layrnorm: nn::LayerNorm,
    encoder: Encoder,
    post_layernorm: nn::LayerNorm,
}

impl VisionTransformer {
    fn new(p: nn::Path<'_>, c: &VisionConfig) -> Self {
        let d = c.hidden_size;
        let emb = &p / "embeddings";
        let conv = nn::ConvConfig {
            stride: c.patch_size,
            bias: false,
            ws_init: Init::Randn { mean: 0.0, stdev: 0.02 },
            ..Default::default()
        };
        let position = nn::EmbeddingConfig {
            ws_init: Init::Randn { mean: 0.0, stdev: 0.02 },
            ..Default::default()
        };
        VisionTransformer {
            patch_embedding: nn::conv2d(
                &emb / "patch_embedding",
                c.num_channels,
                d,
                c.patch_size,
                conv,
            ),
            class_embedding: emb.var(
                "class_embedding",
                &[d],
                Init::Randn { mean: 0.0, stdev: (d as f64).powf(-0.5) },
            ),
            position_embedding: nn::embedding(
                &emb / "position_embedding",
                c.num_positions(),
                d,
                position,
            ),
            pre_layrnorm: layer_norm(&p / "pre_layrnorm", d, c.layer_norm_eps),
            encoder: Encoder::new(&p / "encoder", c.into()),
            post_layernorm: layer_norm(&p / "post_layernorm", d, c.layer_norm_eps),
        }
    }

    fn forward(&self, pixels: &Tensor) -> Tensor {
        let b = pixels.size()[0];
        let patches = pixels.apply(&self.patch_embedding).flatten(2, -1).transpose(1, 2);
        let d = patches.size()[2];
        let class =
            self.class_embedding.to_kind(patches.kind()).view([1, 1, d]).expand([b, 1, d], true);
        let tokens = Tensor::cat(&[class, patches], 1);
        let n = tokens.size()[1];
        let positions = Tensor::arange(n, (Kind::Int64, tokens.device()));
        let x = (tokens + positions.apply(&self.position_embedding)).apply(&self.pre_layrnorm);
        let x = self.encoder.forward(&x, false);
        x.select(1, 0).apply(&self.post_layernorm)
    }
}

/// The text tower up to the pooled, final-LayerNorm end-of-text token (`CLIPTextTransformer`).
#[derive(Debug)]
struct TextTransformer {
    token_embedding: nn::Embedding,
    position_embedding: nn::Embedding,
    encoder: Encoder,
    final_layer_norm: nn::LayerNorm,
    eos_token_id: i64,
}

impl TextTransformer {
    fn new(p: nn::Path<'_>, c: &TextConfig) -> Self {
        let emb = &p / "embeddings";
        let init = nn::EmbeddingConfig {
            ws_init: Init::Randn { mean: 0.0, stdev: 0.02 },
            ..Default::default()
        };
        TextTransformer {
            token_embedding: nn::embedding(
                &emb / "token_embedding",
                c.vocab_size,
                c.hidden_size,
                init,
            ),
            position_embedding: nn::embedding(
                &emb / "position_embedding",
                c.max_position_embeddings,
                c.hidden_size,
                init,
            ),
            encoder: Encoder::new(&p / "encoder", c.into()),
            final_layer_norm: layer_norm(&p / "final_layer_norm", c.hidden_size, c.layer_norm_eps),
            eos_token_id: c.eos_token_id,
        }
    }

    fn forward(&self, ids: &Tensor) -> Tensor {
        self.forward_embedded(ids, &ids.apply(&self.token_embedding))
    }

    /// `forward` with the token embeddings already looked up (`[batch, tokens, hidden]`).
    fn forward_embedded(&self, ids: &Tensor, tokens: &Tensor) -> Tensor {
        let (b, n) = ids.size2().expect("token ids are [batch, tokens]");
        let positions = Tensor::arange(n, (Kind::Int64, ids.device()));
        let x = tokens + positions.apply(&self.position_embedding);
        let x = self.encoder.forward(&x, true).apply(&self.final_layer_norm);
        // transformers: the legacy eos id 2 of OpenAI's converted configs pools at the highest id
        // (end-of-text is the vocabulary's last id); otherwise at the first end-of-text token.
        let pooled_at = if self.eos_token_id == 2 {
            ids.argmax(-1, false)
        } else {
            ids.eq(self.eos_token_id).to_kind(Kind::Int).argmax(-1, false)
        };
        let rows = Tensor::arange(b, (Kind::Int64, ids.device()));
        x.index(&[Some(rows), Some(pooled_at)])
    }
}

/// A CLIP model: both towers, their projections into the shared space and the learnable
/// temperature.
#[derive(Debug)]
pub struct ClipModel {
    config: ClipConfig,
    vision: VisionTransformer,
    text: TextTransformer,
    visual_projection: nn::Linear,
    text_projection: nn::Linear,
    /// ln(1/τ) of InfoNCE, learnable.
    pub logit_scale: Tensor,
}

impl ClipModel {
    /// Creates the variables of a CLIP with `config` under `p` (the root of a VarStore for
    /// Hugging Face names), initialised as `transformers` initialises a fresh `CLIPModel`.
    pub fn new(p: &nn::Path<'_>, config: &ClipConfig) -> Self {
        let t = &config.text_config;
        let v = &config.vision_config;
        ClipModel {
            vision: VisionTransformer::new(p / "vision_model", v),
            text: TextTransformer::new(p / "text_model", t),
            visual_projection: linear(
                p / "visual_projection",
                v.hidden_size,
                config.projection_dim,
                (v.hidden_size as f64).powf(-0.5),
                false,
            ),
            text_projection: linear(
                p / "text_projection",
                t.hidden_size,
                config.projection_dim,
                (t.hidden_size as f64).powf(-0.5),
                false,
            ),
            logit_scale: p.var("logit_scale", &[], Init::Const(config.logit_scale_init_value)),
            config: config.clone(),
        }
    }

    /// Its config.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Image embeddings (`get_image_features`, not normalised) of `[batch, 3, side, side]`
    /// preprocessed pixels.
    pub fn image_features(&self, pixels: &Tensor) -> Tensor {
        self.vision.forward(pixels).apply(&self.visual_projection)
    }

    /// Text embeddings (`get_text_features`, not normalised) of `[batch, tokens]` ids that start
    /// with `<|startoftext|>` and hold `<|endoftext|>` (padding after it is ignored).
    pub fn text_features(&self, ids: &Tensor) -> Tensor {
        self.text.forward(ids).apply(&self.text_projection)
    }

    /// [`ClipModel::text_features`] with the token embeddings of `ids` given
    /// (`[batch, tokens, hidden]`): training updates only the rows its captions use.
    pub fn text_features_from_token_embeddings(&self, ids: &Tensor, tokens: &Tensor) -> Tensor {
        self.text.forward_embedded(ids, tokens).apply(&self.text_projection)
    }

    /// The token embedding matrix (`[vocab, hidden]`).
    pub fn token_embedding(&self) -> &Tensor {
        &self.text.token_embedding.ws
    }
}

/// A model with the VarStore that owns its variables.
#[derive(Debug)]
pub struct LoadedClip {
    /// The variables.
    pub vs: nn::VarStore,
    /// The model.
    pub model: ClipModel,
    /// How to preprocess images for it.
    pub preprocessor: Preprocessor,
    /// How to tokenise texts for it: the directory's own `vocab.json` + `merges.txt` when it has
    /// them, else the built-in (shared) vocabulary.
    pub tokenizer: Arc<Tokenizer>,
}

/// Checks that every size `config` gives is the size of a tensor in `weights` (by the names
/// transformers gives them), so that building the model allocates no more than the weights file
/// holds. A config claiming more (a hostile or mismatched `config.json`) is refused before any
/// allocation, naming the first tensor that disagrees.
fn config_backed_by(
    config: &ClipConfig,
    weights: &SafetensorsFile,
) -> std::result::Result<(), String> {
    let (t, v) = (&config.text_config, &config.vision_config);
    let patch = v.patch_size;
    let mut check = ShapeCheck::new(weights, CONFIG_FILE);
    check
        .shape("text_model.embeddings.token_embedding.weight", &[t.vocab_size, t.hidden_size])
        .shape(
            "text_model.embeddings.position_embedding.weight",
            &[t.max_position_embeddings, t.hidden_size],
        )
        .shape(
            "vision_model.embeddings.patch_embedding.weight",
            &[v.hidden_size, v.num_channels, patch, patch],
        )
        .shape(
            "vision_model.embeddings.position_embedding.weight",
            &[v.num_positions(), v.hidden_size],
        )
        .shape("text_projection.weight", &[config.projection_dim, t.hidden_size])
        .shape("visual_projection.weight", &[config.projection_dim, v.hidden_size]);
    for (tower, layers, intermediate, hidden) in [
        ("text", t.num_hidden_layers, t.intermediate_size, t.hidden_size),
        ("vision", v.num_hidden_layers, v.intermediate_size, v.hidden_size),
    ] {
        let prefix = format!("{tower}_model.encoder.layers");
        check.count(&prefix, layers, &format!("{tower} encoder layers"), "num_hidden_layers");
        if layers > 0 {
            check.shape(&format!("{prefix}.0.mlp.fc1.weight"), &[intermediate, hidden]);
        }
    }
    check.finish()
}

impl LoadedClip {
    /// A freshly initialised model on `device`.
    pub fn new(config: &ClipConfig, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let model = ClipModel::new(&vs.root(), config);
        LoadedClip {
            model,
            preprocessor: Preprocessor::for_vision(&config.vision_config),
            tokenizer: Arc::clone(Tokenizer::shared_handle()),
            vs,
        }
    }

    /// Loads a Hugging Face CLIP directory: `config.json` (required), `model.safetensors`
    /// (F32/F16/BF16) and, when present, `preprocessor_config.json` and the tokenizer files
    /// `vocab.json` + `merges.txt` (see [`Tokenizer::from_model_dir`]). Missing or unexpected
    /// weight names are one error listing them all.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(ClipError::config(
                &config_path,
                "missing: a CLIP model directory needs config.json",
            ));
        }
        let config = ClipConfig::from_file(&config_path)?;
        // The weights are read, and config.json's sizes checked against their shapes, before any
        // variable is allocated: a config's size claims are backed by the file's bytes.
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights = read_safetensors(&weights_path)?;
        config_backed_by(&config, &weights).map_err(|message| ClipError::Weights {
            path: weights_path.clone(),
            message: one_line(&message),
        })?;
        let mut loaded = LoadedClip::new(&config, device);
        let preprocessor_path = dir.join(PREPROCESSOR_FILE);
        if preprocessor_path.is_file() {
            loaded.preprocessor = loaded.preprocessor.clone().with_file(&preprocessor_path)?;
        }
        if let Some(tokenizer) = Tokenizer::from_model_dir(dir)? {
            let (tokens, rows) = (tokenizer.vocabulary().len(), config.text_config.vocab_size);
            if tokens as i64 > rows {
                return Err(ClipError::tokenizer(
                    dir.join(VOCAB_FILE),
                    format!("{tokens} tokens, but {CONFIG_FILE} gives the model {rows}"),
                ));
            }
            loaded.tokenizer = Arc::new(tokenizer);
        }
        loaded.copy_weights(&weights, &weights_path)?;
        Ok(loaded)
    }

    /// Copies the tensors of a safetensors file into the variables, by name.
    pub fn load_weights(&mut self, path: &Path) -> Result<()> {
        self.copy_weights(&read_safetensors(path)?, path)
    }

    /// Copies the tensors of `file` (read from `path`) into the variables, by name.
    fn copy_weights(&mut self, file: &SafetensorsFile, path: &Path) -> Result<()> {
        let variables = self.vs.variables();
        let weights_error =
            |message: String| ClipError::Weights { path: path.to_path_buf(), message };
        let problems = weight_mismatches(&variables, file, |name| name.ends_with(IGNORED_SUFFIX));
        if !problems.is_empty() {
            return Err(weights_error(problems.join(", ")));
        }
        tch::no_grad(|| -> Result<()> {
            for tensor in file.tensors.iter().filter(|t| !t.name.ends_with(IGNORED_SUFFIX)) {
                let values = to_f32(tensor).ok_or_else(|| {
                    weights_error(format!(
                        "`{}` is {}, expected F32, F16 or BF16",
                        tensor.name,
                        tensor.dtype.name()
                    ))
                })?;
                let mut var = variables[&tensor.name].shallow_clone();
                let shape: Vec<i64> = tensor.shape.iter().map(|&d| d as i64).collect();
                let source =
                    Tensor::from_slice(&values).view(shape.as_slice()).to_device(var.device());
                var.copy_(&source);
            }
            Ok(())
        })
    }

    /// Writes the model as a Hugging Face CLIP directory: `config.json`, `model.safetensors`
    /// (F32, sorted names: the same weights give the same bytes), `preprocessor_config.json` and
    /// its tokenizer ([`Tokenizer::save`]: `vocab.json`, `merges.txt`, `tokenizer_config.json`,
    /// `special_tokens_map.json`, `model_max_length` the model's context length).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).at(dir)?;
        let hf = self.model.config.to_hf_json();
        save_var_store(&self.vs, &dir.join(WEIGHTS_FILE), CLIP_SCHEMA, &hf)?;
        write_json(&dir.join(CONFIG_FILE), &hf)?;
        let p = &self.preprocessor;
        let preprocessor = serde_json::json!({
            "image_processor_type": "CLIPImageProcessor",
            "do_resize": true, "size": {"shortest_edge": p.shortest_edge}, "resample": 3,
            "do_center_crop": true, "crop_size": {"height": p.crop.0, "width": p.crop.1},
            "do_rescale": true, "rescale_factor": 1.0 / 255.0,
            "do_normalize": true, "image_mean": p.mean, "image_std": p.std, "do_convert_rgb": true,
        });
        write_json(&dir.join(PREPROCESSOR_FILE), &preprocessor)?;
        self.tokenizer.save(dir, self.model.config.text_config.context_length())?;
        Ok(())
    }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| ClipError::config(path, e.to_string()))?;
    Ok(std::fs::write(path, text + "\n").at(path)?)
}

/// The values of a float tensor as `f32` (F32, F16 and BF16 are widened exactly).
fn to_f32(tensor: &NamedTensor) -> Option<Vec<f32>> {
    let halves = || tensor.data.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    match tensor.dtype {
        Dtype::F32 => tensor.to_f32(),
        Dtype::Bf16 => Some(halves().map(|h| f32::from_bits(u32::from(h) << 16)).collect()),
        Dtype::F16 => Some(halves().map(f16_to_f32).collect()),
        _ => None,
    }
}

/// IEEE half → single, exactly (subnormals, infinities and NaN included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exponent = u32::from((h >> 10) & 0x1f);
    let mantissa = u32::from(h & 0x3ff);
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value m · 2^-24, renormalised.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// The directory a model port points at: the directory itself, or the folder of a
/// `model.safetensors` / `config.json` given directly.
pub fn model_dir(path: &Path) -> PathBuf {
    if path.is_file() {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_widen_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn save_load_round_trip_and_name_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        tch::manual_seed(1);
        let mut config = ClipConfig::small();
        config.text_config.vocab_size = 64;
        let a = LoadedClip::new(&config, Device::Cpu);
        a.save(dir.path()).expect("save");
        // The built-in 49,408-token tokenizer saved beside this 64-token model cannot drive it.
        let err =
            LoadedClip::load(dir.path(), Device::Cpu).expect_err("too many tokens").to_string();
        let vocab = dir.path().join(VOCAB_FILE).display().to_string();
        assert!(err.starts_with(&format!("{vocab}: tokenizer: 49408 tokens")), "{err}");
        for file in [VOCAB_FILE, crate::tokenizer::MERGES_FILE] {
            std::fs::remove_file(dir.path().join(file)).expect("remove the tokenizer");
        }
        let b = LoadedClip::load(dir.path(), Device::Cpu).expect("load");
        let ids = Tensor::from_slice(&[0i64, 5, 7, 63, 2, 63]).view([2, 3]);
        let pixels = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert!(a.model.text_features(&ids).equal(&b.model.text_features(&ids)));
        assert!(a.model.image_features(&pixels).equal(&b.model.image_features(&pixels)));
        config.vision_config.num_hidden_layers = 1;
        config.text_config.num_hidden_layers = 3;
        let mut c = LoadedClip::new(&config, Device::Cpu);
        let err = c.load_weights(&dir.path().join(WEIGHTS_FILE)).expect_err("mismatch").to_string();
        assert!(err.contains("missing `text_model.encoder.layers.2.mlp.fc1.bias`"), "{err}");
        assert!(err.contains("unexpected `vision_model.encoder.layers.1.mlp.fc1.bias`"), "{err}");
        assert!(err.starts_with(&dir.path().join(WEIGHTS_FILE).display().to_string()), "{err}");
    }
}
