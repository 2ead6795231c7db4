//! scikit-image 0.26's `structural_similarity` on gray images, both variants in use:
//!
//! - [`SsimVariant::Gaussian`]: `gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
//!   data_range=1.0` (Wang et al. 2004; MindEye, Brain-Diffuser): an 11-tap Gaussian window
//!   truncated at 3.5 σ;
//! - [`SsimVariant::Uniform7`]: the library's defaults with `data_range=1.0` — a 7 × 7 mean
//!   window and the sample covariance (`N / (N − 1)`).
//!
//! The SSIM map is averaged after cropping `(win_size − 1) / 2` pixels from every border, as
//! scikit-image does; the cropped region never reads past the image, so the filters' boundary mode
//! (`reflect`) cannot change the result and is not needed. The window is separable: a horizontal
//! pass over the five maps (x, y, x², y², xy) of the kept columns, then a vertical pass over the
//! kept rows, all in `f64`.

use rayon::prelude::*;

/// `K1` and `K2` of Wang et al. (scikit-image's defaults).
const K1: f64 = 0.01;
const K2: f64 = 0.03;

/// Which `structural_similarity` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SsimVariant {
    /// `gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0`.
    Gaussian,
    /// Library defaults (`win_size=7`, uniform, `use_sample_covariance=True`), `data_range=1.0`.
    Uniform7,
}

impl SsimVariant {
    /// The metric name in tables: `ssim_gaussian` or `ssim_uniform7`.
    pub fn metric(self) -> &'static str {
        match self {
            SsimVariant::Gaussian => "ssim_gaussian",
            SsimVariant::Uniform7 => "ssim_uniform7",
        }
    }

    /// The normalised 1-D window and the covariance normalisation.
    fn window(self) -> (Vec<f64>, f64) {
        match self {
            SsimVariant::Gaussian => (gaussian_kernel(1.5, 3.5), 1.0),
            SsimVariant::Uniform7 => (vec![1.0 / 7.0; 7], 49.0 / 48.0),
        }
    }

    /// The window's side.
    pub fn win_size(self) -> usize {
        self.window().0.len()
    }
}

/// scipy's `_gaussian_kernel1d(sigma, 0, radius)` with `radius = int(truncate · sigma + 0.5)`.
pub fn gaussian_kernel(sigma: f64, truncate: f64) -> Vec<f64> {
    let radius = (truncate * sigma + 0.5) as i64;
    let phi: Vec<f64> =
        (-radius..=radius).map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp()).collect();
    let sum: f64 = phi.iter().sum();
    phi.into_iter().map(|v| v / sum).collect()
}

/// Why two images have no SSIM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SsimError {
    /// The images differ in size, or the pixel count is not `height × width`.
    Shape(String),
    /// A side is smaller than the window (scikit-image: "win_size exceeds image extent").
    TooSmall {
        /// The window side.
        win_size: usize,
        /// Image width.
        width: usize,
        /// Image height.
        height: usize,
    },
}

impl std::fmt::Display for SsimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SsimError::Shape(m) => f.write_str(m),
            SsimError::TooSmall { win_size, width, height } => write!(
                f,
                "a {width}×{height} image is smaller than the {win_size}×{win_size} SSIM window"
            ),
        }
    }
}

impl std::error::Error for SsimError {}

/// Mean SSIM of two gray `width × height` images (row-major, `data_range` 1), as
/// `structural_similarity(x, y, …)` returns it for `variant`. Serial; see [`ssim_many`].
pub fn ssim(
    x: &[f64],
    y: &[f64],
    width: usize,
    height: usize,
    variant: SsimVariant,
) -> Result<f64, SsimError> {
    if x.len() != width * height || y.len() != width * height {
        return Err(SsimError::Shape(format!(
            "images of {} and {} pixels, expected {width}×{height}",
            x.len(),
            y.len()
        )));
    }
    let (w, cov_norm) = variant.window();
    let win = w.len();
    if width < win || height < win {
        return Err(SsimError::TooSmall { win_size: win, width, height });
    }
    let r = (win - 1) / 2;
    let cw = width - 2 * r;
    let ch = height - 2 * r;
    // Horizontal pass: the five maps at the kept columns, every row.
    let mut hx = vec![0.0; height * cw * 5];
    let mut products = vec![0.0; width * 5];
    for row in 0..height {
        let xs = &x[row * width..(row + 1) * width];
        let ys = &y[row * width..(row + 1) * width];
        let (px, rest) = products.split_at_mut(width);
        let (py, rest) = rest.split_at_mut(width);
        let (pxx, rest) = rest.split_at_mut(width);
        let (pyy, pxy) = rest.split_at_mut(width);
        for (i, (&a, &b)) in xs.iter().zip(ys).enumerate() {
            px[i] = a;
            py[i] = b;
            pxx[i] = a * a;
            pyy[i] = b * b;
            pxy[i] = a * b;
        }
        let out = &mut hx[row * cw * 5..(row + 1) * cw * 5];
        for m in 0..5 {
            let src = &products[m * width..(m + 1) * width];
            let dst = &mut out[m * cw..(m + 1) * cw];
            dst.iter_mut().zip(&src[..cw]).for_each(|(d, &s)| *d = w[0] * s);
            for (k, &wk) in w.iter().enumerate().skip(1) {
                dst.iter_mut().zip(&src[k..k + cw]).for_each(|(d, &s)| *d += wk * s);
            }
        }
    }
    // Vertical pass on the kept rows, then the SSIM map, summed.
    let c1 = K1 * K1;
    let c2 = K2 * K2;
    let mut acc = vec![0.0; cw * 5];
    let mut total = 0.0;
    for row in 0..ch {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for (k, &wk) in w.iter().enumerate() {
            let src = &hx[(row + k) * cw * 5..(row + k + 1) * cw * 5];
            acc.iter_mut().zip(src).for_each(|(a, &s)| *a += wk * s);
        }
        let (ux, rest) = acc.split_at(cw);
        let (uy, rest) = rest.split_at(cw);
        let (uxx, rest) = rest.split_at(cw);
        let (uyy, uxy) = rest.split_at(cw);
        let mut sum = 0.0;
        let maps = ux.iter().zip(uy).zip(uxx).zip(uyy).zip(uxy);
        for ((((&mx, &my), &mxx), &myy), &mxy) in maps {
            let vx = cov_norm * (mxx - mx * mx);
            let vy = cov_norm * (myy - my * my);
            let vxy = cov_norm * (mxy - mx * my);
            let a1 = 2.0 * mx * my + c1;
            let a2 = 2.0 * vxy + c2;
            let b1 = mx * mx + my * my + c1;
            let b2 = vx + vy + c2;
            sum += (a1 * a2) / (b1 * b2);
        }
        total += sum;
    }
    Ok(total / (cw * ch) as f64)
}

/// [`ssim`] of many pairs of `width × height` gray images, in parallel over pairs.
pub fn ssim_many(
    pairs: &[(&[f64], &[f64])],
    width: usize,
    height: usize,
    variant: SsimVariant,
) -> Result<Vec<f64>, SsimError> {
    pairs.par_iter().map(|(x, y)| ssim(x, y, width, height, variant)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_window_is_scipys() {
        let k = gaussian_kernel(1.5, 3.5);
        assert_eq!(k.len(), 11);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!(k[5] > k[4] && (k[4] - k[6]).abs() < 1e-18);
        assert_eq!(SsimVariant::Uniform7.win_size(), 7);
    }

    #[test]
    fn identical_images_score_one_and_small_images_fail() {
        let img: Vec<f64> = (0..100).map(|i| ((i * 37) % 23) as f64 / 22.0).collect();
        for v in [SsimVariant::Gaussian, SsimVariant::Uniform7] {
            let s = ssim(&img, &img, 10, 10, v);
            if v == SsimVariant::Gaussian {
                assert!(matches!(s, Err(SsimError::TooSmall { win_size: 11, .. })));
            } else {
                assert!((s.expect("ssim") - 1.0).abs() < 1e-12);
            }
        }
        let inverted: Vec<f64> = img.iter().map(|v| 1.0 - v).collect();
        let s = ssim(&img, &inverted, 10, 10, SsimVariant::Uniform7).expect("ssim");
        assert!(s < 0.0, "{s}");
        assert!(matches!(
            ssim(&img, &img[..50], 10, 10, SsimVariant::Uniform7),
            Err(SsimError::Shape(_))
        ));
    }
}
