//! The stages `clip.embed` and `clip.augment`.

use std::path::{Path, PathBuf};

use brainpipe_core::{ArtifactKind, Context, IoContext, Port, Stage, StageError};
use brainpipe_tensor::{DeviceChoice, ResolveDevice, device_name};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use brainpipe_params::clip::{AugmentParams, EmbedParams};

use crate::augment::Augmentation;
use crate::embedder::{Embedder, Precision};
use crate::error::{ClipError, Result};
use crate::image::RgbImage;
use crate::model::model_dir;
use brainpipe_artifacts::{
    EmbeddingKind, EmbeddingRow, Reconstruction, Stimulus, read_reconstructions, read_stimuli,
    resolve_image, write_embeddings,
};

pub(crate) const STIMULI_DOC: &str =
    "stimuli table (ingest.synthetic or a real study): images and captions, or words";
pub(crate) const IMAGES_DOC: &str =
    "the study's images directory; image paths in the stimuli table resolve against it";
const MODEL_DOC: &str = "a Hugging Face CLIP directory (config.json + model.safetensors; its vocab.json + merges.txt \
     tokenize when present), e.g. clip.train's model";

/// The inputs of the stages that embed a study's images with a model.
fn study_and_model_inputs() -> Vec<Port> {
    vec![
        Port::input("stimuli", ArtifactKind::table(brainpipe_artifacts::STIMULI), STIMULI_DOC),
        Port::input("images", ArtifactKind::Directory, IMAGES_DOC).optional(),
        Port::input("model", ArtifactKind::Directory, MODEL_DOC),
    ]
}

fn load_embedder(
    ctx: &mut Context,
    model: &Path,
    device: DeviceChoice,
    precision: Precision,
) -> Result<Embedder> {
    let device = device.resolve()?;
    ctx.set_device(device_name(device));
    ctx.note("precision", precision);
    Embedder::load(&model_dir(model), device, precision)
}

/// The image files of `stimuli`, resolved (every image must exist).
fn image_paths(
    stimuli: &[Stimulus],
    images_dir: Option<&Path>,
    table: &Path,
) -> Result<Vec<(usize, PathBuf)>> {
    stimuli
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.image.as_deref().map(|img| (i, img)))
        .map(|(i, img)| Ok((i, resolve_image(img, images_dir, table)?)))
        .collect()
}

/// `clip.embed`: CLIP embeddings of every image and caption of a stimuli table.
#[derive(Clone, Copy, Debug, Default)]
pub struct Embed;

impl Stage for Embed {
    type Params = EmbedParams;
    const NAME: &'static str = "clip.embed";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "CLIP embeddings of a study's images and captions";

    fn inputs(&self) -> Vec<Port> {
        let mut ports = study_and_model_inputs();
        ports[0] =
            Port::input("stimuli", ArtifactKind::table(brainpipe_artifacts::STIMULI), STIMULI_DOC)
                .optional();
        ports.push(
            Port::input(
                "reconstructions",
                ArtifactKind::table(brainpipe_artifacts::RECONSTRUCTIONS),
                "instead of stimuli: diffusion.decode's reconstructions, one table or several (their \
                 PNGs in the `images/` beside each table), embedded for eval.images' CLIP identification",
            )
            .optional()
            .many(),
        );
        ports
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "embeddings",
            "embeddings.parquet",
            ArtifactKind::table(brainpipe_artifacts::EMBEDDINGS),
            "one row per image and per caption: stimulus, kind, caption index, embedding (not normalised)",
        )]
    }

    fn run(&self, ctx: &mut Context, p: &EmbedParams) -> Result<(), StageError> {
        let reconstructions: Vec<PathBuf> =
            ctx.input_list("reconstructions").into_iter().map(Path::to_path_buf).collect();
        if !reconstructions.is_empty() {
            if ctx.optional_input("stimuli").is_some() || ctx.optional_input("images").is_some() {
                return Err(StageError::msg(
                    "clip.embed: give `stimuli` (and `images`) or `reconstructions`, not both",
                ));
            }
            return embed_reconstructions(ctx, &reconstructions, p);
        }
        let table = ctx.input("stimuli").map_err(|_| {
            StageError::msg("clip.embed needs `stimuli` (a study) or `reconstructions`")
        })?;
        let table = table.to_path_buf();
        let stimuli = read_stimuli(&table)?;
        let model = ctx.input("model")?.to_path_buf();
        brainpipe_tensor::apply_threads_param(p.threads);
        let embedder = load_embedder(ctx, &model, p.device, p.precision)?;
        let images = image_paths(&stimuli, ctx.optional_input("images"), &table)?;
        let files: Vec<PathBuf> = images.iter().map(|(_, path)| path.clone()).collect();
        let image_embeddings = embedder.embed_files(&files, p.batch_size)?;
        let captions: Vec<(usize, usize, &str)> = stimuli
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.captions.iter().enumerate().map(move |(j, c)| (i, j, c.as_str())))
            .collect();
        let texts: Vec<&str> = captions.iter().map(|c| c.2).collect();
        let caption_embeddings = embedder.embed_texts(&texts, p.batch_size)?;
        let mut rows = Vec::with_capacity(images.len() + captions.len());
        rows.extend(images.iter().map(|(i, _)| image_row(&stimuli[*i])));
        for (i, j, text) in &captions {
            let s = &stimuli[*i];
            rows.push(EmbeddingRow {
                stimulus: s.name(),
                stimulus_id: s.id,
                kind: EmbeddingKind::Caption,
                caption_index: Some(*j as i32),
                caption: Some((*text).to_owned()),
                augmentation: None,
                image: None,
            });
        }
        if rows.is_empty() {
            return Err(ClipError::table(&table, "no images or captions to embed").into());
        }
        ctx.note("images", images.len());
        ctx.note("captions", captions.len());
        let mut values = image_embeddings;
        values.extend(caption_embeddings);
        write_embeddings(&ctx.output("embeddings"), &rows, values, embedder.dim())?;
        Ok(())
    }
}

/// `clip.embed` on diffusion.decode's reconstructions: one image row per reconstruction, its
/// `stimulus` the seen image, its `image` the PNG's path as its table gives it (eval.images
/// matches rows on it; the paths start with the model's name, so tables do not collide).
fn embed_reconstructions(
    ctx: &mut Context,
    tables: &[PathBuf],
    p: &EmbedParams,
) -> Result<(), StageError> {
    let (out, files) = reconstruction_images(tables)?;
    let model = ctx.input("model")?.to_path_buf();
    brainpipe_tensor::apply_threads_param(p.threads);
    let embedder = load_embedder(ctx, &model, p.device, p.precision)?;
    let values = embedder.embed_files(&files, p.batch_size)?;
    ctx.note("images", out.len());
    write_embeddings(&ctx.output("embeddings"), &out, values, embedder.dim())?;
    Ok(())
}

/// The reconstructions of diffusion.decode's `tables` (their PNGs in the `images/` beside each
/// table) as `kind = image` embedding rows — `stimulus` the seen image, `image` the PNG's path as
/// the table gives it — and the PNG files, in the same order.
pub(crate) fn reconstruction_images(
    tables: &[PathBuf],
) -> Result<(Vec<EmbeddingRow>, Vec<PathBuf>)> {
    Ok(reconstruction_files(tables)?
        .into_iter()
        .map(|(r, file)| {
            let row = EmbeddingRow {
                stimulus: r.stimulus,
                stimulus_id: r.trial,
                kind: EmbeddingKind::Image,
                caption_index: None,
                caption: None,
                augmentation: None,
                image: Some(r.image),
            };
            (row, file)
        })
        .unzip())
}

/// Every row of diffusion.decode's `tables` with its PNG, which must exist in the `images/`
/// beside its table.
pub(crate) fn reconstruction_files<P: AsRef<Path>>(
    tables: &[P],
) -> Result<Vec<(Reconstruction, PathBuf)>> {
    let mut out = Vec::new();
    for table in tables {
        let table = table.as_ref();
        let dir = table.parent().map_or_else(|| PathBuf::from("images"), |f| f.join("images"));
        for r in read_reconstructions(table)? {
            let file = dir.join(&r.image);
            if !file.is_file() {
                return Err(ClipError::table(
                    table,
                    format!("reconstruction `{}` not found in {}", r.image, dir.display()),
                ));
            }
            out.push((r, file));
        }
    }
    Ok(out)
}

/// The `kind = image` embedding rows of a study's stimuli table and their image files, in the
/// same order (every image must exist).
pub(crate) fn study_images(
    table: &Path,
    images_dir: Option<&Path>,
) -> Result<(Vec<EmbeddingRow>, Vec<PathBuf>)> {
    let stimuli = read_stimuli(table)?;
    let paths = image_paths(&stimuli, images_dir, table)?;
    let rows = paths.iter().map(|(i, _)| image_row(&stimuli[*i])).collect();
    Ok((rows, paths.into_iter().map(|(_, p)| p).collect()))
}

/// The `kind = image` embedding row of stimulus `s`.
fn image_row(s: &Stimulus) -> EmbeddingRow {
    EmbeddingRow {
        stimulus: s.name(),
        stimulus_id: s.id,
        kind: EmbeddingKind::Image,
        caption_index: None,
        caption: None,
        augmentation: None,
        image: s.image.clone(),
    }
}

/// `clip.augment`: augmented copies of every image and their embeddings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Augment;

impl Stage for Augment {
    type Params = AugmentParams;
    const NAME: &'static str = "clip.augment";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Augmented copies of each image (flip, crop, brightness, contrast, blur) and their CLIP embeddings";

    fn inputs(&self) -> Vec<Port> {
        study_and_model_inputs()
    }

    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::output(
                "images",
                "augmented",
                ArtifactKind::Directory,
                "<stem>-aug<k>.png per image and copy",
            ),
            Port::output(
                "embeddings",
                "augmented.parquet",
                ArtifactKind::table(brainpipe_artifacts::EMBEDDINGS),
                "kind `augmented`: stimulus, copy index, image path (relative to this directory), embedding",
            ),
        ]
    }

    fn run(&self, ctx: &mut Context, p: &AugmentParams) -> Result<(), StageError> {
        let table = ctx.input("stimuli")?.to_path_buf();
        let stimuli = read_stimuli(&table)?;
        let model = ctx.input("model")?.to_path_buf();
        brainpipe_tensor::apply_threads_param(p.threads);
        let embedder = load_embedder(ctx, &model, p.device, p.precision)?;
        let augmentation = Augmentation {
            flip_probability: p.flip_probability,
            min_crop_area: p.min_crop_area,
            brightness: p.brightness,
            contrast: p.contrast,
            blur_probability: p.blur_probability,
            max_blur_sigma: p.max_blur_sigma,
        };
        let out_dir = ctx.output("images");
        std::fs::create_dir_all(&out_dir).at(&out_dir)?;
        let mut rows = Vec::new();
        let mut values = Vec::new();
        for (i, path) in image_paths(&stimuli, ctx.optional_input("images"), &table)? {
            let s = &stimuli[i];
            let image = RgbImage::open(&path)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| s.id.to_string());
            let mut copies = Vec::new();
            for k in 0..p.copies {
                // One stream per (image, copy): adding images or copies leaves the others unchanged.
                let stream = p.seed ^ (u64::from(s.id as u32) << 32) ^ u64::from(k);
                let copy = augmentation.apply(&image, &mut ChaCha8Rng::seed_from_u64(stream));
                let name = format!("{stem}-aug{k}.png");
                copy.save_png(&out_dir.join(&name))?;
                rows.push(EmbeddingRow {
                    stimulus: s.name(),
                    stimulus_id: s.id,
                    kind: EmbeddingKind::Augmented,
                    caption_index: None,
                    caption: None,
                    augmentation: Some(k as i32),
                    image: Some(format!("augmented/{name}")),
                });
                copies.push(copy);
            }
            values.extend(embedder.embed_images(&copies, p.batch_size)?);
        }
        if rows.is_empty() {
            return Err(ClipError::table(&table, "no images to augment").into());
        }
        ctx.note("augmented_images", rows.len());
        write_embeddings(&ctx.output("embeddings"), &rows, values, embedder.dim())?;
        Ok(())
    }
}
