//! `clip.train`: contrastive training of a small CLIP on a study's image–caption pairs
//! (Radford et al. 2021: symmetric InfoNCE over the batch, learnable temperature), saved in the
//! Hugging Face layout so `clip.embed` loads it like real weights.

use std::path::{Path, PathBuf};

use brainpipe_core::{ArtifactKind, Context, IoContext, Port, Stage, StageError};
use brainpipe_tensor::{ResolveDevice, device_name};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor, nn};

pub use brainpipe_params::clip::{CaptionChoice, TrainParams};

use crate::config::ClipConfig;
use crate::embedder::{Embedder, closest};
use crate::error::{ClipError, Result};
use crate::model::LoadedClip;
use brainpipe_artifacts::resolve_image;
use brainpipe_artifacts::{Stimulus, read_stimuli};

/// CLIP clamps the learnable logit scale at 100 (Radford et al. 2021, §2.5).
const MAX_LOGIT_SCALE: f64 = 100.0;
/// Steps between loss records in the training log.
const LOG_EVERY: usize = 25;

/// How a training run went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainReport {
    /// Images trained on.
    pub train_images: usize,
    /// Images held out (the `test` split when training on `train` only).
    pub test_images: usize,
    /// Mean InfoNCE loss every few steps: (step, loss).
    pub losses: Vec<(usize, f64)>,
    /// Fraction of training images whose closest caption is the recorded best one.
    pub train_best_caption_accuracy: f64,
    /// The same on the held-out images (NaN when none).
    pub test_best_caption_accuracy: f64,
    /// Chance level of that accuracy (mean 1 / captions per image).
    pub chance: f64,
    /// The learned temperature's logit scale, exp(logit_scale).
    pub logit_scale: f64,
}

/// An image with its captions, ready for training.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The image file.
    pub image: PathBuf,
    /// Its captions.
    pub captions: Vec<String>,
    /// The recorded best caption, if any.
    pub best: Option<usize>,
    /// Whether it is in the training set.
    pub train: bool,
}

/// The image–caption pairs of a stimuli table.
pub fn pairs(
    stimuli: &[Stimulus],
    images_dir: Option<&Path>,
    table: &Path,
    train_split_only: bool,
) -> Result<Vec<Pair>> {
    stimuli
        .iter()
        .filter(|s| !s.captions.is_empty())
        .filter_map(|s| s.image.as_deref().map(|img| (s, img)))
        .map(|(s, img)| {
            Ok(Pair {
                image: resolve_image(img, images_dir, table)?,
                captions: s.captions.clone(),
                best: s.best_caption.and_then(|b| usize::try_from(b).ok()),
                train: !train_split_only || s.split == "train",
            })
        })
        .collect()
}

/// Trains a CLIP with `config` on the training `pairs` and scores caption selection.
pub fn train(
    pairs: &[Pair],
    config: &ClipConfig,
    p: &TrainParams,
    device: Device,
) -> Result<(LoadedClip, TrainReport)> {
    let train: Vec<&Pair> = pairs.iter().filter(|x| x.train).collect();
    if train.len() < 2 {
        return Err(ClipError::Params(format!(
            "clip.train needs at least 2 training images, got {}",
            train.len()
        )));
    }
    tch::manual_seed(p.seed as i64);
    let clip = LoadedClip::new(config, device);
    let embedder = Embedder::from_model(clip);
    let files: Vec<PathBuf> = train.iter().map(|x| x.image.clone()).collect();
    let (h, w) = embedder.clip().preprocessor.crop;
    let pixels = Tensor::from_slice(&embedder.preprocess_files(&files)?)
        .view([train.len() as i64, 3, h as i64, w as i64])
        .to_device(device);
    let tokenizer = &embedder.clip().tokenizer;
    let context = config.text_config.context_length();
    let texts: Vec<&str> =
        train.iter().flat_map(|x| x.captions.iter().map(String::as_str)).collect();
    let (ids, width) = tokenizer.batch(&texts, context);
    let tokens =
        Tensor::from_slice(&ids).view([texts.len() as i64, width as i64]).to_device(device);
    // Only the vocabulary rows the captions use can get a gradient; training a compact copy of
    // them (scattered back at the end) spares AdamW the other ~49,000 rows each step.
    let mut used = ids.clone();
    used.sort_unstable();
    used.dedup();
    let compact_of: std::collections::HashMap<i64, i64> =
        used.iter().enumerate().map(|(i, &id)| (id, i as i64)).collect();
    let compact_ids: Vec<i64> = ids.iter().map(|id| compact_of[id]).collect();
    let compact_tokens =
        Tensor::from_slice(&compact_ids).view([texts.len() as i64, width as i64]).to_device(device);
    let used = Tensor::from_slice(&used).to_device(device);
    let rows_store = nn::VarStore::new(device);
    let rows = rows_store
        .root()
        .var_copy("token_rows", &embedder.clip().model.token_embedding().index_select(0, &used));
    let mut first_caption = Vec::with_capacity(train.len());
    let mut offset = 0;
    for x in &train {
        first_caption.push(offset);
        offset += x.captions.len();
    }

    let mut opt =
        nn::AdamW::default().wd(p.weight_decay).build(&embedder.clip().vs, p.learning_rate)?;
    let mut rows_opt =
        nn::AdamW::default().wd(p.weight_decay).build(&rows_store, p.learning_rate)?;
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let batch = p.batch_size.clamp(2, train.len());
    let mut order: Vec<usize> = Vec::new();
    let mut losses = Vec::new();
    let mut running = 0.0;
    let warmup = (p.steps / 10).max(1);
    for step in 0..p.steps {
        if order.len() < batch {
            let mut epoch: Vec<usize> = (0..train.len()).collect();
            epoch.shuffle(&mut rng);
            order = epoch;
        }
        let chosen: Vec<usize> = order.split_off(order.len() - batch);
        let captions: Vec<i64> = chosen
            .iter()
            .map(|&i| {
                let pick = match (p.captions, train[i].best) {
                    (CaptionChoice::Best, Some(best)) => best,
                    _ => rng.gen_range(0..train[i].captions.len()),
                };
                (first_caption[i] + pick) as i64
            })
            .collect();
        let lr = learning_rate_at(step, p.steps, warmup, p.learning_rate);
        opt.set_lr(lr);
        rows_opt.set_lr(lr);
        let images = pixels.index_select(
            0,
            &Tensor::from_slice(&chosen.iter().map(|&i| i as i64).collect::<Vec<_>>())
                .to_device(device),
        );
        let captions = Tensor::from_slice(&captions).to_device(device);
        let text = tokens.index_select(0, &captions);
        let text_rows = compact_tokens.index_select(0, &captions);
        let model = &embedder.clip().model;
        let text_features = model.text_features_from_token_embeddings(
            &text,
            &Tensor::embedding(&rows, &text_rows, -1, false, false),
        );
        let loss = info_nce(&model.image_features(&images), &text_features, &model.logit_scale);
        opt.zero_grad();
        rows_opt.zero_grad();
        loss.backward();
        opt.step();
        rows_opt.step();
        running += loss.double_value(&[]);
        if (step + 1) % LOG_EVERY == 0 || step + 1 == p.steps {
            let n = (step % LOG_EVERY + 1) as f64;
            losses.push((step + 1, running / n));
            running = 0.0;
        }
    }
    tch::no_grad(|| {
        let mut table = embedder.clip().model.token_embedding().shallow_clone();
        let _ = table.index_copy_(0, &used, &rows);
    });
    let logit_scale = embedder.clip().model.logit_scale.exp().double_value(&[]);
    let score = |train_set: bool| -> Result<(f64, f64)> {
        let subset: Vec<&Pair> = pairs.iter().filter(|x| x.train == train_set).collect();
        caption_selection_accuracy(&embedder, &subset, p.batch_size)
    };
    let (train_accuracy, chance) = score(true)?;
    let (test_accuracy, _) = score(false)?;
    let report = TrainReport {
        train_images: train.len(),
        test_images: pairs.len() - train.len(),
        losses,
        train_best_caption_accuracy: train_accuracy,
        test_best_caption_accuracy: test_accuracy,
        chance,
        logit_scale,
    };
    Ok((embedder.into_clip(), report))
}

/// Linear warm-up, then cosine decay to zero.
fn learning_rate_at(step: usize, steps: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Symmetric InfoNCE: image i's positive is caption i, the rest of the batch are negatives, in
/// both directions; logits are cosines times exp(logit_scale), clamped at 100.
pub fn info_nce(images: &Tensor, texts: &Tensor, logit_scale: &Tensor) -> Tensor {
    let normalize = |t: &Tensor| t / t.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12);
    let scale = logit_scale.exp().clamp_max(MAX_LOGIT_SCALE);
    let logits = normalize(images).matmul(&normalize(texts).tr()) * scale;
    let labels = Tensor::arange(logits.size()[0], (Kind::Int64, logits.device()));
    (logits.cross_entropy_for_logits(&labels) + logits.tr().cross_entropy_for_logits(&labels)) / 2.0
}

/// Fraction of `pairs` whose caption closest to the image (cosine) is the recorded best one, and
/// the chance level; NaN when none has a recorded best caption.
pub fn caption_selection_accuracy(
    embedder: &Embedder,
    pairs: &[&Pair],
    batch_size: usize,
) -> Result<(f64, f64)> {
    let scored: Vec<&&Pair> = pairs.iter().filter(|x| x.best.is_some()).collect();
    if scored.is_empty() {
        return Ok((f64::NAN, f64::NAN));
    }
    let files: Vec<PathBuf> = scored.iter().map(|x| x.image.clone()).collect();
    let images = embedder.embed_files(&files, batch_size)?;
    let texts: Vec<&str> =
        scored.iter().flat_map(|x| x.captions.iter().map(String::as_str)).collect();
    let captions = embedder.embed_texts(&texts, batch_size)?;
    let dim = embedder.dim();
    let (mut hits, mut chance, mut offset) = (0usize, 0.0, 0usize);
    for (i, x) in scored.iter().enumerate() {
        let own = &captions[offset * dim..(offset + x.captions.len()) * dim];
        if closest(&images[i * dim..(i + 1) * dim], own).map(|(j, _)| j) == x.best {
            hits += 1;
        }
        chance += 1.0 / x.captions.len() as f64;
        offset += x.captions.len();
    }
    Ok((hits as f64 / scored.len() as f64, chance / scored.len() as f64))
}

/// `clip.train`: a small CLIP trained on a study's image–caption pairs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Train;

impl Stage for Train {
    type Params = TrainParams;
    const NAME: &'static str = "clip.train";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Train a small CLIP (InfoNCE, learnable temperature) on a study's image–caption pairs";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input(
                "stimuli",
                ArtifactKind::table(brainpipe_artifacts::STIMULI),
                "images with captions (and the recorded best caption, for scoring)",
            ),
            Port::input("images", ArtifactKind::Directory, "the study's images directory")
                .optional(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::output(
                "model",
                "model",
                ArtifactKind::Directory,
                "Hugging Face CLIP layout: config.json, model.safetensors, \
                 preprocessor_config.json, vocab.json, merges.txt, tokenizer_config.json, \
                 special_tokens_map.json",
            ),
            Port::output(
                "log",
                "training.json",
                ArtifactKind::Json,
                "loss curve and best-caption selection accuracy (train / held-out, chance)",
            ),
        ]
    }

    fn run(&self, ctx: &mut Context, p: &TrainParams) -> Result<(), StageError> {
        brainpipe_tensor::apply_threads_param(p.threads);
        let config = ClipConfig::preset(&p.preset).ok_or_else(|| {
            ClipError::Params(format!(
                "unknown preset `{}` (known: {})",
                p.preset,
                ClipConfig::PRESETS.join(", ")
            ))
        })?;
        let device = p.device.resolve()?;
        ctx.set_device(device_name(device));
        let table = ctx.input("stimuli")?.to_path_buf();
        let stimuli = read_stimuli(&table)?;
        let pairs = pairs(&stimuli, ctx.optional_input("images"), &table, p.train_split_only)?;
        let (clip, report) = train(&pairs, &config, p, device)?;
        clip.save(&ctx.output("model"))?;
        let log = ctx.output("log");
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| ClipError::config(&log, e.to_string()))?;
        std::fs::write(&log, text + "\n").at(&log)?;
        ctx.note("final_loss", report.losses.last().map(|l| l.1));
        ctx.note("train_best_caption_accuracy", report.train_best_caption_accuracy);
        ctx.note("test_best_caption_accuracy", report.test_best_caption_accuracy);
        ctx.note("best_caption_chance", report.chance);
        Ok(())
    }
}
