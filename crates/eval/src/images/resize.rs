//! Bilinear resizing exactly as MindEye's evaluation calls it: torchvision's
//! `transforms.Resize(425, interpolation=BILINEAR)` on float tensors, which is
//! `torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=…)`.
//!
//! With `antialias = true` (torchvision ≥ 0.17's default, MindEye2) a downscale averages with a
//! triangle filter widened by the scale factor (LibTorch's `_upsample_bilinear2d_aa`, Pillow's
//! algorithm); with `antialias = false` (torchvision < 0.17's default for tensors, MindEye1) it
//! samples the two nearest pixels. Upscaling is the same either way.
//!
//! Not scikit-image's `resize`: no published reconstruction metric calls it (MindEye1
//! `Reconstruction_Metrics.py`, MindEye2 `final_evaluations.ipynb` resize with torchvision).

use rayon::prelude::*;

use super::image::RgbImage;

/// The taps of one output index along one axis: first input index and its weights.
struct Taps {
    start: Vec<usize>,
    width: usize,
    weights: Vec<f64>,
}

/// LibTorch's weights (CPU kernels, `double` arithmetic) for `input` → `output` samples.
fn taps(input: usize, output: usize, antialias: bool) -> Taps {
    let scale = input as f64 / output as f64;
    if antialias {
        // `_compute_indices_min_size_weights_aa` with the linear (triangle) filter.
        let support = if scale >= 1.0 { scale } else { 1.0 };
        let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
        let width = (support.ceil() as usize) * 2 + 1;
        let mut start = Vec::with_capacity(output);
        let mut weights = vec![0.0; output * width];
        for i in 0..output {
            let center = scale * (i as f64 + 0.5);
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let w = &mut weights[i * width..(i + 1) * width];
            let mut total = 0.0;
            for (j, wj) in w.iter_mut().enumerate().take(xmax.saturating_sub(xmin)) {
                let x = ((j + xmin) as f64 - center + 0.5) * invscale;
                let x = x.abs();
                *wj = if x < 1.0 { 1.0 - x } else { 0.0 };
                total += *wj;
            }
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            start.push(xmin);
        }
        Taps { start, width, weights }
    } else {
        // `compute_indices_weights_linear`, align_corners = false.
        let mut start = Vec::with_capacity(output);
        let mut weights = vec![0.0; output * 2];
        for i in 0..output {
            let src = (scale * (i as f64 + 0.5) - 0.5).max(0.0);
            let i0 = src as usize;
            let l1 = src - i0 as f64;
            let (i0, l1) = if i0 + 1 < input { (i0, l1) } else { (input - 1, 0.0) };
            start.push(i0);
            weights[i * 2] = 1.0 - l1;
            weights[i * 2 + 1] = l1;
        }
        Taps { start, width: 2, weights }
    }
}

/// One axis of `taps` applied to `src` (`outer × len × inner` values, `len` along the axis).
fn apply(src: &[f64], len: usize, inner: usize, taps: &Taps, output: usize) -> Vec<f64> {
    let outer = src.len() / (len * inner);
    let mut out = vec![0.0; outer * output * inner];
    out.par_chunks_mut(output * inner).zip(src.par_chunks(len * inner)).take(outer).for_each(
        |(dst, src)| {
            for i in 0..output {
                let row = &mut dst[i * inner..(i + 1) * inner];
                let w = &taps.weights[i * taps.width..(i + 1) * taps.width];
                for (j, &wj) in w.iter().enumerate() {
                    let k = taps.start[i] + j;
                    if wj == 0.0 || k >= len {
                        continue;
                    }
                    let s = &src[k * inner..(k + 1) * inner];
                    row.iter_mut().zip(s).for_each(|(o, &v)| *o += wj * v);
                }
            }
        },
    );
    out
}

/// `image` resized to `width × height` by bilinear interpolation (`align_corners = false`), with
/// or without antialiasing, as `torch.nn.functional.interpolate` computes it in `float64`.
pub fn resize_bilinear(image: &RgbImage, width: usize, height: usize, antialias: bool) -> RgbImage {
    let mut pixels = image.pixels.clone();
    if width != image.width {
        let t = taps(image.width, width, antialias);
        pixels = apply(&pixels, image.width, 3, &t, width);
    }
    if height != image.height {
        let t = taps(image.height, height, antialias);
        pixels = apply(&pixels, image.height, width * 3, &t, height);
    }
    RgbImage { width, height, pixels }
}

/// torchvision's `Resize(size)` with one integer: the shorter side becomes `size`, the longer
/// `int(size × long / short)` (the output's `(width, height)`).
pub fn shorter_side_to(width: usize, height: usize, size: usize) -> (usize, usize) {
    if width <= height {
        (size, (size as f64 * height as f64 / width as f64) as usize)
    } else {
        ((size as f64 * width as f64 / height as f64) as usize, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(width: usize, height: usize) -> RgbImage {
        let pixels = (0..width * height * 3).map(|i| (i % 17) as f64 / 16.0).collect();
        RgbImage::new(width, height, pixels).expect("image")
    }

    #[test]
    fn same_size_is_identity_and_weights_sum_to_one() {
        let img = ramp(5, 4);
        assert_eq!(resize_bilinear(&img, 5, 4, true), img);
        for (input, output) in [(512, 425), (256, 425), (7, 425), (425, 64), (3, 2)] {
            for aa in [true, false] {
                let t = taps(input, output, aa);
                for i in 0..output {
                    let s: f64 = t.weights[i * t.width..(i + 1) * t.width].iter().sum();
                    assert!((s - 1.0).abs() < 1e-12, "{input}->{output} aa={aa} i={i}: {s}");
                }
            }
        }
    }

    #[test]
    fn constant_stays_constant_and_torchvision_sides() {
        let img = RgbImage::new(6, 3, vec![0.25; 54]).expect("image");
        let out = resize_bilinear(&img, 425, 425, true);
        assert!(out.pixels.iter().all(|v| (v - 0.25).abs() < 1e-15));
        assert_eq!(shorter_side_to(512, 512, 425), (425, 425));
        assert_eq!(shorter_side_to(640, 480, 425), (566, 425));
    }
}
