//! CLIP architecture configs: named presets and Hugging Face `config.json` files.
//!
//! Field names are Hugging Face's (`hidden_size`, `num_attention_heads`, …), so a `config.json`
//! saved by `transformers` reads unchanged (unknown keys are ignored, missing keys take
//! `CLIPTextConfig`/`CLIPVisionConfig`'s defaults) and the config this crate writes loads in
//! `transformers.CLIPModel.from_pretrained`.

use brainpipe_core::IoContext;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{HfError, Result};

/// The hidden activation of the MLP blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x · σ(1.702 x)`: OpenAI CLIP's approximation.
    #[default]
    QuickGelu,
    /// The exact (erf) GELU, used by some re-trainings (LAION).
    Gelu,
}

/// The text transformer (`CLIPTextConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    /// Token vocabulary (CLIP's BPE: 49,408).
    pub vocab_size: i64,
    /// Width of the residual stream.
    pub hidden_size: i64,
    /// Width of the MLP.
    pub intermediate_size: i64,
    /// Encoder layers.
    pub num_hidden_layers: i64,
    /// Attention heads.
    pub num_attention_heads: i64,
    /// Context length (77).
    pub max_position_embeddings: i64,
    /// MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding token id (Hugging Face's field; the tokenizer pads with end-of-text).
    pub pad_token_id: i64,
    /// Start-of-text token id.
    pub bos_token_id: i64,
    /// End-of-text token id. `2` is the legacy value of OpenAI's converted configs: the pooled
    /// token is then the one with the highest id (end-of-text is the last id of the vocabulary).
    pub eos_token_id: i64,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            pad_token_id: 1,
            bos_token_id: 49406,
            eos_token_id: 49407,
        }
    }
}

/// The vision transformer (`CLIPVisionConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    /// Width of the residual stream.
    pub hidden_size: i64,
    /// Width of the MLP.
    pub intermediate_size: i64,
    /// Encoder layers.
    pub num_hidden_layers: i64,
    /// Attention heads.
    pub num_attention_heads: i64,
    /// Input channels (3).
    pub num_channels: i64,
    /// Side of the square input image in pixels.
    pub image_size: i64,
    /// Side of a patch in pixels.
    pub patch_size: i64,
    /// MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl TextConfig {
    /// Tokens per text, start and end included: CLIP's 77, or fewer when the model has fewer
    /// positions (the `small` preset's 32).
    pub fn context_length(&self) -> usize {
        crate::tokenizer::CONTEXT_LENGTH.min(self.max_position_embeddings.max(0) as usize)
    }
}

impl VisionConfig {
    /// Patches along one side.
    pub fn patches_per_side(&self) -> i64 {
        self.image_size / self.patch_size
    }

    /// Positions: one per patch plus the class token.
    pub fn num_positions(&self) -> i64 {
        self.patches_per_side() * self.patches_per_side() + 1
    }
}

/// A whole CLIP model (`CLIPConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    /// The text tower.
    pub text_config: TextConfig,
    /// The vision tower.
    pub vision_config: VisionConfig,
    /// Width of the shared embedding space.
    pub projection_dim: i64,
    /// Initial value of the learnable log temperature, ln(1/0.07) = 2.6592 (Radford et al. 2021).
    pub logit_scale_init_value: f64,
}

/// `CLIPConfig()`'s defaults, so a sparse `config.json` reads as `transformers` reads it.
impl Default for ClipConfig {
    fn default() -> Self {
        ClipConfig {
            text_config: TextConfig::default(),
            vision_config: VisionConfig::default(),
            projection_dim: 512,
            logit_scale_init_value: 2.6592,
        }
    }
}

impl ClipConfig {
    /// OpenAI's ViT-B/32 (`openai/clip-vit-base-patch32`).
    pub fn vit_base_patch32() -> Self {
        ClipConfig {
            text_config: TextConfig { bos_token_id: 0, eos_token_id: 2, ..TextConfig::default() },
            ..ClipConfig::default()
        }
    }

    /// OpenAI's ViT-B/16 (`openai/clip-vit-base-patch16`).
    pub fn vit_base_patch16() -> Self {
        let mut config = ClipConfig::vit_base_patch32();
        config.vision_config.patch_size = 16;
        config
    }

    /// OpenAI's ViT-L/14 (`openai/clip-vit-large-patch14`).
    pub fn vit_large_patch14() -> Self {
        ClipConfig {
            text_config: TextConfig {
                hidden_size: 768,
                intermediate_size: 3072,
                num_attention_heads: 12,
                bos_token_id: 0,
                eos_token_id: 2,
                ..TextConfig::default()
            },
            vision_config: VisionConfig {
                hidden_size: 1024,
                intermediate_size: 4096,
                num_hidden_layers: 24,
                num_attention_heads: 16,
                patch_size: 14,
                ..VisionConfig::default()
            },
            projection_dim: 768,
            logit_scale_init_value: 2.6592,
        }
    }

    /// A small CLIP for the synthetic images world and tests: 32-pixel images in 8-pixel patches,
    /// two layers of width 64 in each tower, 32 tokens of context.
    pub fn small() -> Self {
        ClipConfig {
            text_config: TextConfig {
                hidden_size: 64,
                intermediate_size: 256,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                max_position_embeddings: 32,
                ..TextConfig::default()
            },
            vision_config: VisionConfig {
                hidden_size: 64,
                intermediate_size: 256,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                image_size: 32,
                patch_size: 8,
                ..VisionConfig::default()
            },
            projection_dim: 64,
            logit_scale_init_value: 2.6592,
        }
    }

    /// A preset by name: `vit-b-32`, `vit-b-16`, `vit-l-14`, `small`.
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "vit-b-32" => ClipConfig::vit_base_patch32(),
            "vit-b-16" => ClipConfig::vit_base_patch16(),
            "vit-l-14" => ClipConfig::vit_large_patch14(),
            "small" => ClipConfig::small(),
            _ => return None,
        })
    }

    /// The names [`ClipConfig::preset`] knows.
    pub const PRESETS: [&'static str; 4] = brainpipe_params::clip::PRESETS;

    /// Reads a Hugging Face `config.json` (of a `CLIPModel`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| HfError::config(path, e.to_string()))?;
        Self::from_json(&value).map_err(|message| HfError::config(path, message))
    }

    /// Parses the JSON of a `CLIPModel` config and checks it.
    pub fn from_json(value: &Value) -> std::result::Result<Self, String> {
        let config: ClipConfig =
            serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// The `config.json` Hugging Face `CLIPModel.from_pretrained` reads.
    pub fn to_hf_json(&self) -> Value {
        let mut text = serde_json::to_value(&self.text_config).unwrap_or(Value::Null);
        let mut vision = serde_json::to_value(&self.vision_config).unwrap_or(Value::Null);
        text["model_type"] = json!("clip_text_model");
        text["projection_dim"] = json!(self.projection_dim);
        vision["model_type"] = json!("clip_vision_model");
        vision["projection_dim"] = json!(self.projection_dim);
        json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "logit_scale_init_value": self.logit_scale_init_value,
            "text_config": text,
            "vision_config": vision,
            "torch_dtype": "float32",
        })
    }

    /// Checks the shapes fit together (heads divide widths, patches tile the image…).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.text_config;
        let v = &self.vision_config;
        let positive = [
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.max_position_embeddings", t.max_position_embeddings),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.num_channels", v.num_channels),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
            ("projection_dim", self.projection_dim),
        ];
        for (name, value) in positive {
            if value <= 0 {
                return Err(format!("{name} must be positive, got {value}"));
            }
        }
        if t.hidden_size % t.num_attention_heads != 0 {
            return Err(format!(
                "text_config.hidden_size {} is not a multiple of num_attention_heads {}",
                t.hidden_size, t.num_attention_heads
            ));
        }
        if v.hidden_size % v.num_attention_heads != 0 {
            return Err(format!(
                "vision_config.hidden_size {} is not a multiple of num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ));
        }
        if v.image_size % v.patch_size != 0 {
            return Err(format!(
                "vision_config.image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        let per_side = v.image_size / v.patch_size;
        if per_side.checked_mul(per_side).and_then(|n| n.checked_add(1)).is_none() {
            return Err(format!(
                "vision_config: {per_side} patches per side (image_size / patch_size) overflow \
                 the number of positions"
            ));
        }
        if t.num_hidden_layers < 0 || v.num_hidden_layers < 0 {
            return Err("num_hidden_layers must not be negative".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_json_round_trips_and_defaults_fill_missing_keys() {
        for name in ClipConfig::PRESETS {
            let config = ClipConfig::preset(name).expect("preset");
            let back = ClipConfig::from_json(&config.to_hf_json()).expect("parse");
            assert_eq!(back, config, "{name}");
        }
        let sparse =
            json!({"text_config": {"hidden_size": 64, "num_attention_heads": 4}, "extra": 1});
        let config = ClipConfig::from_json(&sparse).expect("sparse config");
        assert_eq!(config.text_config.intermediate_size, 2048);
        assert_eq!(config.vision_config.patch_size, 32);
    }

    #[test]
    fn inconsistent_shapes_are_refused() {
        let mut config = ClipConfig::small();
        config.vision_config.patch_size = 7;
        assert!(config.validate().expect_err("patch").contains("patch_size"));
        let bad = json!({"vision_config": {"hidden_act": "relu"}});
        assert!(ClipConfig::from_json(&bad).is_err());
        // Found by the hf_config fuzz target: (2^62 / 1)^2 + 1 positions overflowed.
        let huge = json!({"vision_config": {"image_size": 1_i64 << 62, "patch_size": 1}});
        let err = ClipConfig::from_json(&huge).expect_err("overflow");
        assert!(err.contains("patches per side"), "{err}");
    }

    #[test]
    fn an_error_quoting_the_file_stays_one_line() {
        // Found by the hf_config fuzz target: serde quotes an unknown variant as written.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"text_config": {"hidden_act": "sw\nish"}}"#).expect("write");
        let err = ClipConfig::from_file(&path).expect_err("unknown activation").to_string();
        assert!(err.starts_with(&format!("{}: config: ", path.display())), "{err}");
        assert!(!err.contains('\n') && err.contains(r"sw\nish"), "{err}");
    }
}
