//! `clip.pixel_metrics`: eval.images' PixCorr and SSIM (both variants) of every reconstruction
//! against its seen image, on LibTorch — a GPU for large batches — as an `image-metrics/1` table of
//! per-pair rows that eval.images takes as its `pixel_metrics` input instead of computing them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use brainpipe_artifacts::{
    IMAGE_METRICS, ImageMetricRow, RECONSTRUCTIONS, Reconstruction, image_file_name, read_stimuli,
    resolve_image, write_image_metrics,
};
use brainpipe_core::{ArtifactKind, Context, IoContext, Port, Stage, StageError};
use brainpipe_tensor::{ResolveDevice, device_name};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

pub use brainpipe_params::clip::PixelMetricsParams;

use crate::error::{ClipError, Result};
use crate::image::RgbImage;
use crate::image_metrics::{pair_metrics_batch, resize_square};
use crate::stages::{IMAGES_DOC, STIMULI_DOC, reconstruction_files};

/// `clip.pixel_metrics`: PixCorr and SSIM of reconstructions on LibTorch.
#[derive(Clone, Copy, Debug, Default)]
pub struct PixelMetrics;

impl Stage for PixelMetrics {
    type Params = PixelMetricsParams;
    const NAME: &'static str = "clip.pixel_metrics";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "eval.images' PixCorr and SSIM (Gaussian and 7×7) of every reconstruction on LibTorch, for large batches on a GPU";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input(
                "reconstructions",
                ArtifactKind::table(RECONSTRUCTIONS),
                "diffusion.decode's reconstructions, one table or several (their PNGs in the \
                 `images/` beside each table)",
            )
            .many(),
            Port::input("stimuli", ArtifactKind::table(brainpipe_artifacts::STIMULI), STIMULI_DOC),
            Port::input("images", ArtifactKind::Directory, IMAGES_DOC).optional(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "pixel_metrics",
            "pixel_metrics.parquet",
            ArtifactKind::table(IMAGE_METRICS),
            "per pair (model, subject, trial, stimulus): pixcorr, ssim_gaussian, ssim_uniform7",
        )]
    }

    fn run(&self, ctx: &mut Context, p: &PixelMetricsParams) -> Result<(), StageError> {
        let stimuli_table = ctx.input("stimuli")?.to_path_buf();
        let images_dir = ctx.optional_input("images").map(Path::to_path_buf);
        let mut seen_of: HashMap<String, String> = HashMap::new();
        for s in read_stimuli(&stimuli_table)? {
            if let Some(image) = &s.image {
                seen_of.insert(s.name(), image.clone());
                seen_of.entry(s.id.to_string()).or_insert_with(|| image.clone());
                seen_of.entry(image_file_name(image)).or_insert_with(|| image.clone());
            }
        }
        let mut pairs: Vec<(Reconstruction, PathBuf, PathBuf)> = Vec::new();
        for (r, recon) in reconstruction_files(&ctx.input_list("reconstructions"))? {
            let seen = seen_of.get(&r.stimulus).ok_or_else(|| {
                ClipError::table(
                    &recon,
                    format!(
                        "stimulus `{}` has no image in {}",
                        r.stimulus,
                        stimuli_table.display()
                    ),
                )
            })?;
            let seen = resolve_image(seen, images_dir.as_deref(), &stimuli_table)?;
            pairs.push((r, recon, seen));
        }
        if pairs.is_empty() {
            return Err(StageError::msg("clip.pixel_metrics: no reconstructions in the inputs"));
        }
        brainpipe_tensor::apply_threads_param(p.threads);
        let device = p.device.resolve().map_err(ClipError::from)?;
        ctx.set_device(device_name(device));
        let mut rows = Vec::with_capacity(3 * pairs.len());
        for chunk in pairs.chunks(p.batch_size.max(1)) {
            let load = |path: &PathBuf| metric_image(path, i64::from(p.size), p.antialias, device);
            let seen: Vec<Tensor> =
                chunk.par_iter().map(|(_, _, s)| load(s)).collect::<Result<_>>()?;
            let recon: Vec<Tensor> =
                chunk.par_iter().map(|(_, r, _)| load(r)).collect::<Result<_>>()?;
            let m = pair_metrics_batch(&Tensor::stack(&seen, 0), &Tensor::stack(&recon, 0))?;
            for (k, (r, _, _)) in chunk.iter().enumerate() {
                for (metric, value) in [
                    ("pixcorr", m.pixcorr[k]),
                    ("ssim_gaussian", m.ssim_gaussian[k]),
                    ("ssim_uniform7", m.ssim_uniform7[k]),
                ] {
                    rows.push(ImageMetricRow {
                        model: r.model.clone(),
                        subject: r.subject.clone(),
                        trial: r.trial,
                        stimulus: r.stimulus.clone(),
                        metric: metric.to_owned(),
                        value,
                    });
                }
            }
        }
        ctx.note("pairs", pairs.len());
        write_image_metrics(&ctx.output("pixel_metrics"), &rows)?;
        Ok(())
    }
}

/// An image as eval.images reads it — RGB `f64` in `[0, 1]` (8-bit values ÷ 255) — resized to
/// `size × size` on `device`: `3 × size × size`. 16-bit and transparent PNGs are refused (eval
/// keeps 16 bits and drops alpha, which this crate's 8-bit decoder does not), and so is anything
/// that is not a PNG (eval reads PNGs only).
fn metric_image(path: &Path, size: i64, antialias: bool, device: Device) -> Result<Tensor> {
    let bytes = std::fs::read(path).at(path)?;
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.len() < 26 {
        return Err(ClipError::image(path, "not a PNG (eval.images reads PNGs)"));
    }
    // IHDR: bit depth at byte 24, colour type at 25 (4: gray + alpha, 6: RGBA).
    if bytes[24] == 16 || matches!(bytes[25], 4 | 6) {
        return Err(ClipError::image(
            path,
            "16-bit or transparent PNG: clip.pixel_metrics reads 8-bit gray, RGB or palette PNGs; \
             eval.images' CPU path reads these exactly",
        ));
    }
    let image = RgbImage::decode(&bytes, path)?;
    let chw = Tensor::from_slice(&image.pixels)
        .view([image.height as i64, image.width as i64, 3])
        .permute([2, 0, 1])
        .to_device(device)
        .to_kind(Kind::Double)
        / 255.0;
    resize_square(&chw, size, antialias)
}
