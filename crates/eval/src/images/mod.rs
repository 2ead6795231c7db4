//! The field's image-reconstruction metrics, computed as MindEye1's
//! `Reconstruction_Metrics.py` (and MindEye2, Brain-Diffuser) compute them, in `f64`:
//!
//! - **PixCorr** ([`pearson`]): both images resized to 425 × 425 (torchvision bilinear,
//!   [`resize_bilinear`]), flattened RGB, Pearson r per pair;
//! - **SSIM** ([`ssim`]): resized to 425 × 425, [`rgb2gray`], scikit-image's
//!   `structural_similarity` — the Gaussian variant of the papers and the library's plain
//!   defaults ([`SsimVariant`]); the variant is named in every output;
//! - **2-way identification** ([`two_way`]) on features: raw pixels (a weightless baseline) and any
//!   embeddings table (`clip.embed`'s CLIP image embeddings give MindEye's "CLIP" column).
//!
//! `eval.images` ([`Images`]) computes them for every reconstruction of every model; the report
//! fragment ([`images_section`]) shows MindEye's table and the distributions.
//!
//! ```
//! use brainpipe_eval::images::{RgbImage, pair_metrics, MINDEYE_SIZE};
//!
//! let seen = RgbImage::new(16, 16, (0..768).map(|i| (i % 7) as f64 / 6.0).collect()).unwrap();
//! let m = pair_metrics(&seen, &seen, MINDEYE_SIZE, true);
//! assert!((m.pixcorr - 1.0).abs() < 1e-12 && (m.ssim_gaussian - 1.0).abs() < 1e-12);
//! ```

mod gray;
mod identification;
mod image;
mod lanes;
mod pixcorr;
mod report;
mod resize;
mod ssim;
mod stage;
pub(crate) mod tables;

pub use gray::{RGB2GRAY, rgb2gray};
pub use identification::two_way;
pub use image::{RgbImage, decode_png, read_png};
pub use pixcorr::pearson;
pub use report::images_section;
pub use resize::{resize_bilinear, shorter_side_to};
pub use ssim::{SsimError, SsimVariant, gaussian_kernel, ssim, ssim_many, ssim_par};
pub use stage::{Images, ImagesParams, Summary, summarise};
pub use tables::{
    IMAGE_METRICS, ImageMetricRow, RECONSTRUCTIONS, Reconstruction, read_image_metrics,
    read_reconstructions, write_image_metrics,
};

/// The side both images are resized to before PixCorr and SSIM (NSD's stimulus size).
pub const MINDEYE_SIZE: usize = 425;

/// PixCorr and both SSIM variants of one (seen, reconstruction) pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairMetrics {
    /// Pearson r of the flattened RGB values at `size × size`.
    pub pixcorr: f64,
    /// SSIM, Gaussian window (the papers').
    pub ssim_gaussian: f64,
    /// SSIM, scikit-image's defaults (7 × 7 mean window, sample covariance).
    pub ssim_uniform7: f64,
}

/// Both images resized to `size × size` (bilinear, `antialias` as torchvision's flag), then
/// PixCorr on RGB and SSIM (both variants) on `rgb2gray`. `size` must be at least 11.
pub fn pair_metrics(
    seen: &RgbImage,
    recon: &RgbImage,
    size: usize,
    antialias: bool,
) -> PairMetrics {
    let a = resize_bilinear(seen, size, size, antialias);
    let b = resize_bilinear(recon, size, size, antialias);
    let (ga, gb) = (rgb2gray(&a), rgb2gray(&b));
    let s = |v| ssim(&gb, &ga, size, size, v).unwrap_or(f64::NAN);
    PairMetrics {
        pixcorr: pearson(&a.pixels, &b.pixels),
        ssim_gaussian: s(SsimVariant::Gaussian),
        ssim_uniform7: s(SsimVariant::Uniform7),
    }
}
