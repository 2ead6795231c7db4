//! PixCorr and SSIM of many image pairs at once on LibTorch — the GPU path of eval.images'
//! pixel metrics for large batches (eval itself stays LibTorch-free and computes them on the CPU,
//! `brainpipe_eval::images`).
//!
//! The definitions are eval's, i.e. MindEye's calls: both images resized to `size × size` with
//! torch's bilinear kernel (antialiased or not, `F.interpolate`), PixCorr the Pearson r of the
//! flattened RGB values, SSIM scikit-image 0.26's `structural_similarity` on `rgb2gray` with
//! `data_range = 1`: the Gaussian window (σ 1.5 truncated at 3.5 σ: 11 taps, population covariance)
//! or the library's defaults (7 × 7 mean window, sample covariance), the map cropped by
//! `(win − 1)/2` on every side before averaging. Cropping that border is the same as filtering
//! without padding (the kept windows never leave the image), so the separable window is two
//! `conv2d` passes with no padding. In `f64` the results stay within rounding of eval's CPU
//! kernel (tests/image_metrics.rs); `f32` is offered for speed on GPUs.

use tch::{Device, Kind, Tensor};

use crate::error::{ClipError, Result};

/// `K1`, `K2` of Wang et al. (scikit-image's defaults), with `data_range = 1`.
const K1: f64 = 0.01;
const K2: f64 = 0.03;
/// scikit-image's `rgb2gray` coefficients (ITU-R BT.709).
pub const RGB2GRAY: [f64; 3] = [0.2125, 0.7154, 0.0721];

/// Which `structural_similarity` call (eval's `SsimVariant`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SsimWindow {
    /// `gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0`.
    Gaussian,
    /// The defaults: `win_size=7`, uniform, `use_sample_covariance=True`, `data_range=1.0`.
    Uniform7,
}

impl SsimWindow {
    /// The normalised 1-D window and the covariance normalisation.
    pub fn window(self) -> (Vec<f64>, f64) {
        match self {
            SsimWindow::Gaussian => (gaussian_kernel(1.5, 3.5), 1.0),
            SsimWindow::Uniform7 => (vec![1.0 / 7.0; 7], 49.0 / 48.0),
        }
    }
}

/// scipy's `_gaussian_kernel1d(sigma, 0, radius)` with `radius = int(truncate · sigma + 0.5)`.
fn gaussian_kernel(sigma: f64, truncate: f64) -> Vec<f64> {
    let radius = (truncate * sigma + 0.5) as i64;
    let phi: Vec<f64> =
        (-radius..=radius).map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp()).collect();
    let sum: f64 = phi.iter().sum();
    phi.into_iter().map(|v| v / sum).collect()
}

/// Mean SSIM of each pair of gray images `x[i]`, `y[i]` (`n × h × w`, values in `[0, 1]`, any
/// float kind and device): `n` values of the same kind and device.
pub fn ssim_batch(x: &Tensor, y: &Tensor, window: SsimWindow) -> Result<Tensor> {
    let (taps, cov_norm) = window.window();
    let size = x.size();
    if size.len() != 3 || y.size() != size {
        return Err(ClipError::Params(format!(
            "ssim_batch needs two n × h × w batches of the same shape, got {size:?} and {:?}",
            y.size()
        )));
    }
    let win = taps.len() as i64;
    let (n, h, w) = (size[0], size[1], size[2]);
    if h < win || w < win {
        return Err(ClipError::Params(format!(
            "a {w}×{h} image is smaller than the {win}×{win} SSIM window"
        )));
    }
    let (kind, device) = (x.kind(), x.device());
    let kernel = Tensor::from_slice(&taps).to_kind(kind).to_device(device);
    // The five maps as one batch of one-channel images: x, y, x², y², xy.
    let maps = Tensor::stack(&[x, y, &(x * x), &(y * y), &(x * y)], 0).view([5 * n, 1, h, w]);
    let no_bias: Option<&Tensor> = None;
    let filtered = maps
        .conv2d(&kernel.view([1, 1, win, 1]), no_bias, [1, 1], [0, 0], [1, 1], 1)
        .conv2d(&kernel.view([1, 1, 1, win]), no_bias, [1, 1], [0, 0], [1, 1], 1)
        .view([5, n, h - win + 1, w - win + 1]);
    let m = filtered.unbind(0);
    let (ux, uy, uxx, uyy, uxy) = (&m[0], &m[1], &m[2], &m[3], &m[4]);
    let vx = (uxx - ux * ux) * cov_norm;
    let vy = (uyy - uy * uy) * cov_norm;
    let vxy = (uxy - ux * uy) * cov_norm;
    let (c1, c2) = (K1 * K1, K2 * K2);
    let a1 = ux * uy * 2.0 + c1;
    let a2 = vxy * 2.0 + c2;
    let b1 = ux * ux + uy * uy + c1;
    let b2 = vx + vy + c2;
    let map = (a1 * a2) / (b1 * b2);
    Ok(map.mean_dim([1i64, 2].as_slice(), false, kind))
}

/// Pearson r of each row pair of `a` and `b` (`n × …`, flattened per row), clipped to `[-1, 1]`;
/// NaN for a constant row (as `np.corrcoef`).
pub fn pixcorr_batch(a: &Tensor, b: &Tensor) -> Tensor {
    let n = a.size()[0];
    let (a, b) = (a.reshape([n, -1]), b.reshape([n, -1]));
    let a = &a - a.mean_dim([1i64].as_slice(), true, a.kind());
    let b = &b - b.mean_dim([1i64].as_slice(), true, b.kind());
    let dot = |x: &Tensor, y: &Tensor| (x * y).sum_dim_intlist([1i64].as_slice(), false, x.kind());
    (dot(&a, &b) / (dot(&a, &a).sqrt() * dot(&b, &b).sqrt())).clamp(-1.0, 1.0)
}

/// `rgb2gray` of `n × 3 × h × w` images: `n × h × w`.
pub fn gray_batch(rgb: &Tensor) -> Tensor {
    let c = rgb.unbind(1);
    &c[0] * RGB2GRAY[0] + &c[1] * RGB2GRAY[1] + &c[2] * RGB2GRAY[2]
}

/// One RGB image (`3 × h × w`, values in `[0, 1]`) resized to `size × size` by torch's bilinear
/// interpolation (`align_corners = false`; `antialias` as torchvision's flag).
pub fn resize_square(image: &Tensor, size: i64, antialias: bool) -> Result<Tensor> {
    let shape = image.size();
    if shape[1..] == [size, size] {
        return Ok(image.shallow_clone());
    }
    let batch = image.unsqueeze(0);
    let out = if antialias {
        batch.f_internal_upsample_bilinear2d_aa([size, size], false, None, None)?
    } else {
        batch.f_upsample_bilinear2d([size, size], false, None, None)?
    };
    Ok(out.squeeze_dim(0))
}

/// PixCorr and both SSIM variants of `n` pairs, each value per pair.
#[derive(Debug)]
pub struct PairMetricsBatch {
    /// Pearson r of the RGB values.
    pub pixcorr: Vec<f64>,
    /// SSIM, Gaussian window.
    pub ssim_gaussian: Vec<f64>,
    /// SSIM, 7 × 7 mean window.
    pub ssim_uniform7: Vec<f64>,
}

/// Metrics of `seen[i]` against `recon[i]`, both `n × 3 × s × s` (already resized), computed on
/// their device in their kind; values back on the CPU as `f64`.
pub fn pair_metrics_batch(seen: &Tensor, recon: &Tensor) -> Result<PairMetricsBatch> {
    let to_vec = |t: Tensor| -> Result<Vec<f64>> {
        Ok(Vec::<f64>::try_from(&t.to_device(Device::Cpu).to_kind(Kind::Double))?)
    };
    let (gs, gr) = (gray_batch(seen), gray_batch(recon));
    tch::no_grad(|| {
        Ok(PairMetricsBatch {
            pixcorr: to_vec(pixcorr_batch(seen, recon))?,
            // scikit-image is called as structural_similarity(rec, img, …).
            ssim_gaussian: to_vec(ssim_batch(&gr, &gs, SsimWindow::Gaussian)?)?,
            ssim_uniform7: to_vec(ssim_batch(&gr, &gs, SsimWindow::Uniform7)?)?,
        })
    })
}
