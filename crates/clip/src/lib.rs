//! CLIP for brainpipe (issue 7).
//!
//! Brain2CLIP's targets are CLIP embeddings. No pretrained CLIP reaches our machines, so this
//! crate is built to load real Hugging Face weights unchanged (tested for exact parity against
//! `transformers` on small random weights) and to train its own small CLIP for worlds without
//! weights.
//!
//! - [`ClipModel`] / [`LoadedClip`]: the model on LibTorch with Hugging Face's variable paths and
//!   configs ([`ClipConfig`] presets ViT-B/32, ViT-B/16, ViT-L/14, `small`).
//! - [`Tokenizer`]: CLIP's BPE, as transformers' `CLIPTokenizer`; read from and written to a
//!   model directory's `vocab.json` + `merges.txt`.
//! - [`Preprocessor`] / [`RgbImage`]: `CLIPImageProcessor`'s resize, crop and normalisation.
//! - [`Embedder`]: batched image and text embedding on a device, fp32 or bf16.
//! - [`FeatureExtractor`] / [`NetworkPreprocessing`]: a user's TorchScript network (AlexNet,
//!   Inception… exported with torch.jit; or AlexNet weights as safetensors) on images preprocessed
//!   as MindEye's 2-way identification.
//! - [`ssim_batch`], [`pixcorr_batch`], [`pair_metrics_batch`]: eval.images' PixCorr and SSIM on
//!   LibTorch, for large batches on a GPU.
//! - Stages ([`stages`]): `clip.embed`, `clip.augment`, `clip.train`, `clip.extract`,
//!   `clip.pixel_metrics`; their table
//!   (`embeddings/1`) is in docs/ARTIFACTS.md. `clip.words` and `clip.select_captions` need no
//!   LibTorch: they are in brainpipe-targets and run in the driver.
//!
//! See docs/CLIP.md for the parity figures and the choices behind them.
//!
//! ```
//! use brainpipe_clip::{ClipConfig, LoadedClip, Tokenizer, CONTEXT_LENGTH};
//! use tch::{Device, Tensor};
//!
//! let clip = LoadedClip::new(&ClipConfig::small(), Device::Cpu);
//! let (ids, width) = Tokenizer::new().batch(&["a red circle on a white background"], CONTEXT_LENGTH);
//! let ids = Tensor::from_slice(&ids).view([1, width as i64]);
//! let text = tch::no_grad(|| clip.model.text_features(&ids));
//! assert_eq!(text.size(), vec![1, 64]);
//! ```

mod alexnet;
// The config and tokenizer readers live in brainpipe-hf (no LibTorch); `crate::config` and
// `crate::tokenizer` name them here.
use brainpipe_hf::{config, tokenizer};
mod augment;
mod embedder;
mod error;
mod extract;
mod image;
mod image_metrics;
mod model;
mod pixel_metrics;
mod stages;
mod train;

use std::sync::Arc;

use brainpipe_core::DynStage;

pub use augment::Augmentation;
pub use embedder::{Embedder, Precision, closest, cosine};
pub use stages::{Augment, AugmentParams, Embed, EmbedParams};
pub use train::{
    CaptionChoice, Pair, Train, TrainParams, TrainReport, caption_selection_accuracy, info_nce,
    pairs, train,
};

pub use config::{Activation, ClipConfig, TextConfig, VisionConfig};
pub use error::{ClipError, Result};
pub use extract::{Extract, ExtractParams, FeatureExtractor, NetworkPreprocessing};
pub use image::{CLIP_MEAN, CLIP_STD, Preprocessor, RgbImage};
pub use image_metrics::{
    PairMetricsBatch, RGB2GRAY, SsimWindow, gray_batch, pair_metrics_batch, pixcorr_batch,
    resize_square, ssim_batch,
};
pub use model::{
    CLIP_SCHEMA, CONFIG_FILE, ClipModel, LoadedClip, PREPROCESSOR_FILE, WEIGHTS_FILE, model_dir,
};
pub use pixel_metrics::{PixelMetrics, PixelMetricsParams};
pub use tokenizer::{
    CONTEXT_LENGTH, END_OF_TEXT, MERGES_FILE, SPECIAL_TOKENS_FILE, START_OF_TEXT,
    TOKENIZER_CONFIG_FILE, Tokenizer, VOCAB_FILE, VOCAB_SIZE,
};

/// Every stage of this crate, for the CLI and pipelines to register.
pub fn stages() -> Vec<Arc<dyn DynStage>> {
    vec![
        Arc::new(Embed),
        Arc::new(Augment),
        Arc::new(Train),
        Arc::new(Extract),
        Arc::new(PixelMetrics),
    ]
}
