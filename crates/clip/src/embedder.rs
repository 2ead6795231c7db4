//! Batched CLIP embedding of images and texts on a device, in fp32 or bf16.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::error::{ClipError, Result};
use crate::image::RgbImage;
use crate::model::LoadedClip;

/// The number type the model computes in (`bf16`: the whole model in bfloat16, embeddings back
/// as f32; `tf32`: f32 with TF32 matmuls while the embedder lives).
pub use brainpipe_tensor::Precision;
use brainpipe_tensor::PrecisionExt;

/// A loaded model ready to embed: tokenizer, preprocessing, device and precision.
pub struct Embedder {
    clip: LoadedClip,
    precision: Precision,
    /// LibTorch's TF32 switch as `precision` wants it, restored when the embedder is dropped.
    _tf32: brainpipe_tensor::Tf32Guard,
}

impl Embedder {
    /// Loads the Hugging Face CLIP directory `model_dir` onto `device` (with its own tokenizer
    /// when it has `vocab.json` + `merges.txt`, see [`LoadedClip::load`]).
    pub fn load(model_dir: &Path, device: Device, precision: Precision) -> Result<Self> {
        let mut clip = LoadedClip::load(model_dir, device)?;
        if precision == Precision::Bf16 {
            clip.vs.bfloat16();
        }
        Ok(Embedder { clip, precision, _tf32: precision.activate() })
    }

    /// Wraps an in-memory model (fp32).
    pub fn from_model(clip: LoadedClip) -> Self {
        Embedder { clip, precision: Precision::Fp32, _tf32: Precision::Fp32.activate() }
    }

    /// Gives the model back.
    pub fn into_clip(self) -> LoadedClip {
        self.clip
    }

    /// The model.
    pub fn clip(&self) -> &LoadedClip {
        &self.clip
    }

    /// The device it computes on.
    pub fn device(&self) -> Device {
        self.clip.vs.device()
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.clip.model.config().projection_dim as usize
    }

    /// Context length used for texts: CLIP's 77, or less when the model has fewer positions.
    pub fn context(&self) -> usize {
        self.clip.model.config().text_config.context_length()
    }

    /// Decodes and preprocesses image files (in parallel) into row-major pixel values.
    pub fn preprocess_files(&self, paths: &[PathBuf]) -> Result<Vec<f32>> {
        let preprocessor = &self.clip.preprocessor;
        let per_image: Vec<Vec<f32>> = paths
            .par_iter()
            .map(|p| RgbImage::open(p).map(|image| preprocessor.preprocess(&image)))
            .collect::<Result<_>>()?;
        Ok(per_image.concat())
    }

    /// Embeddings of already preprocessed pixels (`n × 3 × h × w`, row-major), in batches.
    pub fn embed_pixels(&self, pixels: &[f32], batch_size: usize) -> Result<Vec<f32>> {
        let (h, w) = self.clip.preprocessor.crop;
        let per_image = 3 * h * w;
        let mut out = Vec::with_capacity(pixels.len() / per_image.max(1) * self.dim());
        for chunk in pixels.chunks(per_image * batch_size.max(1)) {
            let n = (chunk.len() / per_image) as i64;
            let batch = Tensor::from_slice(chunk)
                .view([n, 3, h as i64, w as i64])
                .to_device(self.device())
                .to_kind(self.precision.kind());
            let features = tch::no_grad(|| self.clip.model.image_features(&batch));
            out.extend(to_f32_vec(&features)?);
        }
        Ok(out)
    }

    /// Embeddings of image files.
    pub fn embed_files(&self, paths: &[PathBuf], batch_size: usize) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(paths.len() * self.dim());
        // Decode one batch at a time so memory stays bounded for large studies.
        for chunk in paths.chunks(batch_size.max(1)) {
            let pixels = self.preprocess_files(chunk)?;
            out.extend(self.embed_pixels(&pixels, batch_size)?);
        }
        Ok(out)
    }

    /// Embeddings of in-memory images.
    pub fn embed_images(&self, images: &[RgbImage], batch_size: usize) -> Result<Vec<f32>> {
        let preprocessor = &self.clip.preprocessor;
        let pixels: Vec<f32> =
            images.par_iter().flat_map_iter(|i| preprocessor.preprocess(i)).collect();
        self.embed_pixels(&pixels, batch_size)
    }

    /// Embeddings of texts, tokenised as CLIP does (truncated to [`Embedder::context`]).
    pub fn embed_texts<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        batch_size: usize,
    ) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(texts.len() * self.dim());
        for chunk in texts.chunks(batch_size.max(1)) {
            let (ids, width) = self.clip.tokenizer.batch(chunk, self.context());
            let ids = Tensor::from_slice(&ids)
                .view([chunk.len() as i64, width as i64])
                .to_device(self.device());
            let features = tch::no_grad(|| self.clip.model.text_features(&ids));
            out.extend(to_f32_vec(&features)?);
        }
        Ok(out)
    }
}

fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>> {
    let flat = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
    Vec::<f32>::try_from(&flat).map_err(ClipError::from)
}

pub use brainpipe_core::{closest, cosine};
