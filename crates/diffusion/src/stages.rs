//! The stages `diffusion.train` and `diffusion.decode`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use brainpipe_core::{ArtifactKind, AtomicDir, Context, IoContext, Port, Stage, StageError};
use brainpipe_tensor::{Precision, PrecisionExt, ResolveDevice, device_name};

pub use brainpipe_params::diffusion::{DecodeParams, EmbeddingSource, TrainParams};
use tch::{Device, Kind, Tensor};

use crate::error::{DiffusionError, Result};
use crate::images::{read_png, write_png};
use crate::pipeline::{DiffusionPipeline, SampleOptions, denoise};
use crate::scheduler::SchedulerKind;
use crate::tables::{
    DecodeRow, Reconstruction, read_image_embeddings, read_predictions, read_split_images,
    write_reconstructions,
};
use crate::train::{TrainOptions, condition_tokens, save_decoder, train_decoder};
use brainpipe_artifacts::resolve_image;

const STIMULI_DOC: &str =
    "stimuli table (ingest.synthetic images world, or a real study): images and their split";
const IMAGES_DOC: &str =
    "the study's images directory; image paths in the stimuli table resolve against it";
const EMBEDDINGS_DOC: &str = "clip.embed's embeddings: the image rows are the conditions";

/// `diffusion.train`: a small image decoder conditioned on CLIP image embeddings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Train;

/// The training images (`[N, 3, H, W]` in [-1, 1]) and their embeddings, in stimuli order.
fn training_set(
    stimuli: &Path,
    images_dir: Option<&Path>,
    embeddings: &Path,
    split: &str,
) -> Result<(Tensor, Tensor, Vec<String>)> {
    let wanted: BTreeMap<i32, String> =
        read_split_images(stimuli, split)?.into_iter().map(|s| (s.id, s.image)).collect();
    let (rows, values, dim) = read_image_embeddings(embeddings)?;
    let mut pictures = Vec::new();
    let mut conditions = Vec::new();
    let mut names = Vec::new();
    for (i, (id, _)) in rows.iter().enumerate() {
        let Some(image) = wanted.get(id) else { continue };
        let path = resolve_image(image, images_dir, stimuli)?;
        pictures.push(read_png(&path)?);
        conditions.extend_from_slice(&values[i * dim..(i + 1) * dim]);
        names.push(image.clone());
    }
    if pictures.is_empty() {
        return Err(DiffusionError::table(
            embeddings,
            format!("no image embedding of a `{split}` image of {}", stimuli.display()),
        ));
    }
    let first = pictures[0].size();
    if let Some((k, p)) = pictures.iter().enumerate().find(|(_, p)| p.size() != first) {
        return Err(DiffusionError::image(
            Path::new(&names[k]),
            format!(
                "is {:?}, the first training image {:?}: all must share one size",
                p.size(),
                first
            ),
        ));
    }
    let n = pictures.len() as i64;
    let embeddings = Tensor::from_slice(&conditions).view([n, dim as i64]);
    Ok((Tensor::stack(&pictures, 0), embeddings, names))
}

/// `images` (`[N, 3, S, S]`) area-averaged down to `size` (0 or `S`: unchanged).
fn downsample(images: Tensor, size: i64) -> Result<Tensor> {
    let side = images.size()[2];
    if size == 0 || size == side {
        return Ok(images);
    }
    if size < 0 || size > side || side % size != 0 {
        return Err(DiffusionError::Params(format!(
            "image_size {size} must divide the images' side {side}"
        )));
    }
    let k = side / size;
    Ok(images.avg_pool2d([k, k], [k, k], [0, 0], false, true, None::<i64>))
}

impl Stage for Train {
    type Params = TrainParams;
    const NAME: &'static str = "diffusion.train";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Trains a small diffusion decoder: image from its CLIP image embedding (diffusers layout)";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input("stimuli", ArtifactKind::table(brainpipe_artifacts::STIMULI), STIMULI_DOC),
            Port::input("images", ArtifactKind::Directory, IMAGES_DOC).optional(),
            Port::input(
                "embeddings",
                ArtifactKind::table(brainpipe_artifacts::EMBEDDINGS),
                EMBEDDINGS_DOC,
            ),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::output(
                "model",
                "decoder",
                ArtifactKind::Directory,
                "diffusers layout: model_index.json, unet/ (config.json, diffusion_pytorch_model.safetensors), scheduler/",
            ),
            Port::output(
                "log",
                "training.json",
                ArtifactKind::Json,
                "loss curve, parameters, seconds",
            ),
        ]
    }

    fn run(&self, ctx: &mut Context, p: &TrainParams) -> Result<(), StageError> {
        if !(0.0..1.0).contains(&p.condition_dropout) {
            return Err(
                DiffusionError::Params("condition_dropout must be in [0, 1)".to_owned()).into()
            );
        }
        if p.channels.is_empty() || p.steps == 0 || p.batch_size == 0 || p.codec_factor < 1 {
            return Err(DiffusionError::Params(
                "channels, steps, batch_size and codec_factor must be positive".to_owned(),
            )
            .into());
        }
        brainpipe_tensor::apply_threads_param(p.threads);
        let device = p.device.resolve()?;
        ctx.note("device", device_name(device));
        let stimuli = ctx.input("stimuli")?.to_path_buf();
        let embeddings = ctx.input("embeddings")?.to_path_buf();
        let (images, conditions, _) =
            training_set(&stimuli, ctx.optional_input("images"), &embeddings, &p.split)?;
        let images = downsample(images, p.image_size)?;
        let options = TrainOptions {
            codec_factor: p.codec_factor,
            channels: p.channels.clone(),
            layers_per_block: p.layers_per_block,
            heads: p.heads,
            steps: p.steps,
            batch_size: p.batch_size,
            learning_rate: p.learning_rate,
            condition_dropout: p.condition_dropout,
            num_train_timesteps: p.num_train_timesteps,
            seed: p.seed,
            prediction_type: p.prediction_type,
        };
        let bar = ctx.progress(p.steps as u64, "diffusion");
        let (vs, config, scheduler, report) =
            train_decoder(&images, &conditions, &options, device, |_| bar.inc(1))?;
        bar.finish_and_clear();
        let side = images.size()[2];
        save_decoder(&ctx.output("model"), &vs, &config, &scheduler, p.codec_factor, side)?;
        ctx.note("seconds", report.seconds);
        ctx.note("parameters", report.parameters);
        ctx.note("images", report.images);
        let log = serde_json::json!({ "options": options, "report": report });
        let text =
            serde_json::to_string_pretty(&log).map_err(|e| StageError::msg(e.to_string()))?;
        let path = ctx.output("log");
        std::fs::write(&path, text + "\n").at(&path)?;
        Ok(())
    }
}

/// `diffusion.decode`: reconstructed images from predicted (or true) CLIP embeddings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Decode;

/// The seed of one row: splitmix64 of the stage seed and the row's identity, so a row's image
/// depends on neither batching nor the other rows.
pub fn row_seed(seed: u64, row: &DecodeRow) -> i64 {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for byte in row
        .model
        .bytes()
        .chain(row.subject.bytes())
        .chain(row.trial.to_le_bytes())
        .chain(row.fold.to_le_bytes())
    {
        h = (h ^ u64::from(byte)).wrapping_mul(0x100_0000_01B3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((h ^ (h >> 31)) >> 1) as i64
}

fn png_name(row: &DecodeRow) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect()
    };
    format!("{}/{}/trial-{:04}.png", clean(&row.model), clean(&row.subject), row.trial)
}

/// Rows to decode from `embeddings` + `stimuli`: the images of `split`, with their own or a
/// cyclically shifted embedding.
fn embedding_rows(
    stimuli: &Path,
    embeddings: &Path,
    split: &str,
    source: EmbeddingSource,
) -> Result<(Vec<DecodeRow>, Vec<f32>, usize)> {
    let wanted: BTreeMap<i32, String> =
        read_split_images(stimuli, split)?.into_iter().map(|s| (s.id, s.image)).collect();
    let (rows, values, dim) = read_image_embeddings(embeddings)?;
    let picked: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, (id, _))| wanted.contains_key(id))
        .map(|(i, _)| i)
        .collect();
    if picked.is_empty() {
        return Err(DiffusionError::table(
            embeddings,
            format!("no image embedding of a `{split}` image"),
        ));
    }
    let model = match source {
        EmbeddingSource::Own => "truth",
        EmbeddingSource::Shuffled => "shuffled",
    };
    let mut out_rows = Vec::with_capacity(picked.len());
    let mut out_values = Vec::with_capacity(picked.len() * dim);
    for (k, &i) in picked.iter().enumerate() {
        let from = match source {
            EmbeddingSource::Own => i,
            // A cyclic shift by half the set: every image gets another image's embedding.
            EmbeddingSource::Shuffled => picked[(k + (picked.len() / 2).max(1)) % picked.len()],
        };
        out_rows.push(DecodeRow {
            model: model.to_owned(),
            subject: "all".to_owned(),
            trial: k as i32,
            stimulus: wanted[&rows[i].0].clone(),
            fold: 0,
        });
        out_values.extend_from_slice(&values[from * dim..(from + 1) * dim]);
    }
    Ok((out_rows, out_values, dim))
}

/// The prediction rows to decode: those of the first `subjects` subjects (0: all) and, of those,
/// of the first `max_stimuli` stimuli by name (0: all), each (model, subject, stimulus)'s repeats
/// averaged into one row when `average` (its trial and fold are the first presentation's; rows
/// keep the table's order of first appearance).
pub fn select_predictions(
    rows: Vec<DecodeRow>,
    values: &[f32],
    dim: usize,
    average: bool,
    subjects: usize,
    max_stimuli: usize,
) -> (Vec<DecodeRow>, Vec<f32>, usize) {
    let first = |n: usize| if n == 0 { usize::MAX } else { n };
    let names: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.subject.as_str()).collect();
    let kept: std::collections::BTreeSet<String> =
        names.into_iter().take(first(subjects)).map(str::to_owned).collect();
    let stimuli: std::collections::BTreeSet<&str> =
        rows.iter().filter(|r| kept.contains(&r.subject)).map(|r| r.stimulus.as_str()).collect();
    let shown: std::collections::BTreeSet<String> =
        stimuli.into_iter().take(first(max_stimuli)).map(str::to_owned).collect();
    let mut groups: Vec<(DecodeRow, Vec<f64>, usize)> = Vec::new();
    let mut index: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (i, row) in rows.into_iter().enumerate() {
        if !kept.contains(&row.subject) || !shown.contains(&row.stimulus) {
            continue;
        }
        let v = &values[i * dim..(i + 1) * dim];
        let slot = if average {
            let key = (row.model.clone(), row.subject.clone(), row.stimulus.clone());
            match index.get(&key) {
                Some(&k) => Some(k),
                None => {
                    index.insert(key, groups.len());
                    None
                }
            }
        } else {
            None
        };
        match slot {
            Some(k) => {
                let (_, sum, n) = &mut groups[k];
                sum.iter_mut().zip(v).for_each(|(s, &x)| *s += f64::from(x));
                *n += 1;
            }
            None => groups.push((row, v.iter().map(|&x| f64::from(x)).collect(), 1)),
        }
    }
    let mut out_rows = Vec::with_capacity(groups.len());
    let mut out_values = Vec::with_capacity(groups.len() * dim);
    for (row, sum, n) in groups {
        out_rows.push(row);
        out_values.extend(sum.iter().map(|s| (s / n as f64) as f32));
    }
    (out_rows, out_values, dim)
}

/// The prediction rows whose stimulus is an image of `split` in the stimuli table (`all`: every
/// image), matched by path or by file name (scans name images by file name).
fn in_split(
    stimuli: &Path,
    split: &str,
    rows: Vec<DecodeRow>,
    values: &[f32],
    dim: usize,
) -> Result<(Vec<DecodeRow>, Vec<f32>)> {
    let mut names = std::collections::HashSet::new();
    for s in read_split_images(stimuli, split)? {
        names.insert(brainpipe_artifacts::image_file_name(&s.image));
        names.insert(s.image);
    }
    if names.is_empty() {
        return Err(DiffusionError::table(stimuli, format!("no image of split `{split}`")));
    }
    let (mut kept, mut kept_values) = (Vec::new(), Vec::new());
    for (i, row) in rows.into_iter().enumerate() {
        if names.contains(&row.stimulus) {
            kept_values.extend_from_slice(&values[i * dim..(i + 1) * dim]);
            kept.push(row);
        }
    }
    Ok((kept, kept_values))
}

impl Stage for Decode {
    type Params = DecodeParams;
    const NAME: &'static str = "diffusion.decode";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Reconstructs seen images from predicted CLIP embeddings with a diffusion decoder";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input(
                "model",
                ArtifactKind::Directory,
                "a diffusers pipeline directory (diffusion.train's model, or sd-image-variations' layout)",
            ),
            Port::input(
                "predictions",
                ArtifactKind::table(brainpipe_artifacts::PREDICTIONS),
                "models.*' predictions (one table or several): one image per row, or per averaged stimulus",
            )
            .optional()
            .many(),
            Port::input(
                "embeddings",
                ArtifactKind::table(brainpipe_artifacts::EMBEDDINGS),
                "without predictions: clip.embed's image embeddings, decoded directly (`source`)",
            )
            .optional(),
            Port::input(
                "stimuli",
                ArtifactKind::table(brainpipe_artifacts::STIMULI),
                "which images belong to `split` (with embeddings: required; with predictions: only those stimuli are decoded)",
            )
            .optional(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::output(
                "reconstructions",
                "reconstructions.parquet",
                ArtifactKind::table(brainpipe_artifacts::RECONSTRUCTIONS),
                "model, subject, trial, stimulus, fold, image (PNG path under images/), seed",
            ),
            Port::output(
                "images",
                "images",
                ArtifactKind::Directory,
                "the reconstructed PNGs: MODEL/SUBJECT/trial-NNNN.png",
            ),
        ]
    }

    fn run(&self, ctx: &mut Context, p: &DecodeParams) -> Result<(), StageError> {
        if p.steps == 0 || p.batch_size == 0 {
            return Err(
                DiffusionError::Params("steps and batch_size must be positive".to_owned()).into()
            );
        }
        let tables: Vec<PathBuf> =
            ctx.input_list("predictions").into_iter().map(Path::to_path_buf).collect();
        let (rows, values, dim) = match (tables.is_empty(), ctx.optional_input("embeddings")) {
            (false, None) => {
                let (mut rows, mut values, mut dim) = (Vec::new(), Vec::new(), 0);
                for table in &tables {
                    let (r, v, d) = read_predictions(table)?;
                    if dim != 0 && d != dim {
                        return Err(DiffusionError::table(
                            table,
                            format!("embeddings of width {d}, the first table's are {dim}"),
                        )
                        .into());
                    }
                    dim = d;
                    rows.extend(r);
                    values.extend(v);
                }
                if let Some(stimuli) = ctx.optional_input("stimuli") {
                    (rows, values) = in_split(stimuli, &p.split, rows, &values, dim)?;
                }
                let (a, s) = (p.average_repeats, p.subjects);
                select_predictions(rows, &values, dim, a, s, p.max_stimuli)
            }
            (true, Some(embeddings)) => {
                let stimuli = ctx.input("stimuli").map_err(|_| {
                    StageError::msg(
                        "diffusion.decode: `embeddings` needs `stimuli` (the split of each image)",
                    )
                })?;
                embedding_rows(stimuli, embeddings, &p.split, p.source)?
            }
            _ => {
                return Err(StageError::msg(
                    "diffusion.decode: give exactly one of `predictions` and `embeddings`",
                ));
            }
        };
        brainpipe_tensor::apply_threads_param(p.threads);
        let device = p.device.resolve()?;
        ctx.note("device", device_name(device));
        ctx.note("precision", p.precision);
        let kind = match p.precision {
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp32 | Precision::Tf32 => Kind::Float,
        };
        let _tf32 = p.precision.activate();
        let model = ctx.input("model")?.to_path_buf();
        let mut pipeline = DiffusionPipeline::load(&model, device, kind)?;
        if !p.scheduler.is_empty() {
            let kind = match p.scheduler.as_str() {
                "ddim" => SchedulerKind::Ddim,
                "pndm" => SchedulerKind::Pndm,
                "ddpm" => SchedulerKind::Ddpm,
                other => {
                    return Err(DiffusionError::Params(format!(
                        "unknown scheduler `{other}` (ddim, pndm, ddpm)"
                    ))
                    .into());
                }
            };
            pipeline.scheduler = pipeline.scheduler.with_kind(kind);
        }
        let want = pipeline.unet.config().cross_attention_dim;
        if dim as i64 != want {
            return Err(StageError::msg(format!(
                "{}: embeddings of width {dim}, the decoder's cross_attention_dim is {want}",
                model.display()
            )));
        }
        let images_dir = ctx.output("images");
        let staging = AtomicDir::new(&images_dir)?;
        let reconstructions =
            decode_rows(&pipeline, &rows, &values, dim, p, staging.path(), device)?;
        staging.commit()?;
        ctx.note("rows", reconstructions.len());
        write_reconstructions(&ctx.output("reconstructions"), &reconstructions)?;
        Ok(())
    }
}

/// Decodes every row in batches into PNGs under `dir`.
pub fn decode_rows(
    pipeline: &DiffusionPipeline,
    rows: &[DecodeRow],
    values: &[f32],
    dim: usize,
    p: &DecodeParams,
    dir: &Path,
    device: Device,
) -> Result<Vec<Reconstruction>> {
    let (channels, _) = pipeline.codec.latent_shape();
    let side = pipeline
        .unet
        .config()
        .sample_size
        .as_ref()
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| {
            DiffusionError::Params("the UNet config has no square sample_size".to_owned())
        })?;
    let kind = pipeline
        .var_stores
        .first()
        .map_or(Kind::Float, |vs| vs.variables().values().next().map_or(Kind::Float, Tensor::kind));
    let mut out = Vec::with_capacity(rows.len());
    for (chunk_index, chunk) in rows.chunks(p.batch_size).enumerate() {
        let first = chunk_index * p.batch_size;
        let seeds: Vec<i64> = chunk.iter().map(|r| row_seed(p.seed, r)).collect();
        let latents: Vec<Tensor> = seeds
            .iter()
            .map(|&s| {
                tch::manual_seed(s);
                Tensor::randn([channels, side, side], (Kind::Float, Device::Cpu))
            })
            .collect();
        let latents = Tensor::stack(&latents, 0).to_device(device);
        let embeddings = Tensor::from_slice(&values[first * dim..(first + chunk.len()) * dim])
            .view([chunk.len() as i64, dim as i64])
            .to_device(device);
        let condition = if pipeline.normalize_condition {
            condition_tokens(&embeddings)
        } else {
            embeddings.unsqueeze(1)
        }
        .to_kind(kind);
        // DDPM's variance noise: from the first row's seed, so a batch is reproducible.
        tch::manual_seed(seeds[0] ^ 0x5EED);
        let result = denoise(
            &pipeline.unet,
            &pipeline.scheduler,
            &latents,
            &condition,
            &condition.zeros_like(),
            SampleOptions { steps: p.steps, guidance_scale: p.guidance_scale },
            |x| x.randn_like(),
        )?;
        let images =
            tch::no_grad(|| pipeline.codec.decode(&result.to_kind(kind))).to_kind(Kind::Float);
        for (i, row) in chunk.iter().enumerate() {
            let name = png_name(row);
            write_png(&dir.join(&name), &images.get(i as i64))?;
            out.push(row.reconstruction(name, seeds[i]));
        }
    }
    Ok(out)
}

/// The decoded image paths, for tests and reports.
pub fn image_path(images_dir: &Path, r: &Reconstruction) -> PathBuf {
    images_dir.join(&r.image)
}
