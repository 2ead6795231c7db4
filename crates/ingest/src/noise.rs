//! Spatially smooth Gaussian noise: white noise on the whole grid, blurred by a separable
//! Gaussian of the requested FWHM and rescaled to unit variance.

use rand_chacha::ChaCha8Rng;

use crate::rng::fill_normal;

/// FWHM = σ·√(8 ln 2).
const FWHM_PER_SIGMA: f64 = 2.354_820_045;

/// A separable 3D Gaussian smoother for one grid.
#[derive(Clone, Debug)]
pub(crate) struct Smoother {
    dims: [usize; 3],
    kernel: Vec<f32>,
    /// Rescales the blurred field back to unit variance.
    gain: f32,
}

impl Smoother {
    /// A smoother of `fwhm_mm` on a grid of `dims` voxels of `voxel_mm`; `None` when the kernel
    /// would be narrower than a voxel (the noise is then white).
    pub fn new(dims: [usize; 3], voxel_mm: f64, fwhm_mm: f64) -> Option<Self> {
        let sigma = fwhm_mm / FWHM_PER_SIGMA / voxel_mm;
        if sigma < 0.25 {
            return None;
        }
        let radius = (3.0 * sigma).ceil() as i64;
        let mut kernel: Vec<f64> =
            (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp()).collect();
        let sum: f64 = kernel.iter().sum();
        kernel.iter_mut().for_each(|k| *k /= sum);
        let energy: f64 = kernel.iter().map(|k| k * k).sum();
        let gain = (1.0 / energy.powi(3).sqrt()) as f32;
        Some(Smoother { dims, kernel: kernel.into_iter().map(|k| k as f32).collect(), gain })
    }

    /// A fresh unit-variance smooth field over the whole grid.
    pub fn field(&self, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let n: usize = self.dims.iter().product();
        let mut field = vec![0.0f32; n];
        fill_normal(rng, &mut field);
        let mut scratch = vec![0.0f32; n];
        let [nx, ny, nz] = self.dims;
        for (stride, len) in [(1, nx), (nx, ny), (nx * ny, nz)] {
            self.blur_axis(&field, &mut scratch, stride, len);
            std::mem::swap(&mut field, &mut scratch);
        }
        field.iter_mut().for_each(|v| *v *= self.gain);
        field
    }

    /// Convolves along one axis (given by its stride and length), zero beyond the grid edge —
    /// the grid extends well past the brain, so the edge never touches brain voxels' variance.
    /// Works on whole rows of `stride` contiguous values at a time so the inner loop vectorises.
    fn blur_axis(&self, input: &[f32], output: &mut [f32], stride: usize, len: usize) {
        let radius = self.kernel.len() / 2;
        if stride == 1 {
            for (line, out) in input.chunks(len).zip(output.chunks_mut(len)) {
                for (p, o) in out.iter_mut().enumerate() {
                    let lo = p.saturating_sub(radius);
                    let hi = (p + radius).min(len - 1);
                    let taps = &self.kernel[lo + radius - p..=hi + radius - p];
                    *o = taps.iter().zip(&line[lo..=hi]).map(|(k, v)| k * v).sum();
                }
            }
            return;
        }
        let block = stride * len;
        for (source, target) in input.chunks(block).zip(output.chunks_mut(block)) {
            for p in 0..len {
                let out = &mut target[p * stride..(p + 1) * stride];
                out.fill(0.0);
                for q in p.saturating_sub(radius)..=(p + radius).min(len - 1) {
                    let weight = self.kernel[q + radius - p];
                    let row = &source[q * stride..(q + 1) * stride];
                    out.iter_mut().zip(row).for_each(|(o, v)| *o += weight * v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn smooth_field_has_unit_variance_and_neighbour_correlation() {
        let s = Smoother::new([24, 24, 24], 6.0, 12.0).expect("kernel");
        let f = s.field(&mut stream(3, "t", 0, 0));
        // Interior only: the zero padding thins the edges.
        let idx = |x: usize, y: usize, z: usize| x + 24 * (y + 24 * z);
        let (mut var, mut cov, mut n) = (0.0f64, 0.0f64, 0.0f64);
        for z in 6..18 {
            for y in 6..18 {
                for x in 6..18 {
                    let v = f64::from(f[idx(x, y, z)]);
                    var += v * v;
                    cov += v * f64::from(f[idx(x + 1, y, z)]);
                    n += 1.0;
                }
            }
        }
        let corr = cov / var;
        let var = var / n;
        assert!((0.6..1.4).contains(&var), "variance {var}");
        assert!(corr > 0.4, "neighbour correlation {corr}");
        assert!(Smoother::new([4, 4, 4], 6.0, 0.0).is_none());
    }
}
