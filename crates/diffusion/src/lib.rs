//! Diffusion decoding for brainpipe (issue 13): draw the image a person saw from a (predicted)
//! CLIP embedding.
//!
//! No pretrained diffusion weights reach our machines, so, as with CLIP, this crate is two
//! things: a real implementation of the field's standard architecture whose diffusers weights
//! load unchanged (parity with `diffusers` tested on random tiny configs), and a small decoder
//! the pipeline trains itself on a study's images.
//!
//! - [`UNet2DConditionModel`] / [`UNetConfig`], [`AutoencoderKL`] / [`VaeConfig`]: diffusers'
//!   models with their variable names and `config.json` fields (SD 1.5 presets).
//! - [`Scheduler`] / [`SchedulerConfig`]: DDPM, DDIM and PNDM from `scheduler_config.json`.
//! - [`DiffusionPipeline`]: a diffusers pipeline directory; [`denoise`]: the guided loop.
//! - Stages (`diffusion.train`, `diffusion.decode`) and their tables: see docs/DIFFUSION.md and
//!   docs/ARTIFACTS.md.
//!
//! ```
//! use brainpipe_diffusion::{UNet2DConditionModel, UNetConfig, PerBlock};
//! use tch::{Device, Kind, Tensor, nn};
//!
//! let config = UNetConfig {
//!     in_channels: 4, out_channels: 4,
//!     block_out_channels: vec![32, 64],
//!     down_block_types: vec!["CrossAttnDownBlock2D".into(), "DownBlock2D".into()],
//!     up_block_types: vec!["UpBlock2D".into(), "CrossAttnUpBlock2D".into()],
//!     layers_per_block: PerBlock::One(1), attention_head_dim: PerBlock::One(2),
//!     cross_attention_dim: 16, norm_num_groups: 8,
//!     ..UNetConfig::default()
//! };
//! let vs = nn::VarStore::new(Device::Cpu);
//! let unet = UNet2DConditionModel::new(&vs.root(), &config);
//! let x = Tensor::randn([2, 4, 8, 8], (Kind::Float, Device::Cpu));
//! let t = Tensor::from_slice(&[10i64, 900]);
//! let context = Tensor::randn([2, 1, 16], (Kind::Float, Device::Cpu));
//! assert_eq!(unet.forward(&x, &t, &context).size(), vec![2, 4, 8, 8]);
//! ```

mod error;
mod images;
mod layers;
mod pipeline;
mod scheduler;
mod stages;
mod tables;
mod train;
mod unet;
mod vae;
mod weights;

use std::sync::Arc;

use brainpipe_core::DynStage;

pub use error::{DiffusionError, Result};
pub use images::{read_png, write_png};
pub use layers::timestep_embedding;
pub use pipeline::{
    CODEC_KEY, CONDITION_KEY, Codec, Conditioning, DiffusionPipeline, MODEL_INDEX_FILE,
    NORMALIZED_CONDITION, SCHEDULER_FILE, SampleOptions, denoise,
};
pub use scheduler::{
    BetaSchedule, PredictionType, Scheduler, SchedulerConfig, SchedulerKind, TimestepSpacing,
};
pub use stages::{
    Decode, DecodeParams, EmbeddingSource, Train, TrainParams, decode_rows, image_path, row_seed,
    select_predictions,
};
pub use tables::{
    DecodeRow, ImageEmbeddings, Reconstruction, StimulusImage, read_image_embeddings,
    read_predictions, read_reconstructions, read_split_images, read_stimulus_images,
    write_reconstructions,
};
pub use train::{
    DECODER_SCHEMA, TrainOptions, TrainReport, condition_tokens, decoder_config, decoder_scheduler,
    save_decoder, train_decoder,
};
pub use unet::{PerBlock, UNet2DConditionModel, UNetConfig};
pub use vae::{AutoencoderKL, DiagonalGaussian, VaeConfig};
pub use weights::{
    WEIGHTS_FILE, WEIGHTS_FILE_FP16, copy_weights, load_weights, read_weights, save_model_dir,
    weights_file,
};

/// Every stage of this crate, for the worker and pipelines to register.
pub fn stages() -> Vec<Arc<dyn DynStage>> {
    vec![Arc::new(Train), Arc::new(Decode)]
}
