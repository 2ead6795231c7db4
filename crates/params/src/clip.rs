//! Params of the `clip.*` stages and the choices they name.

use brainpipe_core::{DeviceChoice, Precision};
use serde::{Deserialize, Serialize};

use crate::{at_least, in_range, threads};

/// The architecture presets of `clip.train` (`ClipConfig::preset` in brainpipe-clip).
pub const PRESETS: [&str; 4] = ["vit-b-32", "vit-b-16", "vit-l-14", "small"];

brainpipe_core::params! {
    /// Params of `clip.embed`.
    pub struct EmbedParams {
        /// Images or captions per forward pass.
        pub batch_size: usize = 256,
        /// `auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`.
        pub device: DeviceChoice = DeviceChoice::Auto,
        /// `fp32`, `tf32` or `bf16` (tf32 and bf16 are for GPUs; parity is tested in fp32).
        pub precision: Precision = Precision::Fp32,
        /// CPU threads for LibTorch (0: the worker's share of the cores). Float reductions split
        /// by thread count, so 1 makes CPU bytes the same whatever `--jobs` gives the worker.
        pub threads: i32 = 0,
    }
    validate = check_embed;
}

/// ImageNet's per-channel mean (torchvision's `Normalize` for its pretrained networks; MindEye's
/// AlexNet, Inception, EfficientNet and SwAV columns).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation.
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

brainpipe_core::params! {
    /// Params of `clip.extract`: a TorchScript network's features of images, preprocessed as
    /// MindEye's `two_way_identification` does (the defaults are its AlexNet column's).
    pub struct ExtractParams {
        /// What `model` is: empty for a TorchScript module; `alexnet` for a safetensors state
        /// dict of torchvision's `AlexNet.features` (`features.0.weight`…, any widths).
        pub architecture: String = String::new(),
        /// Which output: for TorchScript, empty when the module returns one tensor, a key of a
        /// returned dict (`features.4`), or an index into a returned tuple or list (`0`); for
        /// `alexnet`, the layer `features.N` to stop after (MindEye: `features.4` for AlexNet(2),
        /// `features.11` for AlexNet(5)), empty for the whole block.
        pub output: String = String::new(),
        /// Bilinear resize (torchvision `Resize(size)` on float tensors): the shorter side becomes
        /// `size`, the longer `int(size · long / short)`; 0 keeps the size. MindEye: 256
        /// (AlexNet), 342 (Inception), 224 (CLIP, SwAV), 255 (EfficientNet).
        pub size: u32 = 256,
        /// Resize both sides to `size` (torchvision `Resize((size, size))`; Brain-Diffuser resizes
        /// to 224 × 224).
        pub square: bool = false,
        /// Side of the centre crop taken after resizing (torchvision `CenterCrop`); 0: none, as
        /// MindEye.
        pub crop: u32 = 0,
        /// torchvision's `antialias` flag of the resize (`true`: torchvision ≥ 0.17's default).
        pub antialias: bool = true,
        /// Per-channel mean subtracted from the `[0, 1]` RGB values (ImageNet's by default).
        pub mean: Vec<f64> = IMAGENET_MEAN.to_vec(),
        /// Per-channel standard deviation the values are divided by (ImageNet's by default).
        pub std: Vec<f64> = IMAGENET_STD.to_vec(),
        /// Images per forward pass.
        pub batch_size: usize = 64,
        /// `auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`.
        pub device: DeviceChoice = DeviceChoice::Auto,
        /// CPU threads for LibTorch (0: the worker's share of the cores). Float reductions split
        /// by thread count, so 1 makes CPU bytes the same whatever `--jobs` gives the worker.
        pub threads: i32 = 0,
    }
    validate = check_extract;
}

brainpipe_core::params! {
    /// Params of `clip.pixel_metrics`: eval.images' PixCorr and SSIM on LibTorch, for large
    /// batches on a GPU (always in `f64`, within rounding of eval's CPU kernel).
    pub struct PixelMetricsParams {
        /// Side both images are resized to (MindEye: 425), as eval.images' `size`.
        pub size: u32 = 425,
        /// torchvision's `antialias` flag of that bilinear resize, as eval.images' `antialias`.
        pub antialias: bool = true,
        /// Pairs per batch on the device (each pair at 425² takes ≈ 30 MB of device memory).
        pub batch_size: usize = 64,
        /// `auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`. On a CPU eval.images' own kernel
        /// is faster (docs/BENCHMARKS.md); this stage is for GPUs.
        pub device: DeviceChoice = DeviceChoice::Auto,
        /// CPU threads for LibTorch (0: the worker's share of the cores).
        pub threads: i32 = 0,
    }
    validate = check_pixel_metrics;
}

/// What `clip.select_captions` writes as each image's regression target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetSource {
    /// The chosen caption's text embedding (Brain2CLIP decodes towards it).
    #[default]
    Caption,
    /// The image embedding itself.
    Image,
}

brainpipe_core::params! {
    /// Params of `clip.select_captions`.
    pub struct SelectParams {
        /// `caption`: the target is the chosen caption's embedding; `image`: the image's embedding.
        pub target: TargetSource = TargetSource::Caption,
    }
}

brainpipe_core::params! {
    /// Params of `clip.augment` (Brain2CLIP: each image ×4 with flip, crop, brightness, contrast, blur).
    pub struct AugmentParams {
        /// Augmented copies per image.
        pub copies: u32 = 4,
        /// Seed: the same seed gives the same images.
        pub seed: u64 = 7,
        /// Probability of a horizontal flip.
        pub flip_probability: f64 = 0.5,
        /// Smallest fraction of the area a random crop keeps (1: no cropping).
        pub min_crop_area: f64 = 0.6,
        /// Brightness factor drawn from 1 ± this.
        pub brightness: f64 = 0.2,
        /// Contrast factor drawn from 1 ± this.
        pub contrast: f64 = 0.2,
        /// Probability of a Gaussian blur.
        pub blur_probability: f64 = 0.5,
        /// Largest blur σ in pixels.
        pub max_blur_sigma: f64 = 1.5,
        /// Images per forward pass.
        pub batch_size: usize = 256,
        /// `auto`, `cpu`, `cuda`, `cuda:N`.
        pub device: DeviceChoice = DeviceChoice::Auto,
        /// `fp32`, `tf32` or `bf16`.
        pub precision: Precision = Precision::Fp32,
        /// CPU threads for LibTorch (0: the worker's share of the cores). Float reductions split
        /// by thread count, so 1 makes CPU bytes the same whatever `--jobs` gives the worker.
        pub threads: i32 = 0,
    }
    validate = check_augment;
}

/// Which caption of an image a training step pairs it with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptionChoice {
    /// A random one of its captions each time (CLIP's usual COCO training).
    #[default]
    All,
    /// Always the one the study records as the best description.
    Best,
}

brainpipe_core::params! {
    /// Params of `clip.train`.
    pub struct TrainParams {
        /// Architecture preset: `small` (32-px images, 2 layers of width 64 per tower), `vit-b-32`, `vit-b-16`, `vit-l-14`.
        pub preset: String = "small".to_owned(),
        /// Optimisation steps (on the synthetic images world longer runs overfit its 240 training images; docs/CLIP.md has the sweep).
        pub steps: usize = 300,
        /// Image–caption pairs per step (the in-batch negatives of InfoNCE).
        pub batch_size: usize = 64,
        /// Peak AdamW learning rate (linear warm-up over the first 10 % of steps, then cosine decay).
        pub learning_rate: f64 = 2e-3,
        /// AdamW weight decay (0.5 generalised best on the synthetic images world).
        pub weight_decay: f64 = 0.5,
        /// Which caption each step pairs an image with: `all` (a random one) or `best`.
        pub captions: CaptionChoice = CaptionChoice::All,
        /// Train on the `train` split only (`false`: on every image).
        pub train_split_only: bool = true,
        /// Seed of initialisation and sampling; the same seed gives the same weights on a CPU.
        pub seed: u64 = 7,
        /// `auto`, `cpu`, `cuda`, `cuda:N`.
        pub device: DeviceChoice = DeviceChoice::Auto,
        /// CPU threads for LibTorch (0: the worker's share of the cores). Float reductions split
        /// by thread count, so 1 makes CPU bytes the same whatever `--jobs` gives the worker.
        pub threads: i32 = 0,
    }
    validate = check_train;
}

fn check_embed(p: &EmbedParams) -> Result<(), String> {
    threads(p.threads)?;
    at_least("batch_size", p.batch_size, 1)
}

/// The architectures `clip.extract` builds from safetensors weights (besides TorchScript).
pub const EXTRACT_ARCHITECTURES: [&str; 1] = ["alexnet"];

fn check_extract(p: &ExtractParams) -> Result<(), String> {
    threads(p.threads)?;
    if !p.architecture.is_empty() && !EXTRACT_ARCHITECTURES.contains(&p.architecture.as_str()) {
        return Err(format!(
            "`architecture`: unknown `{}` (empty for TorchScript, or: {})",
            p.architecture,
            EXTRACT_ARCHITECTURES.join(", ")
        ));
    }
    at_least("batch_size", p.batch_size, 1)?;
    for (name, values) in [("mean", &p.mean), ("std", &p.std)] {
        if values.len() != 3 || values.iter().any(|v| !v.is_finite()) {
            return Err(format!("`{name}` must be three finite numbers (R, G, B), got {values:?}"));
        }
    }
    if p.std.iter().any(|&v| v <= 0.0) {
        return Err(format!("`std` must be positive, got {:?}", p.std));
    }
    if p.square && p.size == 0 {
        return Err("`square` needs a `size`".to_owned());
    }
    if p.size > 0 && p.crop > p.size {
        return Err(format!("`crop` {} is larger than `size` {}", p.crop, p.size));
    }
    Ok(())
}

fn check_pixel_metrics(p: &PixelMetricsParams) -> Result<(), String> {
    threads(p.threads)?;
    at_least("batch_size", p.batch_size, 1)?;
    // The Gaussian SSIM window is 11 pixels wide.
    at_least("size", p.size as usize, 11)
}

fn check_augment(p: &AugmentParams) -> Result<(), String> {
    threads(p.threads)?;
    at_least("copies", p.copies as usize, 1)?;
    at_least("batch_size", p.batch_size, 1)?;
    in_range("flip_probability", p.flip_probability, 0.0, 1.0)?;
    in_range("blur_probability", p.blur_probability, 0.0, 1.0)?;
    in_range("brightness", p.brightness, 0.0, 1.0)?;
    in_range("contrast", p.contrast, 0.0, 1.0)?;
    in_range("max_blur_sigma", p.max_blur_sigma, 0.0, f64::MAX)?;
    if !(p.min_crop_area > 0.0 && p.min_crop_area <= 1.0) {
        return Err(format!("`min_crop_area` must be in (0, 1], got {}", p.min_crop_area));
    }
    Ok(())
}

fn check_train(p: &TrainParams) -> Result<(), String> {
    threads(p.threads)?;
    if !PRESETS.contains(&p.preset.as_str()) {
        return Err(format!(
            "`preset`: unknown preset `{}` (known: {})",
            p.preset,
            PRESETS.join(", ")
        ));
    }
    at_least("steps", p.steps, 1)?;
    at_least("batch_size", p.batch_size, 2)?;
    if !(p.learning_rate > 0.0 && p.learning_rate.is_finite()) {
        return Err(format!("`learning_rate` must be positive, got {}", p.learning_rate));
    }
    in_range("weight_decay", p.weight_decay, 0.0, f64::MAX)
}
